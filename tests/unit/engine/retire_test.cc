// Retiring a fiber parked on a top-level code call (fiber.h, await_retirable): the evaluation
// gives its fiber back while the evaluator works and runs again once it has answered, taking
// that answer. Every case runs the same requests through the fiber path (retirement off) and
// through retirement, and compares the envelopes (timings aside), the evaluator calls, and the
// cancellation counts.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "fakes.h"
#include "orchestrator/engine/engine.h"
#include "orchestrator/engine/engine_metrics.h"
#include "orchestrator/engine/fiber.h"
#include "wf/obs/log.h"
#include "wf/obs/metrics.h"
#include "wf/zobject/zobject.h"

namespace wf::orchestrator {
namespace {

using json = nlohmann::json;
using Ms = std::chrono::milliseconds;

using wf::orchestrator::testing::z2;
// Z10001(String) -> `returns`, implemented by Z10002 then Z10003 (both Python, of the given code).
json function(const std::string& returns = "Z6") {
  json arg = {{"Z1K1", "Z17"},
              {"Z17K1", "Z6"},
              {"Z17K2", "Z10001K1"},
              {"Z17K3", {{"Z1K1", "Z12"}, {"Z12K1", json::array({"Z11"})}}}};
  return z2("Z10001", {{"Z1K1", "Z8"},
                       {"Z8K1", json::array({"Z17", arg})},
                       {"Z8K2", returns},
                       {"Z8K3", json::array({"Z20"})},
                       {"Z8K4", json::array({"Z14", "Z10002", "Z10003"})},
                       {"Z8K5", "Z10001"}});
}

json python(const std::string& zid, const std::string& code) {
  return z2(
      zid,
      {{"Z1K1", "Z14"},
       {"Z14K1", "Z10001"},
       {"Z14K3",
        {{"Z1K1", "Z16"}, {"Z16K1", {{"Z1K1", "Z61"}, {"Z61K1", "python-3"}}}, {"Z16K2", code}}}});
}

class Wiki : public ObjectFetcher {
 public:
  explicit Wiki(std::map<std::string, json> objects) {
    for (auto& [zid, z] : objects) objects_[zid] = z.dump();
  }
  void fetch(const std::vector<std::string>& zids, const CallContext&, Done done) override {
    std::map<std::string, std::string> out;
    for (const auto& z : zids) {
      ++fetched_;
      if (auto it = objects_.find(z); it != objects_.end()) out[z] = it->second;
    }
    done(std::move(out));
  }
  int fetched() const { return fetched_.load(); }

