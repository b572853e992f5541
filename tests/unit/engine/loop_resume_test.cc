// Evaluations on the event loop (fiber.h, Resume::kLoop; engine.h, EngineOptions::event_loop): a
// fiber whose wait ends on the loop with a light result goes on there, anything else goes on on
// the pool; a slice on the loop is held to its CPU budget; the CPU of every slice, wherever it
// ran, is the fiber's.
#include <gtest/gtest.h>
#include <pthread.h>
#include <time.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <thread>

#include "fakes.h"
#include "orchestrator/engine/engine.h"
#include "orchestrator/engine/engine_metrics.h"
#include "orchestrator/engine/fiber.h"
#include "wf/obs/metrics.h"

namespace wf::orchestrator {
namespace {

using engine_detail::await;
using engine_detail::await_retirable;
using engine_detail::FiberPool;
using engine_detail::RetireTag;
using json = nlohmann::json;

// The running thread, read afresh: pthread_self() is declared const, so within one function the
// compiler may reuse a value read before the fiber moved to another thread (as fiber_test.cc).
[[gnu::noinline, gnu::noipa]] std::thread::id current_thread() {
  return std::this_thread::get_id();
}

// An event loop for tests: one thread running a queue of functions.
class TestLoop final : public EventLoop {
 public:
  TestLoop() = default;
  ~TestLoop() override {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  bool running_in_this_thread() const override { return current_thread() == thread_.get_id(); }
  void defer(std::function<void()> fn) override {
    deferred_.fetch_add(1);
    post(std::move(fn));
  }
  void post(std::function<void()> fn) {
    std::lock_guard lock(mu_);
    queue_.push_back(std::move(fn));
    cv_.notify_one();
  }
  std::thread::id id() const { return thread_.get_id(); }
  int deferred() const { return deferred_.load(); }

 private:
  void run() {
    for (;;) {
      std::function<void()> fn;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;
        fn = std::move(queue_.front());
        queue_.pop_front();
      }
      fn();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::atomic<int> deferred_{0};
  std::thread thread_{[this] { run(); }};  // last: it uses the members above
};

double thread_cpu_us() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) / 1e3;
}

// Keeps the calling thread busy for `us` of its own CPU time; returns the CPU time it used.
double burn_cpu_us(double us) {
  const double start = thread_cpu_us();
  volatile std::uint64_t sink = 0;
  while (thread_cpu_us() - start < us) {
    for (int i = 0; i < 1000; ++i) sink = sink + static_cast<std::uint64_t>(i);
  }
  return thread_cpu_us() - start;
}

bool positive(const int& v) {
  return v > 0;
}

// A fiber started on a loop that waits once: where each part ran.
struct OneWait {
  std::thread::id loop;  // the loop's thread
  std::thread::id before;
  std::thread::id after;
  int value = 0;
  FiberPool::Slices slices;
  int deferred = 0;  // functions deferred on the loop
};

// Starts a fiber on a loop (start_here) that waits with light = positive(); `end_wait` is given
// the loop and the wait's done function, and ends the wait. The pool resumes on the loop when
// `pool_has_loop`.
OneWait run_one_wait(bool pool_has_loop,
                     const std::function<void(TestLoop&, std::function<void(int)>)>& end_wait) {
  auto loop = std::make_shared<TestLoop>();
  OneWait w;
  w.loop = loop->id();
  std::promise<std::function<void(int)>> parked;
  std::promise<void> finished;
  {
    // After what its fibers use: destroyed first.
    FiberPool pool({2, 256u << 10, 4, pool_has_loop ? loop : nullptr});
    loop->post([&] {
      pool.start_here({}, [&] {
        w.before = current_thread();
        w.value = await<int>(
            [&parked](std::function<void(int)> done) { parked.set_value(std::move(done)); },
            &positive);
        w.after = current_thread();
        finished.set_value();
      });
    });
    end_wait(*loop, parked.get_future().get());
    finished.get_future().get();
    w.slices = pool.slices();
  }
  w.deferred = loop->deferred();
  return w;
}

// Ends a wait on the loop's thread with `value`.
std::function<void(TestLoop&, std::function<void(int)>)> on_loop(int value) {
  return [value](TestLoop& loop, std::function<void(int)> done) {
    loop.post([done = std::move(done), value] { done(value); });
  };
}

TEST(LoopResume, ALightResultOnTheLoopGoesOnThere) {
  const OneWait w = run_one_wait(true, on_loop(7));
  EXPECT_EQ(w.value, 7);
  EXPECT_EQ(w.before, w.loop);
  EXPECT_EQ(w.after, w.loop);
  EXPECT_EQ(w.slices.loop, 2u);
  EXPECT_EQ(w.slices.pool, 0u);
}

TEST(LoopResume, AHeavyResultGoesOnOnThePool) {
  const OneWait w = run_one_wait(true, on_loop(-1));  // positive() says no
  EXPECT_EQ(w.before, w.loop);
  EXPECT_NE(w.after, w.loop);
  EXPECT_EQ(w.slices.loop, 1u);
  EXPECT_EQ(w.slices.pool, 1u);
}

TEST(LoopResume, AWaitEndedOffTheLoopGoesOnOnThePool) {
  const OneWait w = run_one_wait(true, [](TestLoop&, std::function<void(int)> done) {
    std::thread([done] { done(7); }).join();
  });
  EXPECT_NE(w.after, w.loop);
  EXPECT_EQ(w.slices.pool, 1u);
  EXPECT_EQ(w.deferred, 0);
}

TEST(LoopResume, WithoutALoopEveryResumeIsOnThePool) {
  const OneWait w = run_one_wait(false, on_loop(7));
  EXPECT_EQ(w.before, w.loop);  // start_here still starts where it is called
  EXPECT_NE(w.after, w.loop);
}

TEST(LoopResume, AnAnswerGivenWhileParkingIsDeferredNotNested) {
  auto loop = std::make_shared<TestLoop>();
  std::promise<void> finished;
  std::atomic<bool> parking_returned{false};
  std::atomic<bool> resumed_before_parking_returned{false};
  std::thread::id after;
  FiberPool pool({2, 256u << 10, 4, loop});
  loop->post([&] {
    pool.start_here({}, [&] {
      const int v = await<int>(
          [&](std::function<void(int)> done) {
            done(1);  // at once, on the loop: the fiber must not run inside this call
            parking_returned = true;
          },
          &positive);
      resumed_before_parking_returned = !parking_returned.load();
      after = current_thread();
      EXPECT_EQ(v, 1);
      finished.set_value();
    });
  });
  finished.get_future().get();
  EXPECT_FALSE(resumed_before_parking_returned.load());
  EXPECT_EQ(after, loop->id());
  EXPECT_EQ(loop->deferred(), 1);
}

TEST(LoopResume, StartHereInsideAFiberOrOffTheLoopStartsOnThePool) {
  auto loop = std::make_shared<TestLoop>();
  std::promise<std::thread::id> nested;
  std::promise<std::thread::id> outer;
  std::promise<std::thread::id> off_loop;
  FiberPool pool({2, 256u << 10, 4, loop});
  loop->post([&] {
    pool.start_here({}, [&] {
      // As when an answer releases a queued call that starts at once (the admission gate).
      pool.start_here({}, [&] { nested.set_value(current_thread()); });
      outer.set_value(current_thread());
    });
  });
  EXPECT_EQ(outer.get_future().get(), loop->id());
  EXPECT_NE(nested.get_future().get(), loop->id());
  pool.start_here({}, [&] { off_loop.set_value(current_thread()); });  // test thread
  const auto ran_on = off_loop.get_future().get();
  EXPECT_NE(ran_on, current_thread());
  EXPECT_NE(ran_on, loop->id());
  EXPECT_EQ(pool.slices().loop, 1u);
  EXPECT_EQ(pool.slices().pool, 2u);
}

// CPU per request: every slice's CPU is the fiber's, on the loop as on the pool; and a slice
// resumed on the loop leaves it once over its budget.
TEST(LoopResume, CpuOfEverySliceIsTheFibersAndTheLoopBudgetHolds) {
  auto loop = std::make_shared<TestLoop>();
  std::promise<std::function<void(int)>> parked;
  std::promise<void> finished;
  double burned_us = 0;
  double fiber_us = 0;
  double fiber_at_start_us = 0;
  std::thread::id resumed_on;
  std::thread::id after_budget;
  FiberPool pool({2, 256u << 10, 4, loop});
  loop->post([&] {
    pool.start_here({}, [&] {
      fiber_at_start_us = engine_detail::fiber_cpu_us();
      burned_us += burn_cpu_us(3000);
      await<int>([&](std::function<void(int)> done) { parked.set_value(std::move(done)); },
                 &positive);
      resumed_on = current_thread();
      burned_us += burn_cpu_us(3000);
      engine_detail::leave_loop_if_over(std::chrono::milliseconds(1));  // 3 ms used: leaves
      after_budget = current_thread();
      burned_us += burn_cpu_us(2000);
      fiber_us = engine_detail::fiber_cpu_us();
      finished.set_value();
    });
  });
  auto done = parked.get_future().get();
  loop->post([done] { done(1); });
  finished.get_future().get();
  EXPECT_EQ(resumed_on, loop->id());
  EXPECT_NE(after_budget, loop->id());
  EXPECT_GE(fiber_us - fiber_at_start_us, burned_us);
  EXPECT_GE(burned_us, 8000.0);
  EXPECT_EQ(pool.slices().loop, 2u);
  EXPECT_EQ(pool.slices().pool, 1u);
}

// ---- retired fibers (fiber.h, await_retirable) ------------------------------------------------

[[gnu::noinline, gnu::noipa]] std::string current_thread_name() {
  char name[16] = {};
  pthread_getname_np(pthread_self(), name, sizeof name);
  return name;
}

double retired_total() {
  return engine_detail::metrics().fibers_retired.Value();
}

// Waits (polled, with a generous bound: the sweeper tells nobody) until a fiber has been retired
// since `before`.
void wait_for_retirement(double before) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (retired_total() <= before && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_GT(retired_total(), before);
}

std::shared_ptr<const void> keep_int(const void* tag) {
  return std::make_shared<const int>(*static_cast<const int*>(tag));
}
bool same_int(const void* tag, const void* kept) {
  return *static_cast<const int*>(tag) == *static_cast<const int*>(kept);
}
constexpr RetireTag kIntTag{&keep_int, &same_int};

// A retirable wait that was retired, then answered: where each part ran.
struct RetiredWait {
  std::thread::id loop;
  int runs = 0;            // starts of the body: the retired run and its replay
  std::string unwound_on;  // the name of the thread the retired run's frames were destroyed on
  std::thread::id replayed_on;
  int value = 0;
  FiberPool::Slices slices;
  std::uint64_t replays = 0;
};

// A replayable fiber, started on the loop (start_here) when `on_loop`, else spawned on the pool,
// waits retirably (light = positive()); once it has been retired, its wait is ended on the loop
// with `value`. `after` runs on the replay once it has taken the answer.
RetiredWait run_retired_wait(bool on_loop, int value, const std::function<void()>& after = {}) {
  auto loop = std::make_shared<TestLoop>();
  RetiredWait w;
  w.loop = loop->id();
  std::atomic<int> runs{0};
  std::promise<std::function<void(int)>> parked;
  std::promise<void> finished;
  const double retired_before = retired_total();
  {
    FiberPool pool({2, 256u << 10, 4, loop, 8, std::chrono::milliseconds(1)});
    auto body = [&] {
      ++runs;
      struct NoteUnwinding {
        std::string* on;
        ~NoteUnwinding() {
          if (engine_detail::being_retired()) *on = current_thread_name();
        }
      } note{&w.unwound_on};
      w.value = await_retirable<int>(
          [&parked](std::function<void(int)> done) { parked.set_value(std::move(done)); },
          &positive, std::make_shared<const int>(1), kIntTag, nullptr);
      w.replayed_on = current_thread();
      if (after) after();
      finished.set_value();
    };
    if (on_loop) {
      loop->post([&] { pool.start_here({}, body, true); });
    } else {
      pool.spawn({}, body, true);
    }
    auto done = parked.get_future().get();
    wait_for_retirement(retired_before);
    loop->post([done, value] { done(value); });
    finished.get_future().get();
    w.slices = pool.slices();
    w.replays = pool.retired();
  }
  w.runs = runs.load();
  return w;
}

TEST(LoopResume, ARetiredCallStartedOnTheLoopReplaysThereWhenItsAnswerArrivesThere) {
  const RetiredWait w = run_retired_wait(true, 7);
  EXPECT_EQ(w.value, 7);
  EXPECT_EQ(w.runs, 2);
  EXPECT_EQ(w.replays, 1u);
  EXPECT_EQ(w.replayed_on, w.loop);
  // The retirement's unwinding ran on the sweeper, which resumed the fiber: no pool thread.
  EXPECT_EQ(w.unwound_on, "wf-retire");
  EXPECT_EQ(w.slices.loop, 2u);  // the start and the replay
  EXPECT_EQ(w.slices.pool, 1u);  // the unwinding, on the sweeper
}

TEST(LoopResume, ARetiredCallStartedOnThePoolReplaysOnThePool) {
  // Its body was not read on the loop: the replay, which reads it again, does not go there.
  const RetiredWait w = run_retired_wait(false, 7);
  EXPECT_EQ(w.value, 7);
  EXPECT_EQ(w.runs, 2);
  EXPECT_NE(w.replayed_on, w.loop);
  EXPECT_EQ(w.unwound_on, "wf-retire");
  EXPECT_EQ(w.slices.loop, 0u);
}

TEST(LoopResume, AHeavyAnswerToARetiredCallReplaysOnThePool) {
  const RetiredWait w = run_retired_wait(true, -1);  // positive() says no
  EXPECT_EQ(w.value, -1);
  EXPECT_EQ(w.runs, 2);
  EXPECT_NE(w.replayed_on, w.loop);
  EXPECT_EQ(w.slices.loop, 1u);  // the start only
}

TEST(LoopResume, AReplayOnTheLoopOverItsBudgetMovesToThePool) {
  std::thread::id after_budget;
  const RetiredWait w = run_retired_wait(true, 7, [&] {
    burn_cpu_us(3000);
    engine_detail::leave_loop_if_over(std::chrono::milliseconds(1));  // 3 ms used: leaves
    after_budget = current_thread();
  });
  EXPECT_EQ(w.replayed_on, w.loop);
  EXPECT_NE(after_budget, w.loop);
  EXPECT_EQ(w.slices.loop, 2u);
  EXPECT_EQ(w.slices.pool, 2u);  // the unwinding, and the replay's rest
}

// ---- the engine ------------------------------------------------------------------------------

// An evaluator that answers on the loop, as the HTTP client does on the server's event loop.
class LoopEvaluator final : public CodeRunner {
 public:
  LoopEvaluator(std::shared_ptr<TestLoop> loop, std::string answer)
      : loop_(std::move(loop)), answer_(std::move(answer)) {}
  void run(const CodeCall&, const CallContext&, Done done) override {
    loop_->post([done = std::move(done), value = answer_] {
      done(json{{"Z1K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z22"}}},
                {"Z22K1", {{"Z1K1", "Z6"}, {"Z6K1", value}}}});
    });
  }

