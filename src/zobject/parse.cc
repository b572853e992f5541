// JSON parsing with a nesting limit checked before nlohmann builds the value, so hostile input
// (thousands of nested brackets) costs one linear scan and a clear error.
#include <algorithm>

#include "wf/zobject/zobject.h"

namespace wf::zobject {

std::expected<json, ParseError> parse(std::string_view text, int max_depth) {
  int level = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++level > max_depth) {
        return std::unexpected(
            ParseError{"JSON nesting deeper than " + std::to_string(max_depth) + " levels"});
      }
    } else if (c == ']' || c == '}') {
      --level;
    }
  }
  json value = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) return std::unexpected(ParseError{"invalid JSON"});
  return value;
}

int depth(const json& value, int limit) {
  if (limit <= 0) return 1;
  int best = 1;
  if (value.is_object() || value.is_array()) {
    for (const auto& child : value) {
      best = std::max(best, 1 + depth(child, limit - 1));
      if (best > limit) break;
    }
  }
  return best;
}

std::size_t approx_size(const json& v) {
  switch (v.type()) {
    case json::value_t::string:
      return v.get_ref<const std::string&>().size() + 2;
    case json::value_t::object: {
      std::size_t n = 2;
      for (const auto& [k, child] : v.items()) n += k.size() + 4 + approx_size(child);
      return n;
    }
    case json::value_t::array: {
      std::size_t n = 2;
      for (const auto& child : v) n += 1 + approx_size(child);
      return n;
    }
    default:
      return 8;
  }
}

}  // namespace wf::zobject
