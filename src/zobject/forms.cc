// Normal <-> canonical conversion (zobjects.md §4-§7).
//
// Both directions are single linear passes that build the output in place: objects are filled
// with emplace_hint in key order (the input map is already sorted), list nodes are built from
// the tail with their elements moved in, and nothing is deep-copied except the one list type
// each list node must carry. canonicalize() does not go through the normal form: canonicalising
// a mixed value directly gives the same result (see zobject_test's differential test).
#include "wf/zobject/zobject.h"

namespace wf::zobject {
namespace {

using object_t = json::object_t;

json terminal(const char* type, const char* key, std::string value) {
  json out(json::value_t::object);
  auto& o = out.get_ref<object_t&>();
  o.emplace_hint(o.end(), "Z1K1", type);
  o.emplace_hint(o.end(), key, std::move(value));
  return out;
}

json normalize_string(const std::string& s) {
  return is_reference_like(s) ? terminal("Z9", "Z9K1", s) : terminal("Z6", "Z6K1", s);
}

json normalize_value(const json& v);

// [T, a, b] -> {Z1K1: Z881(T), K1: a, K2: {Z1K1: Z881(T), K1: b, K2: {Z1K1: Z881(T)}}}
json normalize_array(const json& v) {
  const auto& arr = v.get_ref<const json::array_t&>();
  json item_type = arr.empty() ? terminal("Z9", "Z9K1", "Z1") : normalize_value(arr[0]);
  const json type = list_type(item_type);
  json tail(json::value_t::object);
  tail.get_ref<object_t&>().emplace("Z1K1", type);
  for (std::size_t i = arr.size(); i-- > 1;) {
    json node(json::value_t::object);
    auto& o = node.get_ref<object_t&>();
    o.emplace_hint(o.end(), "K1", normalize_value(arr[i]));
    o.emplace_hint(o.end(), "K2", std::move(tail));
    o.emplace_hint(o.end(), "Z1K1", type);
    tail = std::move(node);
  }
  return tail;
}

bool is_terminal_tag(const json& value) {
  if (!value.is_string()) return false;
  const auto& s = value.get_ref<const std::string&>();
  return s == "Z6" || s == "Z9";
}

// Errors that normalization itself produced (Z5 with a Z501/Z502 object in Z5K1) pass through.
bool normalization_error(const object_t& o) {
  auto t = o.find("Z1K1");
  if (t == o.end() || !t->second.is_string() || t->second != "Z5") return false;
  auto k1 = o.find("Z5K1");
  if (k1 == o.end() || !k1->second.is_object()) return false;
  auto inner = k1->second.find("Z1K1");
  return inner != k1->second.end() && inner->is_string() && (*inner == "Z501" || *inner == "Z502");
}

json normalize_value(const json& v) {
  if (v.is_string()) return normalize_string(v.get_ref<const std::string&>());
  if (v.is_array()) return normalize_array(v);
  if (!v.is_object()) return v;
  const auto& in = v.get_ref<const object_t&>();
  if (normalization_error(in)) return v;
  json out(json::value_t::object);
  auto& o = out.get_ref<object_t&>();
  for (const auto& [key, value] : in) {
    bool keep = (key == "Z1K1" && is_terminal_tag(value)) ||
                ((key == "Z6K1" || key == "Z9K1") && value.is_string());
    o.emplace_hint(o.end(), key, keep ? value : normalize_value(value));
  }
  return out;
}

// Walks a chain of list nodes: every node has Z1K1 and only K1/K2 besides; K1 implies K2.
// Returns 0 when the whole chain is well formed, else the (1-based) index of the first bad node.
std::size_t list_chain_break(const json& v) {
  const json* node = &v;
  for (std::size_t i = 1;; ++i) {
    if (!node->is_object()) return i;
    const auto& o = node->get_ref<const object_t&>();
    bool has_k1 = false;
    bool has_k2 = false;
    bool has_type = false;
    for (const auto& [k, _] : o) {
      if (k == "K1") {
        has_k1 = true;
      } else if (k == "K2") {
        has_k2 = true;
      } else if (k == "Z1K1") {
        has_type = true;
      } else {
        return i;
      }
    }
    if (!has_type) return i;
    if (!has_k1) return has_k2 ? i : 0;
    if (!has_k2) return i;
    node = &o.find("K2")->second;
  }
}

json canonical(const json& v, bool mixed, std::size_t no_chain = 0);

// Where the conversion of one value continues down its K2 spine: the input of its K2 and the
// (null) slot of the output that receives it. `in` is null when nothing continues.
struct Spine {
  const json* in = nullptr;
  json* out = nullptr;
  std::size_t no_chain = 0;
};

// The bare string of a Z9 whose Z9K1 is a reference, or of a Z6 whose Z6K1 is not; else null.
const json* terminal_string(const object_t& o) {
  auto t = o.find("Z1K1");
  if (t == o.end() || !t->second.is_string() || o.size() != 2) return nullptr;
  const auto& tag = t->second.get_ref<const std::string&>();
  const bool reference = tag == "Z9";
  if (!reference && tag != "Z6") return nullptr;
  auto k = o.find(reference ? "Z9K1" : "Z6K1");
  if (k == o.end() || !k->second.is_string()) return nullptr;
  return is_reference_like(k->second.get_ref<const std::string&>()) == reference ? &k->second
                                                                                 : nullptr;
}

// A well-formed chain of list nodes (list_chain_break gave 0) as [item type, elements...].
json canonical_list(const json& v, bool mixed) {
  json item_type = list_item_type(v);
  json out(json::value_t::array);
  auto& a = out.get_ref<json::array_t&>();
  a.push_back(canonical(item_type.is_null() ? v["Z1K1"] : item_type, mixed));
  const json* node = &v;
  for (;;) {
    const auto& n = node->get_ref<const object_t&>();
    auto k1 = n.find("K1");
    if (k1 == n.end()) break;
    a.push_back(canonical(k1->second, mixed));
    node = &n.find("K2")->second;
  }
  return out;
}

// Converts `v` into `out`, except that an object's K2 is left as a null slot and returned: the
// caller converts it in a loop, so a long chain of list nodes that is not a well-formed list
// (thousands of K2 levels) costs no stack depth. Every other key recurses as before.
// `mixed`: the input may hold canonical arrays (an empty one is an untyped list, ["Z1"]).
// `no_chain`: this many nodes down the K2 spine are known not to start a well-formed chain
// (so a broken long list costs one walk, not one per node).
Spine canonical_step(const json& v, bool mixed, std::size_t no_chain, json& out) {
  if (v.is_array()) {
    const auto& arr = v.get_ref<const json::array_t&>();
    out = json(json::value_t::array);
    auto& a = out.get_ref<json::array_t&>();
    if (arr.empty() && mixed) {
      a.emplace_back("Z1");
      return {};
    }
    a.reserve(arr.size());
    for (const auto& e : arr) a.push_back(canonical(e, mixed));
    return {};
  }
  if (!v.is_object()) {
    out = v;
    return {};
  }
  const auto& o = v.get_ref<const object_t&>();
  if (const json* s = terminal_string(o)) {
    out = *s;
    return {};
  }
  auto t = o.find("Z1K1");
  std::size_t below = 0;
  if (t != o.end() && no_chain == 0 && is_list_type(t->second)) {
    std::size_t bad = list_chain_break(v);
    if (bad == 0) {
      out = canonical_list(v, mixed);
      return {};
    }
    below = bad - 1;  // the nodes before the break cannot start a good chain either
  } else if (no_chain > 0) {
    below = no_chain - 1;
  }
  out = json(json::value_t::object);
  auto& r = out.get_ref<object_t&>();
  Spine next;
  for (const auto& [key, value] : o) {
    if (key == "K2") {
      // Map nodes do not move: the slot's address stays valid while the loop fills it.
      next = {&value, &r.emplace_hint(r.end(), key, nullptr)->second, below};
    } else {
      r.emplace_hint(r.end(), key, canonical(value, mixed));
    }
  }
  return next;
}

json canonical(const json& v, bool mixed, std::size_t no_chain) {
  json out;
  Spine at{&v, &out, no_chain};
  // One step per K2 level of the input: bounded by its size.
  while (at.in != nullptr) at = canonical_step(*at.in, mixed, at.no_chain, *at.out);
  return out;
}

}  // namespace

json to_canonical(const json& v) {
  return canonical(v, false);
}

json to_normal(const json& checked) {
  return normalize_value(checked);
}

bool is_normalization_error(const json& value) {
  return value.is_object() && normalization_error(value.get_ref<const object_t&>());
}

std::expected<json, json> normalize(const json& input) {
  auto violations = check_mixed(input);
  if (!violations.empty()) return std::unexpected(schema_error_tree(violations));
  return normalize_value(input);
}

std::expected<json, json> canonicalize(const json& input) {
  auto violations = check_mixed(input);
  if (!violations.empty()) return std::unexpected(schema_error_tree(violations));
  return canonical(input, true);
}

}  // namespace wf::zobject
