// Calls in forked children, as the sandbox runs them: interrupts (timeouts), memory budget,
// per-child state (Math.random, polluted prototypes).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <vector>

#include "runtime_harness.h"

namespace wf::evaluator::testing {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;

void expect_clean_exit(const ChildResult& r) {
  EXPECT_TRUE(WIFEXITED(r.wait_status)) << "wait status " << r.wait_status;
  if (WIFEXITED(r.wait_status)) {
    EXPECT_EQ(WEXITSTATUS(r.wait_status), 0);
  }
}

// A call whose expected end is not the time limit, guarded against hangs by 20 s of the child's
// CPU time: a guard on wall time ended such calls as time-outs on a loaded machine (under load
// 20, the 2-3 s of CPU of a bomb that catches its errors took 20-27 s of wall time).
ChildResult guarded_call(const std::string& code, std::uint64_t memory_bytes,
                         std::uint64_t memory_budget = 0) {
  return call_in_child(code, "Z1", "{}", milliseconds(20000), memory_bytes, memory_budget,
                       AlarmClock::kCpu);
}

// A bomb whose only acceptable end is SpiderMonkey's memory error, reported by the child itself
// (clean exit), under guarded_call's CPU guard.
ChildResult expect_memory_error(const std::string& code, std::uint64_t memory_bytes,
                                std::uint64_t memory_budget = 0) {
  ChildResult r = guarded_call(code, memory_bytes, memory_budget);
  expect_clean_exit(r);
  EXPECT_EQ(r.output.error_message, kJavascriptMemoryError) << r.output.z22_json;
  return r;
}

// The interrupt ends a call soon after the 300 ms wall alarm: bounded by the child's CPU time (it
// cannot spend more than ~300 ms before the alarm, and an interrupt that were seen late would add
// the CPU of the loop meanwhile), not by wall time, which on a loaded machine measures the load.
// A call that is never interrupted does not end (the test's timeout).
void expect_interrupted_soon(const ChildResult& r) {
  EXPECT_LT(r.cpu, milliseconds(2000)) << "wall " << r.elapsed.count() << " ms";
}

TEST(JsIsolation, InfiniteLoopIsInterrupted) {
  ChildResult r = call_in_child("function Z1() { while (true) {} }", "Z1", "{}", milliseconds(300));
  expect_clean_exit(r);
  EXPECT_FALSE(r.output.ok);
  EXPECT_EQ(r.output.error_message, kJavascriptTimeoutError);
  expect_interrupted_soon(r);
}

TEST(JsIsolation, UserCodeCannotCatchTheInterrupt) {
  ChildResult r = call_in_child(
      "function Z1() { for (;;) { try { for (let i = 0; ; i++) {} } catch (e) {} finally { "
      "continue; } } }",
      "Z1", "{}", milliseconds(300));
  expect_clean_exit(r);
  EXPECT_EQ(r.output.error_message, kJavascriptTimeoutError);
}

TEST(JsIsolation, PromiseLoopIsInterrupted) {
  ChildResult r = call_in_child(
      "async function spin() { for (;;) { await null; } }\n"
      "function Z1() { spin(); spin(); return new Promise(() => {}); }",
      "Z1", "{}", milliseconds(300));
  expect_clean_exit(r);
  EXPECT_EQ(r.output.error_message, kJavascriptTimeoutError);
  expect_interrupted_soon(r);
}

TEST(JsIsolation, CatastrophicRegexIsInterrupted) {
  ChildResult r = call_in_child("function Z1() { return String(/(a+)+b/.test('a'.repeat(40))); }",
                                "Z1", "{}", milliseconds(300));
  expect_clean_exit(r);
  EXPECT_EQ(r.output.error_message, kJavascriptTimeoutError);
}

TEST(JsIsolation, ObjectBombStopsAtTheGcBudget) {
  ChildResult r = expect_memory_error(
      "function Z1() { const a = []; for (;;) { a.push({x: a.length, y: [a.length]}); } }",
      512u << 20);
  EXPECT_FALSE(r.output.ok);
  EXPECT_TRUE(r.output.out_of_memory);
  EXPECT_LT(r.cpu, milliseconds(10000));
}

TEST(JsIsolation, ObjectBombWithoutRlimitStopsAtTheGcBudget) {
  // No rlimit at all: only the GC callback's budget (160 MiB of GC heap by default) stops it.
  ChildResult r = expect_memory_error(
      "function Z1() { const a = []; for (;;) { a.push({x: a.length, y: [a.length]}); } }", 0);
  EXPECT_TRUE(r.output.out_of_memory);
  EXPECT_LT(r.cpu, milliseconds(10000));
}

TEST(JsIsolation, SmallerMemoryBudgetStopsBombsEarlierAndStillFitsNormalWork) {
  expect_memory_error(
      "function Z1() { const a = []; for (;;) a.push({x: a.length, y: [a.length]}); }", 128u << 20,
      128u << 20);
  ChildResult normal = guarded_call(
      "function Z1() { const a = []; for (let i = 0; i < 300000; i++) a.push({i, s: 'v' + i});"
      " return String(a.length); }",
      128u << 20, 128u << 20);
  expect_clean_exit(normal);
  EXPECT_EQ(result_of(normal.output), z6("300000")) << normal.output.error_message;
}

TEST(JsIsolation, UserTextAboutMemoryIsAnOrdinaryError) {
  // Only SpiderMonkey's own allocation failure is out of memory (issue 11 item 3): the texts it
  // throws are text that user code can throw too.
  for (const char* code : {"function Z1() { throw new Error('out of memory: limit reached'); }",
                           "function Z1() { throw 'out of memory'; }",
                           "async function Z1() { throw new Error('out of memory'); }"}) {
    ChildResult r = call_in_child(code, "Z1");
    expect_clean_exit(r);
    EXPECT_TRUE(r.output.ok) << code << ": " << r.output.error_message;
    EXPECT_FALSE(r.output.out_of_memory) << code;
    EXPECT_NE(r.output.error_message, kJavascriptMemoryError) << code;
    EXPECT_NE(error_message_of(r.output).find("out of memory"), std::string::npos) << code;
  }
}

TEST(JsIsolation, CaughtOutOfMemoryStillEndsAsAMemoryError) {
  // The user catches every exception and keeps allocating: the GC budget stops it regardless.
  expect_memory_error(
      "function Z1() { const keep = []; for (;;) { try { keep.push(new Array(1e6).fill({})); } "
      "catch (e) {} } }",
      512u << 20);
}

TEST(JsIsolation, StringBombEndsAsMemoryOrUserError) {
  // Doubling a string: either SpiderMonkey's maximum string length (a RangeError the user sees)
  // or the address-space limit (out of memory); never a crash or a hang.
  ChildResult r = guarded_call(
      "function Z1() { let s = 'x'; for (;;) { s = s + s; s.charCodeAt(s.length - 1); } }",
      256u << 20);
  expect_clean_exit(r);
  if (r.output.ok) {
    EXPECT_NE(error_message_of(r.output), "");
  } else {
    EXPECT_EQ(r.output.error_message, kJavascriptMemoryError);
  }
}

TEST(JsIsolation, ArrayBufferBombIsAMemoryError) {
  expect_memory_error(
      "function Z1() { const keep = []; for (;;) keep.push(new ArrayBuffer(64 << 20)); }",
      256u << 20);
}

TEST(JsIsolation, NormalWorkFitsInTheBudget) {
  ChildResult r = guarded_call(
      "function Z1() { const a = []; for (let i = 0; i < 300000; i++) a.push({i, s: 'v' + i}); "
      "return String(a.length); }",
      256u << 20);
  expect_clean_exit(r);
  ASSERT_TRUE(r.output.ok) << r.output.error_message;
  EXPECT_EQ(result_of(r.output), z6("300000"));
}

TEST(JsIsolation, MathRandomDiffersBetweenChildren) {
  const std::string code = "function Z1() { return String(Math.random()); }";
  ChildResult a = call_in_child(code, "Z1");
  ChildResult b = call_in_child(code, "Z1");
  ASSERT_TRUE(a.output.ok && b.output.ok);
  EXPECT_NE(result_of(a.output), result_of(b.output));
}

TEST(JsIsolation, PollutionInOneChildIsNotSeenByTheNext) {
  ChildResult a = call_in_child(
      "function Z1() { Array.prototype.evil = 1; Object.prototype.polluted = 'yes'; "
      "globalThis.leak = 'x';"
      " ZPair.prototype.bad = 1; return 'done'; }",
      "Z1");
  ASSERT_TRUE(a.output.ok);
  ChildResult b = call_in_child(
      "function Z1() { return [typeof [].evil, typeof ({}).polluted, typeof leak, typeof new "
      "ZPair(1, 2).bad].join(); }",
      "Z1");
  EXPECT_EQ(result_of(b.output), z6("undefined,undefined,undefined,undefined"));
}

TEST(JsIsolation, DateAndIntlWorkInAChild) {
  ChildResult r = call_in_child(
      "function Z1() { const d = new Date(Date.UTC(2024, 0, 2, 3, 4, 5));"
      " return [d.toISOString(), String(new Date().getFullYear() >= 2024),"
      " new Intl.DateTimeFormat('en-US', {timeZone: 'Asia/Tokyo', hour: 'numeric', hour12: "
      "false}).format(d),"
      " d.toLocaleDateString('de-DE', {timeZone: 'UTC'})].join('|'); }",
      "Z1");
  expect_clean_exit(r);
  EXPECT_EQ(result_of(r.output), z6("2024-01-02T03:04:05.000Z|true|12|2.1.2024"))
      << r.output.z22_json;
}

TEST(JsIsolation, AtomicsWaitCannotBlockForever) {
  // Without SharedArrayBuffer there is nothing to wait on; either way the call must end.
  ChildResult r = call_in_child(
      "function Z1() { const b = typeof SharedArrayBuffer === 'function' ? new SharedArrayBuffer(4)"
      " : new ArrayBuffer(4); Atomics.wait(new Int32Array(b), 0, 0); return 'woke'; }",
      "Z1", "{}", milliseconds(300));
  expect_clean_exit(r);
  // A blocked wait spends no CPU: its bound is on wall time, far above the 300 ms alarm (a wait
  // that the interrupt does not wake never ends).
  EXPECT_LT(r.elapsed, milliseconds(20000));
  EXPECT_TRUE(!r.output.ok || error_message_of(r.output) != "") << r.output.z22_json;
}

TEST(JsIsolation, WarmUpThenCallInChild) {
  // What a pre-forked sandbox child does: warm_up() then the real call.
  runtime().warm_up();
  CallOutput out = call("function Z1() { return 'after warm-up'; }", "Z1");
  EXPECT_EQ(result_of(out), z6("after warm-up"));
  EXPECT_EQ(out.captured_output, "");
}

}  // namespace
}  // namespace wf::evaluator::testing

