// Builders and accessors for normal-form values: terminals, generic type calls, typed lists,
// Z5 errors and Z22 envelopes with their Z883 metadata maps.
#include "wf/zobject/zobject.h"

namespace wf::zobject {

namespace {

// {"Z1K1": type, key: value}, built in key order without initializer-list copies.
json tagged(json type, const char* key, json value) {
  json out(json::value_t::object);
  auto& o = out.get_ref<json::object_t&>();
  o.emplace_hint(o.end(), "Z1K1", std::move(type));
  o.emplace_hint(o.end(), key, std::move(value));
  return out;
}

}  // namespace

json z6(std::string_view s) {
  return tagged("Z6", "Z6K1", std::string(s));
}
json z9(std::string_view s) {
  return tagged("Z9", "Z9K1", std::string(s));
}
json z99(const json& quoted) {
  return tagged(z9("Z99"), "Z99K1", quoted);
}

json z7_type_call(std::string_view fn, std::initializer_list<std::pair<std::string, json>> args) {
  json call(json::value_t::object);
  auto& o = call.get_ref<json::object_t&>();
  o.emplace("Z1K1", z9("Z7"));
  o.emplace("Z7K1", z9(fn));
  for (const auto& [k, v] : args) o.insert_or_assign(k, v);
  return call;
}

json list_type(const json& item_type) {
  return z7_type_call("Z881", {{"Z881K1", item_type}});
}
json pair_type(const json& first, const json& second) {
  return z7_type_call("Z882", {{"Z882K1", first}, {"Z882K2", second}});
}
json map_type(const json& key, const json& value) {
  return z7_type_call("Z883", {{"Z883K1", key}, {"Z883K2", value}});
}

std::string ref_id(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object()) {
    auto t = v.find("Z1K1");
    auto k = v.find("Z9K1");
    if (t != v.end() && k != v.end() && t->is_string() && *t == "Z9" && k->is_string()) {
      return k->get<std::string>();
    }
  }
  return {};
}

std::string string_value(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object()) {
    auto t = v.find("Z1K1");
    auto k = v.find("Z6K1");
    if (t != v.end() && k != v.end() && t->is_string() && *t == "Z6" && k->is_string()) {
      return k->get<std::string>();
    }
  }
  return {};
}

bool is_z6(const json& v) {
  if (!v.is_object()) return false;
  auto t = v.find("Z1K1");
  return t != v.end() && t->is_string() && *t == "Z6" && v.contains("Z6K1");
}

bool is_z9(const json& v) {
  if (!v.is_object()) return false;
  auto t = v.find("Z1K1");
  return t != v.end() && t->is_string() && *t == "Z9" && v.contains("Z9K1");
}

std::string type_id(const json& v) {
  if (!v.is_object()) return v.is_string() ? "Z6" : "";
  auto t = v.find("Z1K1");
  if (t == v.end()) return {};
  return ref_id(*t);
}

// ---- lists ------------------------------------------------------------------------------------

json make_list(const json& item_type, const std::vector<json>& items) {
  const json type = list_type(item_type);
  json tail(json::value_t::object);
  tail.get_ref<json::object_t&>().emplace("Z1K1", type);
  for (auto it = items.rbegin(); it != items.rend(); ++it) {
    json node(json::value_t::object);
    auto& o = node.get_ref<json::object_t&>();
    o.emplace_hint(o.end(), "K1", *it);
    o.emplace_hint(o.end(), "K2", std::move(tail));
    o.emplace_hint(o.end(), "Z1K1", type);
    tail = std::move(node);
  }
  return tail;
}

namespace {

// The Z7 of a list type: Z881(T) directly, or the identity of a literal Z4.
const json* list_call_of(const json& type) {
  if (!type.is_object()) return nullptr;
  auto k1 = type.find("Z7K1");
  if (k1 != type.end()) {
    if (ref_id(*k1) == "Z881") return &type;
    // A Z881 Z8 literal in Z7K1.
    if (k1->is_object()) {
      auto id = k1->find("Z8K5");
      if (id != k1->end() && ref_id(*id) == "Z881") return &type;
    }
    return nullptr;
  }
  auto identity = type.find("Z4K1");
  if (identity != type.end()) return list_call_of(*identity);
  return nullptr;
}

}  // namespace

