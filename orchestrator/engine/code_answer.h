#pragma once
// An evaluator's answer text as the engine takes it (CodeAnswer, ports.h). wf-evaluator answers a
// code call with a Z22 in normal form whose metadata map holds eight Z6 pairs: about 150 JSON
// objects, nearly all of them the map's list and pair types, repeated once per pair. The usual
// answer is read here without building that map: its pairs come as text (CodeAnswer::meta), and
// the rest of the Z22 is parsed as before.

#include <nlohmann/json.hpp>
#include <string_view>

#include "orchestrator/engine/ports.h"

namespace wf::orchestrator {

// The answer in `text`: with `meta` set when its Z22K2 is a standard metadata map (ports.h: a
// Z883(Z6, Z1) map in normal form, unique Z6 keys other than "errors", Z6 values; its other
// members plain JSON as codec::parse_plain_json reads it); otherwise the whole Z22 as
// nlohmann::json::parse gives it (a discarded value for text that is not JSON).
CodeAnswer read_code_answer(std::string_view text);

// The normal-form Z883(Z6, Z1) map of `pairs`: the map read_code_answer took apart, exactly.
nlohmann::json metadata_map(const MetaPairs& pairs);

// The answer's Z22 with its Z22K2 (rebuilt from `meta` when the answer came apart).
nlohmann::json whole_z22(CodeAnswer answer);

}  // namespace wf::orchestrator
