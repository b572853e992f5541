#include "evaluator/service/result_text.h"

#include <array>
#include <utility>

#include "wf/codec/avro.h"
#include "wf/zobject/metadata_text.h"

namespace wf::evaluator {
namespace {

// The Z22K2 of a runtime's plain success: void.
constexpr std::string_view kVoid = R"({"Z1K1":"Z9","Z9K1":"Z24"})";

// The texts make_metadata_map() and map_set() build (wf/zobject/metadata_text.h).
using wf::zobject::metadata_text::kListTypeHead;
using wf::zobject::metadata_text::kMapType;
using wf::zobject::metadata_text::kPairType;

bool in(unsigned b, unsigned lo, unsigned hi) {
  return b >= lo && b <= hi;
}

// Length of the well-formed UTF-8 sequence at s[i] (RFC 3629, as nlohmann's lexer checks it:
// no overlong forms, no surrogates, nothing above U+10FFFF); 0 when it is not one.
std::size_t utf8_length(std::string_view s, std::size_t i) {
  const auto at = [&](std::size_t k) -> unsigned {
    return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : 0x100u;
  };
  const auto cont = [&](std::size_t k) { return in(at(k), 0x80, 0xBF); };
  const unsigned b0 = at(0);
  if (in(b0, 0xC2, 0xDF)) return cont(1) ? 2 : 0;
  if (b0 == 0xE0) return in(at(1), 0xA0, 0xBF) && cont(2) ? 3 : 0;
  if (in(b0, 0xE1, 0xEC) || in(b0, 0xEE, 0xEF)) return cont(1) && cont(2) ? 3 : 0;
  if (b0 == 0xED) return in(at(1), 0x80, 0x9F) && cont(2) ? 3 : 0;
  if (b0 == 0xF0) return in(at(1), 0x90, 0xBF) && cont(2) && cont(3) ? 4 : 0;
  if (in(b0, 0xF1, 0xF3)) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (b0 == 0xF4) return in(at(1), 0x80, 0x8F) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}

bool lower_hex(char c) {
  return in(static_cast<unsigned char>(c), '0', '9') || in(static_cast<unsigned char>(c), 'a', 'f');
}

// Accepts exactly the text nlohmann's dump(-1, ' ', false) writes for a value without numbers:
// whatever it would write differently (whitespace, other escapes, numbers) or refuse is not
// canonical. Recursive, bounded by kMaxPassThroughDepth.
class CanonicalScanner {
 public:
  explicit CanonicalScanner(std::string_view text) : s_(text) {}

  std::optional<CanonicalZ22> top() {
    CanonicalZ22 z22;
    bool found = false;
    if (!object(1, &z22, &found) || pos_ != s_.size() || !found) return std::nullopt;
    return z22;
  }

 private:
  bool peek(char c) const { return pos_ < s_.size() && s_[pos_] == c; }

  bool value(std::size_t depth) {
    if (pos_ >= s_.size()) return false;
    switch (s_[pos_]) {
      case '"':
        return string();
      case '{':
        return object(depth + 1, nullptr, nullptr);
      case '[':
        return array(depth + 1);
      case 't':
        return literal("true");
      case 'f':
        return literal("false");
      case 'n':
        return literal("null");
      default:
        return false;  // numbers (dump may write them differently), whitespace, garbage
    }
  }