 private:
  std::map<std::string, std::string> objects_;
  std::atomic<int> fetched_{0};
};

double retired_total() {
  return engine_detail::metrics().fibers_retired.Value();
}

// Answers each call `delay` after it came, from a thread of its own, by the call's code: "fail"
// gives an evaluator failure, "boolean" a Boolean value, anything else "<code>|<argument>" with
// evaluator metadata. A call whose cancellation is raised meanwhile gets a failure at once, as
// the HTTP client aborts its request. A call with a deadline is answered only once the deadline
// has passed (it passes while the call is at the evaluator, however slow the machine). The call
// marked by hold_next_until_retired() is answered only once a fiber has been retired after the
// mark: the retirement comes before the answer however late the sweeper runs (on a loaded
// machine it missed a 60 ms answer, 1 run in 5). A generous bound (kHoldBound) keeps a test that
// never retires from hanging: it then fails on its retirement count.
class SlowRunner : public CodeRunner {
 public:
  explicit SlowRunner(Ms delay) : delay_(delay), thread_([this] { deliver(); }) {}
  ~SlowRunner() override {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  void run(const CodeCall& call, const CallContext& ctx, Done done) override {
    ++calls_;
    const auto now = std::chrono::steady_clock::now();
    auto due = now + delay_;
    if (ctx.deadline != Clock::time_point::max()) due = std::max(due, ctx.deadline);
    std::lock_guard lock(mu_);
    pending_.push_back({due, std::exchange(hold_, std::nullopt), now + kHoldBound, answer(call),
                        ctx.cancel, std::move(done)});
    cv_.notify_all();
  }
  int calls() const { return calls_.load(); }

  // The next call is answered only once retired_total() exceeds `retired_before`.
  void hold_next_until_retired(double retired_before) {
    std::lock_guard lock(mu_);
    hold_ = retired_before;
  }

  static constexpr std::chrono::seconds kHoldBound{30};

 private:
  static Result answer(const CodeCall& call) {
    if (call.code == "fail") {
      return std::unexpected(CodeRunError{CodeRunError::Kind::kFailed,
                                          "Function evaluation failed with status 500: {}"});
    }
    json value;
    if (call.code == "boolean") {
      value = {{"Z1K1", "Z40"}, {"Z40K1", "Z41"}};
    } else {
      const json arg = call.arguments.value("Z10001K1", json());
      const std::string text = arg.is_object() ? arg.value("Z6K1", "") : arg.dump();
      value = {{"Z1K1", "Z6"}, {"Z6K1", call.code + "|" + text}};
    }
    json envelope = zobject::make_envelope(value, zobject::empty_metadata_map());
    zobject::envelope_set_metadata(envelope, "executionCpuUsage", zobject::z6("7 ms"));
    zobject::envelope_set_metadata(envelope, "evaluatorId", zobject::z6("fake-1"));
    return CodeAnswer(std::move(envelope));
  }

  struct Pending {
    std::chrono::steady_clock::time_point due;
    std::optional<double> retired_before;  // held until a retirement (hold_next_until_retired)
    std::chrono::steady_clock::time_point hold_bound;
    Result result;
    std::shared_ptr<Cancellation> cancel;
    Done done;
  };

  void deliver() {
    std::unique_lock lock(mu_);
    while (!stopping_ || !pending_.empty()) {
      const auto now = std::chrono::steady_clock::now();
      for (auto it = pending_.begin(); it != pending_.end();) {
        const bool cancelled = it->cancel && it->cancel->cancelled();
        const bool held =
            it->retired_before && retired_total() <= *it->retired_before && now < it->hold_bound;
        if ((it->due > now || held) && !cancelled) {
          ++it;
          continue;
        }
        Pending p = std::move(*it);
        it = pending_.erase(it);
        if (cancelled) {
          p.result = std::unexpected(
              CodeRunError{CodeRunError::Kind::kFailed, "request to evaluator failed: cancelled"});
        }
        lock.unlock();
        p.done(std::move(p.result));
        lock.lock();
        it = pending_.begin();
      }
      cv_.wait_for(lock, Ms(1));
    }
  }

  Ms delay_;
  std::atomic<int> calls_{0};
  std::optional<double> hold_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Pending> pending_;
  bool stopping_ = false;
  std::thread thread_;
};

// Object-cache lookups counted so far (wf_orchestrator_object_cache_{hits,misses}_total).
double cache_lookups_total() {
  return engine_detail::metrics().cache_hits.Value() +
         engine_detail::metrics().cache_misses.Value();
}

// Evaluations whose steps were counted (wf_orchestrator_evaluation_steps), and calls whose cost
// was reported (wf_orchestrator_function_calls_total, every function and outcome): once per
// request, by the run that answers it.
double steps_observed() {
  return static_cast<double>(engine_detail::metrics().steps.Collect().histogram.sample_count);
}

double calls_reported() {
  const std::string text = obs::render_metrics();
  const std::regex series("wf_orchestrator_function_calls_total\\{[^}]*\\} (\\S+)");
  double n = 0;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), series);
       it != std::sregex_iterator(); ++it) {
    n += std::stod((*it)[1].str());
  }
  return n;
}

double cancelled_total() {
  double n = 0;
  for (auto* c : engine_detail::metrics().cancelled) {
    if (c != nullptr) n += c->Value();
  }
  return n;
}

// The envelope without the figures that differ between any two runs: the orchestration* keys
// (times, durations, CPU, memory).
json without_timings(json envelope) {
  json& meta = envelope["Z22K2"];
  if (!meta.is_object() || !meta.contains("K1")) return envelope;
  json kept = json::array();
  for (const auto& pair : meta["K1"]) {
    if (pair.is_object() && pair.contains("K1") && pair["K1"].is_string() &&
        pair["K1"].get<std::string>().starts_with("orchestration")) {
      continue;
    }
    kept.push_back(pair);
  }
  meta["K1"] = kept;
  return envelope;
}

