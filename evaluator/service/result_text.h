#pragma once
// The evaluator's answer to a call that ran, as text, without a DOM of the runtime's result.
//
// The runtime's Z22 comes from the child as JSON text. Parsing it, setting the service's metadata
// keys in its Z22K2 map and writing it again (nlohmann ordered_json) cost the service more CPU
// than anything else per call (issue 7). When the child's text is already written exactly as
// nlohmann's dump(-1) would write it ("canonical": no whitespace, the same escapes, no numbers,
// no duplicate keys), the result passes through as it is and only the metadata map is written
// here. Everything else takes the DOM path (result_of + metadata in evaluate_handler.cc), which
// stays the definition: the fast path gives the same bytes (result_text_test checks both on the
// same inputs). User code controls the child's text, so the check is strict and bounded.

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "evaluator/service/result_envelope.h"

namespace wf::evaluator {

// One key the service sets in the Z22K2 map: a Z6 key and its Z6 value.
struct MetadataEntry {
  std::string_view key;
  std::string value;
};

// Deepest canonical text passed through (objects and arrays); deeper results take the DOM path,
// which has the decoder's own bound.
inline constexpr std::size_t kMaxPassThroughDepth = 256;
// Objects with more keys than this take the DOM path (duplicate keys are checked pairwise).
inline constexpr std::size_t kMaxPassThroughKeys = 16;

// Where the top-level Z22K2 value of a canonical JSON object lies in its text.
struct CanonicalZ22 {
  std::size_t z22k2_begin = 0;
  std::size_t z22k2_end = 0;
};

// `text` checked to be one JSON object in canonical form with a Z22K2 member (see above);
// std::nullopt otherwise (including anything nlohmann's parser would refuse).
std::optional<CanonicalZ22> scan_canonical_z22(std::string_view text);

// Sets each entry (in order) in the Z22K2 map of `z22`, as map_set does; a void Z22K2 becomes a
// map first, any other non-map is left alone (metadata_of).
void set_metadata(Json& z22, std::span<const MetadataEntry> entries);

// The answer's text for a runtime's canonical Z22 text, with `entries` set in its metadata;
// std::nullopt when the text is not canonical (the caller then takes the DOM path).
std::optional<std::string> pass_through_z22(std::string_view text,
                                            std::span<const MetadataEntry> entries);

}  // namespace wf::evaluator
