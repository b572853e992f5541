#pragma once
// wf-orchestrator's own routes: POST/GET /{domain}/v1/evaluate/ and /robots.txt.

#include <memory>

#include "orchestrator/engine/engine.h"
#include "wf/http/server.h"

namespace wf::orchestrator {

struct RouteOptions {
  std::size_t max_json_depth = 1024;  // bodies nested deeper are refused before parsing (400)
};

void add_orchestrator_routes(http::Server& server, std::shared_ptr<Engine> engine,
                             RouteOptions options);

// The evaluate handler on its own, for tests and benchmarks.
http::Response handle_evaluate(Engine& engine, const RouteOptions& options,
                               const http::Request& request);

}  // namespace wf::orchestrator
