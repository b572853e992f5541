#pragma once
// The last step of a request (orchestrator-api.md §8 step 7): append the orchestration*
// metadata and canonicalise the Z22, or keep it normal when canonicalisation fails.

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "orchestrator/engine/run_metadata.h"

namespace wf::orchestrator::engine_detail {

// `envelope` is the interpreter's normal-form Z22.
nlohmann::json finish_response(nlohmann::json envelope, const RunStart& start);

// The same answer as finish_response(envelope, start) serialised the way
// `dump(-1, ' ', false, error_handler_t::replace)` does, written straight to text; *has_error is
// set when the metadata has an "errors" key.
// `trailing` are Z6-valued metadata pairs the interpreter left out of the envelope's map (see
// Interpreter::orchestrate); they are written after the map's pairs.
using TrailingMeta = std::vector<std::pair<std::string, std::string>>;
std::string finish_response_text(const nlohmann::json& envelope, const TrailingMeta& trailing,
                                 const RunStart& start, bool* has_error);
// finish_response(envelope with `trailing` appended to its metadata, start), without building
// the normal form of the appended pairs when the envelope has the usual shape.
nlohmann::json finish_response(nlohmann::json envelope, const TrailingMeta& trailing,
                               const RunStart& start);
// Appends `trailing` to the envelope's metadata map (creating it when void).
void add_trailing_metadata(nlohmann::json& envelope, const TrailingMeta& trailing);
// Serialises an answer of finish_response (or any canonical/normal Z22) and tells whether its
// metadata has an "errors" key: the slow path of finish_response_text.
std::string dump_response(const nlohmann::json& z22, bool* has_error);

// A result-cache hit written from stored text. The metadata key that says a hit's tier.
inline constexpr std::string_view kResultCacheKey = "resultCache";
// The answer text of (envelope, trailing) up to its last metadata pair, for a cache entry; nullopt
// when finish_response_text would take its general path, or the pairs already hold a key that
// cached_answer() adds (resultCache, orchestration*) or "errors".
std::optional<std::string> cached_answer_head(const nlohmann::json& envelope,
                                              const TrailingMeta& trailing);
// The full answer from a head: byte for byte what finish_response_text(envelope, trailing +
// added, start) writes, without reading the envelope again. `added`: this call's pairs (resultCache
// first, then the cost breakdown), none of them a key of the head.
std::string cached_answer(std::string_view head, const TrailingMeta& added, const RunStart& start);

}  // namespace wf::orchestrator::engine_detail
