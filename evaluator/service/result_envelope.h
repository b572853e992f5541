#pragma once
// Building the evaluator's answers in normal form: Z5 errors in the shapes the reference uses
// (errors.md §1, "evaluator-level failures"), Z22 envelopes, and the Z883(Z6,Z1) metadata map with
// set-or-append semantics (zobjects.md §10).

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace wf::evaluator {

using Json = nlohmann::ordered_json;

// {"Z1K1":Z9 Z5, "Z5K1":Z9 <code>, "Z5K2":{"Z1K1":"Z6","Z6K1":<message>}}. With `bare_code`, Z5K1
// is the bare string <code> (the reference's shape for "Request did not supply codeString").
Json make_error(std::string_view code, std::string_view message, bool bare_code = false);

// {"Z1K1":Z9 Z22, "Z22K1":Z9 Z24, "Z22K2": map {"errors": error}}.
Json make_error_envelope(Json error);

// An empty Z883(Z6,Z1) map in normal form (its K1 is an empty list of Z882(Z6,Z1) pairs).
Json make_metadata_map();

// Whether `value` is void: absent, the Z9 Z24, or an instance of Z21.
bool is_void(const Json& value);

// Whether `value` is a Z883 map instance (normal or canonical type reference).
bool is_map(const Json& value);

// Sets `key` (a Z6 key) to `value` in the map: replaces the K2 of the pair whose key matches,
// otherwise appends a pair at the end, typed from the map's Z883K1/Z883K2. Returns false (and
// changes nothing) when the map's list is not a well-formed typed list.
bool map_set(Json& map, std::string_view key, Json value);

// The Z22K2 map of `z22`, created (an empty map) when Z22K2 is void or missing; nullptr when
// Z22K2 holds something else, which is then left untouched.
Json* metadata_of(Json& z22);

// {"Z1K1":"Z6","Z6K1":s}
Json z6(std::string_view s);

}  // namespace wf::evaluator
