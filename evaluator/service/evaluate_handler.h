#pragma once
// POST /{domain}/v1/evaluate/ of wf-evaluator: decodes every request form of evaluator-api.md §2,
// runs the call in the sandbox of its language, answers with a normal-form Z22 plus metadata.

#include <chrono>
#include <memory>

#include "evaluator/sandbox/sandbox.h"
#include "wf/http/message.h"

namespace wf::evaluator {

struct EvaluateOptions {
  std::chrono::milliseconds timeout{15000};  // FUNCTION_EVALUATOR_TIMEOUT
  std::size_t max_body_bytes = 2u << 20;
};

class EvaluateHandler {
 public:
  virtual ~EvaluateHandler() = default;
  // Blocking: run on a worker thread. Never throws.
  virtual http::Response handle(const http::Request& request) = 0;
};

// Either sandbox may be null (that language family is not served: "No executor found ...").
std::unique_ptr<EvaluateHandler> make_evaluate_handler(const EvaluateOptions& options,
                                                       std::shared_ptr<Sandbox> python,
                                                       std::shared_ptr<Sandbox> javascript);

}  // namespace wf::evaluator
