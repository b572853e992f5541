#include "orchestrator/orchestrator_config.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <stdexcept>

#ifndef WF_DEFAULT_OBJECTS_DIR
#define WF_DEFAULT_OBJECTS_DIR ""
#endif

namespace wf::orchestrator {

using config::Option;
using config::Type;

std::vector<Option> orchestrator_options() {
  return {
      {"port",
       Type::kInt,
       "6254",
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
      {"wiki_api_url",
       Type::kUrl,
       "",
       "MediaWiki api.php with WikiLambda, for action=wikilambda_fetch; empty: no wiki (built-ins "
       "and the objects directory only).",
       {"WIKI_API_URL", "WF_WIKI_API_URL"},
       {"--wiki"}},
      {"evaluator_url",
       Type::kUrl,
       "",
       "Evaluator endpoint for every javascript-* and python-* language, e.g. "
       "http://127.0.0.1:6927/wikifunctions.org/v1/evaluate/.",
       {"FUNCTION_EVALUATOR_URL", "WF_EVALUATOR_URL"},
       {"--evaluator"}},
      {"orchestrator_config",
       Type::kString,
       "",
       "JSON as the original's ORCHESTRATOR_CONFIG: "
       "{\"evaluatorConfigs\":[{\"programmingLanguages\":[...],\"evaluatorUri\":...}]}; overrides "
       "evaluator_url per language.",
       {"ORCHESTRATOR_CONFIG"}},
      {"objects_dir",
       Type::kString,
       WF_DEFAULT_OBJECTS_DIR,
       "Directory of persisted Z2 objects (ZID.json), served after built-ins and before the wiki; "
       "empty for none.",
       {"WF_OBJECTS_DIR"}},
      {"cache_ttl_ms",
       Type::kInt,
       "300000",
       "How long fetched objects stay in the in-process cache; 0 turns the cache off.",
       {"WF_CACHE_TTL_MS"}},
      {"cache_bytes",
       Type::kInt,
       "67108864",
       "Upper bound of the object cache in bytes.",
       {"WF_CACHE_BYTES"},
       {},
       0},
      {"request_timeout_ms",
       Type::kInt,
       "20000",
       "Deadline of one evaluate request; on expiry the answer is a Z558 timeout error.",
       {"WF_REQUEST_TIMEOUT_MS"},
       {},
       1,
       600000},
      {"io_threads", Type::kInt, "1", "Event-loop threads for HTTP.", {"WF_IO_THREADS"}, {}, 1, 64},
      {"worker_threads",
       Type::kInt,
       "4",
       "Threads that evaluate function calls (calls block on the wiki and the evaluator).",
       {"WF_WORKER_THREADS"},
       {},
       1,
       256},
      {"max_pending_work",
       Type::kInt,
       "256",
       "Evaluate requests running or queued at most; beyond it: 503 with Retry-After.",
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
       "1048576",
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
       "On SIGTERM, how long in-flight requests may take to finish.",
       {"WF_SHUTDOWN_GRACE_MS"},
       {},
       0},
      {"max_zobject_depth",
       Type::kInt,
       "128",
       "Deepest nesting of a ZObject accepted (input and fetched).",
       {"WF_MAX_ZOBJECT_DEPTH"},
       {},
       8,
       4096},
      {"max_call_depth",
       Type::kInt,
       "256",
       "Deepest nesting of function calls before a Z5 error.",
       {"WF_MAX_CALL_DEPTH"},
       {},
       8,
       10000},
      {"max_steps",
       Type::kInt,
       "1000000",
       "Evaluation steps per request before a Z5 error.",
       {"WF_MAX_STEPS"},
       {},
       100},
      {"log_level",
       Type::kLogLevel,
       "info",
       "Log level; change it while running with PUT /_admin/log-level.",
       {"WF_LOG_LEVEL", "LOG_LEVEL"}},
      {"access_log", Type::kBool, "true", "One log line per HTTP request.", {"WF_ACCESS_LOG"}},
  };
}

EvaluatorRoutes evaluator_routes(const std::string& evaluator_url,
                                 const std::string& orchestrator_config) {
  EvaluatorRoutes routes;
  if (!evaluator_url.empty()) {
    // The original's legacy default: these languages go to FUNCTION_EVALUATOR_URL.
    for (const char* lang :
         {"javascript-es2020", "javascript-es2019", "javascript-es2018", "javascript-es2017",
          "javascript-es2016", "javascript-es2015", "javascript", "python-3-9", "python-3-8",
          "python-3-7", "python-3", "python"}) {
      routes.url_by_language[lang] = evaluator_url;
    }
  }
  if (orchestrator_config.empty()) return routes;
  const auto j = nlohmann::json::parse(orchestrator_config, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    throw std::runtime_error(
        "ORCHESTRATOR_CONFIG is not a JSON object: use "
        "{\"evaluatorConfigs\":[{\"programmingLanguages\":[\"python-3\"],\"evaluatorUri\":\"http://"
        "...\"}]}");
  }
  if (!j.contains("evaluatorConfigs")) return routes;
  const auto& configs = j["evaluatorConfigs"];
  if (!configs.is_array())
    throw std::runtime_error("ORCHESTRATOR_CONFIG.evaluatorConfigs must be a list");
  routes.url_by_language.clear();  // an explicit list replaces the legacy default
  for (const auto& c : configs) {
    if (!c.is_object() || !c.contains("evaluatorUri") || !c["evaluatorUri"].is_string() ||
        !c.contains("programmingLanguages") || !c["programmingLanguages"].is_array()) {
      throw std::runtime_error(
          fmt::format("ORCHESTRATOR_CONFIG.evaluatorConfigs entry {} needs "
                      "\"programmingLanguages\": [..] and \"evaluatorUri\": \"http://...\"",
                      c.dump()));
    }
    for (const auto& lang : c["programmingLanguages"]) {
      if (lang.is_string())
        routes.url_by_language[lang.get<std::string>()] = c["evaluatorUri"].get<std::string>();
    }
  }
  return routes;
}

http::ServerOptions server_options(const config::Config& cfg) {
  http::ServerOptions o;
  o.service_name = "wf-orchestrator";
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
  o.request_timeout = std::chrono::milliseconds(cfg.integer("request_timeout_ms"));
  o.shutdown_grace = std::chrono::milliseconds(cfg.integer("shutdown_grace_ms"));
  o.shutdown_delay = std::chrono::milliseconds(cfg.integer("shutdown_delay_ms"));
  o.access_log = cfg.boolean("access_log");
  return o;
}

EngineOptions engine_options(const config::Config& cfg) {
  EngineOptions o;
  o.cache_ttl = std::chrono::milliseconds(cfg.integer("cache_ttl_ms"));
  o.cache_bytes = static_cast<std::size_t>(cfg.integer("cache_bytes"));
  o.objects_dir = cfg.str("objects_dir");
  o.max_zobject_depth = static_cast<int>(cfg.integer("max_zobject_depth"));
  o.max_call_depth = static_cast<int>(cfg.integer("max_call_depth"));
  o.max_steps = cfg.integer("max_steps");
  return o;
}

}  // namespace wf::orchestrator
