// Self-referential objects and deep recursion end in a value or a Z5, never in a crash
// (issue 7 item 5). Z6021 is a real enum value of wikifunctions.org whose identity key refers to
// itself: {"Z1K1": "Z6020", "Z6020K1": "Z6021"}. It is passed to code, to a built-in and to a
// composition; and the deepest call depth the configuration accepts gives the depth Z5.
#include <gtest/gtest.h>

#include <filesystem>
#include <future>

#include "fakes.h"
#include "orchestrator/engine/engine.h"

namespace wf::orchestrator::testing {
namespace {

using json = nlohmann::json;

const std::filesystem::path kDefinitions = WF_REFERENCE_DEFINITIONS_2026;

json errors_of(const json& r) {
  const json& k1 = r["Z22K2"]["K1"];
  for (std::size_t i = 1; k1.is_array() && i < k1.size(); ++i) {
    if (k1[i]["K1"] == "errors") return k1[i]["K2"];
  }
  return nullptr;
}

json z17(const std::string& type, const std::string& key) {
  return {{"Z1K1", "Z17"},
          {"Z17K1", type},
          {"Z17K2", key},
          {"Z17K3", {{"Z1K1", "Z12"}, {"Z12K1", json::array({"Z11"})}}}};
}

// An inline function Z10001(Z10001K1: arg_type) -> Z6 with the one implementation given.
json inline_function(const std::string& arg_type, const json& implementation) {
  return {{"Z1K1", "Z8"},
          {"Z8K1", json::array({"Z17", z17(arg_type, "Z10001K1")})},
          {"Z8K2", "Z6"},
          {"Z8K3", json::array({"Z20"})},
          {"Z8K4", json::array({"Z14", implementation})},
          {"Z8K5", "Z10001"}};
}

json call_with_enum(const json& z8) {
  return {{"zobject", {{"Z1K1", "Z7"}, {"Z7K1", z8}, {"Z10001K1", "Z6021"}}}};
}

class SelfReference : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(kDefinitions / "Z6021.json")) {
      GTEST_SKIP() << "needs ../shared/reference/definitions-2026 beside the source tree";
    }
    wiki_ = std::make_shared<FakeWiki>(json::object(), kDefinitions);
  }
  std::shared_ptr<FakeWiki> wiki_;
};

json python_impl() {
  return {{"Z1K1", "Z14"},
          {"Z14K1", "Z10001"},
          {"Z14K3",
           {{"Z1K1", "Z16"},
            {"Z16K1", {{"Z1K1", "Z61"}, {"Z61K1", "python-3"}}},
            {"Z16K2", "def Z10001(Z10001K1):\n    return 'seen'"}}}};
}

std::shared_ptr<FakeEvaluator> answering_seen() {
  return std::make_shared<FakeEvaluator>(
      json{{"calls",
            json::array({{{"function", "Z10001"},
                          {"status", 200},
                          {"body", {{"Z1K1", "Z22"}, {"Z22K1", "seen"}, {"Z22K2", "Z24"}}}}})}});
}

TEST_F(SelfReference, EnumValuePassedToCodeReachesTheEvaluator) {
  auto evaluator = answering_seen();
  auto engine = make_engine({}, wiki_, evaluator);
  json r = engine->evaluate(call_with_enum(inline_function("Z6020", python_impl())), CallContext{});
  EXPECT_EQ(r["Z22K1"], "seen") << r.dump().substr(0, 2000);
  EXPECT_EQ(evaluator->calls(), 1);
}

TEST_F(SelfReference, EnumValuePassedToABuiltinComesBack) {
  auto engine = make_engine({}, wiki_, nullptr);
  json direct = {{"zobject", {{"Z1K1", "Z7"}, {"Z7K1", "Z801"}, {"Z801K1", "Z6021"}}}};
  json d = engine->evaluate(direct, CallContext{});
  EXPECT_TRUE(errors_of(d).is_null()) << d.dump().substr(0, 2000);
  EXPECT_NE(d["Z22K1"].dump().find("Z6020"), std::string::npos) << d.dump().substr(0, 2000);
  // Through a function declared to take a Z6020 and return anything: Z10001(x) = Z801(x).
  json echo = {
      {"Z1K1", "Z14"},
      {"Z14K1", "Z10001"},
      {"Z14K2",
       {{"Z1K1", "Z7"}, {"Z7K1", "Z801"}, {"Z801K1", {{"Z1K1", "Z18"}, {"Z18K1", "Z10001K1"}}}}}};
  json z8 = inline_function("Z6020", echo);
  z8["Z8K2"] = "Z1";
  json r = engine->evaluate(call_with_enum(z8), CallContext{});
  EXPECT_TRUE(errors_of(r).is_null()) << r.dump().substr(0, 2000);
  EXPECT_NE(r["Z22K1"].dump().find("Z6020"), std::string::npos) << r.dump().substr(0, 2000);
}

