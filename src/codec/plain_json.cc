#include "wf/codec/plain_json.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

namespace wf::codec {

namespace {

using json = nlohmann::json;

class PlainParser {
 public:
  PlainParser(std::string_view text, int max_depth)
      : p_(text.data()), end_(text.data() + text.size()), max_depth_(max_depth) {}

  std::optional<json> parse() {
    json out;
    if (!value(out, 0)) return std::nullopt;
    skip_space();
    if (p_ != end_) return std::nullopt;
    return out;
  }

 private:
  void skip_space() {
    while (p_ != end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
  }

  // A string's characters (after its opening quote) up to its closing quote, which is consumed.
  bool string_text(std::string_view& out) {
    const char* start = p_;
    while (p_ != end_) {
      const auto c = static_cast<unsigned char>(*p_);
      if (c == '"') {
        out = std::string_view(start, static_cast<std::size_t>(p_ - start));
        ++p_;
        return true;
      }
      if (c < 0x20 || c > 0x7e || c == '\\') return false;
      ++p_;
    }
    return false;
  }

  bool literal(const char* word, json value, json& out) {
    const std::size_t n = std::strlen(word);
    if (static_cast<std::size_t>(end_ - p_) < n || std::memcmp(p_, word, n) != 0) return false;
    p_ += n;
    out = std::move(value);
    return true;
  }

  bool value(json& out, int depth) {
    skip_space();
    if (p_ == end_) return false;
    switch (*p_) {
      case '{':
        ++p_;
        return object(out, depth + 1);
      case '[':
        ++p_;
        return array(out, depth + 1);
      case '"': {
        ++p_;
        std::string_view s;
        if (!string_text(s)) return false;
        out = std::string(s);
        return true;
      }
      case 't':
        return literal("true", json(true), out);
      case 'f':
        return literal("false", json(false), out);
      case 'n':
        return literal("null", json(nullptr), out);
      default:
        return false;  // a number, or not JSON
    }
  }

  bool object(json& out, int depth) {
    if (depth > max_depth_) return false;
    out = json(json::value_t::object);
    auto& o = out.get_ref<json::object_t&>();
    skip_space();
    if (p_ != end_ && *p_ == '}') {
      ++p_;
      return true;
    }
    for (;;) {
      skip_space();
      if (p_ == end_ || *p_ != '"') return false;
      ++p_;
      std::string_view key;
      if (!string_text(key)) return false;
      skip_space();
      if (p_ == end_ || *p_ != ':') return false;
      ++p_;
      auto [it, inserted] = o.emplace(std::string(key), json());
      if (!inserted || !value(it->second, depth)) return false;
      skip_space();
      if (p_ == end_) return false;
      if (*p_ == ',') {
        ++p_;
        continue;
      }
      if (*p_ != '}') return false;
      ++p_;
      return true;
    }
  }

  bool array(json& out, int depth) {
    if (depth > max_depth_) return false;
    out = json(json::value_t::array);
    auto& a = out.get_ref<json::array_t&>();
    skip_space();
    if (p_ != end_ && *p_ == ']') {
      ++p_;
      return true;
    }
    for (;;) {
      if (!value(a.emplace_back(), depth)) return false;
      skip_space();
      if (p_ == end_) return false;
      if (*p_ == ',') {
        ++p_;
        continue;
      }
      if (*p_ != ']') return false;
      ++p_;
      return true;
    }
  }

  const char* p_;
  const char* end_;
  int max_depth_;
};

}  // namespace

std::optional<nlohmann::json> parse_plain_json(std::string_view text, int max_depth) {
  return PlainParser(text, std::min(max_depth, kMaxPlainDepth)).parse();
}

}  // namespace wf::codec
