#pragma once
// A JSON parser for the usual shape of a ZObject answer (wf-evaluator's Z22 in normal form):
// objects, arrays, strings of printable ASCII without escapes, true, false and null. It scans each
// string once and builds its value directly, where nlohmann's lexer copies it byte by byte
// (bench/orchestrator_cpu: about half of the orchestrator's CPU for a Python call's answer was
// that parse). Any other text (an escape, a byte below 0x20 or above 0x7e in a string, a number,
// a duplicate key, nesting deeper than max_depth, invalid JSON) gives nullopt: the caller
// then parses it with nlohmann, so the result is always what nlohmann::json::parse gives.

#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>

namespace wf::codec {

inline constexpr int kMaxPlainDepth = 128;

// `max_depth` (at most kMaxPlainDepth counts): text nested deeper gives nullopt, so a caller with
// a lower bound than kMaxPlainDepth (a request body's) gets its own refusal from its own parser.
std::optional<nlohmann::json> parse_plain_json(std::string_view text,
                                               int max_depth = kMaxPlainDepth);

}  // namespace wf::codec
