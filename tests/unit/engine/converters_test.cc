// Type converters on the orchestrator side (issue 10 item 1): for a code implementation the
// engine finds the converters of the argument types (Z4K7, Z46) and of the return type (Z4K8,
// Z64) for the implementation's language and sends them as CodeCall::converters; typed lists
// convert element-wise; types without converters send nothing and cost no extra fetch.
#include <gtest/gtest.h>

#include <mutex>

#include "fakes.h"
#include "orchestrator/engine/engine.h"

namespace wf::orchestrator::testing {
namespace {

using json = nlohmann::json;

const char* kToInt = "def Z10101(Z10101K1):\n    return int(Z10101K1['Z10100K1']['Z6K1'])";
const char* kFromInt =
    "def Z10102(Z10102K1):\n    return {'Z1K1': 'Z10100', 'Z10100K1': str(Z10102K1)}";
const char* kToBigInt = "function Z10103(Z10103K1) { return BigInt(Z10103K1.Z10100K1.Z6K1); }";

json persisted(const std::string& zid, json value) {
  return {{"Z1K1", "Z2"}, {"Z2K1", {{"Z1K1", "Z6"}, {"Z6K1", zid}}}, {"Z2K2", std::move(value)}};
}

json key(const std::string& type, const std::string& name) {
  return {{"Z1K1", "Z3"},
          {"Z3K1", type},
          {"Z3K2", name},
          {"Z3K3", {{"Z1K1", "Z12"}, {"Z12K1", json::array({"Z11"})}}}};
}

json converter(const std::string& type, const std::string& zid, const std::string& language,
               const std::string& code) {
  return {{"Z1K1", type},
          {type + "K1", zid},
          {type + "K2", "Z10100"},
          {type + "K3", {{"Z1K1", "Z16"}, {"Z16K1", language}, {"Z16K2", code}}},
          {type + "K4", language == "Z610" ? "int" : "BigInt"}};
}

json z17(const json& type, const std::string& name) {
  return {{"Z1K1", "Z17"},
          {"Z17K1", type},
          {"Z17K2", name},
          {"Z17K3", {{"Z1K1", "Z12"}, {"Z12K1", json::array({"Z11"})}}}};
}

// The wiki: Z10100 a number type with converters (Python both ways, JavaScript to code only),
// Z10110 a type without any, their converters and the two programming languages.
json wiki_objects() {
  json number = {{"Z1K1", "Z4"},
                 {"Z4K1", "Z10100"},
                 {"Z4K2", json::array({"Z3", key("Z6", "Z10100K1")})},
                 {"Z4K3", "Z101"},
                 {"Z4K5", "Z10199"},  // a renderer the wiki does not have: never needed
                 {"Z4K7", json::array({"Z46", "Z10103", "Z10101"})},
                 {"Z4K8", json::array({"Z64", "Z10102"})}};
  json plain = {{"Z1K1", "Z4"},
                {"Z4K1", "Z10110"},
                {"Z4K2", json::array({"Z3", key("Z6", "Z10110K1")})},
                {"Z4K3", "Z101"}};
  // Types without converters whose keys have one: Z10120 (a number and a string) and Z10130,
  // which also holds an instance of itself.
  json labelled = {{"Z1K1", "Z4"},
                   {"Z4K1", "Z10120"},
                   {"Z4K2", json::array({"Z3", key("Z10100", "Z10120K1"), key("Z6", "Z10120K2")})},
                   {"Z4K3", "Z101"}};
  json tree = {{"Z1K1", "Z4"},
               {"Z4K1", "Z10130"},
               {"Z4K2", json::array({"Z3", key("Z10130", "Z10130K1"), key("Z10100", "Z10130K2")})},
               {"Z4K3", "Z101"}};
  return {
      {"Z10100", persisted("Z10100", number)},
      {"Z10110", persisted("Z10110", plain)},
      {"Z10120", persisted("Z10120", labelled)},
      {"Z10130", persisted("Z10130", tree)},
      {"Z10101", persisted("Z10101", converter("Z46", "Z10101", "Z610", kToInt))},
      {"Z10102", persisted("Z10102", converter("Z64", "Z10102", "Z610", kFromInt))},
      {"Z10103", persisted("Z10103", converter("Z46", "Z10103", "Z600", kToBigInt))},
      {"Z610", persisted("Z610", {{"Z1K1", "Z61"}, {"Z61K1", "python-3"}})},
      {"Z600", persisted("Z600", {{"Z1K1", "Z61"}, {"Z61K1", "javascript-es2020"}})},
  };
}

// Records the calls it is given and answers each with `answer`.
class RecordingRunner : public CodeRunner {
 public:
  explicit RecordingRunner(json answer) : answer_(std::move(answer)) {}
  void run(const CodeCall& call, const CallContext&, Done done) override {
    {
      std::lock_guard lock(mu_);
      calls_.push_back(call);
    }
    done(json{{"Z1K1", "Z22"}, {"Z22K1", answer_}, {"Z22K2", "Z24"}});
  }
  std::vector<CodeCall> calls() const {
    std::lock_guard lock(mu_);
    return calls_;
  }

