#pragma once
// The function-evaluator wire format (evaluator-api.md §2): the Avro encoding of ZObjects used by
// function-schemata, the versioned envelope the orchestrator sends, and the decoding of every
// request body form the evaluator accepts (unversioned Avro 0.0.1, versioned 0.0.2-0.0.4, JSON).
//
// Why a hand-written codec and not libavro (avro-c) at run time:
// * The decoder reads bytes from the network. avro-c allocates a declared string/bytes length
//   before checking that the bytes exist (a 6-byte message claiming a 2 GiB string makes a 2 GiB
//   malloc, and it leaks on truncated input; see shared/notes/toolchain.md). It has no depth
//   limit for the recursive ZObject schema (stack exhaustion), and its error text is a global
//   buffer that concatenates old errors. Wrapping it safely would need a full pre-validation pass
//   over the bytes, which is already a complete decoder.
// * The schema is tiny and fixed: strings, a boolean, a double, maps and two unions. The decoder
//   below checks every declared length against the bytes left before it allocates, bounds the
//   nesting depth and the number of map entries, accepts negative map block counts, rejects
//   trailing bytes, and reports every failure as a value with the byte offset.
// * The encoder is the same few rules in reverse; the reference writes one positive map block,
//   and so do we.
// libavro is used where it serves without risk: the unit tests encode and decode with avro-c
// against the function-schemata schemas and compare bytes with this codec in both directions.

#include <cstddef>
#include <cstdint>
#include <expected>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace wf::codec {

// A decoding or encoding failure. `offset` is the byte offset (in the whole body) where decoding
// stopped; 0 for encoding errors.
struct Error {
  std::string message;
  std::size_t offset = 0;
};

// Bounds applied while decoding untrusted bytes. Every declared length is also checked against
// the bytes that remain, so no allocation can exceed the size of the input.
struct DecodeLimits {
  // Nesting depth of ZObjects (a Z1 inside a Z1 ...) and of JSON (Z99 quotes, JSON bodies).
  // Normal-form lists nest one level per element, so this also caps list length.
  std::size_t max_depth = 4096;
  // Map entries over the whole message (every key of every Z1 and every function argument).
  std::size_t max_map_entries = 1u << 20;
};

// The record of versions 0.0.3 and 0.0.4 (the orchestrator sends 0.0.4).
struct CodeRequest {
  bool reentrant = false;
  double remaining_time_ms = 0;  // 0.0.4 only; the reference evaluator ignores it
  std::string coding_language;   // e.g. "python-3"
  std::string code_string;       // Z16K2
  std::string function_name;     // e.g. "Z10001"
};

// Versions of the versioned envelope this codec reads; it writes "0.0.2", "0.0.3" and "0.0.4".
inline constexpr std::string_view kVersion002 = "0.0.2";
inline constexpr std::string_view kVersion003 = "0.0.3";
inline constexpr std::string_view kVersion004 = "0.0.4";

// Which decoder accepted a request body (evaluator-api.md §2 order).
enum class BodyFormat { kAvroUnversioned, kAvroVersioned, kJson };

template <class Json>
struct DecodedBody {
  BodyFormat format = BodyFormat::kJson;
  std::string version;  // "0.0.1" ... "0.0.4"; empty for JSON
  // As the spec's "decoded result":
  //   0.0.1: the ZObject itself (normally a whole Z7);
  //   0.0.2: {"reentrant": bool, "zobject": <ZObject>};
  //   0.0.3/0.0.4: {"reentrant", ["remainingTime",] "codingLanguage", "codeString",
  //                 "functionName", "functionArguments": {key: normal ZObject}};
  //   JSON: the parsed body.
  Json value;
};