std::string meta_value(const json& envelope, const std::string& key) {
  const json& k1 = envelope["Z22K2"]["K1"];
  for (std::size_t i = 1; i < k1.size(); ++i) {
    if (k1[i]["K1"] == key) return k1[i]["K2"].is_string() ? k1[i]["K2"].get<std::string>() : "";
  }
  return "";
}

bool has_errors(const json& envelope) {
  const json& k1 = envelope["Z22K2"]["K1"];
  for (std::size_t i = 1; i < k1.size(); ++i) {
    if (k1[i]["K1"] == "errors") return true;
  }
  return false;
}

struct Outcome {
  std::vector<json> envelopes;  // one per request, in order
  int evaluator_calls = 0;
  int wiki_fetches = 0;
  double retired = 0;
  double cancelled = 0;
  double cache_lookups = 0;  // object-cache lookups counted
  double steps_observed = 0;
  double calls_reported = 0;
};

struct Scenario {
  std::map<std::string, json> objects;
  std::vector<json> requests;  // evaluate request bodies, run one after the other
  Ms delay{60};
  Ms deadline{0};  // 0: none; else the evaluator answers once it has passed
  // The caller goes once its call is at the evaluator (and, in a retiring run, retired).
  bool hang_up = false;
  std::size_t result_cache_bytes = 0;
  // Each request's work writes a log line before and after its evaluation (the caller captures).
  bool log_lines = false;
};

// The scenario's requests, each evaluated on a replayable fiber as routes.cc starts them, by a
// fresh engine that retires parked calls after `retire_after` (0: never). `retiring`: the first
// evaluator call of each request is answered only once it has been retired (SlowRunner's hold).
Outcome run_scenario(const Scenario& s, Ms retire_after, bool retiring = false) {
  auto wiki = std::make_shared<Wiki>(s.objects);
  auto runner = std::make_shared<SlowRunner>(s.delay);
  EngineOptions options;
  options.retire_parked_after = retire_after;
  options.result_cache_bytes = s.result_cache_bytes;
  // No "slow call" lines: they come when a request takes over a second, which a loaded machine
  // decides (TheReplayDoesNotWriteTheFirstRunsLogLinesAgain counts the lines with the request id:
  // under valgrind the fiber run had one more).
  options.slow_call = Ms(0);
  auto engine = make_engine(options, wiki, runner);
  Outcome out;
  const double retired_before = retired_total();
  const double cancelled_before = cancelled_total();
  const double lookups_before = cache_lookups_total();
  const double steps_before = steps_observed();
  const double reported_before = calls_reported();
  for (const json& request : s.requests) {
    CallContext ctx;
    ctx.request_id = "req-1";
    ctx.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    if (s.deadline.count() > 0) ctx.deadline = Clock::now() + s.deadline;
    ctx.cancel = Cancellation::make();
    std::promise<json> answer;
    std::atomic<int> answered{0};
    const double retired_so_far = retired_total();
    const int calls_so_far = runner->calls();
    if (retiring) runner->hold_next_until_retired(retired_so_far);
    engine->spawn(
        ctx,
        [&, ctx] {
          if (s.log_lines)
            obs::log_event(spdlog::level::info, "scenario: before the evaluation", {});
          json r = engine->evaluate(request, ctx);
          if (s.log_lines)
            obs::log_event(spdlog::level::info, "scenario: after the evaluation", {});
          if (answered.fetch_add(1) == 0) answer.set_value(std::move(r));
        },
        true);
    auto future = answer.get_future();
    if (s.hang_up) {
      // Polled, with the runner's bound: the engine tells nobody when a call retires.
      const auto until = std::chrono::steady_clock::now() + SlowRunner::kHoldBound;
      while ((runner->calls() == calls_so_far || (retiring && retired_total() <= retired_so_far)) &&
             std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(Ms(1));
      }
      ctx.cancel->cancel(Cancellation::Reason::kClientGone);
    }
    EXPECT_EQ(future.wait_for(std::chrono::seconds(30)), std::future_status::ready);
    out.envelopes.push_back(future.get());
    EXPECT_EQ(answered.load(), 1);
  }
  engine.reset();  // waits for the fibers
  out.evaluator_calls = runner->calls();
  out.wiki_fetches = wiki->fetched();
  out.retired = retired_total() - retired_before;
  out.cancelled = cancelled_total() - cancelled_before;
  out.cache_lookups = cache_lookups_total() - lookups_before;
  out.steps_observed = steps_observed() - steps_before;
  out.calls_reported = calls_reported() - reported_before;
  return out;
}