 private:
  json answer_;
  mutable std::mutex mu_;
  std::vector<CodeCall> calls_;
};

json function(const std::vector<json>& args, const json& returns, const std::string& language,
              const std::string& code) {
  json k1 = json::array({"Z17"});
  for (std::size_t i = 0; i < args.size(); ++i) {
    k1.push_back(z17(args[i], "Z10001K" + std::to_string(i + 1)));
  }
  json impl = {{"Z1K1", "Z14"},
               {"Z14K1", "Z10001"},
               {"Z14K3", {{"Z1K1", "Z16"}, {"Z16K1", language}, {"Z16K2", code}}}};
  return {{"Z1K1", "Z8"},
          {"Z8K1", k1},
          {"Z8K2", returns},
          {"Z8K3", json::array({"Z20"})},
          {"Z8K4", json::array({"Z14", impl})},
          {"Z8K5", "Z10001"}};
}

json number(const std::string& digits) {
  return {{"Z1K1", "Z10100"}, {"Z10100K1", digits}};
}

json plan(const std::string& zid, const char* code, const char* native = "int") {
  return {{"converter", {{"functionName", zid}, {"code", code}, {"nativeType", native}}}};
}

class Converters : public ::testing::Test {
 protected:
  // Evaluates `z8`(args...) and returns the one code call it made.
  CodeCall call(const json& z8, const std::vector<json>& args, json answer = "ok",
                EngineOptions options = {}) {
    wiki_ = std::make_shared<FakeWiki>(wiki_objects(), "");
    runner_ = std::make_shared<RecordingRunner>(std::move(answer));
    engine_ = make_engine(options, wiki_, runner_);
    json z7 = {{"Z1K1", "Z7"}, {"Z7K1", z8}};
    for (std::size_t i = 0; i < args.size(); ++i) z7["Z10001K" + std::to_string(i + 1)] = args[i];
    result_ = engine_->evaluate({{"zobject", z7}}, CallContext{});
    auto calls = runner_->calls();
    EXPECT_EQ(calls.size(), 1u) << result_.dump().substr(0, 2000);
    return calls.empty() ? CodeCall{} : calls.front();
  }
  std::vector<std::string> fetched() const {
    std::vector<std::string> out;
    for (const auto& batch : wiki_->requests()) out.insert(out.end(), batch.begin(), batch.end());
    return out;
  }
  std::shared_ptr<FakeWiki> wiki_;
  std::shared_ptr<RecordingRunner> runner_;
  std::unique_ptr<Engine> engine_;
  json result_;
};

TEST_F(Converters, ArgumentTypeSendsItsConverterToCode) {
  CodeCall c =
      call(function({"Z10100"}, "Z6", "Z610", "def Z10001(x): return str(x)"), {number("7")});
  EXPECT_EQ(c.converters, json({{"arguments", {{"Z10001K1", plan("Z10101", kToInt)}}}}));
  EXPECT_EQ(result_["Z22K1"], "ok");
  // The type's renderer (Z4K5) is never fetched.
  for (const auto& zid : fetched()) EXPECT_NE(zid, "Z10199");
}

TEST_F(Converters, ReturnTypeSendsItsConverterFromCode) {
  CodeCall c = call(function({"Z6"}, "Z10100", "Z610", "def Z10001(x): return len(x)"), {"abc"},
                    number("3"));
  EXPECT_EQ(c.converters, json({{"result", plan("Z10102", kFromInt)}}));
  EXPECT_EQ(result_["Z22K1"], number("3")) << result_.dump().substr(0, 2000);
}

TEST_F(Converters, TypedListConvertsElementWise) {
  json list_type = {{"Z1K1", "Z7"}, {"Z7K1", "Z881"}, {"Z881K1", "Z10100"}};
  CodeCall c = call(function({list_type}, list_type, "Z610", "def Z10001(x): return x"),
                    {json::array({"Z10100", number("1"), number("2")})});
  EXPECT_EQ(c.converters, json({{"arguments", {{"Z10001K1", {{"list", plan("Z10101", kToInt)}}}}},
                                {"result", {{"list", plan("Z10102", kFromInt)}}}}));
}

TEST_F(Converters, TypedPairsAndMapsConvertElementWise) {
  json pair_type = {{"Z1K1", "Z7"}, {"Z7K1", "Z882"}, {"Z882K1", "Z10100"}, {"Z882K2", "Z6"}};
  json map_type = {{"Z1K1", "Z7"}, {"Z7K1", "Z883"}, {"Z883K1", "Z6"}, {"Z883K2", "Z10100"}};
  json pair = {{"Z1K1", pair_type}, {"K1", number("1")}, {"K2", "x"}};
  CodeCall c = call(function({pair_type}, map_type, "Z610", "def Z10001(p): return {}"), {pair});
  EXPECT_EQ(c.converters,
            json({{"arguments", {{"Z10001K1", {{"pair", {plan("Z10101", kToInt), nullptr}}}}}},
                  {"result", {{"map", {nullptr, plan("Z10102", kFromInt)}}}}}));
}

TEST_F(Converters, KeysOfATypeWithoutConvertersConvertByTheirTypes) {
  json value = {{"Z1K1", "Z10120"}, {"Z10120K1", number("4")}, {"Z10120K2", "four"}};
  CodeCall c = call(function({"Z10120"}, "Z10120", "Z610", "def Z10001(v): return v"), {value});
  EXPECT_EQ(c.converters,
            json({{"arguments", {{"Z10001K1", {{"keys", {{"Z10120K1", plan("Z10101", kToInt)}}}}}}},
                  {"result", {{"keys", {{"Z10120K1", plan("Z10102", kFromInt)}}}}}}));
}

TEST_F(Converters, ATypeInsideItsOwnKeysIsNotExpandedAgain) {
  json leaf = {{"Z1K1", "Z10130"}, {"Z10130K2", number("1")}};
  json value = {{"Z1K1", "Z10130"}, {"Z10130K1", leaf}, {"Z10130K2", number("2")}};
  CodeCall c = call(function({"Z10130"}, "Z6", "Z610", "def Z10001(v): return 'x'"), {value});
  EXPECT_EQ(
      c.converters,
      json({{"arguments", {{"Z10001K1", {{"keys", {{"Z10130K2", plan("Z10101", kToInt)}}}}}}}}));
  EXPECT_EQ(result_["Z22K1"], "ok");
}

TEST_F(Converters, TheImplementationsLanguagePicksTheConverter) {
  CodeCall c = call(function({"Z10100"}, "Z10100", "Z600", "function Z10001(x) { return x; }"),
                    {number("5")}, number("5"));
  // JavaScript has a converter to code only: the result keeps the default conversion.
  EXPECT_EQ(c.converters,
            json({{"arguments", {{"Z10001K1", plan("Z10103", kToBigInt, "BigInt")}}}}));
}

TEST_F(Converters, AnArgumentDeclaredZ1ConvertsByItsValuesType) {
  CodeCall c = call(function({"Z1", "Z1"}, "Z6", "Z610", "def Z10001(a, b): return 'x'"),
                    {number("9"), "text"});
  EXPECT_EQ(c.converters, json({{"arguments", {{"Z10001K1", plan("Z10101", kToInt)}}}}));
}

TEST_F(Converters, AResultDeclaredZ1ConvertsByNativeTypeWithTheArgumentTypesConverters) {
  CodeCall c = call(function({"Z1", "Z1"}, "Z1", "Z610", "def Z10001(a, b): return a + b"),
                    {number("2"), number("3")}, number("5"));
  EXPECT_EQ(c.converters["result"], json({{"native", {{"int", plan("Z10102", kFromInt)}}}}));
  // Without a converted argument there is nothing to guess from.
  CodeCall plain = call(function({"Z1"}, "Z1", "Z610", "def Z10001(a): return a"), {"text"});
  EXPECT_TRUE(plain.converters.is_null()) << plain.converters.dump();
}

TEST_F(Converters, TypesWithoutConvertersSendNoneAndFetchNoConverter) {
  json plain = {{"Z1K1", "Z10110"}, {"Z10110K1", "x"}};
  CodeCall c = call(function({"Z6", "Z10110", {{"Z1K1", "Z7"}, {"Z7K1", "Z881"}, {"Z881K1", "Z6"}}},
                             "Z6", "Z610", "def Z10001(a, b, c): return a"),
                    {"a", plain, json::array({"Z6", "b"})});
  EXPECT_TRUE(c.converters.is_null()) << c.converters.dump();
  for (const auto& zid : fetched()) {
    EXPECT_TRUE(zid != "Z10101" && zid != "Z10102" && zid != "Z10103") << zid;
  }
}

TEST_F(Converters, TheLookupIsCachedAcrossRequests) {
  json z8 = function({"Z10100"}, "Z10100", "Z610", "def Z10001(x): return x");
  CodeCall first = call(z8, {number("1")}, number("1"));
  const auto after_first = fetched().size();
  // A second request on the same engine: every object comes from the caches, same plans.
  json z7 = {{"Z1K1", "Z7"}, {"Z7K1", z8}, {"Z10001K1", number("2")}};
  engine_->evaluate({{"zobject", z7}}, CallContext{});
  auto calls = runner_->calls();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[1].converters, first.converters);
  EXPECT_EQ(calls[1].converters["result"], plan("Z10102", kFromInt));
  EXPECT_EQ(fetched().size(), after_first);
}

}  // namespace
}  // namespace wf::orchestrator::testing
