// Hand-written, bounded Avro codec for the evaluator wire format. See include/wf/codec/avro.h for
// why this is not libavro.

#include "wf/codec/avro.h"

#include <fmt/format.h>

#include <bit>
#include <limits>
#include <utility>

namespace wf::codec {
namespace {

// Branch indices of the two union orders (evaluator-api.md §2.1).
enum class Branch { kZ6, kZ9, kZ99, kZ1 };
constexpr Branch kOuterOrder[] = {Branch::kZ6, Branch::kZ9, Branch::kZ99, Branch::kZ1};
constexpr Branch kInnerOrder[] = {Branch::kZ1, Branch::kZ6, Branch::kZ9, Branch::kZ99};

constexpr std::int64_t branch_index(Branch b, bool outer) {
  if (outer) return static_cast<std::int64_t>(b);
  switch (b) {
    case Branch::kZ1:
      return 0;
    case Branch::kZ6:
      return 1;
    case Branch::kZ9:
      return 2;
    case Branch::kZ99:
      return 3;
  }
  return 0;
}

// Encoding depth bound: our own values, but recursion must stay bounded whatever the caller built.
constexpr std::size_t kMaxEncodeDepth = 16384;
// A versioned body starts with a length byte; real versions are 5 characters long.
constexpr std::size_t kMaxVersionLength = 16;

bool is_zid(std::string_view s) {
  if (s.size() < 2 || s[0] != 'Z' || s[1] < '1' || s[1] > '9') return false;
  for (std::size_t i = 2; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
  }
  return true;
}

// Strict UTF-8 (no overlong forms, no surrogates, at most U+10FFFF). The JSON library refuses to
// serialise invalid UTF-8 later, so it is rejected here, where the offset is known.
bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  while (i < n) {
    const unsigned c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len = 0;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return false;
    }
    if (n - i < len) return false;
    if (p[i + 1] < lo || p[i + 1] > hi) return false;
    for (std::size_t k = 2; k < len; ++k) {
      if (p[i + k] < 0x80 || p[i + k] > 0xBF) return false;
    }
    i += len;
  }
  return true;
}

const char* json_type_name(const auto& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::null:
      return "null";
    case nlohmann::json::value_t::object:
      return "object";
    case nlohmann::json::value_t::array:
      return "array";
    case nlohmann::json::value_t::string:
      return "string";
    case nlohmann::json::value_t::boolean:
      return "boolean";
    case nlohmann::json::value_t::binary:
      return "binary";
    case nlohmann::json::value_t::discarded:
      return "discarded";
    default:
      return "number";
  }
}

// ---- JSON with a depth bound ---------------------------------------------------------------

// DOM builder that refuses to nest deeper than `max_depth` and keeps the parser's message.
template <class Json>
class BoundedDomParser : public nlohmann::detail::json_sax_dom_parser<Json> {
  using Base = nlohmann::detail::json_sax_dom_parser<Json>;

 public:
  BoundedDomParser(Json& root, std::size_t max_depth) : Base(root, false), max_depth_(max_depth) {}

  bool start_object(std::size_t len) {
    if (++depth_ > max_depth_) return too_deep();
    return Base::start_object(len);
  }
  bool end_object() {
    --depth_;
    return Base::end_object();
  }
  bool start_array(std::size_t len) {
    if (++depth_ > max_depth_) return too_deep();
    return Base::start_array(len);
  }
  bool end_array() {
    --depth_;
    return Base::end_array();
  }
  template <class Exception>
  bool parse_error(std::size_t position, const std::string& /*last_token*/, const Exception& ex) {
    if (error_.empty()) {
      error_ = ex.what();
      position_ = position;
    }
    return false;
  }

  const std::string& error() const { return error_; }
  std::size_t position() const { return position_; }

 private:
  bool too_deep() {
    if (error_.empty()) error_ = fmt::format("JSON nests deeper than {} levels", max_depth_);
    return false;
  }

