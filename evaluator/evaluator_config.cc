#include "evaluator/evaluator_config.h"

#include "wf/limits/limits_config.h"

namespace wf::evaluator {

using config::Option;
using config::Type;

std::vector<Option> evaluator_options() {
  std::vector<Option> options = service::common_options({.name = "wf-evaluator",
                                                         .port = 6927,
                                                         // Evaluate calls wait on the event
                                                         // loop (no worker). One loop: no
                                                         // hand-offs between loop threads
                                                         // (-26..38% service CPU per call);
                                                         // the sandbox's own processes use
                                                         // the other cores.
                                                         .io_threads = 1,
                                                         .worker_threads = 2,
                                                         .max_pending_work = 64,
                                                         .max_body_bytes = 2u << 20});
  std::vector<Option> own = {
      {"languages",
       Type::kString,
       "python,javascript",
       "Language families to serve: python, javascript or both (comma-separated).",
       {"WF_LANGUAGES"}},
      {"timeout_ms",
       Type::kInt,
       "15000",
       "Longest a call may take, wall clock (the request's own deadline may lower it); then Z558.",
       {"FUNCTION_EVALUATOR_TIMEOUT", "WF_TIMEOUT_MS"},
       {},
       10,
       600000},
      {"cpu_limit_s",
       Type::kInt,
       "10",
       "CPU seconds a call may use (RLIMIT_CPU).",
       {"WF_CPU_LIMIT_S"},
       {},
       1,
       600},
      {"memory_limit_mb",
       Type::kInt,
       "256",
       "Memory a call may use, in MiB.",
       {"WF_MEMORY_LIMIT_MB"},
       {},
       16,
       65536},
      {"output_limit_bytes",
       Type::kInt,
       "1048576",
       "Largest result a call may return.",
       {"WF_OUTPUT_LIMIT_BYTES"},
       {},
       1024},
      {"captured_output_bytes",
       Type::kInt,
       "16384",
       "How much printed text of a call is kept in its metadata.",
       {"WF_CAPTURED_OUTPUT_BYTES"},
       {},
       0},
      {"pool_size",
       Type::kInt,
       "4",
       "Pre-forked warm children kept ready per language.",
       {"WF_POOL_SIZE"},
       {},
       1,
       256},
      {"sandbox_warm_idle_ms",
       Type::kInt,
       "0",
       "Warm a new sandbox child up (its call then skips the first call's page faults, for more "
       "CPU in all) only while calls take children at least this many ms apart on average; "
       "under a steadier stream children start cold and the CPU goes to calls. 0 = always warm "
       "(when the pool is nearly full).",
       {"WF_SANDBOX_WARM_IDLE_MS"},
       {},
       0,
       60000},
      // Fair sharing of sandbox children (docs/limits.md "Sandbox children").
      {"sandbox_children_per_flow",
       Type::kInt,
       "16",
       "Sandbox children one flow (one caller's calls of one code string) may hold at once; its "
       "further calls wait while other code gets children at once. 0 = no cap.",
       {"WF_SANDBOX_CHILDREN_PER_FLOW"},
       {},
       0,
       65536},
      {"sandbox_queue_per_flow",
       Type::kInt,
       "2048",
       "Calls of one flow that may wait for a sandbox child; beyond, 429 with Retry-After.",
       {"WF_SANDBOX_QUEUE_PER_FLOW"},
       {},
       0,
       1000000},
      {"sandbox_queue_total",
       Type::kInt,
       "8192",
       "Calls of all flows that may wait for a sandbox child (per language); beyond, 503 with "
       "Retry-After.",
       {"WF_SANDBOX_QUEUE_TOTAL"},
       {},
       0,
       1000000},
      {"sandbox_queue_wait_ms",
       Type::kInt,
       "10000",
       "Longest a call waits for a sandbox child (its own deadline may be earlier); then 429 when "
       "its flow held all its children, else 503.",
       {"WF_SANDBOX_QUEUE_WAIT_MS"},
       {},
       1,
       600000},
      {"caller_trusted_peers",
       Type::kString,
       "127.0.0.0/8,::1/128",
       "CIDRs (the orchestrators) whose X-Wikifunctions-Caller header is believed: the sandbox "
       "fair queue then shares children per user it names, not per orchestrator; empty: every "
       "caller is its address.",
       {"WF_CALLER_TRUSTED_PEERS"}},
      {"sandbox_call_nice",
       Type::kInt,
       "10",
       "Nice increment of a sandbox child whose call has run sandbox_call_demote_after_ms "
       "(0-19; 0 = never), so that the service's event loops and short calls get the CPU "
       "promptly beside children that spin.",
       {"WF_SANDBOX_CALL_NICE"},
       {},
       0,
       19},
      {"sandbox_call_policy",
       Type::kString,
       "normal",
       "Scheduling policy of a sandbox child whose call has run sandbox_call_demote_after_ms: "
       "normal, batch (SCHED_BATCH) or idle (SCHED_IDLE: runs only when nothing else wants the "
       "CPU).",
       {"WF_SANDBOX_CALL_POLICY"}},
      {"sandbox_group_nice",
       Type::kInt,
       "0",
       "Nice (0-19) of each sandbox's scheduling group as a whole (its session's autogroup, on "
       "hosts and VMs; no effect in a container's cgroup): above 0 the service's threads get a "
       "CPU sooner than the sandbox children when both want one. 0: unchanged.",
       {"WF_SANDBOX_GROUP_NICE"},
       {},
       0,
       19},
      {"sandbox_call_demote_after_ms",
       Type::kInt,
       "50",
       "How long a call runs at the zygote's priority before sandbox_call_nice and "
       "sandbox_call_policy apply (0: from its start).",
       {"WF_SANDBOX_CALL_DEMOTE_AFTER_MS"},
       {},
       0,
       600000},
  };
  options.insert(options.end(), std::make_move_iterator(own.begin()),
                 std::make_move_iterator(own.end()));
  std::vector<Option> limits = limits::evaluator_limit_options();
  options.insert(options.end(), std::make_move_iterator(limits.begin()),
                 std::make_move_iterator(limits.end()));
  return options;
}

http::ServerOptions server_options(const config::Config& cfg) {
  // A call's own limit is timeout_ms; the HTTP deadline leaves a second to answer.
  return service::server_options(cfg, "wf-evaluator",
                                 std::chrono::milliseconds(cfg.integer("timeout_ms") + 1000));
}

SandboxLimits sandbox_limits(const config::Config& cfg) {
  SandboxLimits l;
  l.wall = std::chrono::milliseconds(cfg.integer("timeout_ms"));
  l.cpu = std::chrono::seconds(cfg.integer("cpu_limit_s"));
  l.memory_bytes = static_cast<std::uint64_t>(cfg.integer("memory_limit_mb")) << 20;
  l.output_bytes = static_cast<std::uint64_t>(cfg.integer("output_limit_bytes"));
  l.captured_output_bytes = static_cast<std::uint64_t>(cfg.integer("captured_output_bytes"));
  l.pool_size = static_cast<int>(cfg.integer("pool_size"));
  l.warm_idle = std::chrono::milliseconds(cfg.integer("sandbox_warm_idle_ms"));
  l.children_per_flow = static_cast<std::size_t>(cfg.integer("sandbox_children_per_flow"));
  l.queued_per_flow = static_cast<std::size_t>(cfg.integer("sandbox_queue_per_flow"));
  l.queued_total = static_cast<std::size_t>(cfg.integer("sandbox_queue_total"));
  l.queue_wait = std::chrono::milliseconds(cfg.integer("sandbox_queue_wait_ms"));
  l.call_nice = static_cast<int>(cfg.integer("sandbox_call_nice"));
  l.call_demote_after = std::chrono::milliseconds(cfg.integer("sandbox_call_demote_after_ms"));
  l.group_nice = static_cast<int>(cfg.integer("sandbox_group_nice"));
  const std::string policy = cfg.str("sandbox_call_policy");
  l.call_policy = policy == "idle"    ? SandboxLimits::CallPolicy::kIdle
                  : policy == "batch" ? SandboxLimits::CallPolicy::kBatch
                                      : SandboxLimits::CallPolicy::kNormal;
  return l;
}

std::string config_error(const config::Config& cfg) {
  if (auto peers = limits::parse_cidr_list(cfg.str("caller_trusted_peers")); !peers) {
    return "caller_trusted_peers (from " + cfg.origin("caller_trusted_peers") +
           "): " + peers.error();
  }
  const std::string& policy = cfg.str("sandbox_call_policy");
  if (policy != "normal" && policy != "batch" && policy != "idle") {
    return "sandbox_call_policy = '" + policy + "': use normal, batch or idle";
  }
  return {};
}

EvaluateOptions evaluate_options(const config::Config& cfg) {
  EvaluateOptions o;
  o.timeout = std::chrono::milliseconds(cfg.integer("timeout_ms"));
  o.max_body_bytes = static_cast<std::size_t>(cfg.integer("max_body_bytes"));
  o.caller_trusted_peers = limits::parse_cidr_list(cfg.str("caller_trusted_peers"))
                               .value_or(std::vector<limits::Cidr>{});
  return o;
}

}  // namespace wf::evaluator