// ---- ZObject <-> Avro union ----------------------------------------------------------------
// Mapping (evaluator-api.md §2.1): a valid normal Z99 quote -> Z99 (compact JSON text of Z99K1);
// a Z9 whose Z9K1 is a ZID -> Z9; a Z6 -> Z6; any other object -> Z1, every key mapped
// recursively (including Z1K1). Mixed-form bare strings (e.g. `"Z1K1":"Z12"` in an expanded
// type) are written as their normal form: a ZID (`^Z[1-9]\d*$`) as a Z9, any other string as a
// Z6; decoding then yields the normal form. Arrays, numbers, booleans and null
// have no Avro form and are an encoding error naming their path.

// Appends the union value of `zobject` to `out`. `outer` selects the branch order: true for a
// top-level / map-argument value ([Z6, Z9, Z99, Z1]), false for a Z1 map value ([Z1, Z6, Z9, Z99]).
template <class Json>
std::expected<void, Error> encode_zobject(const Json& zobject, bool outer, std::string& out);

// Decodes exactly one outer union value spanning the whole of `bytes`.
template <class Json>
std::expected<Json, Error> decode_zobject(std::string_view bytes, const DecodeLimits& limits = {});

// ---- Request bodies -------------------------------------------------------------------------

// The versioned v0.0.4 (or v0.0.3, without remainingTime) body the orchestrator POSTs.
// `function_arguments` must be a JSON object: argument key -> normal-form ZObject.
template <class Json>
std::expected<std::string, Error> encode_code_request(const CodeRequest& request,
                                                      const Json& function_arguments,
                                                      std::string_view version = kVersion004);

// The versioned v0.0.2 body: {reentrant, zobject} (a whole Z7).
template <class Json>
std::expected<std::string, Error> encode_zobject_request(bool reentrant, const Json& zobject);

// The unversioned v0.0.1 body: just the ZObject union value.
template <class Json>
std::expected<std::string, Error> encode_unversioned(const Json& zobject);

// Decodes an unversioned (0.0.1) body.
template <class Json>
std::expected<DecodedBody<Json>, Error> decode_unversioned(std::string_view body,
                                                           const DecodeLimits& limits = {});

// Decodes a versioned body (0.0.2, 0.0.3 or 0.0.4).
template <class Json>
std::expected<DecodedBody<Json>, Error> decode_versioned(std::string_view body,
                                                         const DecodeLimits& limits = {});

// Parses a JSON body with the depth limit applied before parsing.
template <class Json>
std::expected<Json, Error> parse_json(std::string_view text, const DecodeLimits& limits = {});

// Tries the three forms in the evaluator's order: unversioned Avro, versioned Avro, JSON.
// On failure the message names why each form was rejected.
template <class Json>
std::expected<DecodedBody<Json>, Error> decode_request_body(std::string_view body,
                                                            const DecodeLimits& limits = {});

// Explicit instantiations live in src/codec/avro.cc.
#define WF_CODEC_DECLARE(J)                                                                        \
  extern template std::expected<void, Error> encode_zobject<J>(const J&, bool, std::string&);      \
  extern template std::expected<J, Error> decode_zobject<J>(std::string_view,                      \
                                                            const DecodeLimits&);                  \
  extern template std::expected<std::string, Error> encode_code_request<J>(                        \
      const CodeRequest&, const J&, std::string_view);                                             \
  extern template std::expected<std::string, Error> encode_zobject_request<J>(bool, const J&);     \
  extern template std::expected<std::string, Error> encode_unversioned<J>(const J&);               \
  extern template std::expected<DecodedBody<J>, Error> decode_unversioned<J>(std::string_view,     \
                                                                             const DecodeLimits&); \
  extern template std::expected<DecodedBody<J>, Error> decode_versioned<J>(std::string_view,       \
                                                                           const DecodeLimits&);   \
  extern template std::expected<J, Error> parse_json<J>(std::string_view, const DecodeLimits&);    \
  extern template std::expected<DecodedBody<J>, Error> decode_request_body<J>(                     \
      std::string_view, const DecodeLimits&);
WF_CODEC_DECLARE(nlohmann::json)
WF_CODEC_DECLARE(nlohmann::ordered_json)
#undef WF_CODEC_DECLARE

}  // namespace wf::codec
