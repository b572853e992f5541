// Engine-level tests: request shapes, metadata, limits, deadline, object sources, concurrency.
#include "orchestrator/engine/engine.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "fakes.h"

namespace wf::orchestrator::testing {
namespace {

using json = nlohmann::json;

json meta_value(const json& r, const std::string& key) {
  const json& k1 = r["Z22K2"]["K1"];
  for (std::size_t i = 1; i < k1.size(); ++i) {
    if (k1[i]["K1"] == key) return k1[i]["K2"];
  }
  return nullptr;
}

json echo(const json& v) {
  return {{"Z1K1", "Z7"}, {"Z7K1", "Z801"}, {"Z801K1", v}};
}

TEST(Engine, EchoWithMetadata) {
  auto engine = make_engine({}, nullptr, nullptr);
  json r = engine->evaluate({{"zobject", echo("hi")}}, CallContext{});
  EXPECT_EQ(r["Z22K1"], "hi");
  EXPECT_EQ(meta_value(r, "implementationId"), json({{"Z1K1", "Z6"}, {"Z6K1", "Z901"}}));
  EXPECT_EQ(meta_value(r, "implementationType"), "BuiltIn");
  for (const char* k :
       {"orchestrationMemoryUsage", "orchestrationCpuUsage", "orchestrationStartTime",
        "orchestrationEndTime", "orchestrationDuration", "orchestrationHostname"}) {
    EXPECT_TRUE(meta_value(r, k).is_string()) << k;
  }
  EXPECT_NE(meta_value(r, "orchestrationMemoryUsage").get<std::string>().find(" MiB"),
            std::string::npos);
  EXPECT_EQ(meta_value(r, "orchestrationStartTime").get<std::string>().back(), 'Z');
}

TEST(Engine, MissingZobjectGivesVoidWithoutError) {
  auto engine = make_engine({}, nullptr, nullptr);
  json r = engine->evaluate(json::object(), CallContext{});
  EXPECT_EQ(r["Z22K1"], "Z24");
  EXPECT_TRUE(meta_value(r, "errors").is_null());
  EXPECT_TRUE(meta_value(r, "orchestrationDuration").is_string());
}

TEST(Engine, Z5InputIsReturnedAsError) {
  auto engine = make_engine({}, nullptr, nullptr);
  json z5 = {{"Z1K1", "Z5"}, {"Z5K1", "Z500"}, {"Z5K2", "boom"}};
  json r = engine->evaluate({{"zobject", z5}}, CallContext{});
  EXPECT_EQ(meta_value(r, "errors"), z5);
}

TEST(Engine, NotACallIsZ539) {
  auto engine = make_engine({}, nullptr, nullptr);
  json r = engine->evaluate({{"zobject", "hello"}}, CallContext{});
  EXPECT_EQ(meta_value(r, "errors")["Z5K1"], "Z539");
}

TEST(Engine, DeadlineGivesZ558Shape) {
  auto engine = make_engine({}, nullptr, nullptr);
  CallContext ctx;
  ctx.deadline = Clock::now() - std::chrono::milliseconds(1);
  json r = engine->evaluate({{"zobject", echo("hi")}}, ctx);
  EXPECT_EQ(r["Z1K1"], json({{"Z1K1", "Z9"}, {"Z9K1", "Z22"}}));  // normal form
  EXPECT_NE(r.dump().find("Function call timed out"), std::string::npos);
  EXPECT_NE(r.dump().find("Z558"), std::string::npos);
}

// A function that calls itself forever: Z10000(x) = Z10000(x).
json looping_wiki() {
  json z8 = {
      {"Z1K1", "Z8"},
      {"Z8K1", json::array({"Z17",
                            {{"Z1K1", "Z17"},
                             {"Z17K1", "Z1"},
                             {"Z17K2", "Z10000K1"},
                             {"Z17K3", {{"Z1K1", "Z12"}, {"Z12K1", json::array({"Z11"})}}}}})},
      {"Z8K2", "Z1"},
      {"Z8K3", json::array({"Z20"})},
      {"Z8K4", json::array({"Z14",
                            {{"Z1K1", "Z14"},
                             {"Z14K1", "Z10000"},
                             {"Z14K2",
                              {{"Z1K1", "Z7"},
                               {"Z7K1", "Z10000"},
                               {"Z10000K1", {{"Z1K1", "Z18"}, {"Z18K1", "Z10000K1"}}}}}}})},
      {"Z8K5", "Z10000"}};
  return {
      {"Z10000", {{"Z1K1", "Z2"}, {"Z2K1", {{"Z1K1", "Z6"}, {"Z6K1", "Z10000"}}}, {"Z2K2", z8}}}};
}

TEST(Engine, CallDepthLimitEndsInZ5) {
  EngineOptions options;
  options.max_call_depth = 50;
  auto engine = make_engine(options, std::make_shared<FakeWiki>(looping_wiki(), ""), nullptr);
  json r = engine->evaluate({{"zobject", {{"Z1K1", "Z7"}, {"Z7K1", "Z10000"}, {"Z10000K1", "x"}}}},
                            CallContext{});
  EXPECT_NE(meta_value(r, "errors").dump().find("Call depth limit"), std::string::npos) << r.dump();
}

TEST(Engine, StepLimitEndsInZ5) {
  EngineOptions options;
  options.max_steps = 200;
  auto engine = make_engine(options, std::make_shared<FakeWiki>(looping_wiki(), ""), nullptr);
  json r = engine->evaluate({{"zobject", {{"Z1K1", "Z7"}, {"Z7K1", "Z10000"}, {"Z10000K1", "x"}}}},
                            CallContext{});
  EXPECT_NE(meta_value(r, "errors").dump().find("step limit"), std::string::npos) << r.dump();
}

// looping_wiki's Z10000 with a second implementation after the endless composition: one that
// echoes its argument, or (`code`) Python code.
json looping_wiki_with_fallback(bool code) {
  json wiki = looping_wiki();
  json& impls = wiki["Z10000"]["Z2K2"]["Z8K4"];
  json second = {{"Z1K1", "Z14"}, {"Z14K1", "Z10000"}};
  if (code) {
    second["Z14K3"] = {{"Z1K1", "Z16"}, {"Z16K1", "Z610"}, {"Z16K2", "def Z10000(Z10000K1): ..."}};
  } else {
    second["Z14K2"] = {
        {"Z1K1", "Z7"}, {"Z7K1", "Z801"}, {"Z801K1", {{"Z1K1", "Z18"}, {"Z18K1", "Z10000K1"}}}};
  }
  impls.push_back(second);
  wiki["Z610"] = {{"Z1K1", "Z2"},
                  {"Z2K1", {{"Z1K1", "Z6"}, {"Z6K1", "Z610"}}},
                  {"Z2K2", {{"Z1K1", "Z61"}, {"Z61K1", "python-3"}}}};
  return wiki;
}

json call_z10000(const json& arg) {
  return {{"zobject", {{"Z1K1", "Z7"}, {"Z7K1", "Z10000"}, {"Z10000K1", arg}}}};
}

TEST(Engine, CallDepthLimitFallsBackToTheNextImplementation) {
  EngineOptions options;
  options.max_call_depth = 50;
  auto engine = make_engine(
      options, std::make_shared<FakeWiki>(looping_wiki_with_fallback(false), ""), nullptr);
  json r = engine->evaluate(call_z10000("x"), CallContext{});
  EXPECT_EQ(r["Z22K1"], "x") << r.dump();
  EXPECT_TRUE(meta_value(r, "errors").is_null()) << r.dump();
}

TEST(Engine, StepLimitFallsBackToTheNextImplementationWithItsStepsGivenBack) {
  EngineOptions options;
  options.max_steps = 300;
  auto engine = make_engine(
      options, std::make_shared<FakeWiki>(looping_wiki_with_fallback(false), ""), nullptr);
  json r = engine->evaluate(call_z10000("x"), CallContext{});
  EXPECT_EQ(r["Z22K1"], "x") << r.dump();
  EXPECT_TRUE(meta_value(r, "errors").is_null()) << r.dump();
}

TEST(Engine, FallbackAppliesOnlyToCompositionsThatHaveAnotherImplementation) {
  // The endless composition last (after the echo) is never reached; alone it still fails.
  json wiki = looping_wiki_with_fallback(false);
  json& impls = wiki["Z10000"]["Z2K2"]["Z8K4"];
  std::swap(impls[1], impls[2]);
  EngineOptions options;
  options.max_call_depth = 50;
  auto engine = make_engine(options, std::make_shared<FakeWiki>(wiki, ""), nullptr);
  EXPECT_EQ(engine->evaluate(call_z10000("x"), CallContext{})["Z22K1"], "x");
  impls.erase(impls.begin() + 1);  // only the endless composition is left
  auto alone = make_engine(options, std::make_shared<FakeWiki>(wiki, ""), nullptr);
  json r = alone->evaluate(call_z10000("x"), CallContext{});
  EXPECT_NE(meta_value(r, "errors").dump().find("Call depth limit"), std::string::npos) << r.dump();
}

TEST(Engine, IdenticalCodeCallsOfOneRequestReachTheEvaluatorOnce) {
  // Z10000's composition fails at the call depth, then its code runs: Z866 (string equality) of
  // two identical calls of it makes one evaluator call; a different argument makes another.
  json stub = {
      {"calls", json::array({{{"function", "Z10000"},
                              {"args", nullptr},
                              {"body", {{"Z1K1", "Z22"}, {"Z22K1", "same"}, {"Z22K2", "Z24"}}}}})}};
  auto evaluator = std::make_shared<FakeEvaluator>(stub);
  EngineOptions options;
  options.max_call_depth = 20;
  auto engine = make_engine(
      options, std::make_shared<FakeWiki>(looping_wiki_with_fallback(true), ""), evaluator);
  auto z10000 = [](const char* arg) { return call_z10000(arg)["zobject"]; };
  json twice = {{"Z1K1", "Z7"}, {"Z7K1", "Z866"}, {"Z866K1", z10000("a")}, {"Z866K2", z10000("a")}};
  json r = engine->evaluate({{"zobject", twice}}, CallContext{});
  EXPECT_EQ(r["Z22K1"], json({{"Z1K1", "Z40"}, {"Z40K1", "Z41"}})) << r.dump();
  EXPECT_EQ(evaluator->calls(), 1);
  json other = twice;
  other["Z866K2"] = z10000("b");
  r = engine->evaluate({{"zobject", other}}, CallContext{});
  EXPECT_EQ(r["Z22K1"], json({{"Z1K1", "Z40"}, {"Z40K1", "Z41"}})) << r.dump();
  EXPECT_EQ(evaluator->calls(), 3);  // a new request remembers nothing
}

TEST(Engine, ZObjectDepthLimit) {
  EngineOptions options;
  options.max_zobject_depth = 10;
  auto engine = make_engine(options, nullptr, nullptr);
  json v = "x";
  for (int i = 0; i < 20; ++i) v = json::array({"Z1", v});
  json r = engine->evaluate({{"zobject", echo(v)}}, CallContext{});
  EXPECT_EQ(meta_value(r, "errors")["Z5K1"], "Z502");
}

// prepare_call checks the request's depth and its MIXED schema in one walk when both pass, and
// runs the two checks in order otherwise: each limit at its edge, each schema error, and the
// depth error before the schema error when a request has both.
TEST(Engine, ZObjectDepthAndSchemaChecksAtTheirEdges) {
  EngineOptions options;
  options.max_zobject_depth = 10;
  auto engine = make_engine(options, nullptr, nullptr);
  // echo(v) is one level more than v; v of n lists around "x" is n + 1 levels deep.
  const auto nested = [](int lists, json inner) {
    for (int i = 0; i < lists; ++i) inner = json::array({"Z1", inner});
    return inner;
  };
  // The whole answer as text: a refused request's metadata holds its error.
  const auto errors = [&](const json& zobject) {
    return engine->evaluate({{"zobject", zobject}}, CallContext{}).dump();
  };
  const std::string deep = "deeper than the limit of 10";
  const std::string at_limit = errors(echo(nested(8, "x")));  // 10 levels: at the limit
  EXPECT_EQ(at_limit.find("\"errors\""), std::string::npos) << at_limit;
  EXPECT_NE(errors(echo(nested(9, "x"))).find(deep), std::string::npos);  // 11 levels
  const json no_type = {{"Z6K1", "x"}};
  const json bad_key = {{"Z1K1", "Z6"}, {"Z6K1", "x"}, {"not a key", "y"}};
  const json number = {{"Z1K1", "Z6"}, {"Z6K1", 7}};
  const std::pair<json, const char*> invalid[] = {
      {no_type, "Z523"}, {bad_key, "Z525"}, {number, "Z521"}, {json::object(), "Z523"}};
  for (const auto& [value, code] : invalid) {
    SCOPED_TRACE(value.dump());
    const std::string shallow = errors(echo(nested(2, value)));
    EXPECT_NE(shallow.find("Z502"), std::string::npos) << shallow;
    EXPECT_NE(shallow.find(code), std::string::npos) << shallow;
    EXPECT_EQ(shallow.find(deep), std::string::npos) << shallow;
    const std::string both = errors(echo(nested(12, value)));
    EXPECT_NE(both.find(deep), std::string::npos) << both;
    EXPECT_EQ(both.find(code), std::string::npos) << both;
  }
}

TEST(Engine, WikiTransportFailureIsZ507WrappingZ500) {
  auto engine = make_engine({}, std::make_shared<FakeWiki>(json::object(), ""), nullptr);
  json r = engine->evaluate({{"zobject", echo("Z123456")}}, CallContext{});
  std::string err = meta_value(r, "errors").dump();
  EXPECT_NE(err.find("Z507"), std::string::npos);
  EXPECT_NE(err.find("Z500"), std::string::npos);
}

TEST(Engine, ObjectsDirectoryServesObjects) {
  auto dir = std::filesystem::temp_directory_path() / "wf_engine_objects_test";
  std::filesystem::create_directories(dir);
  {
    std::ofstream out(dir / "Z100005.json");
    out << json({{"Z1K1", "Z2"},
                 {"Z2K1", {{"Z1K1", "Z6"}, {"Z6K1", "Z100005"}}},
                 {"Z2K2", "stored"}})
               .dump();
  }
  EngineOptions options;
  options.objects_dir = dir;
  auto engine = make_engine(options, nullptr, nullptr);
  json r = engine->evaluate({{"zobject", echo("Z100005")}}, CallContext{});
  EXPECT_EQ(r["Z22K1"], "stored") << r.dump();
  std::filesystem::remove_all(dir);
}

TEST(Engine, CacheServesRepeatedFetchesAndTtlZeroDisablesIt) {
  json wiki = {{"Z100005",
                {{"Z1K1", "Z2"}, {"Z2K1", {{"Z1K1", "Z6"}, {"Z6K1", "Z100005"}}}, {"Z2K2", "v1"}}}};
  auto fake = std::make_shared<FakeWiki>(wiki, "");
  auto cached = make_engine({}, fake, nullptr);
  cached->evaluate({{"zobject", echo("Z100005")}}, CallContext{});
  cached->evaluate({{"zobject", echo("Z100005")}}, CallContext{});
  EXPECT_EQ(fake->requests().size(), 1u);
  auto fake2 = std::make_shared<FakeWiki>(wiki, "");
  EngineOptions off;
  off.cache_ttl = std::chrono::milliseconds(0);
  auto uncached = make_engine(off, fake2, nullptr);
  uncached->evaluate({{"zobject", echo("Z100005")}}, CallContext{});
  uncached->evaluate({{"zobject", echo("Z100005")}}, CallContext{});
  EXPECT_EQ(fake2->requests().size(), 2u);
}

TEST(Engine, CodeWithoutEvaluatorIsZ507) {
  const json z8 = code_function("Z10001", "lua", "x");
  auto engine = make_engine({}, nullptr, std::make_shared<FakeEvaluator>(json::object()));
  json r = engine->evaluate({{"zobject", {{"Z1K1", "Z7"}, {"Z7K1", z8}}}}, CallContext{});
  EXPECT_NE(meta_value(r, "errors").dump().find("No evaluator is available for lua"),
            std::string::npos)
      << r.dump();
}

// Without a code runner at all, the same error names the language.
TEST(Engine, CodeWithoutACodeRunnerIsZ507NamingTheLanguage) {
  const json z8 = code_function("Z10001", "python-3", "def Z10001():\n    return 'x'");
  auto engine = make_engine({}, nullptr, nullptr);
  json r = engine->evaluate({{"zobject", {{"Z1K1", "Z7"}, {"Z7K1", z8}}}}, CallContext{});
  EXPECT_NE(meta_value(r, "errors").dump().find("No evaluator is available for python-3"),
            std::string::npos)
      << r.dump();
}

TEST(Engine, ConcurrentRequests) {
  auto engine = make_engine({}, nullptr, nullptr);
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        std::string s = "v" + std::to_string(t) + "_" + std::to_string(i);
        json r = engine->evaluate({{"zobject", echo(s)}, {"doValidate", true}}, CallContext{});
        if (r["Z22K1"] == s) ++ok;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok.load(), 200);
}

}  // namespace
}  // namespace wf::orchestrator::testing
