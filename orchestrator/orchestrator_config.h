#pragma once
// wf-orchestrator's options (flags, environment, config file) and how they map onto the server,
// the engine and the outbound clients.

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "orchestrator/engine/engine.h"
#include "wf/config/config.h"
#include "wf/http/server.h"
#include "wf/service/service.h"

namespace wf::orchestrator {

std::vector<config::Option> orchestrator_options();

// Which evaluator serves which programming language (Z61K1 codes), as the original's
// ORCHESTRATOR_CONFIG evaluatorConfigs, or the legacy default list pointed at one URL.
struct EvaluatorRoutes {
  std::map<std::string, std::string> url_by_language;
};
// Throws std::runtime_error naming the fix when ORCHESTRATOR_CONFIG is not valid.
EvaluatorRoutes evaluator_routes(const std::string& evaluator_url,
                                 const std::string& orchestrator_config);

http::ServerOptions server_options(const config::Config& cfg);
EngineOptions engine_options(const config::Config& cfg);
// The result cache's shared tier (memcached_servers), or null when none is configured.
std::shared_ptr<SharedResultStore> result_store(const config::Config& cfg);
// The bundled example library beside the binary (<bindir>/../share/wikifunctions-cpp/objects,
// installed or in the build tree), or empty when it is not there.
std::filesystem::path example_library();
// The objects directory in effect: the one asked for (flag, environment, file; "" for none),
// else the example library when no wiki is configured, else none: the wiki is authoritative.
std::filesystem::path objects_dir(const config::Config& cfg);

}  // namespace wf::orchestrator