// Runs `s` both ways and checks that the answers are the same; returns the retiring run.
// `same_counts`: the steps and cost reports too.
Outcome same_both_ways(const Scenario& s, bool same_counts = true) {
  const Outcome fiber = run_scenario(s, Ms(0));
  const Outcome retiring = run_scenario(s, Ms(1), true);
  EXPECT_EQ(fiber.retired, 0);
  EXPECT_EQ(retiring.evaluator_calls, fiber.evaluator_calls);
  EXPECT_EQ(retiring.cancelled, fiber.cancelled);
  // The replay's object-cache lookups repeat the first run's: counted once.
  EXPECT_EQ(retiring.cache_lookups, fiber.cache_lookups);
  // The retired run returns to its top without counting anything (fiber.h,
  // await_staged_or_return): its replay counts the request once.
  if (same_counts) {
    EXPECT_EQ(retiring.steps_observed, fiber.steps_observed);
    EXPECT_EQ(retiring.calls_reported, fiber.calls_reported);
  } else {
    EXPECT_EQ(retiring.steps_observed, 0);
    EXPECT_EQ(retiring.calls_reported, 0);
  }
  EXPECT_EQ(retiring.envelopes.size(), fiber.envelopes.size());
  for (std::size_t i = 0; i < fiber.envelopes.size() && i < retiring.envelopes.size(); ++i) {
    EXPECT_EQ(without_timings(retiring.envelopes[i]), without_timings(fiber.envelopes[i]))
        << "request " << i << "\nretiring: " << retiring.envelopes[i].dump()
        << "\nfiber: " << fiber.envelopes[i].dump();
  }
  return retiring;
}

json call(const std::string& arg, bool use_cache = true) {
  json r = {{"zobject", {{"Z1K1", "Z7"}, {"Z7K1", "Z10001"}, {"Z10001K1", arg}}}};
  if (!use_cache) r["resultCache"] = false;
  return r;
}

std::map<std::string, json> objects(const std::string& first, const std::string& second,
                                    const std::string& returns = "Z6") {
  return {{"Z10001", function(returns)},
          {"Z10002", python("Z10002", first)},
          {"Z10003", python("Z10003", second)}};
}

TEST(RetireParked, AnAnswerAfterRetirementIsTheFiberPathsEnvelope) {
  Scenario s;
  s.objects = objects("first", "second");
  s.requests = {call("a")};
  const Outcome r = same_both_ways(s);
  EXPECT_EQ(r.retired, 1);
  EXPECT_EQ(r.evaluator_calls, 1);  // the replay took the answer: no second round trip
  ASSERT_EQ(r.envelopes.size(), 1u);
  EXPECT_EQ(r.envelopes[0]["Z22K1"], "first|a") << r.envelopes[0].dump();
  // The evaluation's start, CPU and evaluator time are its first run's.
  const std::string duration = meta_value(r.envelopes[0], "orchestrationDuration");
  EXPECT_GE(std::stoi(duration), 60) << duration;
  const std::string waited = meta_value(r.envelopes[0], "orchestrationEvaluatorDuration");
  EXPECT_GE(std::stod(waited), 50.0) << waited;
  EXPECT_EQ(meta_value(r.envelopes[0], "orchestrationEvaluatorCpuUsage"), "7.000 ms");
  EXPECT_EQ(meta_value(r.envelopes[0], "evaluatorId"), "fake-1");
}

TEST(RetireParked, AFailedFirstImplementationFallsBackToTheNextOnce) {
  Scenario s;
  s.objects = objects("fail", "second");
  s.requests = {call("b")};
  const Outcome r = same_both_ways(s);
  EXPECT_EQ(r.evaluator_calls, 2);  // the failed one is not sent again by the replay
  EXPECT_EQ(r.retired, 1);          // only the first call of a request may retire
  EXPECT_EQ(r.envelopes[0]["Z22K1"], "second|b") << r.envelopes[0].dump();
}

TEST(RetireParked, EveryImplementationFailingGivesTheSameErrors) {
  Scenario s;
  s.objects = objects("fail", "fail");
  s.requests = {call("c")};
  const Outcome r = same_both_ways(s);
  EXPECT_EQ(r.evaluator_calls, 2);
  EXPECT_TRUE(has_errors(r.envelopes[0])) << r.envelopes[0].dump();
}

