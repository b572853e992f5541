#pragma once
// The last step of a request (orchestrator-api.md §8 step 7): append the orchestration*
// metadata and canonicalise the Z22, or keep it normal when canonicalisation fails.

#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "orchestrator/engine/node.h"
#include "orchestrator/engine/run_metadata.h"

namespace wf::orchestrator::engine_detail {

// The outermost answer of an evaluation (Interpreter::orchestrate_answer). The usual success, a
// string or a reference with no metadata map (its pairs are the trailing ones), keeps its value
// as the engine's node: finish_answer_text writes it straight to the answer's text, and no JSON
// envelope is built, walked or freed. Any other answer is its normal-form Z22 as JSON.
struct Answer {
  // Set: the answer is Z22(terminal, void); a Z6 or a Z9 whose two entries are built bare
  // strings (is_terminal_value), so it owns everything it shows and may outlive the request's
  // Interpreter and Resolver. Null: `envelope` is the answer.
  NodeP terminal;
  json envelope;

  // Whether `value` may be an Answer's terminal: a Z6, or a Z9 of a reference-like text, whose
  // Z1K1 and Z6K1/Z9K1 are its only entries, both built (not lazy) bare strings.
  static bool is_terminal_value(const Node& value);
  // The answer as a normal-form Z22 (what Interpreter::orchestrate() returns); built from
  // `terminal` when it is set, which is then reset.
  json& as_envelope();
  // Whether the envelope's metadata has an "errors" key (zobject::has_error).
  bool has_error() const;
};

// `envelope` is the interpreter's normal-form Z22.
nlohmann::json finish_response(nlohmann::json envelope, const RunStart& start);

// The same answer as finish_response(envelope, start) serialised the way
// `dump(-1, ' ', false, error_handler_t::replace)` does, written straight to text; *has_error is
// set when the metadata has an "errors" key.
// `trailing` are Z6-valued metadata pairs the interpreter left out of the envelope's map (see
// Interpreter::orchestrate); they are written after the map's pairs.
using TrailingMeta = std::vector<std::pair<std::string, std::string>>;
// More Z6-valued pairs, written after `trailing` as if they ended it (the call's cost breakdown:
// CostPairs; run_metadata.h, TextPair).
using StaticPairs = std::span<const TextPair>;
std::string finish_response_text(const nlohmann::json& envelope, const TrailingMeta& trailing,
                                 const RunStart& start, bool* has_error, StaticPairs more = {});
// finish_response_text(answer.as_envelope(), trailing, start, has_error, more), byte for byte,
// without the envelope when the answer is a terminal.
std::string finish_answer_text(Answer& answer, const TrailingMeta& trailing, const RunStart& start,
                               bool* has_error, StaticPairs more = {});

// finish_response(envelope with `trailing` appended to its metadata, start), without building
// the normal form of the appended pairs when the envelope has the usual shape.
nlohmann::json finish_response(nlohmann::json envelope, const TrailingMeta& trailing,
                               const RunStart& start);
// Appends `trailing`, then `more`, to the envelope's metadata map (creating it when void).
void add_trailing_metadata(nlohmann::json& envelope, const TrailingMeta& trailing,
                           StaticPairs more = {});
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
