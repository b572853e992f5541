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
      : c_{text.data(), text.data() + text.size()}, max_depth_(max_depth) {}

  std::optional<json> parse() {
    json out;
    if (!value(out, 0)) return std::nullopt;
    skip_space();
    if (c_.p != c_.end) return std::nullopt;
    return out;
  }

 private:
  void skip_space() { c_.skip_space(); }
  bool string_text(std::string_view& out) { return c_.string_text(out); }

  bool literal(std::string_view word, json value, json& out) {
    if (!c_.literal(word)) return false;
    out = std::move(value);
    return true;
  }

  bool value(json& out, int depth) {
    skip_space();
    if (c_.p == c_.end) return false;
    switch (*c_.p) {
      case '{':
        ++c_.p;
        return object(out, depth + 1);
      case '[':
        ++c_.p;
        return array(out, depth + 1);
      case '"': {
        ++c_.p;
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
    return c_.members([&](std::string_view key) {
      auto [it, inserted] = o.emplace(std::string(key), json());
      return inserted && value(it->second, depth);
    });
  }

  bool array(json& out, int depth) {
    if (depth > max_depth_) return false;
    out = json(json::value_t::array);
    auto& a = out.get_ref<json::array_t&>();
    return c_.items(']', [&] { return value(a.emplace_back(), depth); });
  }

  PlainCursor c_;
  int max_depth_;
};

}  // namespace

std::optional<nlohmann::json> parse_plain_json(std::string_view text, int max_depth) {
  return PlainParser(text, std::min(max_depth, kMaxPlainDepth)).parse();
}

}  // namespace wf::codec
