// Wiki batching (the resolver's prefetch) and the engine's metrics.
#include <gtest/gtest.h>

#include <string>

#include "fakes.h"
#include "orchestrator/engine/engine.h"
#include "wf/obs/metrics.h"

namespace wf::orchestrator::testing {
namespace {

using json = nlohmann::json;
using Requests = std::vector<std::vector<std::string>>;

// Z10001(Z10001K1: String) -> String, implemented by the given implementation references.
json function(const json& impls) {
  json arg = {{"Z1K1", "Z17"},
              {"Z17K1", "Z6"},
              {"Z17K2", "Z10001K1"},
              {"Z17K3", {{"Z1K1", "Z12"}, {"Z12K1", json::array({"Z11"})}}}};
  json list = json::array({"Z14"});
  for (const auto& i : impls) list.push_back(i);
  return z2("Z10001", {{"Z1K1", "Z8"},
                       {"Z8K1", json::array({"Z17", arg})},
                       {"Z8K2", "Z6"},
                       {"Z8K3", json::array({"Z20"})},
                       {"Z8K4", list},
                       {"Z8K5", "Z10001"}});
}

// A composition that echoes the argument.
json echo_composition(const std::string& zid) {
  return z2(
      zid,
      {{"Z1K1", "Z14"},
       {"Z14K1", "Z10001"},
       {"Z14K2",
        {{"Z1K1", "Z7"}, {"Z7K1", "Z801"}, {"Z801K1", {{"Z1K1", "Z18"}, {"Z18K1", "Z10001K1"}}}}}});
}

json call(const json& arg) {
  return {{"zobject", {{"Z1K1", "Z7"}, {"Z7K1", "Z10001"}, {"Z10001K1", arg}}}};
}

EngineOptions no_cache() {
  EngineOptions o;
  o.cache_ttl = std::chrono::milliseconds(0);
  return o;
}

TEST(Batching, ImplementationsOfAFunctionComeInOneRequest) {
  json wiki = {{"Z10001", function(json::array({"Z10002", "Z10003"}))},
               {"Z10002", echo_composition("Z10002")},
               {"Z10003", echo_composition("Z10003")}};
  auto fake = std::make_shared<FakeWiki>(wiki, "");
  auto engine = make_engine(no_cache(), fake, nullptr);
  json r = engine->evaluate(call("hi"), CallContext{});
  EXPECT_EQ(r["Z22K1"], "hi") << r.dump();
  // One by one this is three requests: Z10001, Z10002, Z10003.
  EXPECT_EQ(fake->requests(), (Requests{{"Z10001"}, {"Z10002", "Z10003"}}));
}

TEST(Batching, CalledFunctionsOfTheRequestComeInOneRequest) {
  json wiki = {{"Z10001", function(json::array({"Z10002"}))},
               {"Z10002", echo_composition("Z10002")}};
  // Z10001(Z10001("x")): both calls name Z10001; a second function makes a batch.
  json inner = {{"Z1K1", "Z7"}, {"Z7K1", "Z10001"}, {"Z10001K1", "x"}};
  json outer = {{"Z1K1", "Z7"}, {"Z7K1", "Z10001"}, {"Z10001K1", inner}};
  auto fake = std::make_shared<FakeWiki>(wiki, "");
  auto engine = make_engine(no_cache(), fake, nullptr);
  json r = engine->evaluate({{"zobject", outer}}, CallContext{});
  EXPECT_EQ(r["Z22K1"], "x") << r.dump();
  Requests seen = fake->requests();
  std::size_t fetched = 0;
  for (const auto& req : seen) fetched += req.size();
  EXPECT_EQ(fetched, 2u);  // each object once, whatever the grouping
}

TEST(Batching, FailedBatchFallsBackToSingleFetchesWithTheSameErrors) {
  // Z10009 is unknown: the fake (like run.py's mock) fails the whole batch.
  json wiki = {{"Z10001", function(json::array({"Z10002", "Z10009"}))},
               {"Z10002", echo_composition("Z10002")}};
  auto fake = std::make_shared<FakeWiki>(wiki, "");
  auto engine = make_engine(no_cache(), fake, nullptr);
  json r = engine->evaluate(call("hi"), CallContext{});
  // As without batching: every implementation is resolved, and fetching Z10009 on its own
  // fails in transport, which ends the request as Z507 wrapping Z500.
  std::string text = r.dump();
  EXPECT_NE(text.find("Z507"), std::string::npos) << text;
  EXPECT_NE(text.find("socket hang up"), std::string::npos) << text;
  EXPECT_EQ(fake->requests(), (Requests{{"Z10001"}, {"Z10002", "Z10009"}, {"Z10002"}, {"Z10009"}}));
}

TEST(Batching, ProblemAnswerDoesNotTurnGoodObjectsIntoZ504) {
  // The wiki answers a batch containing a "problem" ZID without any object; the good one must
  // then still be fetched (and found) on its own.
  json wiki = {{"Z10001", function(json::array({"Z10002", "Z10003"}))},
               {"Z10002", echo_composition("Z10002")},
               {"Z10003", echo_composition("Z10003")}};
  auto fake = std::make_shared<FakeWiki>(wiki, "", std::set<std::string>{"Z10003"});
  auto engine = make_engine(no_cache(), fake, nullptr);
  json r = engine->evaluate(call("hi"), CallContext{});
  std::string text = r.dump();
  EXPECT_NE(text.find("Z504"), std::string::npos) << text;    // Z10003: not found
  EXPECT_NE(text.find("Z10003"), std::string::npos) << text;  // ... and only Z10003
  EXPECT_EQ(fake->requests(), (Requests{{"Z10001"}, {"Z10002", "Z10003"}, {"Z10002"}, {"Z10003"}}));
}

double metric(const std::string& text, const std::string& series) {
  // Series are created on first use: one absent from a scrape is still 0.
  auto at = text.find("\n" + series + " ");
  if (at == std::string::npos) return 0;
  return std::stod(text.substr(at + series.size() + 2));
}

TEST(EngineMetrics, CountsImplementationsStepsAndCache) {
  json wiki = {{"Z10001", function(json::array({"Z10002"}))},
               {"Z10002", echo_composition("Z10002")}};
  auto engine = make_engine({}, std::make_shared<FakeWiki>(wiki, ""), nullptr);
  std::string before = wf::obs::render_metrics();
  engine->evaluate(call("hi"), CallContext{});
  engine->evaluate(call("hi"), CallContext{});
  std::string after = wf::obs::render_metrics();
  auto delta = [&](const std::string& s) { return metric(after, s) - metric(before, s); };
  EXPECT_EQ(delta(R"(wf_orchestrator_implementations_total{type="Composition"})"), 2);
  EXPECT_EQ(delta(R"(wf_orchestrator_implementations_total{type="BuiltIn"})"), 2);
  EXPECT_EQ(delta("wf_orchestrator_evaluation_steps_count"), 2);
  EXPECT_GE(delta("wf_orchestrator_object_cache_hits_total"), 2);    // second request
  EXPECT_GE(delta("wf_orchestrator_object_cache_misses_total"), 2);  // first request
  EXPECT_GT(metric(after, "wf_orchestrator_object_cache_bytes"), 0);
  EXPECT_EQ(after.find("Z10001"), std::string::npos);  // never a ZID in a label
}

TEST(EngineMetrics, CountsLimitBreaches) {
  EngineOptions o;
  o.max_zobject_depth = 4;
  auto engine = make_engine(o, nullptr, nullptr);
  json deep = "x";
  for (int i = 0; i < 10; ++i) deep = {{"Z1K1", "Z99"}, {"Z99K1", deep}};
  std::string before = wf::obs::render_metrics();
  engine->evaluate({{"zobject", {{"Z1K1", "Z7"}, {"Z7K1", "Z801"}, {"Z801K1", deep}}}},
                   CallContext{});
  std::string after = wf::obs::render_metrics();
  const std::string series = R"(wf_orchestrator_limit_breaches_total{kind="zobject_depth"})";
  EXPECT_EQ(metric(after, series) - metric(before, series), 1);
}

}  // namespace
}  // namespace wf::orchestrator::testing
