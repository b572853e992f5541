// wf-evaluator: starts the language sandboxes (each a supervisor re-executed from this binary, see
// evaluator/sandbox/sandbox.h), then serves. The same binary is the supervisor image.
#include <spdlog/spdlog.h>

#include <cstdio>
#include <exception>
#include <iterator>
#include <span>
#include <stdexcept>

#include "evaluator/evaluator_config.h"
#include "wf/http/server.h"
#include "wf/limits/limits_config.h"
#include "wf/obs/log.h"
#include "wf/obs/metrics.h"
#include "wf/service/admission.h"
#include "wf/service/service.h"
#ifdef WF_HAVE_PYTHON
#include "evaluator/executors/python/python_runtime.h"
#endif
#ifdef WF_HAVE_JAVASCRIPT
#include "evaluator/executors/javascript/javascript_runtime.h"
#endif

extern const char* const wf_evaluator_openapi_json;

namespace {

const wf::evaluator::RuntimeEntry kRuntimes[] = {
#ifdef WF_HAVE_PYTHON
    {"python", wf::evaluator::make_python_runtime},
#endif
#ifdef WF_HAVE_JAVASCRIPT
    {"javascript", +[] { return wf::evaluator::make_javascript_runtime(); }},
#endif
    {"", nullptr},  // keeps the table non-empty in a build without runtimes
};

}  // namespace

int main(int argc, char** argv) {
  using namespace wf;
  // A sandbox supervisor: nothing of the service below runs in it.
  if (auto code = evaluator::run_sandbox_supervisor_if_requested(
          argc, argv, std::span(kRuntimes, std::size(kRuntimes) - 1))) {
    return *code;
  }
  http::block_shutdown_signals();
  config::Config cfg;
  if (const int code = service::start({"wf-evaluator", service::version(), service::commit(),
                                       "runs user-written Python and JavaScript in a sandbox"},
                                      evaluator::evaluator_options(), argc, argv, cfg);
      code >= 0) {
    return code;
  }
  const std::string languages = cfg.str("languages");
  const bool want_python = languages.find("python") != std::string::npos;
  const bool want_javascript = languages.find("javascript") != std::string::npos;
  if (!want_python && !want_javascript) {
    std::fprintf(stderr,
                 "wf-evaluator: configuration error: languages = '%s' names no language: use "
                 "python, javascript or python,javascript\n",
                 languages.c_str());
    return 2;
  }
  if (const std::string error = evaluator::config_error(cfg); !error.empty()) {
    std::fprintf(stderr, "wf-evaluator: configuration error: %s\n", error.c_str());
    return 2;
  }
  auto gate_options = limits::evaluator_gate_options(cfg);
  if (!gate_options) {
    std::fprintf(stderr, "wf-evaluator: configuration error: %s\n", gate_options.error().c_str());
    return 2;
  }
  try {
    // The sandboxes wait on their children on the server's event loop (no thread per call).
    http::Server server(evaluator::server_options(cfg));
    const evaluator::SandboxLimits limits = evaluator::sandbox_limits(cfg);
    std::shared_ptr<evaluator::Sandbox> python, javascript;
#ifdef WF_HAVE_PYTHON
    if (want_python) python = evaluator::start_sandbox("python", limits, &server.io_context());
#endif
#ifdef WF_HAVE_JAVASCRIPT
    if (want_javascript) {
      javascript = evaluator::start_sandbox("javascript", limits, &server.io_context());
    }
#endif
    auto handler = std::shared_ptr<evaluator::EvaluateHandler>(
        evaluator::make_evaluate_handler(evaluator::evaluate_options(cfg), python, javascript));

    http::add_standard_routes(server, {"wf-evaluator", service::version(), service::commit(),
                                       "Runs Wikifunctions code implementations in a sandbox",
                                       wf_evaluator_openapi_json});
    server.set_readiness([python, javascript, want_python, want_javascript](std::string& why) {
      if (want_python && (!python || python->ready_children() == 0)) {
        why = "no warm python sandbox";
        return false;
      }
      if (want_javascript && (!javascript || javascript->ready_children() == 0)) {
        why = "no warm javascript sandbox";
        return false;
      }
      return true;
    });
    // Defence in depth: limits per calling orchestrator (an address), in front of the route.
    auto gate = limits::Gate::create(std::move(*gate_options));
    if (!gate) throw std::runtime_error(gate.error());
    std::shared_ptr<limits::Gate> shared_gate = std::move(*gate);
    service::add_limits_admin_routes(server, shared_gate);
    http::AsyncHandler evaluate = service::admitted_async(
        shared_gate, [handler](std::shared_ptr<http::AsyncRequest> request) {
          evaluator::serve_evaluate(*handler, std::move(request));
        });
    server.add_async_route("POST", "/{domain}/v1/evaluate", "evaluate", evaluate);
    // The original orchestrator's FUNCTION_EVALUATOR_URL is often .../v1/evaluate/ without a
    // domain.
    server.add_async_route("POST", "/v1/evaluate", "evaluate", evaluate);
    server.add_route("GET", "/robots.txt", "robots", http::Dispatch::kInline,
                     [](const http::Request&) {
                       http::Response r = http::Response::json(200, "User-agent: *\nDisallow: /\n");
                       r.content_type = "text/plain; charset=utf-8";
                       return r;
                     });
    server.start();
    const int code = server.run_until_signal();
    // Before the server (and its event loop) goes: the sandboxes' descriptors live on it.
    if (python) python->shutdown();
    if (javascript) javascript->shutdown();
    return code;
  } catch (const std::exception& e) {
    spdlog::critical("cannot start: {}", e.what());
    return 1;
  }
}
