// Engine::evaluate_text must give, byte for byte, what evaluate() dumped gives (the service
// sends its text), and tell whether the metadata has "errors".
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "fakes.h"
#include "orchestrator/engine/engine.h"

namespace wf::orchestrator::testing {
namespace {

using json = nlohmann::json;

// The orchestration* values differ between two runs (times, CPU, memory): blank them.
// The orchestration* values differ between two runs (times, CPU, memory): blank them, in the
// canonical form (an array of pairs) and the normal one (a linked list, Z6 keys).
json mask(json r) {
  if (!r.is_object() || !r.contains("Z22K2") || !r["Z22K2"].is_object()) return r;
  auto blank = [](json& p) {
    if (!p.is_object() || !p.contains("K1")) return;
    const json& k = p["K1"];
    std::string key = k.is_string() ? k.get<std::string>() : k.value("Z6K1", std::string());
    if (key.starts_with("orchestration")) p["K2"] = "X";
  };
  json& k1 = r["Z22K2"]["K1"];
  if (k1.is_array()) {
    for (auto& p : k1) blank(p);
    return r;
  }
  for (json* n = &k1; n->is_object() && n->contains("K1") && n->contains("K2"); n = &(*n)["K2"]) {
    blank((*n)["K1"]);
  }
  return r;
}

// Canonical metadata is an array of pairs; a response that could not be canonicalised keeps the
// normal form (a linked list of pairs whose keys are Z6 objects).
bool has_errors_key(const json& r) {
  auto is_errors = [](const json& pair) {
    if (!pair.is_object() || !pair.contains("K1")) return false;
    const json& k = pair["K1"];
    return k == "errors" || (k.is_object() && k.value("Z6K1", json()) == "errors");
  };
  const json& list = r["Z22K2"]["K1"];
  if (list.is_array()) {
    for (const auto& p : list) {
      if (is_errors(p)) return true;
    }
    return false;
  }
  for (const json* n = &list; n->is_object() && n->contains("K1"); n = &(*n)["K2"]) {
    if (is_errors((*n)["K1"])) return true;
    if (!n->contains("K2")) break;
  }
  return false;
}

json call(const char* fn, std::initializer_list<std::pair<std::string, json>> args) {
  json c = {{"Z1K1", "Z7"}, {"Z7K1", fn}};
  for (const auto& [k, v] : args) c[k] = v;
  return c;
}

TEST(EngineText, MatchesDumpedEvaluate) {
  auto engine = make_engine({}, nullptr, nullptr);
  const json z6_ref_like = {{"Z1K1", "Z6"}, {"Z6K1", "Z1"}};
  std::vector<json> requests = {
      {{"zobject", call("Z801", {{"Z801K1", "hi"}})}},
      {{"zobject", call("Z801", {{"Z801K1", "hi"}})}, {"doValidate", true}},
      {{"zobject", call("Z801", {{"Z801K1", z6_ref_like}})}},
      {{"zobject", call("Z801", {{"Z801K1", "Z1"}})}},
      {{"zobject", call("Z801", {{"Z801K1", "h\xC3\xA9\n\x01\x7f\"q\\\b\f\t\r"}})}},
      {{"zobject", call("Z801", {{"Z801K1", "h\n\x01\x1f\x7f\"q\\\b\f\t\r"}})}},  // ASCII escapes
      {{"zobject", call("Z801", {{"Z801K1", "bad \xFF\xFE utf8"}})}},
      {{"zobject",
        call("Z802", {{"Z802K1", call("Z866", {{"Z866K1", call("Z801", {{"Z801K1", "a"}})},
                                               {"Z866K2", "a"}})},
                      {"Z802K2", call("Z801", {{"Z801K1", "yes"}})},
                      {"Z802K3", "no"}})}},
      {{"zobject", call("Z801", {})}},
      {{"zobject", call("Z801", {{"Z801K1", "a"}, {"Z801K2", "b"}})}},
      {{"zobject", call("Z868", {{"Z868K1", "abc"}})}},
      {{"zobject", call("Z813", {{"Z813K1", json::array({"Z6"})}})}},
      {{"zobject", call("Z810", {{"Z810K1", "a"}, {"Z810K2", json::array({"Z6", "b"})}})}},
      {{"zobject", call("Z999999", {{"Z999999K1", "a"}})}},
      {{"zobject", {{"Z1K1", "Z5"}, {"Z5K1", "Z500"}, {"Z5K2", "boom"}}}},
      {{"zobject", "not a call"}},
      {{"zobject", 42}},
      json::object(),
      json::array(),
  };
  for (const json& request : requests) {
    SCOPED_TRACE(request.dump(-1, ' ', false, json::error_handler_t::replace));
    json expected = engine->evaluate(request, CallContext{});
    bool has_error = !has_errors_key(expected);  // must be overwritten
    std::string text = engine->evaluate_text(request, CallContext{}, &has_error);
    json parsed = json::parse(text);
    // Same bytes as nlohmann writes for the same tree (sorted keys, same escapes).
    EXPECT_EQ(parsed.dump(-1, ' ', false, json::error_handler_t::replace), text);
    EXPECT_EQ(mask(parsed),
              mask(json::parse(expected.dump(-1, ' ', false, json::error_handler_t::replace))));
    EXPECT_EQ(has_error, has_errors_key(expected));
    // The text path also works without the flag.
    EXPECT_FALSE(engine->evaluate_text(request, CallContext{}, nullptr).empty());
  }
}

TEST(EngineText, ErrorFlagAndTimeout) {
  auto engine = make_engine({}, nullptr, nullptr);
  bool has_error = true;
  engine->evaluate_text({{"zobject", call("Z801", {{"Z801K1", "hi"}})}}, CallContext{}, &has_error);
  EXPECT_FALSE(has_error);
  engine->evaluate_text({{"zobject", call("Z801", {})}}, CallContext{}, &has_error);
  EXPECT_TRUE(has_error);
  CallContext late;
  late.deadline = Clock::now() - std::chrono::seconds(1);
  has_error = false;
  std::string text =
      engine->evaluate_text({{"zobject", call("Z801", {{"Z801K1", "hi"}})}}, late, &has_error);
  EXPECT_TRUE(has_error);
  EXPECT_NE(text.find("Z558"), std::string::npos);
}

}  // namespace
}  // namespace wf::orchestrator::testing