TEST(RetireParked, AValueOfTheWrongTypeIsTheSameError) {
  Scenario s;
  s.objects = objects("boolean", "second");
  s.requests = {call("d")};
  const Outcome r = same_both_ways(s);
  EXPECT_EQ(r.retired, 1);
  EXPECT_TRUE(has_errors(r.envelopes[0])) << r.envelopes[0].dump();
}

TEST(RetireParked, TheResultCacheKeepsAndServesTheAnswerOfAReplay) {
  Scenario s;
  s.objects = objects("first", "second");
  s.requests = {call("e"), call("e"), call("e", false)};
  s.result_cache_bytes = 1u << 20;
  const Outcome r = same_both_ways(s);
  EXPECT_EQ(r.evaluator_calls, 2);  // the second request is a hit, the third opts out
  EXPECT_EQ(r.retired, 2);
  EXPECT_EQ(meta_value(r.envelopes[1], "resultCache"), "local") << r.envelopes[1].dump();
}

TEST(RetireParked, ADeadlineThatPassesWhileRetiredIsTheSameTimeout) {
  Scenario s;
  s.objects = objects("first", "second");
  s.requests = {call("f")};
  // The evaluator answers once the deadline has passed, and once the call has retired (the
  // runner's hold); the deadline leaves a loaded machine time to bring the call to the evaluator.
  s.delay = Ms(0);
  s.deadline = Ms(1500);
  // The replay starts after the deadline and stops before its code call (run_call's first
  // check), so neither run counts the call's steps or reports its cost, where the fiber path
  // does both (as before session 19: the forced unwind counted nothing either).
  const Outcome r = same_both_ways(s, false);
  EXPECT_EQ(r.retired, 1);
  EXPECT_EQ(r.cancelled, 1);
  EXPECT_EQ(r.evaluator_calls, 1);
  EXPECT_NE(r.envelopes[0].dump().find("Z558"), std::string::npos) << r.envelopes[0].dump();
}