namespace wf::evaluator::testing {
namespace {

double thread_cpu_us() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) / 1e3;
}

// The sandbox's target is p50 <= 1 ms for a trivial call end to end; the runtime's share (a
// pre-forked, warmed-up child running one call) must be far below that. Measured in children
// like the pool's, as the CPU time the call took: its wall time on a shared machine measures the
// machine's load (wall p50 is printed beside it).
TEST(JsPerformance, TrivialCallInAWarmChildIsWellUnderAMillisecond) {
  std::vector<double> micros;
  std::vector<double> wall_micros;
  for (int i = 0; i < 21; ++i) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    pid_t pid = ::fork();
    if (pid == 0) {
      runtime().after_fork();
      runtime().warm_up();
      const auto t0 = std::chrono::steady_clock::now();
      const double cpu0 = thread_cpu_us();
      CallOutput out = runtime().call({"function Z1(Z1K1) { return Z1K1 + '!'; }", "Z1",
                                       R"({"Z1K1":{"Z1K1":"Z6","Z6K1":"x"}})"});
      const double cpu = thread_cpu_us() - cpu0;
      const double wall =
          std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
      const bool ok = out.ok && out.z22_json.find("x!") != std::string::npos;
      const double sent[2] = {ok ? cpu : -1, wall};
      (void)!::write(fds[1], sent, sizeof sent);
      ::_exit(0);
    }
    ::close(fds[1]);
    double got[2] = {-1, -1};
    ASSERT_EQ(::read(fds[0], got, sizeof got), static_cast<ssize_t>(sizeof got));
    ::close(fds[0]);
    ::waitpid(pid, nullptr, 0);
    ASSERT_GE(got[0], 0) << "the call failed";
    micros.push_back(got[0]);
    wall_micros.push_back(got[1]);
  }
  std::sort(micros.begin(), micros.end());
  std::sort(wall_micros.begin(), wall_micros.end());
  const double p50 = micros[micros.size() / 2];
  std::printf("trivial call in a warm child: CPU p50 %.0f us, max %.0f us; wall p50 %.0f us\n", p50,
              micros.back(), wall_micros[wall_micros.size() / 2]);
  RecordProperty("p50_us", static_cast<int>(p50));
  EXPECT_LT(p50, 1000.0);
}

}  // namespace
}  // namespace wf::evaluator::testing