 private:
  std::shared_ptr<TestLoop> loop_;
  std::string answer_;
};

double slices(const std::string& thread) {
  const std::string text = obs::render_metrics();
  std::smatch m;
  const std::regex series("wf_orchestrator_evaluation_slices_total\\{thread=\"" + thread +
                          "\"\\} (\\S+)");
  return std::regex_search(text, m, series) ? std::stod(m[1].str()) : 0.0;
}

struct CodeCallRun {
  std::string value;
  std::thread::id answered_on;
  double loop_slices = 0;
  double pool_slices = 0;
};

// One code call started on the loop (as routes.cc starts a small one), answered by `answer`.
CodeCallRun run_code_call(const std::string& answer) {
  auto loop = std::make_shared<TestLoop>();
  EngineOptions options;
  options.event_loop = loop;
  auto engine =
      make_engine(options, nullptr, std::make_shared<LoopEvaluator>(loop, answer), nullptr);
  const json z8 = testing::code_function("Z10001", "python-3", "def Z10001():\n    return 'x'");
  const json request = {{"zobject", {{"Z1K1", "Z7"}, {"Z7K1", z8}}}};
  CodeCallRun out;
  const double loop_before = slices("loop");
  const double pool_before = slices("pool");
  std::promise<void> finished;
  loop->post([&] {
    engine->spawn_here(CallContext{}, [&] {
      json r = engine->evaluate(request, CallContext{});
      out.value = r["Z22K1"].is_string() ? r["Z22K1"].get<std::string>() : r.dump();
      out.answered_on = current_thread();
      finished.set_value();
    });
  });
  finished.get_future().get();
  out.loop_slices = slices("loop") - loop_before;
  out.pool_slices = slices("pool") - pool_before;
  EXPECT_EQ(out.answered_on == loop->id(), out.pool_slices == 0);
  engine.reset();
  return out;
}

