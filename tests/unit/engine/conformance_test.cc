// Runs every orchestrator conformance case (shared/conformance/cases/orchestrator) through
// Engine::evaluate with fake ports, and checks `expect` the way shared/conformance/run.py does.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "fakes.h"
#include "orchestrator/engine/engine.h"

namespace wf::orchestrator::testing {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

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

bool key_matches(const json& entry_key, const std::string& key) {
  return entry_key == key || (entry_key.is_object() && entry_key.value("Z6K1", json()) == key);
}

std::optional<json> map_get(const json& zmap, const std::string& key) {
  if (!zmap.is_object() || !zmap.contains("K1")) return std::nullopt;
  const json& k1 = zmap["K1"];
  if (k1.is_array()) {
    for (std::size_t i = 1; i < k1.size(); ++i) {
      const json& e = k1[i];
      if (e.is_object() && e.contains("K1") && key_matches(e["K1"], key)) {
        return e.contains("K2") ? e["K2"] : json(nullptr);
      }
    }
    return std::nullopt;
  }
  const json* tail = &k1;
  int seen = 0;
  while (tail->is_object() && tail->contains("K1") && seen < 100000) {
    const json& e = (*tail)["K1"];
    if (e.is_object() && e.contains("K1") && key_matches(e["K1"], key)) {
      return e.contains("K2") ? e["K2"] : json(nullptr);
    }
    if (!tail->contains("K2")) break;
    tail = &(*tail)["K2"];
    ++seen;
  }
  return std::nullopt;
}

json get_error(const json& envelope) {
  json meta =
      envelope.is_object() && envelope.contains("Z22K2") ? envelope["Z22K2"] : json(nullptr);
  if (is_zmap(meta)) return map_get(meta, "errors").value_or(json("Z24"));
  return meta;
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

std::vector<std::string> check(const json& exp, const json& body) {
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

std::vector<std::string> case_files() {
  std::vector<std::string> out;
  fs::path dir(WF_CONFORMANCE_CASES);
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return {"<no cases>"};
  for (const auto& e : fs::recursive_directory_iterator(dir, ec)) {
    std::string name = e.path().filename().string();
    if (e.is_regular_file() && e.path().extension() == ".json" && name[0] != '_' &&
        name.rfind("skipped", 0) != 0) {
      out.push_back(e.path().string());
    }
  }
  std::sort(out.begin(), out.end());
  if (out.empty()) out.push_back("<no cases>");
  return out;
}

class Conformance : public ::testing::TestWithParam<std::string> {};

TEST_P(Conformance, Case) {
  if (GetParam() == "<no cases>")
    GTEST_SKIP() << "conformance cases not found at " << WF_CONFORMANCE_CASES;
  std::ifstream in(GetParam());
  json c = json::parse(in);
  if (c.value("kind", "") != "orchestrator") GTEST_SKIP() << "not an orchestrator case";
  std::set<std::string> problems;
  for (const auto& z : c.value("wiki_fetch_problem", json::array()))
    problems.insert(z.get<std::string>());
  auto wiki = std::make_shared<FakeWiki>(c.value("wiki", json::object()), WF_REFERENCE_DEFINITIONS,
                                         problems);
  auto evaluator = std::make_shared<FakeEvaluator>(c.value("evaluator_stub", json::object()));
  EngineOptions options;
  options.cache_ttl = std::chrono::milliseconds(0);
  auto engine = make_engine(options, wiki, evaluator);
  CallContext ctx;
  ctx.deadline = Clock::now() + std::chrono::seconds(20);
  json body = engine->evaluate(c["request"], ctx);
  auto fails = check(c["expect"], body);
  std::string joined;
  for (const auto& f : fails) joined += "\n  " + f;
  EXPECT_TRUE(fails.empty()) << c.value("name", "") << joined
                             << "\n  response: " << short_text(body);
}

std::string case_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string n = fs::path(info.param).stem().string();
  for (char& ch : n) {
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  }
  return n.empty() ? "none" : n;
}

INSTANTIATE_TEST_SUITE_P(Orchestrator, Conformance, ::testing::ValuesIn(case_files()), case_name);

}  // namespace
}  // namespace wf::orchestrator::testing
