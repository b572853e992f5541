#pragma once
// The ZObject data model (spec/zobjects.md): parsing with a depth limit, the normal and canonical
// forms, typed lists (Benjamin arrays), Z5 error construction, Z22 envelopes with their Z883
// metadata maps, and the schema-error trees of errors.md §3. Everything works on nlohmann::json
// values; functions take const& and return new values, nothing here throws on bad input.

#include <cstddef>
#include <expected>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace wf::zobject {

using json = nlohmann::json;

// ---- identifiers (zobjects.md §1) -------------------------------------------------------------
bool is_zid(std::string_view s);             // ^Z[1-9]\d*$
bool is_global_key(std::string_view s);      // ^Z[1-9]\d*K[1-9]\d*$
bool is_local_key(std::string_view s);       // ^K[1-9]\d*$
bool is_key(std::string_view s);             // global or local key
bool is_reference_like(std::string_view s);  // ^[A-JL-Z][1-9]\d*$
// The edge check for a ZID that becomes part of a file name or a URL (the objects directory, the
// wiki's wikilambda_fetch): nothing when `s` is a ZID, else the Z549 "invalid reference" error
// quoting it (errors.md), which the caller returns instead of touching the file or the wiki.
std::expected<void, json> check_zid(std::string_view s);
// The 29 built-in types of zobjects.md §8 (Z1 ... Z99; not Z13/Z24/Z41/Z42).
bool is_builtin_type(std::string_view zid);

// ---- parsing ----------------------------------------------------------------------------------
struct ParseError {
  std::string message;
};
// Parses JSON text; nesting deeper than max_depth (objects + arrays) is an error, not a crash.
std::expected<json, ParseError> parse(std::string_view text, int max_depth);
// Depth of a parsed value (1 for a scalar), stopping early once it exceeds `limit`.
int depth(const json& value, int limit);

// ---- small builders (normal form) -------------------------------------------------------------
json z6(std::string_view s);   // {"Z1K1":"Z6","Z6K1":s}
json z9(std::string_view s);   // {"Z1K1":"Z9","Z9K1":s}
json z99(const json& quoted);  // {"Z1K1":Z9(Z99),"Z99K1":quoted}
json z7_type_call(std::string_view fn, std::initializer_list<std::pair<std::string, json>> args);
json list_type(const json& item_type);                  // Z881(T) as a normal Z7
json pair_type(const json& first, const json& second);  // Z882(A,B)
json map_type(const json& key, const json& value);      // Z883(K,V)

// Accessors that tolerate malformed input.
// The ZID a Z9 names (normal {"Z1K1":"Z9","Z9K1":z} or a bare string), else "".
std::string ref_id(const json& v);
// The string of a Z6 (normal or bare), else "".
std::string string_value(const json& v);
bool is_z6(const json& v);  // normal Z6 object
bool is_z9(const json& v);  // normal Z9 object
// The ZID of an object's Z1K1 when that is a reference or a bare string, else "".
std::string type_id(const json& v);

// ---- typed lists (zobjects.md §6) -------------------------------------------------------------
json make_list(const json& item_type, const std::vector<json>& items);
// True for a node whose Z1K1 is a list type (Z881 call, literal Z4 with that identity).
bool is_list_type(const json& type);
bool is_list(const json& v);
// Elements of a normal-form list (stops at the first node without K1).
std::vector<json> list_items(const json& list);
// Item type of a list node: Z881K1 of its Z1K1, or of Z1K1.Z4K1; null when unknown.
json list_item_type(const json& list);

// ---- errors (errors.md §1) --------------------------------------------------------------------
// makeError: argument i goes to <type>K<i>; strings become Z6.
json make_error(std::string_view type, const std::vector<json>& args);
json make_error_msg(std::string_view type, std::string_view message);
// Error type id of a Z5 (Z5K1 as reference or bare string), "" if none.
std::string error_type(const json& z5);

// ---- Z22 envelopes and Z883 metadata maps (zobjects.md §10) -----------------------------------
json void_value();            // Z9 Z24
bool is_void(const json& v);  // Z9 Z24 or an instance of Z21
json empty_metadata_map();    // Z883(Z6,Z1) with an empty pair list
bool is_map(const json& v);   // Z1K1 is a Z883 call
// Sets key in the map in place (replacing an existing pair's K2, else appending).
void map_set(json& map, std::string_view key, const json& value);
void map_set(json& map, std::string_view key, json&& value);
const json* map_get(const json& map, std::string_view key);
json make_envelope(const json& value, const json& metadata);  // value null -> Z24
json make_envelope(json&& value, json&& metadata);
json error_envelope(const json& z5);
// Metadata of an envelope contains a non-void "errors".
bool has_error(const json& envelope);
const json* envelope_error(const json& envelope);
// Sets a metadata key on an envelope (turning a void Z22K2 into a map first).
void envelope_set_metadata(json& envelope, std::string_view key, const json& value);

// ---- forms (zobjects.md §5, §7) ---------------------------------------------------------------
// Canonical / mixed -> normal. The error is a Z5 (normal form), usually Z502 with a schema tree.
std::expected<json, json> normalize(const json& input);
// Normal (or mixed) -> canonical. Fails with a Z502 when the input is not a valid ZObject
// (numbers, booleans, null, objects without Z1K1).
std::expected<json, json> canonicalize(const json& input);
// Normal form -> canonical without any validation (used on values known to be well formed).
json to_canonical(const json& normal);
// Mixed -> normal without validation, for a value check_mixed() accepted (part of one).
json to_normal(const json& checked);
// An error that normalisation itself produced (a Z5 whose Z5K1 is a Z501/Z502 object): such a
// value is already normal and normalize() keeps it as it is.
bool is_normalization_error(const json& value);

// ---- schema errors (errors.md §3) -------------------------------------------------------------
struct SchemaViolation {
  std::vector<std::string> path;  // instance path segments (keys and array indices)
  json error;                     // the leaf Z5
};
// Folds violations into the Z502 tree (Z526 per ZnKm segment, Z509 for siblings).
json schema_error_tree(const std::vector<SchemaViolation>& violations);
// Validates a value as a MIXED ZObject (strings, arrays, objects with Z1K1 and key-shaped keys).
// Longest list (array form, element type not counted) a ZObject may hold. Its normal form nests
// one level per element, and nlohmann::json copies and serialises nesting recursively: a list of
// 100,000 elements overflowed an evaluation's stack. check_mixed() reports a longer one as a
// violation (Z500 naming the length), so it is refused at the edge with a clear error.
inline constexpr std::size_t kMaxListElements = 20000;

std::vector<SchemaViolation> check_mixed(const json& value);

// Structural validation of a normal-form object against its built-in type's keys (the parts of
// the function-schemata NORMAL schemas that matter at run time). Returns a Z502 or null.
json validate_normal(const json& value);

// Serialised size estimate in bytes (for cache accounting).
std::size_t approx_size(const json& v);

}  // namespace wf::zobject