TEST(LoopResume, ASmallCodeCallStartsAndEndsOnTheLoop) {
  const CodeCallRun run = run_code_call("hello");
  EXPECT_EQ(run.value, "hello");
  EXPECT_EQ(run.loop_slices, 2.0);  // the start, and the rest after the evaluator's answer
  EXPECT_EQ(run.pool_slices, 0.0);
}

TEST(LoopResume, ABigAnswerGoesOnOnTheCpuThreads) {
  const CodeCallRun run = run_code_call(std::string(100'000, 'x'));
  EXPECT_EQ(run.value.size(), 100'000u);
  EXPECT_EQ(run.loop_slices, 1.0);
  EXPECT_EQ(run.pool_slices, 1.0);
}

// An evaluator that answers on the loop once a fiber has been retired since the call came (when
// `after_retirement`; polled from a thread of its own, with a generous bound), or, once the
// call's cancellation is raised, with the HTTP client's failure for a request it aborted.
class RetiredLoopEvaluator final : public CodeRunner {
 public:
  RetiredLoopEvaluator(std::shared_ptr<TestLoop> loop, bool after_retirement)
      : loop_(std::move(loop)), after_retirement_(after_retirement) {}
  ~RetiredLoopEvaluator() override {
    for (auto& t : threads_) t.join();
  }
  void run(const CodeCall& call, const CallContext& ctx, Done done) override {
    ++calls_;
    const bool hang_up = call.code.find("hang up") != std::string::npos;
    const double before = retired_total();
    std::lock_guard lock(mu_);
    threads_.emplace_back([this, before, hang_up, cancel = ctx.cancel, done = std::move(done)] {
      const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
      while (after_retirement_ && retired_total() <= before &&
             std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      while (hang_up && !(cancel && cancel->cancelled()) &&
             std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      loop_->post([done, cancel] {
        if (cancel && cancel->cancelled()) {
          done(std::unexpected(
              CodeRunError{CodeRunError::Kind::kFailed, "request to evaluator failed: cancelled"}));
          return;
        }
        done(json{{"Z1K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z22"}}},
                  {"Z22K1", {{"Z1K1", "Z6"}, {"Z6K1", "answered"}}}});
      });
    });
  }
  int calls() const { return calls_.load(); }

 private:
  std::shared_ptr<TestLoop> loop_;
  bool after_retirement_;
  std::atomic<int> calls_{0};
  std::mutex mu_;
  std::vector<std::thread> threads_;
};

// The envelope without the orchestration* metadata (times, CPU, memory: they differ each run).
json without_orchestration_meta(json envelope) {
  json& k1 = envelope["Z22K2"]["K1"];
  if (!k1.is_array()) return envelope;
  json kept = json::array();
  for (const auto& pair : k1) {
    if (pair.is_object() && pair.value("K1", json()).is_string() &&
        pair["K1"].get<std::string>().starts_with("orchestration")) {
      continue;
    }
    kept.push_back(pair);
  }
  k1 = std::move(kept);
  return envelope;
}

struct LoopCallRun {
  json envelope;
  std::thread::id answered_on;
  std::thread::id loop;
  int evaluator_calls = 0;
  double retired = 0;
  double cancelled = 0;
};

double cancelled_total() {
  double n = 0;
  for (auto* c : engine_detail::metrics().cancelled) {
    if (c != nullptr) n += c->Value();
  }
  return n;
}

// A one-code-call request started on the loop as routes.cc starts a small one (spawn_here,
// replayable), by an engine that retires parked calls after `retire_after` (0: never) and whose
// evaluator answers on the loop (after the retirement, when retiring). With `hang_up`, the caller
// hangs up once the call is at the evaluator (retired, when retiring).
LoopCallRun run_loop_call(std::chrono::milliseconds retire_after, bool hang_up) {
  auto loop = std::make_shared<TestLoop>();
  EngineOptions options;
  options.event_loop = loop;
  options.retire_parked_after = retire_after;
  options.slow_call = std::chrono::milliseconds(0);
  auto evaluator = std::make_shared<RetiredLoopEvaluator>(loop, retire_after.count() > 0);
  auto engine = make_engine(options, nullptr, evaluator, nullptr);
  const json z8 = testing::code_function(
      "Z10001", "python-3",
      hang_up ? "def Z10001():\n    return 'hang up'" : "def Z10001():\n    return 'x'");
  const json request = {{"zobject", {{"Z1K1", "Z7"}, {"Z7K1", z8}}}};
  CallContext ctx;
  ctx.request_id = "req-loop";
  ctx.cancel = Cancellation::make();
  LoopCallRun out;
  out.loop = loop->id();
  const double retired_before = retired_total();
  const double cancelled_before = cancelled_total();
  std::promise<void> finished;
  std::atomic<int> answered{0};
  loop->post([&] {
    engine->spawn_here(
        std::make_shared<const CallContext>(ctx),
        [&] {
          json r = engine->evaluate(request, ctx);
          if (answered.fetch_add(1) == 0) {
            out.envelope = std::move(r);
            out.answered_on = current_thread();
            finished.set_value();
          }
        },
        true);
  });
  if (hang_up) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while ((evaluator->calls() == 0 ||
            (retire_after.count() > 0 && retired_total() <= retired_before)) &&
           std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ctx.cancel->cancel(Cancellation::Reason::kClientGone);
  }
  EXPECT_EQ(finished.get_future().wait_for(std::chrono::seconds(30)), std::future_status::ready);
  engine.reset();  // waits for the fibers
  EXPECT_EQ(answered.load(), 1);
  out.evaluator_calls = evaluator->calls();
  out.retired = retired_total() - retired_before;
  out.cancelled = cancelled_total() - cancelled_before;
  return out;
}

// The call both ways, not retired and retired: the same envelope (times aside), each answered on
// the loop (the retired one by its replay, where its answer arrived). Returns the retiring run.
LoopCallRun same_on_the_loop_both_ways(bool hang_up, LoopCallRun* not_retired) {
  *not_retired = run_loop_call(std::chrono::milliseconds(0), hang_up);
  const LoopCallRun retiring = run_loop_call(std::chrono::milliseconds(1), hang_up);
  EXPECT_EQ(not_retired->retired, 0);
  EXPECT_EQ(retiring.retired, 1);
  EXPECT_EQ(retiring.evaluator_calls, 1);
  EXPECT_EQ(not_retired->answered_on, not_retired->loop);
  EXPECT_EQ(retiring.answered_on, retiring.loop);
  EXPECT_EQ(without_orchestration_meta(retiring.envelope),
            without_orchestration_meta(not_retired->envelope));
  return retiring;
}

TEST(LoopResume, ACodeCallRetiredAndReplayedOnTheLoopAnswersAsItsFiberDoes) {
  LoopCallRun fiber;
  const LoopCallRun retiring = same_on_the_loop_both_ways(false, &fiber);
  EXPECT_EQ(without_orchestration_meta(fiber.envelope)["Z22K1"], "answered");
  EXPECT_EQ(retiring.cancelled, 0);
}

TEST(LoopResume, AHangUpWhileRetiredOnTheLoopStopsTheCallAsOnItsFiber) {
  LoopCallRun fiber;
  const LoopCallRun retiring = same_on_the_loop_both_ways(true, &fiber);
  EXPECT_EQ(fiber.cancelled, 1);
  EXPECT_EQ(retiring.cancelled, 1);
}

}  // namespace
}  // namespace wf::orchestrator