  std::size_t max_depth_;
  std::size_t depth_ = 0;
  std::string error_;
  std::size_t position_ = 0;
};

template <class Json>
std::expected<Json, Error> parse_json_impl(std::string_view text, std::size_t max_depth) {
  Json root;
  BoundedDomParser<Json> sax(root, max_depth);
  const bool ok =
      Json::sax_parse(text.begin(), text.end(), &sax, nlohmann::json::input_format_t::json,
                      /*strict=*/true);
  if (!ok || !sax.error().empty()) {
    std::string msg = sax.error().empty() ? std::string("invalid JSON") : sax.error();
    return std::unexpected(Error{std::move(msg), sax.position()});
  }
  return root;
}

// ---- Decoding ------------------------------------------------------------------------------

template <class Json>
class Decoder {
 public:
  Decoder(std::string_view data, std::size_t base_offset, const DecodeLimits& limits)
      : data_(data), base_(base_offset), limits_(limits) {}

  std::size_t offset() const { return base_ + pos_; }
  std::size_t remaining() const { return data_.size() - pos_; }
  bool at_end() const { return pos_ == data_.size(); }

  std::unexpected<Error> fail(std::string message) const {
    return std::unexpected(Error{std::move(message), offset()});
  }

  std::expected<std::int64_t, Error> read_long() {
    std::uint64_t value = 0;
    for (int shift = 0; shift < 70; shift += 7) {
      if (pos_ >= data_.size()) return fail("truncated: the message ends inside a number");
      const auto b = static_cast<unsigned char>(data_[pos_++]);
      if (shift == 63 && (b & 0x7E) != 0) return fail("number does not fit in 64 bits");
      value |= static_cast<std::uint64_t>(b & 0x7F) << shift;
      if ((b & 0x80) == 0) {
        // zig-zag
        return static_cast<std::int64_t>((value >> 1) ^ (~(value & 1) + 1));
      }
    }
    return fail("number is longer than 10 bytes");
  }

  std::expected<bool, Error> read_boolean() {
    if (pos_ >= data_.size()) return fail("truncated: the message ends before a boolean");
    const auto b = static_cast<unsigned char>(data_[pos_]);
    if (b > 1) return fail(fmt::format("boolean byte is {}, not 0 or 1", b));
    ++pos_;
    return b == 1;
  }

  std::expected<double, Error> read_double() {
    if (remaining() < 8) return fail("truncated: the message ends inside a double");
    std::uint64_t bits = 0;
    for (int i = 7; i >= 0; --i) {
      bits = (bits << 8) | static_cast<unsigned char>(data_[pos_ + static_cast<std::size_t>(i)]);
    }
    pos_ += 8;
    return std::bit_cast<double>(bits);
  }

  std::expected<std::string_view, Error> read_string() {
    const std::size_t start = offset();
    auto len = read_long();
    if (!len) return std::unexpected(len.error());
    if (*len < 0) return fail(fmt::format("string at byte {} has negative length {}", start, *len));
    if (static_cast<std::uint64_t>(*len) > remaining()) {
      return fail(fmt::format("string at byte {} declares {} bytes but only {} remain", start, *len,
                              remaining()));
    }
    std::string_view s = data_.substr(pos_, static_cast<std::size_t>(*len));
    if (!valid_utf8(s)) return fail(fmt::format("string at byte {} is not valid UTF-8", start));
    pos_ += static_cast<std::size_t>(*len);
    return s;
  }

