// Cost per call: the breakdown in the Z22 metadata, the bounded per-function metrics and the
// slow-call log line (orchestrator/engine/call_cost.h).
#include "orchestrator/engine/call_cost.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "fakes.h"
#include "orchestrator/engine/engine.h"
#include "wf/obs/log.h"
#include "wf/obs/metrics.h"
#include "wf/zobject/zobject.h"

namespace {

using json = nlohmann::json;
using namespace wf::orchestrator;
using engine_detail::CallCost;
using engine_detail::CallCostReporter;

constexpr const char* kParts[] = {"orchestrationResolveDuration", "orchestrationValidateDuration",
                                  "orchestrationEvaluateDuration", "orchestrationEvaluatorDuration",
                                  "orchestrationCacheDuration"};

using wf::orchestrator::testing::z2;
// Z10001(String) -> String, implemented in Python by Z10002.
std::map<std::string, std::string> python_function() {
  json arg = {{"Z1K1", "Z17"},
              {"Z17K1", "Z6"},
              {"Z17K2", "Z10001K1"},
              {"Z17K3", {{"Z1K1", "Z12"}, {"Z12K1", json::array({"Z11"})}}}};
  json fn = z2("Z10001", {{"Z1K1", "Z8"},
                          {"Z8K1", json::array({"Z17", arg})},
                          {"Z8K2", "Z6"},
                          {"Z8K3", json::array({"Z20"})},
                          {"Z8K4", json::array({"Z14", "Z10002"})},
                          {"Z8K5", "Z10001"}});
  json impl = z2("Z10002", {{"Z1K1", "Z14"},
                            {"Z14K1", "Z10001"},
                            {"Z14K3",
                             {{"Z1K1", "Z16"},
                              {"Z16K1", {{"Z1K1", "Z61"}, {"Z61K1", "python-3"}}},
                              {"Z16K2", "def Z10001(Z10001K1): return Z10001K1"}}}});
  return {{"Z10001", fn.dump()}, {"Z10002", impl.dump()}};
}

// A wiki that takes `delay` to answer each fetch.
class SlowWiki final : public ObjectFetcher {
 public:
  SlowWiki(std::map<std::string, std::string> objects, std::chrono::milliseconds delay)
      : objects_(std::move(objects)), delay_(delay) {}
  void fetch(const std::vector<std::string>& zids, const CallContext&, Done done) override {
    std::this_thread::sleep_for(delay_);
    std::map<std::string, std::string> out;
    for (const auto& z : zids) {
      if (auto it = objects_.find(z); it != objects_.end()) out[z] = it->second;
    }
    done(std::move(out));
  }

 private:
  std::map<std::string, std::string> objects_;
  std::chrono::milliseconds delay_;
};

// An evaluator that takes `delay` and echoes the argument.
class SlowRunner final : public CodeRunner {
 public:
  explicit SlowRunner(std::chrono::milliseconds delay) : delay_(delay) {}
  void run(const CodeCall& call, const CallContext&, Done done) override {
    std::this_thread::sleep_for(delay_);
    done(wf::zobject::make_envelope(call.arguments.value("Z10001K1", json()),
                                    wf::zobject::empty_metadata_map()));
  }