bool is_list_type(const json& type) {
  return list_call_of(type) != nullptr;
}

bool is_list(const json& v) {
  if (!v.is_object()) return false;
  auto t = v.find("Z1K1");
  return t != v.end() && is_list_type(*t);
}

std::vector<json> list_items(const json& list) {
  std::vector<json> out;
  const json* node = &list;
  while (node->is_object() && node->contains("K1")) {
    out.push_back((*node)["K1"]);
    auto next = node->find("K2");
    if (next == node->end()) break;
    node = &*next;
  }
  return out;
}

json list_item_type(const json& list) {
  if (!list.is_object()) return nullptr;
  auto t = list.find("Z1K1");
  if (t == list.end()) return nullptr;
  const json* call = list_call_of(*t);
  if (call == nullptr) return nullptr;
  auto it = call->find("Z881K1");
  if (it == call->end()) return nullptr;
  return *it;
}

// ---- errors -----------------------------------------------------------------------------------

json make_error(std::string_view type, const std::vector<json>& args) {
  json payload = {{"Z1K1", z7_type_call("Z885", {{"Z885K1", z9(type)}})}};
  for (std::size_t i = 0; i < args.size(); ++i) {
    const json& a = args[i];
    payload[std::string(type) + "K" + std::to_string(i + 1)] =
        a.is_string() ? z6(a.get<std::string>()) : a;
  }
  return json{{"Z1K1", z9("Z5")}, {"Z5K1", z9(type)}, {"Z5K2", std::move(payload)}};
}

json make_error_msg(std::string_view type, std::string_view message) {
  return make_error(type, {json(std::string(message))});
}

std::string error_type(const json& z5) {
  if (!z5.is_object()) return {};
  auto k = z5.find("Z5K1");
  if (k == z5.end()) return {};
  return ref_id(*k);
}

// ---- envelopes and maps -----------------------------------------------------------------------

json void_value() {
  return z9("Z24");
}

bool is_void(const json& v) {
  if (v.is_null()) return true;
  if (v.is_string()) return v == "Z24";
  if (!v.is_object()) return false;
  if (ref_id(v) == "Z24") return true;
  auto t = v.find("Z1K1");
  return t != v.end() && ref_id(*t) == "Z21";
}

namespace {

// The types of the standard Z883(Z6, Z1) metadata map, built once (normal form).
struct MapTypes {
  json map = map_type(z9("Z6"), z9("Z1"));
  json pair = pair_type(z9("Z6"), z9("Z1"));
  json list = list_type(pair_type(z9("Z6"), z9("Z1")));
};

const MapTypes& map_types() {
  static const MapTypes types;
  return types;
}

}  // namespace

json empty_metadata_map() {
  const MapTypes& t = map_types();
  json tail(json::value_t::object);
  tail.get_ref<json::object_t&>().emplace("Z1K1", t.list);
  json out(json::value_t::object);
  auto& o = out.get_ref<json::object_t&>();
  o.emplace_hint(o.end(), "K1", std::move(tail));
  o.emplace_hint(o.end(), "Z1K1", t.map);
  return out;
}

bool is_map(const json& v) {
  if (!v.is_object()) return false;
  auto t = v.find("Z1K1");
  if (t == v.end() || !t->is_object()) return false;
  auto k = t->find("Z7K1");
  return k != t->end() && ref_id(*k) == "Z883";
}

namespace {

bool pair_key_matches(const json& k, std::string_view key) {
  if (!k.is_object()) return k.is_string() && k == key;
  if (is_z6(k)) return k["Z6K1"].is_string() && k["Z6K1"] == key;
  auto t = k.find("Z1K1");
  if (t != k.end() && ref_id(*t) == "Z39") {
    auto r = k.find("Z39K1");
    return r != k.end() && (string_value(*r) == key || ref_id(*r) == key);
  }
  return false;
}

}  // namespace

