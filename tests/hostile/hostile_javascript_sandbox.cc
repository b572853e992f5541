// Hostile JavaScript through the real sandbox (zygote, pre-forked children, rlimits, seccomp):
// each attack ends with its specific status within its limit, and the sandbox keeps serving,
// both during the attack (a probe calls it every 50 ms from another thread) and after it.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "evaluator/executors/javascript/javascript_runtime.h"
#include "evaluator/sandbox/sandbox.h"
#include "hostile_support.h"

namespace wf::evaluator {
namespace {

using Status = CallOutcome::Status;
using std::chrono::milliseconds;

// The wall limit of the tests that want a timeout.
constexpr milliseconds kWall{1500};
// The wall limit of the tests whose attack must end at another limit (memory), or whose work must
// succeed: far above what they need even on a loaded shared machine (the object bomb takes 0.5 s
// idle and passed 1.5 s with two CPU hogs running), so that the limit under test or the work's
// end ends them, never the wall clock.
constexpr milliseconds kLongWall{30000};

SandboxLimits hostile_limits(milliseconds wall) {
  SandboxLimits limits;
  limits.wall = wall;
  limits.cpu = std::chrono::seconds(5);
  limits.memory_bytes = 256u << 20;
  limits.output_bytes = 1u << 20;
  limits.captured_output_bytes = 16u << 10;
  limits.pool_size = 2;
  return limits;
}

// The sandboxes of the whole binary, started on first use (supervisors start from a fresh image,
// so other threads may exist by then).
Sandbox& js_sandbox() {
  static std::unique_ptr<Sandbox> sandbox = start_sandbox("javascript", hostile_limits(kWall));
  return *sandbox;
}

Sandbox& long_wall_sandbox() {
  static std::unique_ptr<Sandbox> sandbox = start_sandbox("javascript", hostile_limits(kLongWall));
  return *sandbox;
}

struct Timed {
  CallOutcome outcome;
  std::chrono::microseconds elapsed;
};

Timed run_in(Sandbox& sandbox, const std::string& code, const std::string& args = "{}",
             const std::string& name = "Z1") {
  CallInput input;
  input.code = code;
  input.function_name = name;
  input.arguments_json = args;
  const auto start = std::chrono::steady_clock::now();
  CallOutcome outcome =
      sandbox.run(input, std::chrono::steady_clock::now() + std::chrono::seconds(30));
  return {std::move(outcome), std::chrono::duration_cast<std::chrono::microseconds>(
                                  std::chrono::steady_clock::now() - start)};
}

std::string status_name(Status s) {
  switch (s) {
    case Status::kOk:
      return "ok";
    case Status::kTimeout:
      return "timeout";
    case Status::kCpuLimit:
      return "cpu";
    case Status::kMemoryLimit:
      return "memory";
    case Status::kOutputTooLarge:
      return "output-too-large";
    case Status::kForbidden:
      return "forbidden";
    case Status::kCrashed:
      return "crashed";
    case Status::kUnavailable:
      return "unavailable";
    case Status::kCancelled:
      return "cancelled";
    case Status::kThrottled:
      return "throttled";
  }
  return "?";
}

Timed run(const std::string& code, const std::string& args = "{}", const std::string& name = "Z1") {
  return run_in(js_sandbox(), code, args, name);
}

// A trivial call must still work after every attack.
void expect_still_serving(Sandbox& sandbox = js_sandbox()) {
  Timed t = run_in(sandbox, "function Z1(Z1K1) { return Z1K1 + '!'; }",
                   R"({"Z1K1":{"Z1K1":"Z6","Z6K1":"alive"}})");
  ASSERT_EQ(t.outcome.status, Status::kOk)
      << status_name(t.outcome.status) << ": " << t.outcome.detail;
  EXPECT_NE(t.outcome.output.z22_json.find(R"("Z6K1":"alive!")"), std::string::npos)
      << t.outcome.output.z22_json;
}

#define EXPECT_STATUS(timed, want)                                                                \
  EXPECT_EQ((timed).outcome.status, (want))                                                       \
      << "got " << status_name((timed).outcome.status) << ": " << (timed).outcome.detail << " | " \
      << (timed).outcome.output.error_message << " | "                                            \
      << (timed).outcome.output.z22_json.substr(0, 300)

// The sandbox's wall limit ended the call: the 5 s CPU limit would be kCpuLimit, the request's
// 30 s deadline would name the deadline, and a loaded machine's scheduling changes neither (a
// stopwatch bound on the call did).
void expect_wall_limit(const Timed& t) {
  const std::string limit = "wall-clock limit of " + std::to_string(kWall.count()) + " ms";
  EXPECT_NE(t.outcome.detail.find(limit), std::string::npos) << t.outcome.detail;
  EXPECT_GE(t.elapsed, kWall);
}

class HostileJavascript : public ::testing::Test {
 protected:
  // The sandbox the probe keeps calling: the one the test attacks.
  virtual Sandbox& sandbox() { return js_sandbox(); }
  void SetUp() override {
    CallInput probe;
    probe.code = "function Z1() { return 'probe'; }";
    probe.function_name = "Z1";
    probe.arguments_json = "{}";
    probe_ = std::make_unique<hostile::ServingProbe>(sandbox(), probe, R"("Z6K1":"probe")");
  }
  void TearDown() override {
    probe_->stop();
    EXPECT_EQ(probe_->failures(), "") << "the sandbox stopped serving during the test";
    EXPECT_GT(probe_->calls(), 0);
  }
  std::unique_ptr<hostile::ServingProbe> probe_;
};

// Attacks that must end at the memory limit, and heavy work that must succeed: in the long-wall
// sandbox.
class HostileJavascriptLongWall : public HostileJavascript {
 protected:
  Sandbox& sandbox() override { return long_wall_sandbox(); }
  Timed run(const std::string& code) { return run_in(long_wall_sandbox(), code); }
};

TEST_F(HostileJavascript, TrivialCallWorks) {
  Timed t = run("function Z1(a, b) { return a + b; }",
                R"({"Z1K1":{"Z1K1":"Z6","Z6K1":"x"},"Z1K2":{"Z1K1":"Z6","Z6K1":"y"}})");
  EXPECT_STATUS(t, Status::kOk);
  EXPECT_NE(t.outcome.output.z22_json.find(R"("Z22K1":{"Z1K1":"Z6","Z6K1":"xy"})"),
            std::string::npos);
}

TEST_F(HostileJavascript, InfiniteLoopTimesOut) {
  Timed t = run("function Z1() { while (true) {} }");
  EXPECT_STATUS(t, Status::kTimeout);
  expect_wall_limit(t);
  expect_still_serving();
}

TEST_F(HostileJavascript, CatchingEverythingDoesNotEscapeTheTimeout) {
  Timed t =
      run("function Z1() { for (;;) { try { for (;;) {} } catch (e) {} finally { continue; } } }");
  EXPECT_STATUS(t, Status::kTimeout);
  expect_wall_limit(t);
  expect_still_serving();
}

TEST_F(HostileJavascript, PromiseLoopTimesOut) {
  Timed t =
      run("async function spin() { for (;;) await null; }\n"
          "function Z1() { spin(); spin(); return new Promise(() => {}); }");
  EXPECT_STATUS(t, Status::kTimeout);
  expect_wall_limit(t);
  expect_still_serving();
}

TEST_F(HostileJavascript, RegexBacktrackingTimesOut) {
  Timed t = run("function Z1() { return String(/(a+)+b/.test('a'.repeat(40))); }");
  EXPECT_STATUS(t, Status::kTimeout);
  expect_still_serving();
}

TEST_F(HostileJavascriptLongWall, ObjectBombHitsTheMemoryLimit) {
  Timed t = run("function Z1() { const a = []; for (;;) a.push({x: a.length, y: [a.length]}); }");
  EXPECT_STATUS(t, Status::kMemoryLimit);
  expect_still_serving(long_wall_sandbox());
}

TEST_F(HostileJavascript, ThrowingTheOutOfMemoryTextIsAUserError) {
  // Issue 11 item 3: `throw new Error("out of memory: ...")` was counted as the memory limit.
  for (const char* code : {"function Z1() { throw new Error('out of memory: limit reached'); }",
                           "function Z1() { throw 'out of memory'; }"}) {
    Timed t = run(code);
    EXPECT_STATUS(t, Status::kOk);
  }
  expect_still_serving();
}

TEST_F(HostileJavascriptLongWall, BufferBombHitsTheMemoryLimit) {
  Timed t = run(
      "function Z1() { const keep = []; for (;;) keep.push(new Uint8Array(32 << 20).fill(1)); }");
  EXPECT_STATUS(t, Status::kMemoryLimit);
  expect_still_serving(long_wall_sandbox());
}

TEST_F(HostileJavascriptLongWall, StringBombEndsCleanly) {
  // Doubling a string ends at SpiderMonkey's maximum string length (a user error) or at the
  // memory limit, whichever comes first; never a crash.
  Timed t =
      run("function Z1() { let s = 'x'; const keep = []; for (;;) { s = s + s; keep.push(s + '!'); "
          "} }");
  EXPECT_TRUE(t.outcome.status == Status::kMemoryLimit ||
              (t.outcome.status == Status::kOk &&
               t.outcome.output.z22_json.find("errors") != std::string::npos))
      << status_name(t.outcome.status) << ": " << t.outcome.detail << " "
      << t.outcome.output.z22_json;
  expect_still_serving(long_wall_sandbox());
}

TEST_F(HostileJavascript, DeepRecursionIsAUserError) {
  Timed t = run("function f(n) { return f(n + 1) + 1; }\nfunction Z1() { return String(f(0)); }");
  EXPECT_STATUS(t, Status::kOk);
  EXPECT_NE(t.outcome.output.z22_json.find("too much recursion"), std::string::npos);
  expect_still_serving();
}

TEST_F(HostileJavascript, NoWayToFilesEnvironmentOrProcesses) {
  Timed t =
      run("function Z1() { return [typeof require, typeof process, typeof os, typeof read, typeof "
          "snarf,"
          " typeof readFile, typeof load, typeof Deno, typeof Bun, typeof quit, typeof setTimeout,"
          " typeof XMLHttpRequest, typeof fetch, typeof Worker].join(','); }");
  EXPECT_STATUS(t, Status::kOk);
  EXPECT_NE(t.outcome.output.z22_json.find(
                "undefined,undefined,undefined,undefined,undefined,undefined,undefined,undefined,"
                "undefined,undefined,undefined,undefined,undefined,undefined"),
            std::string::npos)
      << t.outcome.output.z22_json;
  // Dynamic import has no module loader behind it: an error, not a file read.
  Timed imp = run("async function Z1() { await import('/etc/passwd'); return 'read it'; }");
  EXPECT_STATUS(imp, Status::kOk);
  EXPECT_EQ(imp.outcome.output.z22_json.find("read it"), std::string::npos);
  EXPECT_NE(imp.outcome.output.z22_json.find("errors"), std::string::npos);
  expect_still_serving();
}

TEST_F(HostileJavascript, DateWorksWithoutTheTimeZoneFile) {
  // Date tries /etc/localtime; the sandbox refuses the open politely and Date falls back to UTC.
  Timed t =
      run("function Z1() { const d = new Date(0); return d.toISOString() + '|' +"
          " String(new Date().getFullYear() >= 2024) + '|' + String(d.getTimezoneOffset()); }");
  EXPECT_STATUS(t, Status::kOk);
  EXPECT_NE(t.outcome.output.z22_json.find("1970-01-01T00:00:00.000Z|true|0"), std::string::npos)
      << t.outcome.output.z22_json;
}

TEST_F(HostileJavascript, PollutionDoesNotReachTheNextCall) {
  Timed a =
      run("function Z1() { Array.prototype.evil = 1; Object.prototype.polluted = 'yes';"
          " globalThis.leak = 'x'; ZPair.prototype.bad = 1; JSON.parse = null; return 'done'; }");
  EXPECT_STATUS(a, Status::kOk);
  Timed b =
      run("function Z1() { return [typeof [].evil, typeof ({}).polluted, typeof leak,"
          " typeof new ZPair(1, 2).bad, typeof JSON.parse].join(); }");
  EXPECT_STATUS(b, Status::kOk);
  EXPECT_NE(b.outcome.output.z22_json.find("undefined,undefined,undefined,undefined,function"),
            std::string::npos)
      << b.outcome.output.z22_json;
}

// 200,000 log lines: ~90 ms of the child's CPU, but 0.4-1.0 s of wall time at load ~17, near the
// 1.5 s wall limit.
TEST_F(HostileJavascriptLongWall, OutputFloodIsBoundedAndKeptApart) {
  Timed t = run(
      "function Z1() { for (let i = 0; i < 200000; i++) console.log('flood ' + i); return 'r'; }");
  EXPECT_STATUS(t, Status::kOk);
  std::printf("output flood: child CPU %.0f ms, wall %.0f ms\n", t.outcome.cpu_ms,
              static_cast<double>(t.elapsed.count()) / 1000.0);
  EXPECT_LE(t.outcome.output.captured_output.size(), 16u << 10);
  EXPECT_EQ(t.outcome.output.captured_output.rfind("flood 0\n", 0), 0u);
  EXPECT_EQ(t.outcome.output.z22_json.find("flood"), std::string::npos);
  expect_still_serving(long_wall_sandbox());
}

TEST_F(HostileJavascript, HugeResultIsRefused) {
  Timed t = run("function Z1() { return 'x'.repeat(3 << 20); }");
  EXPECT_STATUS(t, Status::kOutputTooLarge);
  expect_still_serving();
}

TEST_F(HostileJavascript, MathRandomDiffersPerCall) {
  Timed a = run("function Z1() { return String(Math.random()); }");
  Timed b = run("function Z1() { return String(Math.random()); }");
  EXPECT_STATUS(a, Status::kOk);
  EXPECT_STATUS(b, Status::kOk);
  EXPECT_NE(a.outcome.output.z22_json, b.outcome.output.z22_json);
}

// Hot loops and 300,000 objects: ~200 ms of the child's CPU, but 1.5-1.7 s of wall time at load
// ~17, over the 1.5 s wall limit (a time-out in the other sandbox).
TEST_F(HostileJavascriptLongWall, JitHeavyWorkRunsUnderSeccomp) {
  // Hot loops tier up (Baseline, Ion): mprotect W^X on JIT pages must be allowed.
  Timed t =
      run("function Z1() { let s = 0; for (let i = 0; i < 3e7; i++) s = (s + i * 7) % 1000003;"
          " const a = []; for (let i = 0; i < 300000; i++) a.push({i, v: 'k' + i});"
          " return String(s) + ':' + a.length; }");
  EXPECT_STATUS(t, Status::kOk);
  std::printf("JIT-heavy work: child CPU %.0f ms, wall %.0f ms\n", t.outcome.cpu_ms,
              static_cast<double>(t.elapsed.count()) / 1000.0);
  EXPECT_NE(t.outcome.output.z22_json.find(":300000"), std::string::npos)
      << t.outcome.output.z22_json;
}

TEST_F(HostileJavascript, TrivialCallsAreCheap) {
  expect_still_serving();  // the pool is warm
  std::vector<double> wall_ms;
  std::vector<double> cpu_ms;
  for (int i = 0; i < 40; ++i) {
    Timed t = run("function Z1(Z1K1) { return Z1K1; }", R"({"Z1K1":{"Z1K1":"Z6","Z6K1":"v"}})");
    ASSERT_EQ(t.outcome.status, Status::kOk) << t.outcome.detail;
    wall_ms.push_back(static_cast<double>(t.elapsed.count()) / 1000.0);
    cpu_ms.push_back(t.outcome.cpu_ms);
    // Calls arrive spaced out here, so each finds a warm child (back-to-back calls measure the
    // pool's refill rate instead: the sandbox's bench does that).
    std::this_thread::sleep_for(milliseconds(10));
  }
  std::sort(wall_ms.begin(), wall_ms.end());
  std::sort(cpu_ms.begin(), cpu_ms.end());
  std::printf(
      "javascript sandbox trivial call: wall p50 %.2f ms, p90 %.2f ms; child CPU p50 %.2f ms\n",
      wall_ms[wall_ms.size() / 2], wall_ms[wall_ms.size() * 9 / 10], cpu_ms[cpu_ms.size() / 2]);
  // A regression guard on the child's CPU, not on wall time (speed targets are bench_sandbox's;
  // wall time on this shared machine measures its load: a 25 ms wall bound failed at load ~14).
  // A trivial call costs ~1 ms of child CPU.
  EXPECT_LT(cpu_ms[cpu_ms.size() / 2], 25.0);
}

}  // namespace
}  // namespace wf::evaluator