 private:
  std::chrono::milliseconds delay_;
};

json meta(const json& z22, const std::string& key) {
  const json& k1 = z22["Z22K2"]["K1"];
  for (std::size_t i = 1; i < k1.size(); ++i) {
    if (k1[i]["K1"] == key) return k1[i]["K2"];
  }
  return nullptr;
}

// "12.345 ms" -> 12.345; -1 when the key is missing or not in that form.
double ms(const json& z22, const std::string& key) {
  json v = meta(z22, key);
  if (!v.is_string()) return -1;
  const std::string s = v.get<std::string>();
  if (s.size() < 4 || s.substr(s.size() - 3) != " ms") return -1;
  return std::stod(s);
}

json request(const std::string& arg) {
  return {{"zobject", {{"Z1K1", "Z7"}, {"Z7K1", "Z10001"}, {"Z10001K1", arg}}},
          {"doValidate", true},
          {"resultCache", false}};
}

TEST(CallCost, MetadataSaysWhereTheTimeWent) {
  EngineOptions o;
  o.cache_ttl = std::chrono::milliseconds(0);
  auto engine =
      make_engine(o, std::make_shared<SlowWiki>(python_function(), std::chrono::milliseconds(100)),
                  std::make_shared<SlowRunner>(std::chrono::milliseconds(300)));
  json r = engine->evaluate(request("hi"), CallContext{});
  ASSERT_EQ(r["Z22K1"], "hi") << r.dump();
  for (const char* k : kParts) EXPECT_GE(ms(r, k), 0) << k << " in " << r.dump();
  // Two wiki round trips (the function, then its implementation) of 100 ms each, and the
  // evaluator's 300 ms: each part holds its own waits (a sleep never ends early).
  EXPECT_GE(ms(r, "orchestrationResolveDuration"), 198);
  EXPECT_GE(ms(r, "orchestrationEvaluatorDuration"), 298);
  // And no other part holds them again: the parts do not overlap, so together they are no more
  // than the whole request (orchestrationDuration, whole milliseconds rounded down, measured
  // after them). A wait counted twice (validation that kept the wiki's, an interpreter that kept
  // the evaluator's) would exceed it by 100 ms or more, on a machine of any speed.
  double parts = 0;
  for (const char* k : kParts) parts += ms(r, k);
  const double whole = ms(r, "orchestrationDuration");
  ASSERT_GE(whole, 0) << r.dump();
  EXPECT_LE(parts, whole + 1.01) << r.dump();
  EXPECT_EQ(ms(r, "orchestrationCacheDuration"), 0);  // opted out of the result cache
}

// ms_text writes most figures by hand: its text must be fmt's "{:.3f} ms" for every value, the
// halves (where the rounding direction depends on the exact binary value) included.
TEST(CallCost, MillisecondTextIsFmtsFixedThreeDecimals) {
  const auto fmt_text = [](double us) { return fmt::format("{:.3f} ms", us / 1000.0); };
  std::vector<double> values = {
      0,         0.4,       0.5,     0.6,    1,    1.5,    2.5,  12.5, 999.5, 1000, 1234.5678,
      0.0004,    0.0005,    0.0015,  1e6,    1e9,  1e12,   1e15, 1e18, -1,    -0.4, 123456789.0125,
      4.9999999, 5.0000001, 0.125e3, 1e-300, -0.0, -1e-300};
  values.push_back(std::numeric_limits<double>::infinity());
  values.push_back(std::numeric_limits<double>::quiet_NaN());
  values.push_back(std::numeric_limits<double>::max());
  // Every half of a thousandth of a millisecond up to 100 ms: the tie cases fmt decides.
  for (int i = 0; i < 200000; ++i) values.push_back(i * 0.5);
  for (int i = 0; i < 20000; ++i) values.push_back(i * 0.0005);
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> small(0, 10000);
  std::uniform_real_distribution<double> exponent(-6, 13);
  for (int i = 0; i < 200000; ++i) {
    values.push_back(small(rng));
    values.push_back(std::pow(10.0, exponent(rng)));
  }
  int mismatches = 0;
  for (double us : values) {
    if (engine_detail::ms_text(us) != fmt_text(us) && ++mismatches <= 5) {
      ADD_FAILURE() << fmt::format("{:.17g}: {} vs {}", us, engine_detail::ms_text(us),
                                   fmt_text(us));
    }
  }
  EXPECT_EQ(mismatches, 0);
  EXPECT_EQ(engine_detail::ms_text(1234.5), "1.234 ms");  // 1.2345 is below the half in binary
  EXPECT_EQ(engine_detail::ms_text(187.0), "0.187 ms");
}

// CostPairs holds append_cost_metadata's pairs in the same order with the same texts, those
// written by hand and those fmt writes (ties, huge, negative, NaN) alike.
TEST(CallCost, CostPairsAreTheAppendedMetadata) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const std::vector<std::array<double, 6>> figures = {{2, 0, 397.25, 0, 0, 0},
                                                      {0.5, 1e15, -0.0, 1e300, 1234.5, 0},
                                                      {nan, -1, 0.0005, 99999.5, 7, 3},
                                                      {1, 2, 3, 4, 5, 0.0004},
                                                      {1e12, 1e11, 1e-300, 0.4, 0.6, 1e9}};
  for (const auto& f : figures) {
    CallCost cost;
    cost.resolve_us = f[0];
    cost.validate_us = f[1];
    cost.evaluate_us = f[2];
    cost.evaluator_us = f[3];
    cost.cache_us = f[4];
    cost.evaluator_cpu_ms = f[5];
    std::vector<std::pair<std::string, std::string>> appended = {{"implementationType", "x"}};
    engine_detail::append_cost_metadata(cost, appended);
    const engine_detail::CostPairs pairs(cost);
    ASSERT_EQ(pairs.pairs().size() + 1, appended.size());
    ASSERT_EQ(pairs.pairs().size(), f[5] > 0 ? 6u : 5u);
    for (std::size_t i = 0; i < pairs.pairs().size(); ++i) {
      EXPECT_EQ(pairs.pairs()[i].key, appended[i + 1].first);
      EXPECT_EQ(pairs.pairs()[i].text, appended[i + 1].second);
      // Known to need no escape when written by hand (fmt's texts are looked at).
      std::array<char, 32> buf;
      const double us = i < 5 ? f[i] : f[5] * 1000;
      EXPECT_EQ(pairs.pairs()[i].bare_text, !engine_detail::write_ms(buf, us).empty());
      if (i < 5) {
        EXPECT_EQ(pairs.pairs()[i].key, kParts[i]);
      }
    }
    EXPECT_EQ(pairs.pairs()[0].text, engine_detail::ms_text(f[0]));
  }
}