  // One union value in the given order, at ZObject nesting `depth`.
  std::expected<Json, Error> read_zobject(bool outer, std::size_t depth) {
    if (depth > limits_.max_depth) {
      return fail(fmt::format("ZObject nests deeper than {} levels", limits_.max_depth));
    }
    const std::size_t start = offset();
    auto index = read_long();
    if (!index) return std::unexpected(index.error());
    if (*index < 0 || *index > 3) {
      return fail(fmt::format("union branch {} at byte {} is out of range 0-3", *index, start));
    }
    const Branch branch = (outer ? kOuterOrder : kInnerOrder)[*index];
    switch (branch) {
      case Branch::kZ6: {
        auto s = read_string();
        if (!s) return std::unexpected(s.error());
        Json out = Json::object();
        out["Z1K1"] = "Z6";
        out["Z6K1"] = std::string(*s);
        return out;
      }
      case Branch::kZ9: {
        auto s = read_string();
        if (!s) return std::unexpected(s.error());
        Json out = Json::object();
        out["Z1K1"] = "Z9";
        out["Z9K1"] = std::string(*s);
        return out;
      }
      case Branch::kZ99: {
        const std::size_t text_start = offset();
        auto s = read_string();
        if (!s) return std::unexpected(s.error());
        auto quoted = parse_json_impl<Json>(*s, limits_.max_depth);
        if (!quoted) {
          return fail(fmt::format("Z99K1 text at byte {} is not JSON: {}", text_start,
                                  quoted.error().message));
        }
        Json out = Json::object();
        out["Z1K1"] = Json{{"Z1K1", "Z9"}, {"Z9K1", "Z99"}};
        out["Z99K1"] = std::move(*quoted);
        return out;
      }
      case Branch::kZ1: {
        Json out = Json::object();
        auto r = read_map(out, /*outer_values=*/false, depth + 1);
        if (!r) return std::unexpected(r.error());
        return out;
      }
    }
    return fail("unreachable union branch");
  }

  // A map<union> into `out` (an object); values use the outer order iff `outer_values`.
  std::expected<void, Error> read_map(Json& out, bool outer_values, std::size_t depth) {
    for (;;) {
      const std::size_t block_start = offset();
      auto count = read_long();
      if (!count) return std::unexpected(count.error());
      if (*count == 0) return {};
      std::uint64_t entries = 0;
      if (*count < 0) {
        if (*count == std::numeric_limits<std::int64_t>::min()) {
          return fail(fmt::format("map block at byte {} has an invalid count", block_start));
        }
        entries = static_cast<std::uint64_t>(-*count);
        auto size = read_long();  // byte size of the block; checked, then not needed
        if (!size) return std::unexpected(size.error());
        if (*size < 0 || static_cast<std::uint64_t>(*size) > remaining()) {
          return fail(fmt::format("map block at byte {} declares {} bytes but {} remain",
                                  block_start, *size, remaining()));
        }
      } else {
        entries = static_cast<std::uint64_t>(*count);
      }
      // Every entry takes at least two bytes (key length and union branch).
      if (entries > remaining() / 2) {
        return fail(fmt::format("map block at byte {} declares {} entries but only {} bytes remain",
                                block_start, entries, remaining()));
      }
      entries_ += entries;
      if (entries_ > limits_.max_map_entries) {
        return fail(fmt::format("message has more than {} map entries", limits_.max_map_entries));
      }
      for (std::uint64_t i = 0; i < entries; ++i) {
        auto key = read_string();
        if (!key) return std::unexpected(key.error());
        auto value = read_zobject(outer_values, depth);
        if (!value) return std::unexpected(value.error());
        out[std::string(*key)] = std::move(*value);
      }
    }
  }

 private:
  std::string_view data_;
  std::size_t pos_ = 0;
  std::size_t base_;
  const DecodeLimits& limits_;
  std::uint64_t entries_ = 0;
};

template <class Json>
std::expected<void, Error> expect_end(const Decoder<Json>& d) {
  if (!d.at_end()) {
    return d.fail(fmt::format("{} unexpected bytes after the end of the message", d.remaining()));
  }
  return {};
}

// ---- Encoding ------------------------------------------------------------------------------

