// The evaluate route's decisions, with the real engine and no wiki or evaluator.
#include "orchestrator/routes.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace wf::orchestrator {
namespace {

class RoutesTest : public ::testing::Test {
 protected:
  std::unique_ptr<Engine> engine = make_engine(EngineOptions{}, nullptr, nullptr);
  RouteOptions options;

  static http::Request post(std::string body, std::string content_type = "application/json") {
    http::Request r;
    r.method = "POST";
    r.path = "/wikifunctions.org/v1/evaluate/";
    r.body = std::move(body);
    r.headers.push_back({"content-type", std::move(content_type)});
    r.deadline = http::Clock::now() + std::chrono::seconds(5);
    return r;
  }
  static std::string call(const nlohmann::json& zobject, bool validate = false) {
    return nlohmann::json{{"zobject", zobject}, {"doValidate", validate}}.dump();
  }
};

TEST_F(RoutesTest, SmallBuiltInCallsRunInline) {
  EXPECT_TRUE(can_run_inline(*engine, options,
                             post(call({{"Z1K1", "Z7"}, {"Z7K1", "Z801"}, {"Z801K1", "hi"}}))));
  const nlohmann::json nested = {
      {"Z1K1", "Z7"},
      {"Z7K1", "Z802"},
      {"Z802K1", {{"Z1K1", "Z7"}, {"Z7K1", "Z866"}, {"Z866K1", "a"}, {"Z866K2", "a"}}},
      {"Z802K2", "yes"},
      {"Z802K3", "no"}};
  EXPECT_TRUE(can_run_inline(*engine, options, post(call(nested))));
}

TEST_F(RoutesTest, AnythingThatMayBlockGoesToAWorker) {
  // A function that is not built in (wiki or objects directory, maybe code).
  EXPECT_FALSE(can_run_inline(*engine, options,
                              post(call({{"Z1K1", "Z7"}, {"Z7K1", "Z10001"}, {"Z10001K1", "x"}}))));
  // Z41 (true) is fetched from the wiki by the reference.
  EXPECT_FALSE(can_run_inline(*engine, options,
                              post(call({{"Z1K1", "Z7"}, {"Z7K1", "Z801"}, {"Z801K1", "Z41"}}))));
  // Static validation.
  EXPECT_FALSE(can_run_inline(
      *engine, options, post(call({{"Z1K1", "Z7"}, {"Z7K1", "Z801"}, {"Z801K1", "hi"}}, true))));
  // An inline function with a code implementation built only from built-in types.
  const nlohmann::json code_impl = {{"Z1K1", "Z14"},
                                    {"Z14K3",
                                     {{"Z1K1", "Z16"},
                                      {"Z16K1", {{"Z1K1", "Z61"}, {"Z61K1", "python"}}},
                                      {"Z16K2", "def f(): pass"}}}};
  EXPECT_FALSE(can_run_inline(
      *engine, options,
      post(call(
          {{"Z1K1", "Z7"},
           {"Z7K1", {{"Z1K1", "Z8"}, {"Z8K4", nlohmann::json::array({"Z14", code_impl})}}}}))));
  // Escapes could hide anything.
  EXPECT_FALSE(can_run_inline(*engine, options,
                              post(R"({"zobject":{"Z1K1":"Z7","Z7K1":"Z801","Z801K1":"a\"b"}})")));
  // Large bodies, other content types.
  EXPECT_FALSE(can_run_inline(
      *engine, options,
      post(call({{"Z1K1", "Z7"}, {"Z7K1", "Z801"}, {"Z801K1", std::string(5000, 'x')}}))));
  EXPECT_FALSE(
      can_run_inline(*engine, options, post("zobject=x", "application/x-www-form-urlencoded")));
  options.max_inline_body_bytes = 0;
  EXPECT_FALSE(can_run_inline(*engine, options,
                              post(call({{"Z1K1", "Z7"}, {"Z7K1", "Z801"}, {"Z801K1", "hi"}}))));
}

TEST_F(RoutesTest, EvaluateAnswersZ22AndHttpErrors) {
  auto ok = handle_evaluate(*engine, options,
                            post(call({{"Z1K1", "Z7"}, {"Z7K1", "Z801"}, {"Z801K1", "hi"}})));
  EXPECT_EQ(ok.status, 200u);
  EXPECT_EQ(nlohmann::json::parse(ok.body)["Z22K1"], "hi");
  EXPECT_EQ(handle_evaluate(*engine, options, post("{not json")).status, 400u);
  EXPECT_EQ(handle_evaluate(*engine, options, post("[1,2]")).status, 400u);
  EXPECT_EQ(handle_evaluate(*engine, options, post("x", "text/plain")).status, 415u);
  options.max_json_depth = 16;
  EXPECT_EQ(
      handle_evaluate(*engine, options, post(std::string(100, '[') + std::string(100, ']'))).status,
      400u);
}

TEST_F(RoutesTest, FormEncodedBodiesAreAccepted) {
  const std::string zobject = R"({"Z1K1":"Z7","Z7K1":"Z801","Z801K1":"a b&c"})";
  std::string encoded;
  for (unsigned char c : zobject) {
    if (std::isalnum(c)) {
      encoded += static_cast<char>(c);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      encoded += buf;
    }
  }
  auto r = handle_evaluate(
      *engine, options,
      post("zobject=" + encoded + "&doValidate=false", "application/x-www-form-urlencoded"));
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(nlohmann::json::parse(r.body)["Z22K1"], "a b&c");
}

}  // namespace
}  // namespace wf::orchestrator