TEST_F(SelfReference, EnumValuePassedThroughACompositionToCode) {
  // Z10002(x: Z6020) = Z10001(x), where Z10001 is the Python function above.
  json inner = inline_function("Z6020", python_impl());
  json composition = {
      {"Z1K1", "Z14"},
      {"Z14K1", "Z10002"},
      {"Z14K2",
       {{"Z1K1", "Z7"}, {"Z7K1", inner}, {"Z10001K1", {{"Z1K1", "Z18"}, {"Z18K1", "Z10002K1"}}}}}};
  json outer = {{"Z1K1", "Z8"},
                {"Z8K1", json::array({"Z17", z17("Z6020", "Z10002K1")})},
                {"Z8K2", "Z6"},
                {"Z8K3", json::array({"Z20"})},
                {"Z8K4", json::array({"Z14", composition})},
                {"Z8K5", "Z10002"}};
  auto evaluator = answering_seen();
  auto engine = make_engine({}, wiki_, evaluator);
  json call = {{"zobject", {{"Z1K1", "Z7"}, {"Z7K1", outer}, {"Z10002K1", "Z6021"}}}};
  json r = engine->evaluate(call, CallContext{});
  EXPECT_EQ(r["Z22K1"], "seen") << r.dump().substr(0, 2000);
  EXPECT_EQ(evaluator->calls(), 1);
}

// Z10000(x) = Z10000(x): a composition that calls itself for ever.
json looping_wiki() {
  json body = {
      {"Z1K1", "Z7"}, {"Z7K1", "Z10000"}, {"Z10000K1", {{"Z1K1", "Z18"}, {"Z18K1", "Z10000K1"}}}};
  json z8 = {
      {"Z1K1", "Z8"},
      {"Z8K1", json::array({"Z17", z17("Z1", "Z10000K1")})},
      {"Z8K2", "Z1"},
      {"Z8K3", json::array({"Z20"})},
      {"Z8K4", json::array({"Z14", {{"Z1K1", "Z14"}, {"Z14K1", "Z10000"}, {"Z14K2", body}}})},
      {"Z8K5", "Z10000"}};
  return {
      {"Z10000", {{"Z1K1", "Z2"}, {"Z2K1", {{"Z1K1", "Z6"}, {"Z6K1", "Z10000"}}}, {"Z2K2", z8}}}};
}

const json kLoop = {{"zobject", {{"Z1K1", "Z7"}, {"Z7K1", "Z10000"}, {"Z10000K1", "x"}}}};

TEST(StackDepth, DeepestAcceptedCallDepthEndsInTheDepthZ5) {
  EngineOptions options;
  options.max_call_depth = 10000;  // the largest value orchestrator_config accepts
  options.max_steps = 100'000'000;
  auto engine = make_engine(options, std::make_shared<FakeWiki>(looping_wiki(), ""), nullptr);
  json r = engine->evaluate(kLoop, CallContext{});
  EXPECT_NE(errors_of(r).dump().find("Call depth limit exceeded: more than 10000"),
            std::string::npos)
      << r.dump().substr(0, 2000);
}

TEST(StackDepth, DeepestAcceptedCallDepthOnThePoolEndsInTheDepthZ5) {
  EngineOptions options;
  options.max_call_depth = 10000;
  options.max_steps = 100'000'000;
  auto engine = make_engine(options, std::make_shared<FakeWiki>(looping_wiki(), ""), nullptr);
  std::promise<std::string> answer;
  engine->spawn(CallContext{}, [&] {
    bool has_error = false;
    answer.set_value(engine->evaluate_text(kLoop, CallContext{}, &has_error));
  });
  std::string text = answer.get_future().get();
  EXPECT_NE(text.find("Call depth limit exceeded"), std::string::npos) << text.substr(0, 2000);
}

TEST(StackDepth, AStackTooSmallForTheDepthLimitGivesAZ5NotACrash) {
  EngineOptions options;
  options.max_call_depth = 100000;  // not sized: the explicit stack below is far too small
  options.max_steps = 100'000'000;
  options.stack_bytes = 512u << 10;
  auto engine = make_engine(options, std::make_shared<FakeWiki>(looping_wiki(), ""), nullptr);
  json r = engine->evaluate(kLoop, CallContext{});
  EXPECT_NE(errors_of(r).dump().find("Evaluation stack exhausted"), std::string::npos)
      << r.dump().substr(0, 2000);
}

TEST(StackDepth, StackSizeGrowsWithTheDepthLimit) {
  EXPECT_LT(stack_bytes_for(256), stack_bytes_for(10000));
  // At least the 1.65 KiB per nested call measured for a recursive composition, twice over.
  EXPECT_GE(stack_bytes_for(10000) - stack_bytes_for(0), 10000u * 3300u);
}

}  // namespace
}  // namespace wf::orchestrator::testing