void write_long(std::int64_t v, std::string& out) {
  auto z = (static_cast<std::uint64_t>(v) << 1) ^ static_cast<std::uint64_t>(v >> 63);
  while (z >= 0x80) {
    out.push_back(static_cast<char>((z & 0x7F) | 0x80));
    z >>= 7;
  }
  out.push_back(static_cast<char>(z));
}

void write_string(std::string_view s, std::string& out) {
  write_long(static_cast<std::int64_t>(s.size()), out);
  out.append(s);
}

void write_double(double d, std::string& out) {
  auto bits = std::bit_cast<std::uint64_t>(d);
  for (int i = 0; i < 8; ++i) {
    out.push_back(static_cast<char>(bits & 0xFF));
    bits >>= 8;
  }
}

template <class Json>
bool has_exactly(const Json& j, const char* k1, const char* k2) {
  return j.size() == 2 && j.contains(k1) && j.contains(k2);
}

template <class Json>
bool is_normal_z6(const Json& j) {
  return has_exactly(j, "Z1K1", "Z6K1") && j["Z1K1"] == "Z6" && j["Z6K1"].is_string();
}

template <class Json>
bool is_normal_z9(const Json& j) {
  if (!has_exactly(j, "Z1K1", "Z9K1") || j["Z1K1"] != "Z9" || !j["Z9K1"].is_string()) return false;
  return is_zid(j["Z9K1"].template get_ref<const std::string&>());
}

template <class Json>
bool is_normal_z99(const Json& j) {
  if (!has_exactly(j, "Z1K1", "Z99K1")) return false;
  const Json& t = j["Z1K1"];
  return t.is_object() && has_exactly(t, "Z1K1", "Z9K1") && t["Z1K1"] == "Z9" && t["Z9K1"] == "Z99";
}

template <class Json>
std::expected<void, Error> encode_value(const Json& j, bool outer, std::string& out,
                                        std::string& path, std::size_t depth) {
  if (depth > kMaxEncodeDepth) {
    return std::unexpected(
        Error{fmt::format("ZObject at {} nests deeper than {} levels", path, kMaxEncodeDepth)});
  }
  if (j.is_string()) {
    // Mixed-form input (e.g. `"Z1K1":"Z12"` inside an expanded type): encoded as its normal
    // form (zobjects.md §5): a ZID is a Z9, anything else a Z6. (Normalization would also make
    // "Q42" a Z9, which no valid Z9 holds; as a Z6 it stays a fixed point of encode/decode.)
    const auto& s = j.template get_ref<const std::string&>();
    write_long(branch_index(is_zid(s) ? Branch::kZ9 : Branch::kZ6, outer), out);
    write_string(s, out);
    return {};
  }
  if (!j.is_object()) {
    return std::unexpected(Error{fmt::format(
        "value at {} is a {}, not a normal-form ZObject: it has no Avro form (normalize it first)",
        path.empty() ? "/" : path, json_type_name(j))});
  }
  if (is_normal_z99(j)) {
    write_long(branch_index(Branch::kZ99, outer), out);
    write_string(j["Z99K1"].dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), out);
    return {};
  }
  if (is_normal_z9(j)) {
    write_long(branch_index(Branch::kZ9, outer), out);
    write_string(j["Z9K1"].template get_ref<const std::string&>(), out);
    return {};
  }
  if (is_normal_z6(j)) {
    write_long(branch_index(Branch::kZ6, outer), out);
    write_string(j["Z6K1"].template get_ref<const std::string&>(), out);
    return {};
  }
  write_long(branch_index(Branch::kZ1, outer), out);
  if (!j.empty()) {
    write_long(static_cast<std::int64_t>(j.size()), out);
    for (auto it = j.begin(); it != j.end(); ++it) {
      write_string(it.key(), out);
      const std::size_t saved = path.size();
      path.push_back('/');
      path.append(it.key());
      auto r = encode_value(it.value(), /*outer=*/false, out, path, depth + 1);
      if (!r) return r;
      path.resize(saved);
    }
  }
  write_long(0, out);
  return {};
}

}  // namespace

