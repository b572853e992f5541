#include "orchestrator/orchestrator_config.h"

#include <fmt/format.h>
#include <sched.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <thread>

#include "orchestrator/memcached_store.h"
#include "wf/limits/limits_config.h"

namespace wf::orchestrator {

using config::Option;
using config::Type;

namespace {

// One event loop per core, at most 4: each is an io_context run by one thread, and a call stays
// on its connection's loop (so two loops cost a code call no hand-offs, where two threads on one
// loop did), while built-in calls, which run on the loops, get every core (bench/README.md,
// session 13: measured on 2 cores; more than 2 not measured). The cores are those this process
// may run on (its affinity: a container's cpuset or taskset's), as admission reads them
// (admission_cpus 0), not the machine's: until session 18, under bench/overload's --pin two loops
// shared the one CPU the services were given.
int default_io_threads() {
  cpu_set_t set;
  CPU_ZERO(&set);
  int cores = static_cast<int>(std::thread::hardware_concurrency());
  if (sched_getaffinity(0, sizeof set, &set) == 0) cores = CPU_COUNT(&set);
  return std::clamp(cores, 1, 4);
}

}  // namespace

std::vector<Option> orchestrator_options() {
  std::vector<Option> options = service::common_options({.name = "wf-orchestrator",
                                                         .port = 6254,
                                                         .io_threads = default_io_threads(),
                                                         .worker_threads = 2,
                                                         .max_pending_work = 256,
                                                         .max_body_bytes = 1u << 20,
                                                         .max_loop_lag_ms = 0});
  std::vector<Option> own = {
      {"wiki_api_url",
       Type::kUrl,
       "",
       "MediaWiki api.php with WikiLambda, for action=wikilambda_fetch; empty: no wiki (built-ins "
       "and the objects directory only).",
       {"WIKI_API_URL", "WF_WIKI_API_URL"},
       {"--wiki"}},
      {"wikidata_api_url",
       Type::kUrl,
       "",
       "Wikibase api.php for the Wikidata built-ins (wbgetentities, lexeme search), e.g. "
       "http://wikidata-proxy.local/w/api.php (http only: put TLS in a proxy in front of "
       "https://www.wikidata.org/w/api.php); empty: those built-ins answer a Z5 naming this "
       "option.",
       {"WIKIDATA_API_URL", "WF_WIKIDATA_API_URL"}},
      {"wikidata_timeout_ms",
       Type::kInt,
       "5000",
       "Longest one Wikidata request may take (the call's deadline also bounds it); then the "
       "built-in answers a Z5.",
       {"WF_WIKIDATA_TIMEOUT_MS"},
       {},
       1,
       600000},
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
       "",
       "Directory of persisted Z2 objects (ZID.json), served after built-ins and before the wiki. "
       "Unset: the bundled example library (<bindir>/../share/wikifunctions-cpp/objects) when no "
       "wiki is configured, none when one is (the wiki is authoritative); empty for none.",
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
      {"result_cache",
       Type::kBool,
       "true",
       "Memoise function-call results (docs/result-cache.md); a request opts out with "
       "\"resultCache\": false.",
       {"WF_RESULT_CACHE"}},
      {"result_cache_bytes",
       Type::kInt,
       "67108864",
       "Upper bound of the in-process result cache in bytes.",
       {"WF_RESULT_CACHE_BYTES"},
       {},
       0},
      {"memcached_servers",
       Type::kString,
       "",
       "memcached servers (host:port[,host:port...]) shared by replicas as the result cache's "
       "second tier; empty: in-process tier only.",
       {"WF_MEMCACHED_SERVERS"}},
      {"memcached_timeout_ms",
       Type::kInt,
       "20",
       "Longest a result-cache lookup in memcached may take before it counts as a miss.",
       {"WF_MEMCACHED_TIMEOUT_MS"},
       {},
       1,
       1000},
      {"memcached_max_entry_bytes",
       Type::kInt,
       "262144",
       "Largest result stored in memcached (larger ones stay in the in-process tier only).",
       {"WF_MEMCACHED_MAX_ENTRY_BYTES"},
       {},
       0,
       1048576},
      {"request_timeout_ms",
       Type::kInt,
       "20000",
       "Deadline of one evaluate request; on expiry the answer is a Z558 timeout error.",
       {"WF_REQUEST_TIMEOUT_MS"},
       {},
       1,
       600000},
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
      {"function_metrics_top_n",
       Type::kInt,
       "50",
       "Functions with their own series in wf_orchestrator_function_* metrics (the first ones "
       "called); every other function is counted as \"other\". 0: all as \"other\".",
       {"WF_FUNCTION_METRICS_TOP_N"},
       {},
       0,
       1000},
      {"slow_call_ms",
       Type::kInt,
       "1000",
       "Evaluate requests that take at least this long (wall clock) are logged at warn level "
       "with their cost by part (event.action slow-call); 0: never.",
       {"WF_SLOW_CALL_MS"},
       {},
       0,
       600000},
      {"retire_parked_after_ms",
       Type::kInt,
       "100",
       "A request that is one top-level code call and has waited this long for the evaluator "
       "gives its evaluation fiber back (its stack and engine state, ~7 KiB) and runs again from "
       "the object cache once the evaluator answers (wf_orchestrator_fibers_retired_total); "
       "0: never retire.",
       {"WF_RETIRE_PARKED_AFTER_MS"},
       {},
       0,
       3600000},
  };
  options.insert(options.end(), std::make_move_iterator(own.begin()),
                 std::make_move_iterator(own.end()));
  std::vector<Option> limits = limits::orchestrator_limit_options();
  options.insert(options.end(), std::make_move_iterator(limits.begin()),
                 std::make_move_iterator(limits.end()));
  return options;
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
  auto o = service::server_options(cfg, "wf-orchestrator",
                                   std::chrono::milliseconds(cfg.integer("request_timeout_ms")));
  // Evaluations run on the engine's own CPU threads (worker_threads of them, engine_options);
  // the server's routes are inline or asynchronous and need no worker pool.
  o.worker_threads = 0;
  return o;
}

std::filesystem::path example_library() {
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return {};
  // Installed: <prefix>/bin/wf-orchestrator and <prefix>/share/wikifunctions-cpp/objects; the
  // build tree mirrors that layout (build/bin, build/share/...).
  auto dir = exe.parent_path().parent_path() / "share" / "wikifunctions-cpp" / "objects";
  return std::filesystem::is_directory(dir, ec) ? dir : std::filesystem::path{};
}

std::filesystem::path objects_dir(const config::Config& cfg) {
  if (cfg.source("objects_dir") != config::Source::kDefault) return cfg.str("objects_dir");
  if (!cfg.str("wiki_api_url").empty()) return {};
  return example_library();
}

std::shared_ptr<SharedResultStore> result_store(const config::Config& cfg) {
  if (cfg.str("memcached_servers").empty() || !cfg.boolean("result_cache")) return nullptr;
  MemcachedOptions o;
  o.servers = cfg.str("memcached_servers");
  o.timeout = std::chrono::milliseconds(cfg.integer("memcached_timeout_ms"));
  o.max_entry_bytes = static_cast<std::size_t>(cfg.integer("memcached_max_entry_bytes"));
  return std::make_shared<MemcachedStore>(std::move(o));
}

EngineOptions engine_options(const config::Config& cfg) {
  EngineOptions o;
  o.cache_ttl = std::chrono::milliseconds(cfg.integer("cache_ttl_ms"));
  o.cache_bytes = static_cast<std::size_t>(cfg.integer("cache_bytes"));
  o.objects_dir = objects_dir(cfg);
  o.result_cache_bytes =
      cfg.boolean("result_cache") ? static_cast<std::size_t>(cfg.integer("result_cache_bytes")) : 0;
  o.max_zobject_depth = static_cast<int>(cfg.integer("max_zobject_depth"));
  o.max_call_depth = static_cast<int>(cfg.integer("max_call_depth"));
  o.max_steps = cfg.integer("max_steps");
  o.cpu_threads = static_cast<int>(cfg.integer("worker_threads"));
  o.function_metrics_top_n = static_cast<std::size_t>(cfg.integer("function_metrics_top_n"));
  o.slow_call = std::chrono::milliseconds(cfg.integer("slow_call_ms"));
  o.retire_parked_after = std::chrono::milliseconds(cfg.integer("retire_parked_after_ms"));
  return o;
}

}  // namespace wf::orchestrator
