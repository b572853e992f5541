#include "wf/limits/limits_config.h"

#include <fmt/format.h>
#include <sched.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <thread>

namespace wf::limits {

using config::Option;
using config::Type;

namespace {

Option int_option(std::string key, std::string def, std::string help, std::int64_t min = 0,
                  std::int64_t max = INT64_MAX) {
  std::string env = "WF_" + key;
  for (char& c : env) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return Option{std::move(key), Type::kInt, std::move(def), std::move(help), {env}, {}, min, max};
}

Option text_option(std::string key, Type type, std::string def, std::string help) {
  std::string env = "WF_" + key;
  for (char& c : env) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return Option{std::move(key), type, std::move(def), std::move(help), {env}};
}

// The four limits of a built-in class: limits_<cls>_rate, _burst, _concurrency, _cpu_ms.
void add_class_options(std::vector<Option>& out, const std::string& cls, const std::string& who,
                       int rate, int burst, int concurrency, int cpu_ms) {
  const std::string p = "limits_" + cls + "_";
  out.push_back(int_option(p + "rate", std::to_string(rate),
                           "Calls per second " + who + " may make (token bucket); 0: no limit."));
  out.push_back(int_option(p + "burst", std::to_string(burst),
                           "Calls " + who +
                               " may make at once above the rate (bucket size); 0: "
                               "the rate."));
  out.push_back(int_option(p + "concurrency", std::to_string(concurrency),
                           "Calls " + who + " may have in flight at once; 0: no cap."));
  out.push_back(int_option(p + "cpu_ms", std::to_string(cpu_ms),
                           "CPU milliseconds (orchestrator + evaluator) " + who +
                               " may use per limits_cpu_window_ms; 0: no budget."));
}

void add_common_options(std::vector<Option>& out, int max_concurrency, const char* limit_mode) {
  out.push_back(text_option("limits_enabled", Type::kBool, "true",
                            "Per-caller limits and admission control; false admits every call."));
  out.push_back(int_option("limits_cpu_window_ms", "60000",
                           "Window of the CPU-time budgets (fixed windows).", 1000, 86400000));
  out.push_back(int_option("limits_max_users", "100000",
                           "Callers whose counters are kept at once (memory bound; idle ones are "
                           "forgotten first).",
                           16, 100000000));
  out.push_back(int_option("admission_max_concurrency", std::to_string(max_concurrency),
                           "Calls running at once (admission_limit gradient: at most); more wait "
                           "in the fair queue. 0: no admission control.",
                           0, 1000000));
  out.push_back(text_option("admission_limit", Type::kString, limit_mode,
                            "fixed: admission_max_concurrency calls in progress at once; "
                            "gradient: an adaptive limit on running calls (calls parked on I/O "
                            "apart) that follows their run time plus the evaluator's wait for a "
                            "sandbox child against its baseline (between admission_min_concurrency "
                            "and admission_max_concurrency), with a queue of half a call's time."));
  out.push_back(int_option("admission_min_concurrency", "4",
                           "admission_limit gradient: the adaptive limit's floor.", 1, 1000000));
  out.push_back(int_option("admission_cpus", "0",
                           "admission_limit gradient: the CPUs calls share (the evaluator's, with "
                           "its children); while calls beyond them are slower than alone, at most "
                           "this many are in flight (one while a second gains no calls per "
                           "second). 0: the CPUs this process may run on.",
                           0, 1000000));
  out.push_back(int_option("admission_max_queue", "1024",
                           "Calls waiting in the fair queue at most; beyond: 503 + Retry-After.", 1,
                           10000000));
  out.push_back(int_option("admission_max_queue_time_ms", "2000",
                           "Longest wait in the fair queue; then 503 + Retry-After.", 1, 600000));
}

// The CPUs this process may run on (its affinity mask: a container's or taskset's, not the
// machine's), at least 1.
int usable_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

ClassLimits class_from(const config::Config& cfg, const std::string& cls) {
  const std::string p = "limits_" + cls + "_";
  ClassLimits c;
  c.name = cls;
  c.rate = static_cast<double>(cfg.integer(p + "rate"));
  c.burst = static_cast<double>(cfg.integer(p + "burst"));
  c.concurrency = static_cast<int>(cfg.integer(p + "concurrency"));
  c.cpu_ms = static_cast<double>(cfg.integer(p + "cpu_ms"));
  return c;
}

std::expected<void, std::string> common_from(const config::Config& cfg, GateOptions& o) {
  o.enabled = cfg.boolean("limits_enabled");
  o.limiter.cpu_window = std::chrono::milliseconds(cfg.integer("limits_cpu_window_ms"));
  o.limiter.max_users = static_cast<std::size_t>(cfg.integer("limits_max_users"));
  o.admission.max_concurrency = static_cast<int>(cfg.integer("admission_max_concurrency"));
  o.admission.max_queue = static_cast<std::size_t>(cfg.integer("admission_max_queue"));
  o.admission.max_queue_time =
      std::chrono::milliseconds(cfg.integer("admission_max_queue_time_ms"));
  o.admission.min_concurrency = static_cast<int>(cfg.integer("admission_min_concurrency"));
  o.admission.cpus = static_cast<int>(cfg.integer("admission_cpus"));
  if (o.admission.cpus == 0) o.admission.cpus = usable_cpus();
  auto mode = parse_limit_mode(cfg.str("admission_limit"));
  if (!mode) return std::unexpected(mode.error());
  o.admission.limit = *mode;
  if (o.admission.limit == LimitMode::kGradient) {
    o.admission.min_concurrency =
        std::min(o.admission.min_concurrency, o.admission.max_concurrency);
    if (o.admission.max_concurrency == 0) o.admission.limit = LimitMode::kFixed;
  }
  return {};
}

std::expected<std::vector<Cidr>, std::string> cidrs_from(const config::Config& cfg,
                                                         const std::string& key) {
  auto list = parse_cidr_list(cfg.str(key));
  if (!list) {
    return std::unexpected(fmt::format("{} (from {}): {}", key, cfg.origin(key), list.error()));
  }
  return list;
}

}  // namespace

std::vector<config::Option> orchestrator_limit_options() {
  std::vector<Option> out;
  add_common_options(out, 256, "gradient");
  out.push_back(text_option("limits_user_header", Type::kString, "X-Wikifunctions-User",
                            "Header naming the calling user, believed only from "
                            "limits_trusted_peers; empty: every caller is its address."));
  out.push_back(text_option("limits_trusted_peers", Type::kString, "127.0.0.0/8,::1/128",
                            "CIDRs whose limits_user_header is believed (the wiki, its proxy)."));
  out.push_back(text_option("limits_trusted_proxies", Type::kString, "127.0.0.0/8,::1/128",
                            "CIDRs whose X-Forwarded-For is believed (TLS-terminating proxies)."));
  add_class_options(out, "anonymous", "one anonymous caller (an address)", 20, 40, 8, 60000);
  out.push_back(text_option("limits_anonymous_pooled", Type::kBool, "false",
                            "true: all anonymous callers share one set of anonymous limits."));
  add_class_options(out, "user", "one named user", 50, 100, 8, 120000);
  out.push_back(text_option("limits_local_peers", Type::kString, "127.0.0.0/8,::1/128",
                            "CIDRs of callers on this machine (operators' tools, health checks, "
                            "benchmarks) that no trusted header names: class local; \"\": none."));
  add_class_options(out, "local", "one local caller", 0, 0, 8, 0);
  out.push_back(text_option(
      "limits_classes", Type::kString, "",
      "More classes as JSON: [{\"name\":\"bot\",\"users\":[\"Bot:*\"],\"peers\":[\"10.0.0.0/"
      "8\"],\"rate\":50,\"burst\":100,\"concurrency\":16,\"cpu_ms\":600000}]; first match "
      "wins, before user/anonymous."));
  out.push_back(text_option("limits_memcached_servers", Type::kString, "",
                            "host:port[,host:port]: share the counters of rate and CPU limits "
                            "across replicas; empty: per-replica limits."));
  out.push_back(int_option("limits_memcached_timeout_ms", "50",
                           "Timeout of one memcached operation (off the request path).", 1, 10000));
  out.push_back(int_option("limits_sync_interval_ms", "100",
                           "How often usage is pushed to and read from memcached.", 1, 60000));
  out.push_back(int_option("limits_shared_rate_window_ms", "1000",
                           "Window of the shared rate counters (fixed, aligned to the clock): "
                           "replicas together admit rate x window + burst calls of a caller in "
                           "one.",
                           100, 3600000));
  return out;
}

std::vector<config::Option> evaluator_limit_options() {
  std::vector<Option> out;
  add_common_options(out, 0, "fixed");
  add_class_options(out, "caller", "one calling orchestrator (an address)", 0, 0, 0, 0);
  return out;
}

std::expected<void, std::string> parse_extra_classes(std::string_view json_text,
                                                     std::vector<ClassRule>& rules,
                                                     std::vector<ClassLimits>& classes) {
  if (json_text.empty()) return {};
  const auto j = nlohmann::json::parse(json_text, nullptr, false);
  const std::string shape =
      R"(limits_classes must be a JSON list like [{"name":"bot","users":["Bot:*"],"peers":["10.0.0.0/8"],"rate":50,"burst":100,"concurrency":16,"cpu_ms":600000}])";
  if (j.is_discarded() || !j.is_array()) return std::unexpected(shape);
  for (const auto& e : j) {
    if (!e.is_object() || !e.contains("name") || !e["name"].is_string()) {
      return std::unexpected(shape);
    }
    ClassRule rule;
    ClassLimits c;
    c.name = rule.class_name = e["name"].get<std::string>();
    for (const auto& [key, value] : e.items()) {
      const bool number = value.is_number() && value.get<double>() >= 0;
      if (key == "name") continue;
      if (key == "users" && value.is_array()) {
        for (const auto& u : value) {
          if (!u.is_string()) return std::unexpected("limits_classes: users are strings");
          rule.users.push_back(u.get<std::string>());
        }
      } else if (key == "peers" && value.is_array()) {
        for (const auto& p : value) {
          auto cidr = p.is_string() ? parse_cidr(p.get<std::string>())
                                    : std::unexpected(std::string("peers are strings"));
          if (!cidr) return std::unexpected("limits_classes: " + cidr.error());
          rule.peers.push_back(*cidr);
        }
      } else if (key == "pooled" && value.is_boolean()) {
        c.pooled = value.get<bool>();
      } else if (key == "rate" && number) {
        c.rate = value.get<double>();
      } else if (key == "burst" && number) {
        c.burst = value.get<double>();
      } else if (key == "concurrency" && number) {
        c.concurrency = static_cast<int>(value.get<double>());
      } else if (key == "cpu_ms" && number) {
        c.cpu_ms = value.get<double>();
      } else {
        return std::unexpected(
            fmt::format("limits_classes: class '{}' key '{}' = {} is not "
                        "understood; {}",
                        c.name, key, value.dump(), shape));
      }
    }
    rules.push_back(std::move(rule));
    classes.push_back(std::move(c));
  }
  return {};
}

std::expected<GateOptions, std::string> orchestrator_gate_options(const config::Config& cfg) {
  GateOptions o;
  if (auto ok = common_from(cfg, o); !ok) return std::unexpected(ok.error());
  o.identity.user_header = cfg.str("limits_user_header");
  auto peers = cidrs_from(cfg, "limits_trusted_peers");
  if (!peers) return std::unexpected(peers.error());
  auto proxies = cidrs_from(cfg, "limits_trusted_proxies");
  if (!proxies) return std::unexpected(proxies.error());
  o.identity.trusted_user_peers = std::move(*peers);
  o.identity.trusted_proxies = std::move(*proxies);
  o.limiter.classes.push_back(class_from(cfg, "anonymous"));
  o.limiter.classes.back().pooled = cfg.boolean("limits_anonymous_pooled");
  o.limiter.classes.push_back(class_from(cfg, "user"));
  if (auto ok = parse_extra_classes(cfg.str("limits_classes"), o.identity.rules, o.limiter.classes);
      !ok) {
    return std::unexpected(ok.error());
  }
  auto local = cidrs_from(cfg, "limits_local_peers");
  if (!local) return std::unexpected(local.error());
  if (!local->empty()) {
    o.identity.rules.push_back({"local", {}, std::move(*local), true});
    o.limiter.classes.push_back(class_from(cfg, "local"));
  }
  o.memcached.servers = cfg.str("limits_memcached_servers");
  o.memcached.timeout = std::chrono::milliseconds(cfg.integer("limits_memcached_timeout_ms"));
  o.limiter.sync_interval = std::chrono::milliseconds(cfg.integer("limits_sync_interval_ms"));
  o.limiter.shared_rate_window =
      std::chrono::milliseconds(cfg.integer("limits_shared_rate_window_ms"));
  if (auto ok = validate(o); !ok) return std::unexpected(ok.error());
  return o;
}

std::expected<GateOptions, std::string> evaluator_gate_options(const config::Config& cfg) {
  GateOptions o;
  if (auto ok = common_from(cfg, o); !ok) return std::unexpected(ok.error());
  o.identity.user_header.clear();
  o.identity.user_class = o.identity.anonymous_class = "caller";
  o.limiter.classes.push_back(class_from(cfg, "caller"));
  if (auto ok = validate(o); !ok) return std::unexpected(ok.error());
  return o;
}

}  // namespace wf::limits
