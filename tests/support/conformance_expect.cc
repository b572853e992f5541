#include "conformance_expect.h"

#include <set>

namespace wf::testing {
namespace {

bool key_matches(const json& entry_key, const std::string& key) {
  return entry_key == key || (entry_key.is_object() && entry_key.value("Z6K1", json()) == key);
}

void codes_in(const json& x, bool anywhere, std::set<std::string>& found) {
  if (x.is_object()) {
    for (const auto& [k, v] : x.items()) {
      if (k == "Z5K1") {
        if (v.is_string()) found.insert(v.get<std::string>());
        if (v.is_object() && v.contains("Z9K1") && v["Z9K1"].is_string())
          found.insert(v["Z9K1"].get<std::string>());
      }
      if (anywhere && k == "Z9K1" && v.is_string()) found.insert(v.get<std::string>());
      codes_in(v, anywhere, found);
    }
  } else if (x.is_array()) {
    for (const auto& v : x) codes_in(v, anywhere, found);
  }
}

std::optional<std::string> partial_mismatch(const json& expected, const json& actual,
                                            const std::string& path) {
  if (expected.is_object()) {
    if (!actual.is_object()) return path + ": expected object, got " + short_text(actual);
    for (const auto& [k, v] : expected.items()) {
      if (!actual.contains(k)) return path + "." + k + ": missing";
      if (auto m = partial_mismatch(v, actual[k], path + "." + k)) return m;
    }
    return std::nullopt;
  }
  if (expected != actual)
    return path + ": expected " + short_text(expected) + ", got " + short_text(actual);
  return std::nullopt;
}

// The map's entries (pair objects), canonical or normal form.
std::vector<const json*> map_entries(const json& zmap) {
  std::vector<const json*> out;
  if (!zmap.is_object() || !zmap.contains("K1")) return out;
  const json& k1 = zmap["K1"];
  if (k1.is_array()) {
    for (std::size_t i = 1; i < k1.size(); ++i) out.push_back(&k1[i]);
    return out;
  }
  const json* tail = &k1;
  while (tail->is_object() && tail->contains("K1") && out.size() < 100000) {
    out.push_back(&(*tail)["K1"]);
    if (!tail->contains("K2")) break;
    tail = &(*tail)["K2"];
  }
  return out;
}

}  // namespace

bool is_void(const json& x) {
  if (x == "Z24") return true;
  if (x.is_object() && x.value("Z1K1", json()) == "Z9" && x.value("Z9K1", json()) == "Z24")
    return true;
  if (x.is_object() && x.contains("Z1K1")) {
    const json& t = x["Z1K1"];
    return t == "Z21" ||
           (t.is_object() && t.value("Z1K1", json()) == "Z9" && t.value("Z9K1", json()) == "Z21");
  }
  return false;
}

bool is_zmap(const json& x) {
  if (!x.is_object() || !x.contains("Z1K1") || !x["Z1K1"].is_object()) return false;
  json t7 = x["Z1K1"].value("Z7K1", json());
  if (t7.is_object()) t7 = t7.value("Z9K1", json());
  return t7 == "Z883";
}

std::optional<json> map_get(const json& zmap, const std::string& key) {
  for (const json* e : map_entries(zmap)) {
    if (e->is_object() && e->contains("K1") && key_matches((*e)["K1"], key)) {
      return e->contains("K2") ? (*e)["K2"] : json(nullptr);
    }
  }
  return std::nullopt;
}

std::vector<std::string> map_keys(const json& zmap) {
  std::vector<std::string> keys;
  for (const json* e : map_entries(zmap)) {
    const json k = e->is_object() ? e->value("K1", json()) : json();
    keys.push_back(k.is_string()   ? k.get<std::string>()
                   : k.is_object() ? k.value("Z6K1", std::string())
                                   : k.dump());
  }
  return keys;
}

json get_error(const json& envelope) {
  json meta =
      envelope.is_object() && envelope.contains("Z22K2") ? envelope["Z22K2"] : json(nullptr);
  if (is_zmap(meta)) return map_get(meta, "errors").value_or(json("Z24"));
  return meta;
}

json without_z1k1(const json& x) {
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

std::string short_text(const json& x) {
  std::string s = x.dump();
  return s.size() <= 300 ? s : s.substr(0, 300) + "...";
}

std::vector<std::string> check_expect(const json& exp, const json& body) {
  std::vector<std::string> fails;
  if (!body.is_object()) return {"response is not a JSON object"};
  json result = body.contains("Z22K1") ? body["Z22K1"] : json(nullptr);
  json error = get_error(body);
  bool without = exp.value("compare", "exact") == "without_z1k1";
  if (exp.contains("result")) {
    const json& want = exp["result"];
    if (want == "Z24") {
      if (!is_void(result)) fails.push_back("result: expected void, got " + short_text(result));
    } else {
      json a = without ? without_z1k1(result) : result;
      json e = without ? without_z1k1(want) : want;
      if (a != e) fails.push_back("result differs: expected " + e.dump() + "\n   got " + a.dump());
    }
  }
  if (exp.contains("result_partial")) {
    if (auto m = partial_mismatch(exp["result_partial"], result, "Z22K1"))
      fails.push_back("result differs: " + *m);
  }
  if (exp.contains("is_error")) {
    if (exp["is_error"] == true && is_void(error)) fails.push_back("expected an error, got none");
    if (exp["is_error"] == false && !is_void(error))
      fails.push_back("expected no error, got " + short_text(error));
  }
  if (exp.contains("error")) {
    json a = without ? without_z1k1(error) : error;
    json e = without ? without_z1k1(exp["error"]) : exp["error"];
    if (a != e) fails.push_back("error differs: expected " + e.dump() + "\n   got " + a.dump());
  }
  if (exp.contains("error_partial")) {
    if (auto m = partial_mismatch(exp["error_partial"], error, "error"))
      fails.push_back("error differs: " + *m);
  }
  if (exp.contains("error_codes") && !exp["error_codes"].empty()) {
    bool anywhere = exp.value("error_codes_anywhere", false);
    std::set<std::string> have;
    codes_in(anywhere ? body : error, anywhere, have);
    for (const auto& c : exp["error_codes"]) {
      if (!have.count(c.get<std::string>()))
        fails.push_back("error code " + c.get<std::string>() + " not found in " +
                        short_text(error));
    }
  }
  if (exp.contains("error_message_contains")) {
    if (error.dump().find(exp["error_message_contains"].get<std::string>()) == std::string::npos) {
      fails.push_back("error does not mention " + exp["error_message_contains"].dump());
    }
  }
  json meta = body.contains("Z22K2") ? body["Z22K2"] : json(nullptr);
  if (exp.value("metadata_is_map", false) && !is_zmap(meta))
    fails.push_back("Z22K2 is not a Z883 map");
  if (exp.value("metadata_is_map_or_void", false) && !(is_zmap(meta) || is_void(meta))) {
    fails.push_back("Z22K2 is neither a map nor void");
  }
  for (const auto& key : exp.value("metadata_present", json::array())) {
    if (!map_get(meta, key.get<std::string>()).has_value())
      fails.push_back("metadata key " + key.get<std::string>() + " missing");
  }
  for (const auto& key : exp.value("metadata_absent", json::array())) {
    if (map_get(meta, key.get<std::string>()).has_value())
      fails.push_back("metadata key " + key.get<std::string>() + " present but should be absent");
  }
  return fails;
}

}  // namespace wf::testing
