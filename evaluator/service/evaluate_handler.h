#pragma once
// POST /{domain}/v1/evaluate/ of wf-evaluator: decodes every request form of evaluator-api.md §2,
// runs the call in the sandbox of its language, answers with a normal-form Z22 plus metadata.

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "evaluator/sandbox/sandbox.h"
#include "wf/http/message.h"
#include "wf/http/server.h"
#include "wf/limits/identity.h"

namespace wf::evaluator {

struct EvaluateOptions {
  std::chrono::milliseconds timeout{15000};  // FUNCTION_EVALUATOR_TIMEOUT
  std::size_t max_body_bytes = 2u << 20;
  // Peers (the orchestrators) whose X-Wikifunctions-Caller header is believed: the sandbox's fair
  // queue then shares children per the user it names, not per orchestrator (caller_trusted_peers).
  std::vector<limits::Cidr> caller_trusted_peers = limits::loopback();
};

// The caller of a call in the sandbox's fair queue (CallInput::caller): the X-Wikifunctions-Caller
// header (the user the orchestrator identified, e.g. "user:Alice") when the peer is trusted and the
// value is printable and at most 256 bytes; otherwise the peer's address.
std::string fair_queue_caller(const http::Request& request,
                              const std::vector<limits::Cidr>& trusted_peers);

class EvaluateHandler {
 public:
  using Respond = std::function<void(http::Response)>;
  virtual ~EvaluateHandler() = default;
  // Never blocks: decodes and checks the request, starts the sandbox call and returns it (to be
  // cancelled when the client goes away), or answers at once (early errors: then returns null).
  // `respond` runs exactly once: on the sandbox's event loop, or inside start(). Never throws.
  virtual std::shared_ptr<SandboxCall> start(const http::Request& request, Respond respond) = 0;
  // Blocking form (tests, kWorker routes): start() and wait for the answer.
  http::Response handle(const http::Request& request);
};

// The evaluate route on the event loop: starts the call, answers from its completion, and
// cancels it when the request is cancelled (client gone, deadline, drain), which kills the
// sandbox child at once. Never blocks.
void serve_evaluate(EvaluateHandler& handler, std::shared_ptr<http::AsyncRequest> request);

// Either sandbox may be null (that language family is not served: "No executor found ...").
std::unique_ptr<EvaluateHandler> make_evaluate_handler(const EvaluateOptions& options,
                                                       std::shared_ptr<Sandbox> python,
                                                       std::shared_ptr<Sandbox> javascript);

}  // namespace wf::evaluator
