#pragma once
// CodeRunner that POSTs code calls to wf-evaluator (or the original function-evaluator) as
// versioned Avro 0.0.4, with the request's remaining time, request id and traceparent.

#include <memory>

#include "orchestrator/engine/ports.h"
#include "orchestrator/orchestrator_config.h"
#include "wf/http/client.h"

namespace wf::orchestrator {

std::shared_ptr<CodeRunner> make_evaluator_client(EvaluatorRoutes routes,
                                                  std::shared_ptr<http::HttpClient> client);

}  // namespace wf::orchestrator