TEST(RetireParked, AHangUpWhileRetiredStopsTheCallAsOnItsFiber) {
  Scenario s;
  s.objects = objects("first", "second");
  s.requests = {call("g")};
  s.delay = Ms(30'000);
  s.hang_up = true;  // after the retirement (run_scenario waits for it)
  const Outcome r = same_both_ways(s);
  EXPECT_EQ(r.retired, 1);
  EXPECT_EQ(r.cancelled, 1);
  EXPECT_EQ(r.evaluator_calls, 1);
}

// The lines the evaluation's work writes before its code call are written once, not again by the
// replay; those after the answer (the replay's own) and the engine's are written as on the
// fiber path, with the request's ids.
TEST(RetireParked, TheReplayDoesNotWriteTheFirstRunsLogLinesAgain) {
  struct Lines {
    int before = 0, after = 0, cancelled = 0, with_request_id = 0;
  };
  const auto count = [](const std::string& out) {
    Lines n;
    std::istringstream in(out);
    for (std::string line; std::getline(in, line);) {
      if (line.find("\"scenario: before the evaluation\"") != std::string::npos) ++n.before;
      if (line.find("\"scenario: after the evaluation\"") != std::string::npos) ++n.after;
      if (line.find("evaluation stopped before its answer") != std::string::npos) ++n.cancelled;
      if (line.find("req-1") != std::string::npos) ++n.with_request_id;
    }
    return n;
  };
  obs::install_ecs_logger("retire-test", "0", spdlog::level::info);
  Scenario s;
  s.objects = objects("first", "second");
  s.requests = {call("j"), call("k")};
  s.log_lines = true;
  // Runs a scenario and counts the lines it wrote.
  const auto run_counted = [&](const Scenario& sc, Ms retire_after) {
    ::testing::internal::CaptureStdout();
    Outcome out = run_scenario(sc, retire_after, retire_after.count() > 0);
    return std::pair{std::move(out), count(::testing::internal::GetCapturedStdout())};
  };
  const auto [fiber, on_fiber] = run_counted(s, Ms(0));
  const auto [retiring, replayed] = run_counted(s, Ms(1));
  EXPECT_EQ(fiber.retired, 0);
  EXPECT_EQ(retiring.retired, 2);
  EXPECT_EQ(on_fiber.before, 2);
  EXPECT_EQ(replayed.before, 2);
  EXPECT_EQ(replayed.after, 2);
  EXPECT_EQ(replayed.with_request_id, on_fiber.with_request_id);
  EXPECT_EQ(replayed.with_request_id, 4);

  // A deadline passing while retired: the engine's cancellation line, once.
  Scenario late = s;
  late.requests = {call("l")};
  late.delay = Ms(0);
  late.deadline = Ms(1500);  // as in ADeadlineThatPassesWhileRetired...
  const auto [timed_out, stopped] = run_counted(late, Ms(1));
  EXPECT_EQ(timed_out.retired, 1);
  EXPECT_EQ(stopped.before, 1);
  EXPECT_EQ(stopped.after, 1);
  EXPECT_EQ(stopped.cancelled, 1);
}

TEST(RetireParked, AQuickAnswerIsNotRetiredAndWaitsOnlyOnItsFiber) {
  Scenario s;
  s.objects = objects("first", "second");
  s.requests = {call("h")};
  s.delay = Ms(0);
  const Outcome r = run_scenario(s, Ms(10'000));
  EXPECT_EQ(r.retired, 0);
  EXPECT_EQ(r.envelopes[0]["Z22K1"], "first|h");
}

// A fiber not spawned as replayable (a test's, or one that evaluates twice) is never retired.
TEST(RetireParked, OnlyReplayableFibersAreRetired) {
  auto wiki = std::make_shared<Wiki>(objects("first", "second"));
  auto runner = std::make_shared<SlowRunner>(Ms(40));
  EngineOptions options;
  options.retire_parked_after = Ms(1);
  auto engine = make_engine(options, wiki, runner);
  const double before = retired_total();
  std::promise<json> answer;
  engine->spawn(CallContext{}, [&] { answer.set_value(engine->evaluate(call("i"), {})); });
  auto future = answer.get_future();
  ASSERT_EQ(future.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  EXPECT_EQ(future.get()["Z22K1"], "first|i");
  EXPECT_EQ(retired_total() - before, 0);
  engine.reset();
}

// Many calls parked at once, each retired and replayed: every one gets its own answer.
TEST(RetireParked, ManyRetiredCallsEachGetTheirOwnAnswer) {
  auto wiki = std::make_shared<Wiki>(objects("first", "second"));
  auto runner = std::make_shared<SlowRunner>(Ms(100));
  EngineOptions options;
  options.retire_parked_after = Ms(5);
  auto engine = make_engine(options, wiki, runner);
  constexpr int kCalls = 64;
  std::mutex mu;
  std::set<std::string> values;
  std::atomic<int> answered{0};
  for (int i = 0; i < kCalls; ++i) {
    engine->spawn(
        CallContext{},
        [&, i] {
          json r = engine->evaluate(call(std::to_string(i)), {});
          std::lock_guard lock(mu);
          values.insert(r["Z22K1"].is_string() ? r["Z22K1"].get<std::string>() : r.dump());
          ++answered;
        },
        true);
  }
  for (int i = 0; i < 3000 && answered.load() < kCalls; ++i) std::this_thread::sleep_for(Ms(10));
  ASSERT_EQ(answered.load(), kCalls);
  EXPECT_EQ(runner->calls(), kCalls);
  std::lock_guard lock(mu);
  ASSERT_EQ(values.size(), static_cast<std::size_t>(kCalls));
  for (int i = 0; i < kCalls; ++i) EXPECT_TRUE(values.count("first|" + std::to_string(i)));
  engine.reset();
}

// A retirement unwinds its fiber with a forced unwind (fiber.h): a catch (...) on the way that
// rethrows it while being_retired() lets it through, every destructor on the fiber runs once, and
// the replay takes the answer; being_retired() is false on the replay and off the fiber.
TEST(RetireParked, ARetirementPassesACatchAllThatRethrowsItAndRunsTheFramesDestructors) {
  using namespace engine_detail;
  FiberPoolOptions options;
  options.retire_after = Ms(1);
  auto pool = std::make_unique<FiberPool>(options);
  std::atomic<int> alive{0};  // Held objects on the fiber's frames
  std::atomic<int> made{0};
  std::atomic<int> runs{0};
  std::atomic<int> swallowed{0};
  std::atomic<int> value{0};
  struct Held {
    std::atomic<int>* alive;
    std::atomic<int>* made;
    Held(std::atomic<int>* a, std::atomic<int>* m) : alive(a), made(m) {
      ++*alive;
      ++*made;
    }
    ~Held() { --*alive; }
  };
  std::mutex mu;
  std::function<void(int)> done;  // the evaluator's answer, given by the test
  const RetireTag how{[](const void* tag) -> std::shared_ptr<const void> {
                        return std::make_shared<int>(*static_cast<const int*>(tag));
                      },
                      [](const void* tag, const void* kept) {
                        return *static_cast<const int*>(tag) == *static_cast<const int*>(kept);
                      }};
  std::atomic<int> retiring_at_start{0};
  pool->spawn(
      FiberLogContext{},
      [&] {
        ++runs;
        retiring_at_start += being_retired() ? 1 : 0;
        Held outer(&alive, &made);
        try {
          Held inner(&alive, &made);
          value = await_retirable<int>(
              [&](std::function<void(int)> answer) {
                std::lock_guard lock(mu);
                done = std::move(answer);
              },
              nullptr, std::make_shared<int>(7), how, nullptr);
        } catch (...) {
          if (being_retired()) throw;
          ++swallowed;
        }
      },
      true);
  auto until = [](const std::function<bool()>& ok) {
    for (int i = 0; i < 3000 && !ok(); ++i) std::this_thread::sleep_for(Ms(10));
    return ok();
  };
  // Retired: both objects made and destroyed, the answer not yet given.
  ASSERT_TRUE(until([&] { return made.load() == 2 && alive.load() == 0; }));
  EXPECT_EQ(runs.load(), 1);
  std::function<void(int)> answer;
  {
    std::lock_guard lock(mu);
    answer = std::move(done);
  }
  ASSERT_TRUE(answer);
  answer(42);
  ASSERT_TRUE(until([&] { return pool->live() == 0; }));
  EXPECT_EQ(runs.load(), 2);
  EXPECT_EQ(value.load(), 42);
  EXPECT_EQ(swallowed.load(), 0);
  EXPECT_EQ(retiring_at_start.load(), 0);
  EXPECT_FALSE(being_retired());
  EXPECT_EQ(made.load(), 4);
  EXPECT_EQ(alive.load(), 0);
  EXPECT_EQ(pool->retired(), 1u);
  pool.reset();
}

// The staged form of await_retirable (fiber.h, stage_retirable) off a fiber and on a fiber that
// cannot be retired: a plain wait, whose work starts once, whose tag is never compared (no
// replay), and which returns the answer given from another thread.
TEST(RetireParked, AStagedWaitWhereNothingCanBeRetiredIsAPlainWait) {
  using namespace engine_detail;
  std::atomic<int> compared{0};
  static std::atomic<int>* compared_count = nullptr;
  compared_count = &compared;
  const RetireTag how{[](const void*) -> std::shared_ptr<const void> { return nullptr; },
                      [](const void*, const void*) {
                        ++*compared_count;
                        return true;
                      }};
  std::atomic<int> started{0};
  std::vector<std::thread> threads;  // each answers one wait
  auto wait_for = [&](int answer) {
    stage_retirable(retirable_start<int>(
                        [&, answer](std::function<void(int)> done) {
                          ++started;
                          threads.emplace_back([done = std::move(done), answer] { done(answer); });
                        },
                        nullptr),
                    std::make_shared<int>(1));
    return *static_cast<int*>(await_staged(how, nullptr).get());
  };
  EXPECT_EQ(wait_for(5), 5);  // off a fiber
  EXPECT_EQ(started.load(), 1);

  FiberPoolOptions options;
  options.retire_after = Ms(1);
  auto pool = std::make_unique<FiberPool>(options);
  std::promise<int> got;
  pool->spawn(FiberLogContext{}, [&] { got.set_value(wait_for(9)); });  // not replayable
  auto future = got.get_future();
  ASSERT_EQ(future.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  EXPECT_EQ(future.get(), 9);
  EXPECT_EQ(started.load(), 2);
  EXPECT_EQ(compared.load(), 0);
  EXPECT_EQ(pool->retired(), 0u);
  pool.reset();
  for (auto& t : threads) t.join();
}

}  // namespace
}  // namespace wf::orchestrator
