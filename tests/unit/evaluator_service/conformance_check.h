#pragma once
// The `expect` checks of shared/conformance (README "Case format"), for running evaluator cases
// through the handler in-process. Returns one message per failed check.

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace wf::evaluator::testing {

using nlohmann::json;

inline bool is_void(const json& x) {
  if (x == "Z24") return true;
  if (!x.is_object()) return false;
  if (x.value("Z1K1", json()) == "Z9" && x.value("Z9K1", json()) == "Z24") return true;
  const json t = x.value("Z1K1", json());
  return t == "Z21" ||
         (t.is_object() && t.value("Z1K1", json()) == "Z9" && t.value("Z9K1", json()) == "Z21");
}

inline bool is_zmap(const json& x) {
  if (!x.is_object() || !x.contains("Z1K1") || !x["Z1K1"].is_object()) return false;
  json t7 = x["Z1K1"].value("Z7K1", json());
  if (t7.is_object()) t7 = t7.value("Z9K1", json());
  return t7 == "Z883";
}

// Value of `key` in a normal-form Z883 map, or null.
inline json map_get(const json& map, const std::string& key) {
  if (!map.is_object() || !map.contains("K1")) return nullptr;
  const json* tail = &map["K1"];
  for (int seen = 0; tail->is_object() && tail->contains("K1") && seen < 100000; ++seen) {
    const json& entry = (*tail)["K1"];
    if (entry.is_object() && entry.contains("K1")) {
      const json& k = entry["K1"];
      if (k == key || (k.is_object() && k.value("Z6K1", json()) == key)) {
        return entry.value("K2", json());
      }
    }
    if (!tail->contains("K2")) break;
    tail = &(*tail)["K2"];
  }
  return nullptr;
}

// Keys of a normal-form map, in order.
inline std::vector<std::string> map_keys(const json& map) {
  std::vector<std::string> keys;
  if (!map.is_object() || !map.contains("K1")) return keys;
  const json* tail = &map["K1"];
  while (tail->is_object() && tail->contains("K1")) {
    const json& k = (*tail)["K1"].value("K1", json());
    keys.push_back(k.is_object() ? k.value("Z6K1", std::string()) : k.dump());
    if (!tail->contains("K2")) break;
    tail = &(*tail)["K2"];
  }
  return keys;
}

inline json get_error(const json& envelope) {
  const json meta = envelope.value("Z22K2", json());
  if (is_zmap(meta)) {
    json e = map_get(meta, "errors");
    return e.is_null() ? json("Z24") : e;
  }
  return meta;
}

inline json without_z1k1(const json& x) {
  if (x.is_object()) {
    json out = json::object();
    for (const auto& [k, v] : x.items()) {
      if (k != "Z1K1") out[k] = without_z1k1(v);
    }
    return out;
  }
  if (x.is_array()) {
    json out = json::array();
    for (const auto& v : x) out.push_back(without_z1k1(v));
    return out;
  }
  return x;
}

inline void collect_codes(const json& x, std::vector<std::string>& out) {
  if (x.is_object()) {
    for (const auto& [k, v] : x.items()) {
      if (k == "Z5K1") {
        if (v.is_string()) out.push_back(v);
        if (v.is_object() && v.contains("Z9K1") && v["Z9K1"].is_string()) out.push_back(v["Z9K1"]);
      }
      collect_codes(v, out);
    }
  } else if (x.is_array()) {
    for (const auto& v : x) collect_codes(v, out);
  }
}

inline std::vector<std::string> check_case(const json& c, unsigned status, const json& body) {
  std::vector<std::string> fails;
  const json exp = c.value("expect", json::object());
  if (status != exp.value("http_status", 200u)) {
    fails.push_back("HTTP status " + std::to_string(status));
  }
  if (!body.is_object()) {
    fails.push_back("response is not a JSON object");
    return fails;
  }
  const json result = body.value("Z22K1", json());
  const json error = get_error(body);
  const bool strip = exp.value("compare", std::string()) == "without_z1k1";
  if (exp.contains("result")) {
    const json& want = exp["result"];
    if (want == "Z24") {
      if (!is_void(result)) fails.push_back("result not void: " + result.dump());
    } else if ((strip ? without_z1k1(result) : result) != (strip ? without_z1k1(want) : want)) {
      fails.push_back("result differs: " + result.dump());
    }
  }
  if (exp.contains("is_error")) {
    if (exp["is_error"].get<bool>() && is_void(error)) fails.push_back("expected an error");
    if (!exp["is_error"].get<bool>() && !is_void(error)) {
      fails.push_back("unexpected error: " + error.dump());
    }
  }
  if (exp.contains("error") && (strip ? without_z1k1(error) : error) !=
                                   (strip ? without_z1k1(exp["error"]) : exp["error"])) {
    fails.push_back("error differs: " + error.dump());
  }
  if (exp.contains("error_codes")) {
    std::vector<std::string> have;
    collect_codes(error, have);
    for (const auto& code : exp["error_codes"]) {
      if (std::find(have.begin(), have.end(), code.get<std::string>()) == have.end()) {
        fails.push_back("error code missing: " + code.get<std::string>());
      }
    }
  }
  if (exp.contains("error_message_contains") &&
      error.dump().find(exp["error_message_contains"].get<std::string>()) == std::string::npos) {
    fails.push_back("error does not mention " + exp["error_message_contains"].dump() + ": " +
                    error.dump());
  }
  const json meta = body.value("Z22K2", json());
  if (exp.value("metadata_is_map", false) && !is_zmap(meta)) fails.push_back("Z22K2 not a map");
  if (exp.value("metadata_is_map_or_void", false) && !is_zmap(meta) && !is_void(meta)) {
    fails.push_back("Z22K2 neither map nor void");
  }
  for (const auto& key : exp.value("metadata_present", json::array())) {
    if (map_get(meta, key).is_null()) fails.push_back("metadata key missing: " + key.dump());
  }
  for (const auto& key : exp.value("metadata_absent", json::array())) {
    if (!map_get(meta, key).is_null()) fails.push_back("metadata key present: " + key.dump());
  }
  return fails;
}

}  // namespace wf::evaluator::testing
