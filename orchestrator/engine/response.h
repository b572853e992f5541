#pragma once
// The last step of a request (orchestrator-api.md §8 step 7): append the orchestration*
// metadata and canonicalise the Z22, or keep it normal when canonicalisation fails.

#include <nlohmann/json.hpp>

#include "orchestrator/engine/run_metadata.h"

namespace wf::orchestrator::engine_detail {

// `envelope` is the interpreter's normal-form Z22.
nlohmann::json finish_response(nlohmann::json envelope, const RunStart& start);

}  // namespace wf::orchestrator::engine_detail