  bool literal(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  // The escapes dump writes: the short ones, and \u00xx (lower-case hex) for other controls.
  bool escape() {
    if (pos_ + 1 >= s_.size()) return false;
    switch (s_[pos_ + 1]) {
      case '"':
      case '\\':
      case 'b':
      case 'f':
      case 'n':
      case 'r':
      case 't':
        pos_ += 2;
        return true;
      case 'u':
        break;
      default:
        return false;
    }
    if (pos_ + 6 > s_.size() || s_[pos_ + 2] != '0' || s_[pos_ + 3] != '0' ||
        (s_[pos_ + 4] != '0' && s_[pos_ + 4] != '1') || !lower_hex(s_[pos_ + 5])) {
      return false;
    }
    const char low = s_[pos_ + 5];
    const unsigned code = (s_[pos_ + 4] == '1' ? 16u : 0u) +
                          static_cast<unsigned>(low <= '9' ? low - '0' : low - 'a' + 10);
    if (code == '\b' || code == '\f' || code == '\n' || code == '\r' || code == '\t') return false;
    pos_ += 6;
    return true;
  }

  bool string() {
    if (!peek('"')) return false;
    ++pos_;
    while (pos_ < s_.size()) {
      const auto c = static_cast<unsigned char>(s_[pos_]);
      if (c == '"') {
        ++pos_;
        return true;
      }
      if (c == '\\') {
        if (!escape()) return false;
      } else if (c < 0x20) {
        return false;
      } else if (c < 0x80) {
        ++pos_;
      } else {
        const std::size_t n = utf8_length(s_, pos_);
        if (n == 0) return false;
        pos_ += n;
      }
    }
    return false;
  }

  bool array(std::size_t depth) {
    if (depth > kMaxPassThroughDepth) return false;
    ++pos_;
    if (peek(']')) return ++pos_, true;
    for (;;) {
      if (!value(depth)) return false;
      if (peek(']')) return ++pos_, true;
      if (!peek(',')) return false;
      ++pos_;
    }
  }

  // With `z22`: the top level, where the span of the Z22K2 value is kept.
  bool object(std::size_t depth, CanonicalZ22* z22, bool* found) {
    if (depth > kMaxPassThroughDepth || !peek('{')) return false;
    ++pos_;
    if (peek('}')) return ++pos_, true;
    std::array<std::string_view, kMaxPassThroughKeys> keys;
    std::size_t count = 0;
    for (;;) {
      const std::size_t key_begin = pos_;
      if (!string() || count == keys.size()) return false;
      // Canonical escapes are unique, so equal keys have equal text.
      const std::string_view key = s_.substr(key_begin, pos_ - key_begin);
      for (std::size_t k = 0; k < count; ++k) {
        if (keys[k] == key) return false;  // the DOM keeps one of them
      }
      keys[count++] = key;
      if (!peek(':')) return false;
      ++pos_;
      const std::size_t value_begin = pos_;
      if (!value(depth)) return false;
      if (z22 != nullptr && key == R"("Z22K2")") {
        *z22 = CanonicalZ22{value_begin, pos_};
        *found = true;
      }
      if (peek('}')) return ++pos_, true;
      if (!peek(',')) return false;
      ++pos_;
    }
  }

  std::string_view s_;
  std::size_t pos_ = 0;
};

// A string as dump writes it: plain printable ASCII as is, anything else through nlohmann.
void append_string(std::string& out, std::string_view text) {
  bool plain = true;
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u > 0x7E || c == '"' || c == '\\') {
      plain = false;
      break;
    }
  }
  if (plain) {
    out += '"';
    out += text;
    out += '"';
    return;
  }
  out += Json(std::string(text)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// make_metadata_map() with map_set() of each entry, as dump writes it.
void append_metadata_map(std::string& out, std::span<const MetadataEntry> entries) {
  out += R"({"Z1K1":)";
  out += kMapType;
  out += R"(,"K1":)";
  for (const MetadataEntry& entry : entries) {
    out += R"({"Z1K1":)";
    out += kListTypeHead;
    out += kPairType;
    out += R"(},"K1":{"Z1K1":)";
    out += kPairType;
    out += R"(,"K1":{"Z1K1":"Z6","Z6K1":)";
    append_string(out, entry.key);
    out += R"(},"K2":{"Z1K1":"Z6","Z6K1":)";
    append_string(out, entry.value);
    out += R"(}},"K2":)";
  }
  out += R"({"Z1K1":)";
  out += kListTypeHead;
  out += kPairType;
  out += "}}";
  out.append(entries.size(), '}');
  out += '}';
}

}  // namespace

std::optional<CanonicalZ22> scan_canonical_z22(std::string_view text) {
  return CanonicalScanner(text).top();
}

void set_metadata(Json& z22, std::span<const MetadataEntry> entries) {
  Json* meta = metadata_of(z22);
  if (meta == nullptr) return;
  for (const MetadataEntry& entry : entries) map_set(*meta, entry.key, z6(entry.value));
}

std::optional<std::string> pass_through_z22(std::string_view text,
                                            std::span<const MetadataEntry> entries) {
  const std::optional<CanonicalZ22> z22 = scan_canonical_z22(text);
  if (!z22) return std::nullopt;
  const std::string_view before = text.substr(0, z22->z22k2_begin);
  const std::string_view meta = text.substr(z22->z22k2_begin, z22->z22k2_end - z22->z22k2_begin);
  const std::string_view after = text.substr(z22->z22k2_end);
  std::string out;
  if (meta == kVoid) {
    out.reserve(text.size() + 64 + entries.size() * 640);
    out += before;
    append_metadata_map(out, entries);
    out += after;
    return out;
  }
  // A map of the runtime's own (errors, debug logs) or an odd value: the DOM path for this
  // member alone (it is small; the result beside it passes through).
  auto parsed = codec::parse_json<Json>(meta);
  if (!parsed) return std::nullopt;
  Json holder = Json::object();
  holder["Z22K2"] = std::move(*parsed);
  set_metadata(holder, entries);
  out += before;
  out += holder["Z22K2"].dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  out += after;
  return out;
}

}  // namespace wf::evaluator