// ---- Public API ----------------------------------------------------------------------------

template <class Json>
std::expected<void, Error> encode_zobject(const Json& zobject, bool outer, std::string& out) {
  std::string path;
  return encode_value(zobject, outer, out, path, 0);
}

template <class Json>
std::expected<Json, Error> decode_zobject(std::string_view bytes, const DecodeLimits& limits) {
  Decoder<Json> d(bytes, 0, limits);
  auto value = d.read_zobject(/*outer=*/true, 0);
  if (!value) return std::unexpected(value.error());
  auto end = expect_end(d);
  if (!end) return std::unexpected(end.error());
  return value;
}

template <class Json>
std::expected<std::string, Error> encode_code_request(const CodeRequest& request,
                                                      const Json& function_arguments,
                                                      std::string_view version) {
  if (version != kVersion003 && version != kVersion004) {
    return std::unexpected(Error{
        fmt::format("cannot encode a code request as version '{}': use 0.0.3 or 0.0.4", version)});
  }
  if (!function_arguments.is_object()) {
    return std::unexpected(Error{fmt::format("functionArguments must be a JSON object, not a {}",
                                             json_type_name(function_arguments))});
  }
  std::string out;
  out.reserve(64 + request.code_string.size());
  out.push_back(static_cast<char>(version.size()));
  out.append(version);
  out.push_back(request.reentrant ? '\1' : '\0');
  if (version == kVersion004) write_double(request.remaining_time_ms, out);
  write_string(request.coding_language, out);
  write_string(request.code_string, out);
  write_string(request.function_name, out);
  if (!function_arguments.empty()) {
    write_long(static_cast<std::int64_t>(function_arguments.size()), out);
    for (auto it = function_arguments.begin(); it != function_arguments.end(); ++it) {
      write_string(it.key(), out);
      std::string path = "/functionArguments/" + it.key();
      auto r = encode_value(it.value(), /*outer=*/true, out, path, 0);
      if (!r) return std::unexpected(r.error());
    }
  }
  write_long(0, out);
  return out;
}

template <class Json>
std::expected<std::string, Error> encode_zobject_request(bool reentrant, const Json& zobject) {
  std::string out;
  out.push_back(static_cast<char>(kVersion002.size()));
  out.append(kVersion002);
  out.push_back(reentrant ? '\1' : '\0');
  auto r = encode_zobject(zobject, /*outer=*/true, out);
  if (!r) return std::unexpected(r.error());
  return out;
}

template <class Json>
std::expected<std::string, Error> encode_unversioned(const Json& zobject) {
  std::string out;
  auto r = encode_zobject(zobject, /*outer=*/true, out);
  if (!r) return std::unexpected(r.error());
  return out;
}

template <class Json>
std::expected<DecodedBody<Json>, Error> decode_unversioned(std::string_view body,
                                                           const DecodeLimits& limits) {
  auto value = decode_zobject<Json>(body, limits);
  if (!value) return std::unexpected(value.error());
  DecodedBody<Json> out;
  out.format = BodyFormat::kAvroUnversioned;
  out.version = "0.0.1";
  out.value = std::move(*value);
  return out;
}

