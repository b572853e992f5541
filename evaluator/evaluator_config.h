#pragma once
// wf-evaluator's options (flags, environment, config file) and how they map onto the server,
// the sandboxes and the evaluate handler.

#include <string>
#include <vector>

#include "evaluator/sandbox/sandbox.h"
#include "evaluator/service/evaluate_handler.h"
#include "wf/config/config.h"
#include "wf/http/server.h"
#include "wf/service/service.h"

namespace wf::evaluator {

std::vector<config::Option> evaluator_options();
http::ServerOptions server_options(const config::Config& cfg);
SandboxLimits sandbox_limits(const config::Config& cfg);
// What is wrong with a loaded configuration beyond the options' own ranges ("" when nothing).
std::string config_error(const config::Config& cfg);
EvaluateOptions evaluate_options(const config::Config& cfg);

}  // namespace wf::evaluator
