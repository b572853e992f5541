// Normal <-> canonical conversion (zobjects.md §4-§7).
#include "wf/zobject/zobject.h"

namespace wf::zobject {
namespace {

json normalize_value(const json& v) {
  if (v.is_string()) {
    const auto& s = v.get_ref<const std::string&>();
    return is_reference_like(s) ? z9(s) : z6(s);
  }
  if (v.is_array()) {
    if (v.empty()) return make_list(z9("Z1"), {});
    json item_type = normalize_value(v[0]);
    std::vector<json> items;
    items.reserve(v.size() - 1);
    for (std::size_t i = 1; i < v.size(); ++i) items.push_back(normalize_value(v[i]));
    return make_list(item_type, items);
  }
  if (!v.is_object()) return v;
  // Errors that normalization itself produced pass through untouched.
  auto t = v.find("Z1K1");
  if (t != v.end() && t->is_string() && *t == "Z5") {
    auto k1 = v.find("Z5K1");
    if (k1 != v.end() && k1->is_object()) {
      auto inner = k1->find("Z1K1");
      if (inner != k1->end() && inner->is_string() && (*inner == "Z501" || *inner == "Z502")) {
        return v;
      }
    }
  }
  json out = json::object();
  for (const auto& [key, value] : v.items()) {
    if (key == "Z1K1" && value.is_string() && (value == "Z6" || value == "Z9")) {
      out[key] = value;
    } else if ((key == "Z6K1" || key == "Z9K1") && value.is_string()) {
      out[key] = value;
    } else {
      out[key] = normalize_value(value);
    }
  }
  return out;
}

// A chain of list nodes: every node has Z1K1 and only K1/K2 besides; K1 implies K2.
bool is_list_chain(const json& v) {
  const json* node = &v;
  for (;;) {
    if (!node->is_object() || !node->contains("Z1K1")) return false;
    for (const auto& [k, _] : node->items()) {
      if (k != "Z1K1" && k != "K1" && k != "K2") return false;
    }
    if (!node->contains("K1")) return !node->contains("K2");
    auto next = node->find("K2");
    if (next == node->end()) return false;
    node = &*next;
  }
}

}  // namespace

json to_canonical(const json& v) {
  if (v.is_array()) {
    json out = json::array();
    for (const auto& e : v) out.push_back(to_canonical(e));
    return out;
  }
  if (!v.is_object()) return v;
  auto t = v.find("Z1K1");
  if (t != v.end() && t->is_string()) {
    if (*t == "Z9") {
      auto k = v.find("Z9K1");
      if (k != v.end() && k->is_string() && v.size() == 2 &&
          is_reference_like(k->get_ref<const std::string&>())) {
        return *k;
      }
    } else if (*t == "Z6") {
      auto k = v.find("Z6K1");
      if (k != v.end() && k->is_string() && v.size() == 2 &&
          !is_reference_like(k->get_ref<const std::string&>())) {
        return *k;
      }
    }
  }
  if (t != v.end() && is_list_type(*t) && is_list_chain(v)) {
    json item_type = list_item_type(v);
    if (item_type.is_null()) item_type = *t;
    json out = json::array({to_canonical(item_type)});
    const json* node = &v;
    while (node->contains("K1")) {
      out.push_back(to_canonical((*node)["K1"]));
      node = &(*node)["K2"];
    }
    return out;
  }
  json out = json::object();
  for (const auto& [key, value] : v.items()) out[key] = to_canonical(value);
  return out;
}

std::expected<json, json> normalize(const json& input) {
  auto violations = check_mixed(input);
  if (!violations.empty()) return std::unexpected(schema_error_tree(violations));
  return normalize_value(input);
}

std::expected<json, json> canonicalize(const json& input) {
  auto violations = check_mixed(input);
  if (!violations.empty()) return std::unexpected(schema_error_tree(violations));
  return to_canonical(normalize_value(input));
}

}  // namespace wf::zobject