template <class Json>
std::expected<DecodedBody<Json>, Error> decode_versioned(std::string_view body,
                                                         const DecodeLimits& limits) {
  if (body.empty()) return std::unexpected(Error{"empty body", 0});
  const auto len = static_cast<unsigned char>(body[0]);
  if (len == 0 || len > kMaxVersionLength || 1u + len > body.size()) {
    return std::unexpected(
        Error{fmt::format("first byte {} is not the length of a version string", len), 0});
  }
  const std::string_view version = body.substr(1, len);
  if (version != kVersion002 && version != kVersion003 && version != kVersion004) {
    std::string shown;
    for (char c : version) shown.push_back(c >= 0x20 && c < 0x7f ? c : '?');
    return std::unexpected(
        Error{fmt::format("unsupported version '{}' (supported: 0.0.2, 0.0.3, 0.0.4)", shown), 1});
  }
  Decoder<Json> d(body.substr(1 + len), 1 + len, limits);
  DecodedBody<Json> out;
  out.format = BodyFormat::kAvroVersioned;
  out.version = std::string(version);
  out.value = Json::object();
  auto reentrant = d.read_boolean();
  if (!reentrant) return std::unexpected(reentrant.error());
  out.value["reentrant"] = *reentrant;
  if (version == kVersion002) {
    auto z = d.read_zobject(/*outer=*/true, 0);
    if (!z) return std::unexpected(z.error());
    out.value["zobject"] = std::move(*z);
  } else {
    if (version == kVersion004) {
      auto t = d.read_double();
      if (!t) return std::unexpected(t.error());
      out.value["remainingTime"] = *t;
    }
    for (const char* field : {"codingLanguage", "codeString", "functionName"}) {
      auto s = d.read_string();
      if (!s) return std::unexpected(s.error());
      out.value[field] = std::string(*s);
    }
    Json args = Json::object();
    auto r = d.read_map(args, /*outer_values=*/true, 0);
    if (!r) return std::unexpected(r.error());
    out.value["functionArguments"] = std::move(args);
  }
  auto end = expect_end(d);
  if (!end) return std::unexpected(end.error());
  return out;
}

template <class Json>
std::expected<Json, Error> parse_json(std::string_view text, const DecodeLimits& limits) {
  return parse_json_impl<Json>(text, limits.max_depth);
}

template <class Json>
std::expected<DecodedBody<Json>, Error> decode_request_body(std::string_view body,
                                                            const DecodeLimits& limits) {
  auto unversioned = decode_unversioned<Json>(body, limits);
  if (unversioned) return unversioned;
  auto versioned = decode_versioned<Json>(body, limits);
  if (versioned) return versioned;
  auto json = parse_json<Json>(body, limits);
  if (json) {
    DecodedBody<Json> out;
    out.format = BodyFormat::kJson;
    out.value = std::move(*json);
    return out;
  }
  return std::unexpected(Error{
      fmt::format("the body is not an evaluator request: as unversioned Avro (0.0.1): {} (byte "
                  "{}); as versioned Avro: {} (byte {}); as JSON: {}",
                  unversioned.error().message, unversioned.error().offset,
                  versioned.error().message, versioned.error().offset, json.error().message),
      0});
}

#define WF_CODEC_INSTANTIATE(J)                                                                   \
  template std::expected<void, Error> encode_zobject<J>(const J&, bool, std::string&);            \
  template std::expected<J, Error> decode_zobject<J>(std::string_view, const DecodeLimits&);      \
  template std::expected<std::string, Error> encode_code_request<J>(const CodeRequest&, const J&, \
                                                                    std::string_view);            \
  template std::expected<std::string, Error> encode_zobject_request<J>(bool, const J&);           \
  template std::expected<std::string, Error> encode_unversioned<J>(const J&);                     \
  template std::expected<DecodedBody<J>, Error> decode_unversioned<J>(std::string_view,           \
                                                                      const DecodeLimits&);       \
  template std::expected<DecodedBody<J>, Error> decode_versioned<J>(std::string_view,             \
                                                                    const DecodeLimits&);         \
  template std::expected<J, Error> parse_json<J>(std::string_view, const DecodeLimits&);          \
  template std::expected<DecodedBody<J>, Error> decode_request_body<J>(std::string_view,          \
                                                                       const DecodeLimits&);
WF_CODEC_INSTANTIATE(nlohmann::json)
WF_CODEC_INSTANTIATE(nlohmann::ordered_json)
#undef WF_CODEC_INSTANTIATE

}  // namespace wf::codec