TEST(CallCost, TextAnswerCarriesTheBreakdownAfterTheImplementationKeys) {
  auto engine = make_engine({}, nullptr, nullptr);
  json echo = {{"zobject", {{"Z1K1", "Z7"}, {"Z7K1", "Z801"}, {"Z801K1", "x"}}}};
  bool has_error = true;
  json r = json::parse(engine->evaluate_text(echo, CallContext{}, &has_error));
  EXPECT_FALSE(has_error);
  std::vector<std::string> keys;
  for (const auto& pair : r["Z22K2"]["K1"]) {
    if (pair.is_object() && pair.contains("K2")) keys.push_back(pair["K1"].get<std::string>());
  }
  auto at = [&](const std::string& k) {
    return std::find(keys.begin(), keys.end(), k) - keys.begin();
  };
  for (const char* k : kParts) {
    EXPECT_LT(at(k), static_cast<long>(keys.size())) << k;
    EXPECT_GT(at(k), at("implementationType")) << k;
    EXPECT_LT(at(k), at("orchestrationMemoryUsage")) << k;
  }
}

// An evaluator whose answer carries metadata of its own, as wf-evaluator's does.
class MetadataRunner final : public CodeRunner {
 public:
  void run(const CodeCall& call, const CallContext&, Done done) override {
    json z22 = wf::zobject::make_envelope(call.arguments.value("Z10001K1", json()),
                                          wf::zobject::empty_metadata_map());
    wf::zobject::envelope_set_metadata(z22, "evaluationHostname", wf::zobject::z6("h"));
    wf::zobject::envelope_set_metadata(z22, "executionCpuUsage", wf::zobject::z6("1.500 ms"));
    done(std::move(z22));
  }
};

std::vector<std::string> metadata_keys(const json& z22) {
  std::vector<std::string> keys;
  for (const auto& pair : z22["Z22K2"]["K1"]) {
    if (pair.is_object() && pair.contains("K2")) keys.push_back(pair["K1"].get<std::string>());
  }
  return keys;
}

