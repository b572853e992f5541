#pragma once
// wf-orchestrator's own routes: POST/GET /{domain}/v1/evaluate/ and /robots.txt.

#include <memory>

#include "orchestrator/engine/engine.h"
#include "wf/http/server.h"
#include "wf/limits/gate.h"

namespace wf::orchestrator {

struct RouteOptions {
  std::size_t max_json_depth = 1024;  // bodies nested deeper are refused before parsing (400)
  // Requests up to this size that only mention built-ins run on the event loop (0: never).
  std::size_t max_inline_body_bytes = 4096;
  // Requests up to this size that call one function (a single code call with small arguments)
  // start on the event loop, and move to the CPU threads when they wait (may_start_on_loop; 0:
  // never).
  std::size_t max_loop_start_bytes = 2048;
  // Evaluations in progress at most (running or parked on I/O); beyond: 503 with Retry-After.
  int max_in_progress = 256;
};

// With a gate, evaluate calls pass the per-user limits and admission control first.
void add_orchestrator_routes(http::Server& server, std::shared_ptr<Engine> engine,
                             RouteOptions options, std::shared_ptr<limits::Gate> gate = nullptr);

// True when an evaluate request certainly does not block: small, no static validation, no code
// implementation in it, and every reference-like string in it (a quoted ZID such as "Z801") is a
// built-in the engine serves from memory. A cheap scan of the raw body, without parsing it.
// With `read` (read_request) of a usual body, the counts found while it was read decide (the
// same verdict as the scan).
bool can_run_inline(const Engine& engine, const RouteOptions& options, const http::Request& request,
                    const ReadBody* read = nullptr);

// True when an evaluate request is one call of a function that is not built in (so it may run
// code), with small built-in arguments: small (max_loop_start_bytes), no static validation, no
// escapes, one Z7, no inline code, at most one reference that is not a built-in (the function).
// Such a call starts on the event loop: resolving and binding it is light, it parks when it
// sends the code to the evaluator (or fetches from the wiki), and a long evaluation leaves the
// loop after its budget. Larger ones (big arguments, nested calls) start on the CPU threads.
bool may_start_on_loop(const Engine& engine, const RouteOptions& options,
                       const http::Request& request, const ReadBody* read = nullptr);

// Drops the request's headers but the first Content-Type (the one thing the evaluate route
// reads of them, after the gate has identified the caller), so that a call waiting on an
// evaluator does not keep them (bench/slow_calls: memory per parked call).
void keep_content_type_only(http::Request& request);

// Frees the request's ids, trace, address, caller and target (the evaluation reads them from its
// CallContext, built before: call_context), so that a call waiting on an evaluator does not hold
// a second copy of them (bench/slow_calls: memory per parked call). The body, the headers, the
// deadline, the cancellation and the admission's observer stay.
void release_request_ids(http::Request& request);

// The engine's view of a request: ids, trace, deadline and cancellation.
CallContext call_context(const http::Request& request);
// The same, its ids, trace and caller moved out of `request` (the evaluate route, which frees
// them next: release_request_ids), not copied.
CallContext take_call_context(http::Request& request);

// The evaluate handler on its own, for tests and benchmarks. Runs the evaluation on the calling
// thread (in a fiber of its own), or within the current evaluation fiber.
http::Response handle_evaluate(Engine& engine, const RouteOptions& options,
                               const http::Request& request);
// The same with the request's context already built (call_context(request)), and with the body
// already read (read_request; may be null), whose nodes the evaluation takes.
http::Response handle_evaluate(Engine& engine, const RouteOptions& options,
                               const http::Request& request, const CallContext& ctx,
                               std::shared_ptr<ReadBody> read = nullptr);

// The request's JSON body read into the engine's nodes (Engine::read_body, within max_json_depth),
// or null when it is not JSON (a form, another content type) or empty.
std::shared_ptr<ReadBody> read_request(Engine& engine, const RouteOptions& options,
                                       const http::Request& request);

}  // namespace wf::orchestrator