void map_set(json& map, std::string_view key, const json& value) {
  map_set(map, key, json(value));
}

void map_set(json& map, std::string_view key, json&& value) {
  if (!map.is_object()) return;
  json* node = &map["K1"];
  while (node->is_object()) {
    auto& o = node->get_ref<json::object_t&>();
    auto k1 = o.find("K1");
    if (k1 == o.end()) break;
    json& pair = k1->second;
    if (pair.is_object()) {
      auto pk = pair.find("K1");
      if (pk != pair.end() && pair_key_matches(*pk, key)) {
        pair["K2"] = std::move(value);
        return;
      }
    }
    auto k2 = o.find("K2");
    if (k2 == o.end()) break;
    node = &k2->second;
  }
  if (!node->is_object()) return;
  // Append at the tail: the pair type comes from the map type's key/value types.
  const MapTypes& std_types = map_types();
  const json& mt = map["Z1K1"];
  json ptype;
  if (mt == std_types.map) {
    ptype = std_types.pair;
  } else {
    json key_type = z9("Z6");
    json value_type = z9("Z1");
    if (mt.is_object()) {
      if (mt.contains("Z883K1")) key_type = mt["Z883K1"];
      if (mt.contains("Z883K2")) value_type = mt["Z883K2"];
    }
    ptype = pair_type(key_type, value_type);
  }
  auto& tail = node->get_ref<json::object_t&>();
  auto lt = tail.find("Z1K1");
  json ltype = lt != tail.end() ? lt->second : list_type(ptype);
  json pair(json::value_t::object);
  auto& p = pair.get_ref<json::object_t&>();
  p.emplace_hint(p.end(), "K1", z6(key));
  p.emplace_hint(p.end(), "K2", std::move(value));
  p.emplace_hint(p.end(), "Z1K1", std::move(ptype));
  json next(json::value_t::object);
  next.get_ref<json::object_t&>().emplace("Z1K1", std::move(ltype));
  tail.insert_or_assign("K1", std::move(pair));
  tail.insert_or_assign("K2", std::move(next));
}

const json* map_get(const json& map, std::string_view key) {
  if (!map.is_object()) return nullptr;
  auto it = map.find("K1");
  if (it == map.end()) return nullptr;
  const json* node = &*it;
  while (node->is_object() && node->contains("K1")) {
    const json& pair = (*node)["K1"];
    if (pair.is_object() && pair.contains("K1") && pair_key_matches(pair["K1"], key)) {
      auto v = pair.find("K2");
      return v == pair.end() ? nullptr : &*v;
    }
    auto next = node->find("K2");
    if (next == node->end()) break;
    node = &*next;
  }
  return nullptr;
}

json make_envelope(const json& value, const json& metadata) {
  return make_envelope(json(value), json(metadata));
}

json make_envelope(json&& value, json&& metadata) {
  json out(json::value_t::object);
  auto& o = out.get_ref<json::object_t&>();
  o.emplace_hint(o.end(), "Z1K1", z9("Z22"));
  o.emplace_hint(o.end(), "Z22K1", value.is_null() ? void_value() : std::move(value));
  o.emplace_hint(o.end(), "Z22K2", metadata.is_null() ? void_value() : std::move(metadata));
  return out;
}

json error_envelope(const json& z5) {
  json meta = empty_metadata_map();
  map_set(meta, "errors", z5);
  return make_envelope(json(nullptr), std::move(meta));
}

const json* envelope_error(const json& envelope) {
  if (!envelope.is_object()) return nullptr;
  auto m = envelope.find("Z22K2");
  if (m == envelope.end()) return nullptr;
  if (!is_map(*m)) return nullptr;
  const json* e = map_get(*m, "errors");
  if (e == nullptr || is_void(*e)) return nullptr;
  return e;
}

bool has_error(const json& envelope) {
  return envelope_error(envelope) != nullptr;
}

void envelope_set_metadata(json& envelope, std::string_view key, const json& value) {
  json& meta = envelope["Z22K2"];
  if (!is_map(meta)) meta = empty_metadata_map();
  map_set(meta, key, value);
}

}  // namespace wf::zobject
