#include "evaluator/service/result_envelope.h"

#include <string>
#include <utility>

namespace wf::evaluator {
namespace {

Json z9(std::string_view id) {
  return Json{{"Z1K1", "Z9"}, {"Z9K1", std::string(id)}};
}

// Z881(item) as a normal-form function call.
Json list_type(Json item) {
  return Json{{"Z1K1", z9("Z7")}, {"Z7K1", z9("Z881")}, {"Z881K1", std::move(item)}};
}

Json pair_type(Json k, Json v) {
  return Json{
      {"Z1K1", z9("Z7")}, {"Z7K1", z9("Z882")}, {"Z882K1", std::move(k)}, {"Z882K2", std::move(v)}};
}

// The ZID a reference names: a Z9 object or a bare (canonical) string; empty otherwise.
std::string ref_id(const Json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.value("Z1K1", Json()) == "Z9" && v.contains("Z9K1") &&
      v["Z9K1"].is_string()) {
    return v["Z9K1"].get<std::string>();
  }
  return {};
}

bool key_matches(const Json& pair_key, std::string_view key) {
  if (!pair_key.is_object()) return pair_key.is_string() && pair_key.get<std::string>() == key;
  if (pair_key.value("Z1K1", Json()) == "Z6") {
    return pair_key.contains("Z6K1") && pair_key["Z6K1"] == std::string(key);
  }
  // Z39 key reference: {"Z1K1":Z39, "Z39K1": Z9 key}
  if (ref_id(pair_key.value("Z1K1", Json())) == "Z39" && pair_key.contains("Z39K1")) {
    return ref_id(pair_key["Z39K1"]) == key;
  }
  return false;
}

}  // namespace

Json z6(std::string_view s) {
  return Json{{"Z1K1", "Z6"}, {"Z6K1", std::string(s)}};
}

Json make_error(std::string_view code, std::string_view message, bool bare_code) {
  Json error = Json::object();
  error["Z1K1"] = z9("Z5");
  error["Z5K1"] = bare_code ? Json(std::string(code)) : z9(code);
  error["Z5K2"] = z6(message);
  return error;
}

Json make_metadata_map() {
  Json map = Json::object();
  map["Z1K1"] =
      Json{{"Z1K1", z9("Z7")}, {"Z7K1", z9("Z883")}, {"Z883K1", z9("Z6")}, {"Z883K2", z9("Z1")}};
  map["K1"] = Json{{"Z1K1", list_type(pair_type(z9("Z6"), z9("Z1")))}};
  return map;
}

Json make_error_envelope(Json error) {
  Json map = make_metadata_map();
  map_set(map, "errors", std::move(error));
  Json z22 = Json::object();
  z22["Z1K1"] = z9("Z22");
  z22["Z22K1"] = z9("Z24");
  z22["Z22K2"] = std::move(map);
  return z22;
}

bool is_void(const Json& value) {
  if (value.is_null()) return true;
  if (ref_id(value) == "Z24") return true;
  return value.is_object() && value.contains("Z1K1") && ref_id(value["Z1K1"]) == "Z21";
}

bool is_map(const Json& value) {
  if (!value.is_object() || !value.contains("Z1K1")) return false;
  const Json& type = value["Z1K1"];
  return type.is_object() && type.contains("Z7K1") && ref_id(type["Z7K1"]) == "Z883";
}

bool map_set(Json& map, std::string_view key, Json value) {
  if (!is_map(map)) return false;
  if (!map.contains("K1")) {
    const Json& type = map["Z1K1"];
    map["K1"] = Json{{"Z1K1", list_type(pair_type(type.value("Z883K1", z9("Z6")),
                                                  type.value("Z883K2", z9("Z1"))))}};
  }
  // Walk the typed list to its empty tail, replacing in place on a key match.
  Json* node = &map["K1"];
  for (std::size_t guard = 0; guard < (1u << 20); ++guard) {
    if (!node->is_object() || !node->contains("Z1K1")) return false;
    if (!node->contains("K1")) break;  // the empty tail
    Json& pair = (*node)["K1"];
    if (pair.is_object() && pair.contains("K1") && key_matches(pair["K1"], key)) {
      pair["K2"] = std::move(value);
      return true;
    }
    if (!node->contains("K2")) return false;
    node = &(*node)["K2"];
  }
  if (node->contains("K1")) return false;  // longer than the guard: refuse
  const Json& map_type = map["Z1K1"];
  Json pair = Json::object();
  pair["Z1K1"] = pair_type(map_type.value("Z883K1", z9("Z6")), map_type.value("Z883K2", z9("Z1")));
  pair["K1"] = z6(key);
  pair["K2"] = std::move(value);
  Json tail_type = (*node)["Z1K1"];
  (*node)["K1"] = std::move(pair);
  (*node)["K2"] = Json{{"Z1K1", std::move(tail_type)}};
  return true;
}

Json* metadata_of(Json& z22) {
  if (!z22.is_object()) return nullptr;
  if (!z22.contains("Z22K2") || is_void(z22["Z22K2"])) z22["Z22K2"] = make_metadata_map();
  Json& meta = z22["Z22K2"];
  return is_map(meta) ? &meta : nullptr;
}

}  // namespace wf::evaluator