// The evaluator's keys come first, then the implementation keys, then the orchestration's, in
// the text answer and the JSON one alike (the implementation keys of such a result are written
// by the response writer, not appended to the evaluator's map).
TEST(CallCost, AnEvaluatorsMetadataComesBeforeTheImplementationKeys) {
  auto engine =
      make_engine({}, std::make_shared<SlowWiki>(python_function(), std::chrono::milliseconds(0)),
                  std::make_shared<MetadataRunner>());
  bool has_error = true;
  json text = json::parse(engine->evaluate_text(request("hi"), CallContext{}, &has_error));
  EXPECT_FALSE(has_error);
  json tree = engine->evaluate(request("hi"), CallContext{});
  ASSERT_EQ(text["Z22K1"], "hi") << text.dump();
  const std::vector<std::string> expected_head = {"evaluationHostname", "executionCpuUsage",
                                                  "implementationId", "implementationType"};
  for (const json& r : {text, tree}) {
    const auto keys = metadata_keys(r);
    ASSERT_GE(keys.size(), expected_head.size()) << r.dump();
    EXPECT_EQ(std::vector<std::string>(keys.begin(), keys.begin() + 4), expected_head) << r.dump();
    EXPECT_EQ(std::count(keys.begin(), keys.end(), "implementationType"), 1) << r.dump();
    EXPECT_EQ(meta(r, "implementationId"), wf::zobject::z6("Z10002"));  // reference-like
    EXPECT_EQ(meta(r, "implementationType"), "Evaluated");
    EXPECT_EQ(meta(r, "executionCpuUsage"), "1.500 ms");
  }
  EXPECT_EQ(metadata_keys(text), metadata_keys(tree));
}

TEST(CallCost, ACachedAnswerReportsItsOwnCostNotTheStoredOne) {
  EngineOptions o;
  o.result_cache_bytes = 1u << 20;
  auto engine =
      make_engine(o, std::make_shared<SlowWiki>(python_function(), std::chrono::milliseconds(0)),
                  std::make_shared<SlowRunner>(std::chrono::milliseconds(50)));
  json req = request("hi");
  req.erase("resultCache");
  json first = engine->evaluate(req, CallContext{});
  json second = engine->evaluate(req, CallContext{});
  EXPECT_GE(ms(first, "orchestrationEvaluatorDuration"), 48);
  EXPECT_EQ(meta(second, "resultCache"), "local") << second.dump();
  EXPECT_EQ(ms(second, "orchestrationEvaluatorDuration"), 0);
  EXPECT_GT(ms(second, "orchestrationCacheDuration"), 0);
}

// The distinct values of the `function` label of wf_orchestrator_function_calls_total.
std::set<std::string> function_labels() {
  std::set<std::string> out;
  std::istringstream lines(wf::obs::render_metrics());
  const std::string prefix = "wf_orchestrator_function_calls_total{function=\"";
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind(prefix, 0) != 0) continue;
    out.insert(line.substr(prefix.size(), line.find('"', prefix.size()) - prefix.size()));
  }
  return out;
}

TEST(CallCost, PerFunctionMetricsKeepAtMostTopNFunctionsAndOther) {
  CallCostReporter reporter(3, 0);
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 40; ++i) {
      CallCost c;
      c.function = "Z" + std::to_string(20001 + i);
      c.total_us = 100;
      reporter.report(c);
    }
    CallCost text;
    text.function = "not a ZID {\"x\"}";  // never a label, whatever a caller sends
    reporter.report(text);
  }
  EXPECT_EQ(reporter.label("Z20001"), "Z20001");
  EXPECT_EQ(reporter.label("Z20003"), "Z20003");
  EXPECT_EQ(reporter.label("Z20004"), "other");
  EXPECT_EQ(reporter.label("Z20040"), "other");
  std::set<std::string> labels = function_labels();
  for (const char* l : {"Z20001", "Z20002", "Z20003", "other"}) EXPECT_EQ(labels.count(l), 1u) << l;
  for (const auto& l : labels) {
    EXPECT_TRUE(l == "other" || wf::zobject::is_zid(l)) << l;
    EXPECT_FALSE(l >= "Z20004" && l <= "Z20040" && l.size() == 6) << l;
  }
  const std::string text = wf::obs::render_metrics();
  // Three rounds: the 37 functions beyond the first three and the free text, all as "other".
  EXPECT_NE(text.find("wf_orchestrator_function_calls_total{function=\"other\",outcome=\"ok\"} "),
            std::string::npos);
}

