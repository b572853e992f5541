// wf-orchestrator: parses configuration, wires the engine to the wiki and the evaluator, serves.
#include <spdlog/spdlog.h>

#include <cstdio>
#include <exception>
#include <stdexcept>

#include "orchestrator/asio_event_loop.h"
#include "orchestrator/evaluator_client.h"
#include "orchestrator/orchestrator_config.h"
#include "orchestrator/routes.h"
#include "orchestrator/wiki_fetcher.h"
#include "orchestrator/wikidata_client.h"
#include "wf/http/client.h"
#include "wf/http/server.h"
#include "wf/limits/limits_config.h"
#include "wf/obs/log.h"
#include "wf/obs/metrics.h"
#include "wf/service/admission.h"
#include "wf/service/service.h"

extern const char* const wf_orchestrator_openapi_json;

// jemalloc's options when it is linked (orchestrator/CMakeLists.txt; MALLOC_CONF still overrides):
// one arena for every thread. With one event loop per core, the loop threads each got an arena of
// their own, and the slabs and dirty pages of two arenas held ~1.2 KiB more per parked call
// (bench/slow_calls at N = 2,000: 10.2 -> 11.4 KiB; with one arena 9.8), for no CPU gained per
// call (bench/README.md, session 13). Each thread's cache still serves most allocations
// without the arena's lock.
extern "C" {
// NOLINTNEXTLINE(readability-identifier-naming): the name jemalloc looks for
__attribute__((used)) const char* malloc_conf = "narenas:1";
}

int main(int argc, char** argv) {
  using namespace wf;
  http::block_shutdown_signals();
  config::Config cfg;
  if (const int code = service::start({"wf-orchestrator", service::version(), service::commit(),
                                       "evaluates Wikifunctions function calls (Z7) over HTTP"},
                                      orchestrator::orchestrator_options(), argc, argv, cfg);
      code >= 0) {
    return code;
  }
  auto gate_options = limits::orchestrator_gate_options(cfg);
  if (!gate_options) {
    std::fprintf(stderr, "wf-orchestrator: configuration error: %s\n",
                 gate_options.error().c_str());
    return 2;
  }
  try {
    // The server comes first: the outbound client runs on its event loop (no thread of its own,
    // no thread held while a request is in flight) and must be destroyed before it.
    http::Server server(orchestrator::server_options(cfg));
    auto client_options = http::ClientOptions{};
    client_options.user_agent = std::string("wikifunctions-cpp-orchestrator/") + service::version();
    client_options.io_contexts = server.io_contexts();
    auto client = std::make_shared<http::HttpClient>(client_options);
    const std::string wiki = cfg.str("wiki_api_url");
    std::shared_ptr<orchestrator::ObjectFetcher> fetcher;
    if (!wiki.empty()) fetcher = orchestrator::make_wiki_fetcher(wiki, client);
    auto routes =
        orchestrator::evaluator_routes(cfg.str("evaluator_url"), cfg.str("orchestrator_config"));
    auto runner = orchestrator::make_evaluator_client(routes, client);
    const std::string wikidata_url = cfg.str("wikidata_api_url");
    std::shared_ptr<orchestrator::EntitySource> wikidata;
    if (!wikidata_url.empty()) {
      wikidata = orchestrator::make_wikidata_client(
          {wikidata_url, std::chrono::milliseconds(cfg.integer("wikidata_timeout_ms"))}, client);
    }
    // Evaluations go on on the event loop after a small evaluator answer (EngineOptions): on the
    // loop thread the answer came back on, the one the call's connection is on.
    auto engine_options = orchestrator::engine_options(cfg);
    engine_options.event_loop = orchestrator::make_event_loop(server.io_contexts());
    std::shared_ptr<orchestrator::Engine> engine = orchestrator::make_engine(
        engine_options, fetcher, runner, orchestrator::result_store(cfg), wikidata);

    obs::log_event(
        spdlog::level::info, "starting wf-orchestrator",
        {obs::field_str("wf.wiki_api_url",
                        wiki.empty() ? "(none: built-ins and objects_dir only)" : wiki),
         obs::field_str("wf.evaluator_url", cfg.str("evaluator_url")),
         obs::field_str("wf.wikidata_api_url",
                        wikidata_url.empty() ? "(none: Wikidata built-ins fail)" : wikidata_url),
         obs::field_str("wf.objects_dir", orchestrator::objects_dir(cfg).string()),
         obs::field_int("wf.cache_ttl_ms", cfg.integer("cache_ttl_ms")),
         obs::field_str("wf.result_cache", cfg.str("result_cache")),
         obs::field_str("wf.memcached_servers", cfg.str("memcached_servers")),
         obs::field_str("wf.port.origin", cfg.origin("port"))});

    http::add_standard_routes(
        server, {"wf-orchestrator", service::version(), service::commit(),
                 "Evaluates Wikifunctions function calls", wf_orchestrator_openapi_json});
    auto gate = limits::Gate::create(std::move(*gate_options));
    if (!gate) throw std::runtime_error(gate.error());
    std::shared_ptr<limits::Gate> shared_gate = std::move(*gate);
    service::add_limits_admin_routes(server, shared_gate);
    orchestrator::RouteOptions route_options;
    route_options.max_in_progress = static_cast<int>(cfg.integer("max_pending_work"));
    orchestrator::add_orchestrator_routes(server, engine, route_options, shared_gate);
    server.start();
    return server.run_until_signal();
  } catch (const std::exception& e) {
    spdlog::critical("cannot start: {}", e.what());
    return 1;
  }
}
