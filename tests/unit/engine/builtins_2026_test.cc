// The built-ins added by definitions-2026 (docs/builtins.md), through Engine::evaluate with the
// bundled definitions: for each, a call that works and a bad input with the Z5 it gives; and
// the 2026 testers of Z850-Z853, run as the wiki runs them.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "fakes.h"
#include "orchestrator/engine/engine.h"

namespace wf::orchestrator::testing {
namespace {

using json = nlohmann::json;

const std::filesystem::path kDefinitions2026 = WF_REFERENCE_DEFINITIONS_2026;

json T() {
  return {{"Z1K1", "Z40"}, {"Z40K1", "Z41"}};
}
json F() {
  return {{"Z1K1", "Z40"}, {"Z40K1", "Z42"}};
}

json call(const std::string& fn, const std::vector<json>& args) {
  json c = {{"Z1K1", "Z7"}, {"Z7K1", fn}};
  for (std::size_t i = 0; i < args.size(); ++i) c[fn + "K" + std::to_string(i + 1)] = args[i];
  return c;
}

// A persisted enum type Z60001 of the languages English and Arabic, made by Z884.
json enum_type_z2() {
  return {{"Z1K1", "Z2"},
          {"Z2K1", {{"Z1K1", "Z6"}, {"Z6K1", "Z60001"}}},
          {"Z2K2", call("Z884", {"Z60",
                                 json::array({"Z9", "Z1002", "Z1001"}),
                                 {{"Z1K1", "Z6"}, {"Z6K1", "Z60001"}}})},
          {"Z2K3", {{"Z1K1", "Z12"}, {"Z12K1", json::array({"Z11"})}}}};
}

json instance(const std::string& language) {
  return {{"Z1K1", "Z60001"}, {"Z60001K1", language}};
}

class Builtins2026 : public ::testing::Test {
 protected:
  json run(const json& c) {
    CallContext ctx;
    ctx.deadline = Clock::now() + std::chrono::seconds(10);
    json r = engine_->evaluate({{"zobject", c}, {"doValidate", true}}, ctx);
    std::cerr << c.dump() << "\n -> " << r["Z22K1"].dump() << " " << meta(r, "errors").dump()
              << "\n";
    return r;
  }
  static json meta(const json& r, const std::string& key) {
    json k1 = r.value("/Z22K2/K1"_json_pointer, json());
    for (std::size_t i = 1; k1.is_array() && i < k1.size(); ++i) {
      if (k1[i].is_object() && k1[i].value("K1", json()) == key) return k1[i]["K2"];
    }
    return nullptr;
  }
  static std::string error_code(const json& r) {
    json e = meta(r, "errors");
    return e.is_object() && e["Z5K1"].is_string() ? e["Z5K1"].get<std::string>() : "";
  }
  void SetUp() override {
    if (!std::filesystem::exists(kDefinitions2026 / "Z850.json")) {
      GTEST_SKIP() << "needs ../shared/reference/definitions-2026 beside the source tree";
    }
  }
  // The wiki serves the 2026 content and one enum type.
  std::shared_ptr<FakeWiki> wiki_ =
      std::make_shared<FakeWiki>(json{{"Z60001", enum_type_z2()}}, kDefinitions2026);
  std::unique_ptr<Engine> engine_ = make_engine({}, wiki_, nullptr);
};

// ---- the 2026 testers: Z20K2's value, given to Z20K3's call as its first argument, is true --

class Testers2026 : public Builtins2026, public ::testing::WithParamInterface<const char*> {};

TEST_P(Testers2026, Passes) {
  std::ifstream in(kDefinitions2026 / (std::string(GetParam()) + ".json"));
  json z20 = json::parse(in)["Z2K2"];
  json result = run(z20["Z20K2"]);
  ASSERT_TRUE(meta(result, "errors").is_null()) << result.dump();
  json check = z20["Z20K3"];
  check[check["Z7K1"].get<std::string>() + "K1"] = result["Z22K1"];
  json verdict = run(check);
  EXPECT_EQ(verdict["Z22K1"], T()) << GetParam() << ": " << result["Z22K1"].dump() << "\n"
                                   << verdict.dump();
}

INSTANTIATE_TEST_SUITE_P(ErrorFunctions, Testers2026,
                         ::testing::Values("Z8500", "Z8501", "Z8502", "Z8510", "Z8511", "Z8520",
                                           "Z8521", "Z8530", "Z8531"));

// ---- errors: Z850-Z854, Z885 ----------------------------------------------------------------

TEST_F(Builtins2026, Z850CatchesOnlyItsErrorType) {
  json failing = call("Z811", {json::array({"Z6"})});  // Z506: an empty list has no head
  EXPECT_EQ(run(call("Z850", {failing, "Z506", "caught"}))["Z22K1"], "caught");
  EXPECT_EQ(error_code(run(call("Z850", {failing, "Z500", "caught"}))), "Z506");
  // Static validation refuses a string where an error type (Z50) is declared.
  EXPECT_EQ(error_code(run(call("Z850", {failing, "not an error type", "caught"}))), "Z506");
  // An error type without a ZID cannot be matched.
  json anonymous = {{"Z1K1", "Z50"}, {"Z50K1", json::array({"Z3"})}};
  json r = run(call("Z850", {failing, anonymous, "caught"}));
  EXPECT_EQ(error_code(r), "Z516");
  EXPECT_NE(r.dump().find("name the error type by its ZID"), std::string::npos) << r.dump();
}

// A composition passes its arguments to Z850 by reference: the lazy ones are read in its frame.
TEST_F(Builtins2026, Z850InACompositionReadsItsArguments) {
  auto z17 = [](const std::string& type, const std::string& key) {
    return json{{"Z1K1", "Z17"},
                {"Z17K1", type},
                {"Z17K2", key},
                {"Z17K3", {{"Z1K1", "Z12"}, {"Z12K1", json::array({"Z11"})}}}};
  };
  auto arg = [](const std::string& key) { return json{{"Z1K1", "Z18"}, {"Z18K1", key}}; };
  json body = call("Z850", {call("Z811", {arg("Z10001K1")}), "Z506", arg("Z10001K2")});
  json z8 = {
      {"Z1K1", "Z8"},
      {"Z8K1", json::array({"Z17", z17("Z1", "Z10001K1"), z17("Z6", "Z10001K2")})},
      {"Z8K2", "Z1"},
      {"Z8K3", json::array({"Z20"})},
      {"Z8K4", json::array({"Z14", {{"Z1K1", "Z14"}, {"Z14K1", "Z10001"}, {"Z14K2", body}}})},
      {"Z8K5", "Z10001"}};
  json head = {{"Z1K1", "Z7"},
               {"Z7K1", z8},
               {"Z10001K1", json::array({"Z6", "a"})},
               {"Z10001K2", "fallback"}};
  EXPECT_EQ(run(head)["Z22K1"], "a") << run(head).dump();
  head["Z10001K1"] = json::array({"Z6"});
  EXPECT_EQ(run(head)["Z22K1"], "fallback") << run(head).dump();
}

TEST_F(Builtins2026, Z851ThrowsWithParameters) {
  json r = run(call("Z851", {"Z525", json::array({"Z1", "Some bad key"})}));
  EXPECT_EQ(error_code(r), "Z525");
  EXPECT_EQ(meta(r, "errors")["Z5K2"]["Z525K1"], "Some bad key") << r.dump();
  EXPECT_EQ(error_code(run(call("Z851", {"oops", json::array({"Z1"})}))), "Z506");
}

TEST_F(Builtins2026, Z852ComparesTheErrorType) {
  json z5 = {{"Z1K1", "Z5"},
             {"Z5K1", "Z525"},
             {"Z5K2", {{"Z1K1", call("Z885", {"Z525"})}, {"Z525K1", "k"}}}};
  EXPECT_EQ(run(call("Z852", {z5, "Z525"}))["Z22K1"], T());
  EXPECT_EQ(run(call("Z852", {z5, "Z506"}))["Z22K1"], F());
  EXPECT_EQ(error_code(run(call("Z852", {z5, "Z1K1"}))), "Z506");
}

TEST_F(Builtins2026, Z853PairsTheOutcome) {
  json ok = run(call("Z853", {call("Z801", {"fine"})}));
  EXPECT_EQ(ok["Z22K1"]["K1"], F()) << ok.dump();
  EXPECT_EQ(ok["Z22K1"]["K2"], "fine");
  json failed = run(call("Z853", {call("Z811", {json::array({"Z6"})})}));
  EXPECT_EQ(failed["Z22K1"]["K1"], T());
  EXPECT_EQ(failed["Z22K1"]["K2"]["Z5K1"], "Z506") << failed.dump();
}

TEST_F(Builtins2026, Z854AddsBoundedDebugLines) {
  json inner = call("Z854", {call("Z801", {"v"}), "first"});
  json r = run(call("Z854", {inner, "second"}));
  EXPECT_EQ(r["Z22K1"], "v");
  EXPECT_EQ(meta(r, "executorDebugLogs"), json::array({"Z6", "first", "second"})) << r.dump();
  json big = run(call("Z854", {call("Z801", {"v"}), std::string(20000, 'x')}));
  EXPECT_EQ(meta(big, "executorDebugLogs"), json::array({"Z6", "... (debug log truncated)"}));
  EXPECT_EQ(error_code(run(call("Z854", {call("Z801", {"v"}), T()}))), "Z506");
}

TEST_F(Builtins2026, Z885MakesTheTypeOfAnErrorType) {
  json r = run(call("Z885", {"Z525"}));
  EXPECT_EQ(r["Z22K1"]["Z4K1"], call("Z885", {"Z525"})) << r.dump();
  EXPECT_EQ(r["Z22K1"]["Z4K2"][1]["Z3K2"], "Z525K1");
  EXPECT_EQ(error_code(run(call("Z885", {"Z1K1"}))), "Z506");
}

// ---- map, filter, reduce -------------------------------------------------------------------

json lists() {
  return json::array({"Z1", json::array({"Z6", "a", "b"}), json::array({"Z6"})});
}

TEST_F(Builtins2026, Z873MapsEachElement) {
  json r = run(call("Z873", {"Z813", lists()}));
  EXPECT_EQ(r["Z22K1"], json::array({"Z40", F(), T()})) << r.dump();
  EXPECT_EQ(error_code(run(call("Z873", {"Z811", lists()}))), "Z506");  // head of []
}

// A function of the content (here an inline composition): the positional keys K1, K2 of the call
// bind to its declared arguments.
TEST_F(Builtins2026, Z873AndZ876CallACompositionOfTheContent) {
  auto z17 = [](const std::string& type, const std::string& key) {
    return json{{"Z1K1", "Z17"},
                {"Z17K1", type},
                {"Z17K2", key},
                {"Z17K3", {{"Z1K1", "Z12"}, {"Z12K1", json::array({"Z11"})}}}};
  };
  auto arg = [](const std::string& key) { return json{{"Z1K1", "Z18"}, {"Z18K1", key}}; };
  auto function = [&](std::vector<json> args, const json& body) {
    json k1 = json::array({"Z17"});
    for (const auto& a : args) k1.push_back(a);
    return json{
        {"Z1K1", "Z8"},
        {"Z8K1", k1},
        {"Z8K2", "Z40"},
        {"Z8K3", json::array({"Z20"})},
        {"Z8K4", json::array({"Z14", {{"Z1K1", "Z14"}, {"Z14K1", "Z10001"}, {"Z14K2", body}}})},
        {"Z8K5", "Z10001"}};
  };
  json is_a = function({z17("Z6", "Z10001K1")}, call("Z866", {arg("Z10001K1"), "a"}));
  json mapped = run(call("Z873", {is_a, json::array({"Z6", "a", "b"})}));
  EXPECT_EQ(mapped["Z22K1"], json::array({"Z40", T(), F()})) << mapped.dump();
  json both = function({z17("Z40", "Z10001K1"), z17("Z40", "Z10001K2")},
                       call("Z844", {arg("Z10001K1"), arg("Z10001K2")}));
  json folded = run(call("Z876", {both, json::array({"Z40", T(), T()}), T()}));
  EXPECT_EQ(folded["Z22K1"], T()) << folded.dump();
}

TEST_F(Builtins2026, Z872KeepsWhatTheFunctionAccepts) {
  json r = run(call("Z872", {"Z813", lists()}));
  ASSERT_EQ(r["Z22K1"].size(), 2u) << r.dump();  // the item type and the one empty list
  EXPECT_EQ(r["Z22K1"][1].size(), 1u) << r.dump();
  json bad = run(call("Z872", {"Z801", lists()}));
  EXPECT_EQ(error_code(bad), "Z516");
  EXPECT_NE(bad.dump().find("must return a Boolean"), std::string::npos) << bad.dump();
}

TEST_F(Builtins2026, Z876FoldsFromTheLeft) {
  // acc == element over [true, false] from true: (true == true) == false -> false.
  EXPECT_EQ(run(call("Z876", {"Z844", json::array({"Z40", T(), F()}), T()}))["Z22K1"], F());
  EXPECT_EQ(run(call("Z876", {"Z844", json::array({"Z40"}), T()}))["Z22K1"], T());
  EXPECT_EQ(error_code(run(call("Z876", {"Z844", json::array({"Z1", "x"}), T()}))), "Z506");
}

// ---- natural language, HTML ----------------------------------------------------------------

json stringset(const std::string& lang, const json& strings) {
  json list = json::array({"Z6"});
  for (const auto& s : strings) list.push_back(s);
  return {{"Z1K1", "Z31"}, {"Z31K1", lang}, {"Z31K2", list}};
}

TEST_F(Builtins2026, Z832ComparesStringsetsAsSets) {
  EXPECT_EQ(
      run(call("Z832", {stringset("Z1002", {"a", "b"}), stringset("Z1002", {"b", "a"})}))["Z22K1"],
      T());
  EXPECT_EQ(run(call("Z832", {stringset("Z1002", {"a"}), stringset("Z1003", {"a"})}))["Z22K1"],
            F());
  EXPECT_EQ(error_code(run(call("Z832", {"a", stringset("Z1002", {"a"})}))), "Z506");
}

TEST_F(Builtins2026, Z861WrapsTextInALanguage) {
  json r = run(call("Z861", {"hello", "Z1002"}));
  EXPECT_EQ(r["Z22K1"], json({{"Z1K1", "Z11"}, {"Z11K1", "Z1002"}, {"Z11K2", "hello"}}))
      << r.dump();
  json by_code = run(call("Z861", {"hola", {{"Z1K1", "Z60"}, {"Z60K1", "es"}}}));
  EXPECT_EQ(by_code["Z22K1"]["Z11K1"], "Z1003") << by_code.dump();
  json unknown = run(call("Z861", {"x", {{"Z1K1", "Z60"}, {"Z60K1", "no-such-code"}}}));
  EXPECT_EQ(error_code(unknown), "Z516") << unknown.dump();
}

TEST_F(Builtins2026, Z862ComparesLanguages) {
  EXPECT_EQ(run(call("Z862", {"Z1002", {{"Z1K1", "Z60"}, {"Z60K1", "en"}}}))["Z22K1"], T());
  EXPECT_EQ(run(call("Z862", {"Z1002", "Z1003"}))["Z22K1"], F());
  EXPECT_EQ(error_code(run(call("Z862", {"Z1002", T()}))), "Z506");
}

json html(const json& text) {
  return {{"Z1K1", "Z89"}, {"Z89K1", text}};
}

TEST_F(Builtins2026, Z877ComparesHtmlText) {
  EXPECT_EQ(run(call("Z877", {html("<b>x</b>"), html("<b>x</b>")}))["Z22K1"], T());
  EXPECT_EQ(run(call("Z877", {html("<b>x</b>"), html("<i>x</i>")}))["Z22K1"], F());
  EXPECT_EQ(error_code(run(call("Z877", {html("<b>x</b>"), "plain"}))), "Z506");
}

TEST_F(Builtins2026, Z189ValidatesHtmlFragments) {
  json ok = run(call("Z189", {html("<p>fine</p>")}));
  EXPECT_EQ(ok["Z22K1"], html("<p>fine</p>")) << ok.dump();
  json bad = run(call("Z189", {{{"Z1K1", "Z89"}, {"Z89K1", T()}}}));
  EXPECT_EQ(error_code(bad), "Z518") << bad.dump();  // the type check, Z289's Z526 inside
  EXPECT_NE(bad.dump().find("Z526"), std::string::npos) << bad.dump();
}

// ---- enums ---------------------------------------------------------------------------------

TEST_F(Builtins2026, Z884MakesAnEnumType) {
  json zid = {{"Z1K1", "Z6"}, {"Z6K1", "Z60001"}};  // a string, not a reference to Z60001
  json r = run(call("Z884", {"Z60", json::array({"Z9", "Z1002"}), zid}));
  EXPECT_EQ(r["Z22K1"]["Z4K1"], "Z60001") << r.dump();
  EXPECT_EQ(r["Z22K1"]["Z4K2"][1]["Z3K2"], "Z60001K1");
  EXPECT_EQ(r["Z22K1"]["Z4K3"], "Z184");
  EXPECT_EQ(r["Z22K1"]["Z4K4"], "Z894");
  EXPECT_EQ(error_code(run(call("Z884", {"Z60", json::array({"Z9", "Z1002"}), "nope"}))), "Z516");
}

TEST_F(Builtins2026, Z894ComparesEnumInstances) {
  EXPECT_EQ(run(call("Z894", {instance("Z1002"), instance("Z1002")}))["Z22K1"], T());
  EXPECT_EQ(run(call("Z894", {instance("Z1002"), instance("Z1001")}))["Z22K1"], F());
  json two_keys = instance("Z1002");
  two_keys["Z60001K2"] = "Z1001";
  // The type's validator (Z184) refuses it first: Z518 with the validator's Z516 inside.
  json r = run(call("Z894", {two_keys, instance("Z1002")}));
  EXPECT_EQ(error_code(r), "Z518");
  EXPECT_NE(r.dump().find("an enum instance has one value key besides Z1K1"), std::string::npos);
}

TEST_F(Builtins2026, Z184AcceptsOnlyTheEnumsValues) {
  json ok = run(call("Z184", {instance("Z1001"), "Z60001"}));
  EXPECT_EQ(ok["Z22K1"]["Z1K1"], "Z60001") << ok.dump();
  json bad = run(call("Z184", {instance("Z1003"), "Z60001"}));
  EXPECT_EQ(error_code(bad), "Z518") << bad.dump();  // the type check, with Z184's Z516 inside
  EXPECT_NE(bad.dump().find("is not one of the values of enum type Z60001"), std::string::npos);
}

}  // namespace
}  // namespace wf::orchestrator::testing