TEST(CallCost, EngineLabelsOnlyTheFirstNFunctionsItServes) {
  EngineOptions o;
  o.function_metrics_top_n = 1;
  auto engine = make_engine(o, nullptr, nullptr);
  auto call = [&](const char* fn, json args) {
    json z = {{"Z1K1", "Z7"}, {"Z7K1", fn}};
    z.update(args);
    return engine->evaluate({{"zobject", z}}, CallContext{});
  };
  call("Z801", {{"Z801K1", "x"}});
  call("Z866", {{"Z866K1", "a"}, {"Z866K2", "a"}});
  call("Z801", {{"Z801K1", "y"}});
  std::set<std::string> labels = function_labels();
  EXPECT_EQ(labels.count("Z801"), 1u);
  EXPECT_EQ(labels.count("Z866"), 0u);
  EXPECT_EQ(labels.count("other"), 1u);
}

TEST(CallCost, SlowCallLogLineIsEcsJsonWithTheBreakdown) {
  wf::obs::install_ecs_logger("call-cost-test", "0", spdlog::level::info);
  CallCostReporter reporter(0, 50'000);  // 50 ms
  CallCost fast;
  fast.function = "Z10001";
  fast.total_us = 49'000;
  CallCost slow = fast;
  slow.total_us = 1'234'000;
  slow.resolve_us = 4'000;
  slow.evaluator_us = 1'200'000;
  slow.evaluate_us = 30'000;
  ::testing::internal::CaptureStdout();
  reporter.report(fast);
  reporter.report(slow);
  spdlog::default_logger()->flush();
  std::istringstream lines(::testing::internal::GetCapturedStdout());
  int slow_lines = 0;
  for (std::string line; std::getline(lines, line);) {
    json j = json::parse(line, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << line;
    if (j.value("event.action", "") != "slow-call") continue;
    ++slow_lines;
    EXPECT_EQ(j.value("log.level", ""), "warn") << line;
    EXPECT_EQ(j.value("wf.function", ""), "Z10001") << line;
    EXPECT_EQ(j.value("event.duration", 0LL), 1'234'000'000LL) << line;
    EXPECT_DOUBLE_EQ(j.value("wf.cost.evaluator_ms", 0.0), 1200.0) << line;
    EXPECT_DOUBLE_EQ(j.value("wf.cost.resolve_ms", 0.0), 4.0) << line;
    EXPECT_DOUBLE_EQ(j.value("wf.cost.evaluate_ms", 0.0), 30.0) << line;
    EXPECT_TRUE(j.contains("wf.cost.validate_ms") && j.contains("wf.cost.cache_ms")) << line;
  }
  EXPECT_EQ(slow_lines, 1);  // the 49 ms call stays under the threshold
}

TEST(CallCost, DebugLogLineCarriesTheBreakdownOfEveryCall) {
  wf::obs::install_ecs_logger("call-cost-test", "0", spdlog::level::debug);
  CallCostReporter reporter(0, 0);
  CallCost c;
  c.function = "Z801";
  c.total_us = 120;
  c.evaluate_us = 100;
  ::testing::internal::CaptureStdout();
  reporter.report(c);
  spdlog::default_logger()->flush();
  const std::string out = ::testing::internal::GetCapturedStdout();
  wf::obs::install_ecs_logger("call-cost-test", "0", spdlog::level::info);
  json j = json::parse(out.substr(0, out.find('\n')), nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << out;
  EXPECT_EQ(j.value("event.action", ""), "call-cost") << out;
  EXPECT_EQ(j.value("log.level", ""), "debug") << out;
  EXPECT_DOUBLE_EQ(j.value("wf.cost.evaluate_ms", 0.0), 0.1) << out;
}

}  // namespace
