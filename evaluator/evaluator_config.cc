#include "evaluator/evaluator_config.h"

namespace wf::evaluator {

using config::Option;
using config::Type;

std::vector<Option> evaluator_options() {
  return {
      {"port",
       Type::kInt,
       "6927",
       "TCP port to listen on; 0 picks a free port (the log says which).",
       {"PORT", "WF_PORT"},
       {},
       0,
       65535},
      {"address",
       Type::kString,
       "127.0.0.1",
       "Address to listen on; 0.0.0.0 for every interface (containers).",
       {"WF_ADDRESS"}},
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
      {"io_threads", Type::kInt, "1", "Event-loop threads for HTTP.", {"WF_IO_THREADS"}, {}, 1, 64},
      {"worker_threads",
       Type::kInt,
       "8",
       "Calls running at once (each waits on one sandboxed child).",
       {"WF_WORKER_THREADS"},
       {},
       1,
       256},
      {"max_pending_work",
       Type::kInt,
       "64",
       "Calls running or queued at most; beyond it: 503 with Retry-After.",
       {"WF_MAX_PENDING_WORK"},
       {},
       1},
      {"max_connections",
       Type::kInt,
       "1024",
       "Client connections open at most; beyond it: 503.",
       {"WF_MAX_CONNECTIONS"},
       {},
       1},
      {"max_body_bytes",
       Type::kInt,
       "2097152",
       "Largest request body accepted (413 above).",
       {"WF_MAX_BODY_BYTES"},
       {},
       1024},
      {"max_header_bytes",
       Type::kInt,
       "16384",
       "Largest request header block accepted (431 above).",
       {"WF_MAX_HEADER_BYTES"},
       {},
       1024},
      {"header_timeout_ms",
       Type::kInt,
       "10000",
       "Time a client has to send a request's headers.",
       {"WF_HEADER_TIMEOUT_MS"},
       {},
       1},
      {"idle_timeout_ms",
       Type::kInt,
       "30000",
       "Time a keep-alive connection may sit idle.",
       {"WF_IDLE_TIMEOUT_MS"},
       {},
       1},
      {"shutdown_delay_ms",
       Type::kInt,
       "0",
       "On SIGTERM, how long /readyz reports 503 while still accepting, before the listener closes.",
       {"WF_SHUTDOWN_DELAY_MS"},
       {},
       0,
       600000},
      {"shutdown_grace_ms",
       Type::kInt,
       "10000",
       "On SIGTERM, how long in-flight calls may take to finish.",
       {"WF_SHUTDOWN_GRACE_MS"},
       {},
       0},
      {"log_level",
       Type::kLogLevel,
       "info",
       "Log level; change it while running with PUT /_admin/log-level.",
       {"WF_LOG_LEVEL", "LOG_LEVEL"}},
      {"access_log", Type::kBool, "true", "One log line per HTTP request.", {"WF_ACCESS_LOG"}},
  };
}

http::ServerOptions server_options(const config::Config& cfg) {
  http::ServerOptions o;
  o.service_name = "wf-evaluator";
  o.address = cfg.str("address");
  o.port = static_cast<std::uint16_t>(cfg.integer("port"));
  o.io_threads = static_cast<int>(cfg.integer("io_threads"));
  o.worker_threads = static_cast<int>(cfg.integer("worker_threads"));
  o.max_pending_work = static_cast<int>(cfg.integer("max_pending_work"));
  o.max_connections = static_cast<int>(cfg.integer("max_connections"));
  o.max_body_bytes = static_cast<std::size_t>(cfg.integer("max_body_bytes"));
  o.max_header_bytes = static_cast<std::size_t>(cfg.integer("max_header_bytes"));
  o.header_timeout = std::chrono::milliseconds(cfg.integer("header_timeout_ms"));
  o.idle_timeout = std::chrono::milliseconds(cfg.integer("idle_timeout_ms"));
  // A call's own limit is timeout_ms; the HTTP deadline leaves a little room to answer.
  o.request_timeout = std::chrono::milliseconds(cfg.integer("timeout_ms") + 1000);
  o.shutdown_grace = std::chrono::milliseconds(cfg.integer("shutdown_grace_ms"));
  o.shutdown_delay = std::chrono::milliseconds(cfg.integer("shutdown_delay_ms"));
  o.access_log = cfg.boolean("access_log");
  return o;
}

SandboxLimits sandbox_limits(const config::Config& cfg) {
  SandboxLimits l;
  l.wall = std::chrono::milliseconds(cfg.integer("timeout_ms"));
  l.cpu = std::chrono::seconds(cfg.integer("cpu_limit_s"));
  l.memory_bytes = static_cast<std::uint64_t>(cfg.integer("memory_limit_mb")) << 20;
  l.output_bytes = static_cast<std::uint64_t>(cfg.integer("output_limit_bytes"));
  l.captured_output_bytes = static_cast<std::uint64_t>(cfg.integer("captured_output_bytes"));
  l.pool_size = static_cast<int>(cfg.integer("pool_size"));
  return l;
}

EvaluateOptions evaluate_options(const config::Config& cfg) {
  EvaluateOptions o;
  o.timeout = std::chrono::milliseconds(cfg.integer("timeout_ms"));
  o.max_body_bytes = static_cast<std::size_t>(cfg.integer("max_body_bytes"));
  return o;
}

}  // namespace wf::evaluator
