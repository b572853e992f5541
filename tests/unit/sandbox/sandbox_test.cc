// The sandbox with a scripted C++ runtime (no interpreter): each CallInput::code is a command
// that makes the child behave in one way (answer, spin, allocate, make a forbidden syscall...),
// and the test checks the status the service side maps it to.

#include "evaluator/sandbox/sandbox.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/audit.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <iterator>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "wf/sanitizer.h"
#if WF_ASAN
#include <sanitizer/asan_interface.h>
#endif

#include "../../support/sandbox_test_main.h"
#include "evaluator/sandbox/child_reply.h"
#include "evaluator/sandbox/protocol.h"
#include "evaluator/sandbox/sandbox_metrics.h"
#include "evaluator/sandbox/seccomp_filter.h"
#include "wf/obs/metrics.h"

extern char** environ;

namespace wf::evaluator {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Status = CallOutcome::Status;

std::atomic<bool> g_interrupt{false};
volatile unsigned long g_spin = 0;

[[noreturn]] void spin_forever() {
  for (;;) g_spin = g_spin + 1;
}

// A real SIGSEGV, in sanitizer builds too (UBSan would report the null store and exit 1).
__attribute__((no_sanitize_undefined, no_sanitize_address)) void segfault() {
  *static_cast<volatile int*>(nullptr) = 1;
}

// What the test runtimes below share: no interpreter to start, nothing to do after a fork or to
// warm up, an empty answer. Each overrides the one step it scripts.
class FakeRuntime : public LanguageRuntime {
 public:
  bool initialize(std::string&) override { return true; }
  void after_fork() override {}
  void warm_up() override {}
  CallOutput call(const CallInput&) override { return {}; }
};

class ScriptedRuntime final : public FakeRuntime {
 public:
  const char* name() const override { return "scripted"; }
  void request_interrupt() override { g_interrupt = true; }

  CallOutput call(const CallInput& input) override {
    CallOutput out;
    out.ok = true;
    const std::string& cmd = input.code;
    if (cmd == "echo") {
      out.z22_json = input.function_name + ":" + input.arguments_json;
      out.captured_output = "printed";
    } else if (cmd == "spin") {
      spin_forever();
    } else if (cmd == "spin-ignoring-xcpu") {
      std::signal(SIGXCPU, SIG_IGN);
      std::signal(SIGTERM, SIG_IGN);
      spin_forever();
    } else if (cmd == "sleep") {
      for (;;) ::usleep(100000);
    } else if (cmd == "nap") {  // one sleep of the given milliseconds, then an answer
      ::usleep(static_cast<useconds_t>(std::stoul(input.arguments_json)) * 1000);
      out.z22_json = "rested";
    } else if (cmd == "interruptible") {
      while (!g_interrupt) {
      }
      out.ok = false;
      out.error_message = "stopped by interrupt";
    } else if (cmd == "alloc") {
      std::vector<char*> blocks;
      for (;;) {
        char* block = static_cast<char*>(std::malloc(1 << 20));
        if (block == nullptr) break;
        std::memset(block, 1, 1 << 20);
        blocks.push_back(block);
      }
      out.out_of_memory = true;
      out.z22_json = std::to_string(blocks.size());
    } else if (cmd == "socket") {
      int fd = ::socket(AF_INET, SOCK_STREAM, 0);
      out.z22_json = "socket returned " + std::to_string(fd);
    } else if (cmd == "fork") {
      pid_t pid = ::fork();
      out.z22_json = "fork returned " + std::to_string(pid);
    } else if (cmd == "kill-parent") {
      ::kill(::getppid(), SIGKILL);
      out.z22_json = "still alive";
    } else if (cmd == "execve") {
      char* argv[] = {const_cast<char*>("/bin/true"), nullptr};
      ::execve("/bin/true", argv, nullptr);
      out.z22_json = "execve failed";
    } else if (cmd == "open") {
      errno = 0;
      int fd = ::open("/etc/hostname", O_RDONLY);
      out.z22_json = std::to_string(fd) + " " + std::to_string(errno);
    } else if (cmd == "create") {
      errno = 0;
      int fd = ::open(input.arguments_json.c_str(), O_WRONLY | O_CREAT, 0644);
      out.z22_json = std::to_string(fd) + " " + std::to_string(errno);
    } else if (cmd == "fds") {
      std::string open;
      for (int fd = 0; fd < 64; ++fd) {
        if (::write(fd, "", 0) >= 0 || errno != EBADF) open += std::to_string(fd) + ",";
      }
      out.z22_json = open;
    } else if (cmd == "env") {
      int n = 0;
      for (char** e = environ; e != nullptr && *e != nullptr; ++e) ++n;
      out.z22_json = std::to_string(n);
    } else if (cmd == "pid") {
      out.z22_json = std::to_string(::getpid());
    } else if (cmd == "big") {
      out.z22_json.assign(std::stoul(input.arguments_json), 'x');
    } else if (cmd == "print") {
      out.captured_output.assign(std::stoul(input.arguments_json), 'p');
      out.z22_json = "done";
    } else if (cmd == "length") {
      out.z22_json = std::to_string(input.arguments_json.size()) + " " +
                     std::to_string(input.arguments_json.find_first_not_of('a'));
    } else if (cmd == "abort") {
      std::abort();
    } else if (cmd == "raise") {
      std::raise(SIGABRT);
    } else if (cmd == "term-self") {
      ::kill(::getpid(), SIGTERM);
    } else if (cmd == "signal-group") {
      ::kill(0, 0);  // signal 0: nothing is sent even if the filter let it through
      out.z22_json = "still alive";
    } else if (cmd == "tgkill-parent") {
      ::syscall(SYS_tgkill, ::getppid(), ::getppid(), 0);
      out.z22_json = "still alive";
    } else if (cmd == "syscall") {  // the system call numbered in the arguments, all args 0
      long rc = ::syscall(std::stol(input.arguments_json), 0, 0, 0, 0, 0, 0);
      out.z22_json = "returned " + std::to_string(rc);
    } else if (cmd == "segv") {
      segfault();
    } else if (cmd == "exit") {
      ::_exit(3);
    } else if (cmd == "forge") {
      const char junk[] =
          "WFRSxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
      (void)!::write(3, junk, sizeof(junk));
      for (;;) ::usleep(100000);
    } else if (cmd == "runtime-error") {
      out.ok = false;
      out.error_message = "the interpreter broke";
    } else if (cmd == "memory-error") {
      out.ok = false;
      out.error_message = "stopped: memory limit reached";
    } else {
      out.z22_json = "unknown command " + cmd;
    }
    return out;
  }
};

SandboxLimits test_limits() {
  SandboxLimits limits;
  limits.wall = 3000ms;
  limits.cpu = 1s;
  limits.memory_bytes = 64u << 20;
  limits.output_bytes = 64u << 10;
  limits.captured_output_bytes = 1024;
  limits.pool_size = 2;
  return limits;
}

// The value of one series in the process's metrics text; 0 when it is not there yet.
double metric_value(const std::string& series) {
  std::string text = wf::obs::render_metrics();
  std::size_t at = text.find(series + " ");
  return at == std::string::npos ? 0.0 : std::stod(text.substr(at + series.size() + 1));
}

class SandboxTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { sandbox_ = start_sandbox("scripted", test_limits()).release(); }
  static void TearDownTestSuite() {
    delete sandbox_;
    sandbox_ = nullptr;
  }
  static CallOutcome run(const std::string& command, const std::string& arguments = "{}",
                         std::chrono::milliseconds budget = 10s) {
    CallInput input;
    input.code = command;
    input.function_name = "Z1";
    input.arguments_json = arguments;
    return sandbox_->run(input, Clock::now() + budget);
  }
  static Sandbox* sandbox_;
};
Sandbox* SandboxTest::sandbox_ = nullptr;

TEST_F(SandboxTest, AnswersAndReportsUsage) {
  CallOutcome out = run("echo", R"({"Z1K1":"x"})");
  ASSERT_EQ(out.status, Status::kOk) << out.detail;
  EXPECT_TRUE(out.output.ok);
  EXPECT_EQ(out.output.z22_json, R"(Z1:{"Z1K1":"x"})");
  EXPECT_EQ(out.output.captured_output, "printed");
  EXPECT_GT(out.peak_rss_bytes, 0u);
  EXPECT_GE(out.cpu_ms, 0.0);
}

TEST_F(SandboxTest, EveryCallGetsAFreshProcess) {
  std::string first = run("pid").output.z22_json;
  std::string second = run("pid").output.z22_json;
  EXPECT_FALSE(first.empty());
  EXPECT_NE(first, second);
}

TEST_F(SandboxTest, LargeRequestsArriveIntact) {
  std::string big(1500000, 'a');
  CallOutcome out = run("length", big);
  ASSERT_EQ(out.status, Status::kOk) << out.detail;
  EXPECT_EQ(out.output.z22_json, "1500000 " + std::to_string(std::string::npos));
}

TEST_F(SandboxTest, WallClockLimitKills) {
  const std::string killed =
      R"(wf_evaluator_sandbox_kills_total{language="scripted",reason="wall_clock"})";
  const double kills_before = metric_value(killed);
  auto start = Clock::now();
  CallOutcome out = run("sleep");
  auto elapsed = Clock::now() - start;
  EXPECT_EQ(out.status, Status::kTimeout) << out.detail;
  // The 3 s wall limit ended it, not the request's 10 s deadline: its detail names the limit (a
  // deadline-bound call's names the deadline), and the service's SIGKILL at the wall limit is
  // counted. A timer never fires early, so it took the 3 s at least; how much longer a loaded
  // machine takes to kill and reap the child is not this test's business.
  EXPECT_NE(out.detail.find("wall-clock limit of 3000 ms"), std::string::npos) << out.detail;
  EXPECT_EQ(metric_value(killed), kills_before + 1);
  EXPECT_GE(elapsed, 3000ms);
}

// "the request's deadline (N ms) was reached" -> N; -1 for any other detail.
long long deadline_ms_in(const std::string& detail) {
  long long ms = -1;
  if (std::sscanf(detail.c_str(), "the request's deadline (%lld ms) was reached", &ms) != 1)
    return -1;
  return ms;
}

TEST_F(SandboxTest, RequestDeadlineLowersTheWallLimit) {
  CallOutcome out = run("sleep", "{}", 300ms);
  EXPECT_EQ(out.status, Status::kTimeout);
  // The request's 300 ms deadline bounded it, not the 3 s wall limit: the detail says which one
  // (the wall limit's names "wall-clock limit of 3000 ms") and the bound it set, at most the
  // 300 ms that were left when the call started.
  const long long bound = deadline_ms_in(out.detail);
  EXPECT_GT(bound, 0) << out.detail;
  EXPECT_LE(bound, 300) << out.detail;
}

TEST_F(SandboxTest, PassedDeadlineIsATimeoutWithoutAChild) {
  CallInput input;
  input.code = "echo";
  CallOutcome out = sandbox_->run(input, Clock::now() - 1ms);
  EXPECT_EQ(out.status, Status::kTimeout);
}

TEST_F(SandboxTest, InterruptibleRuntimeIsStoppedBySigalrm) {
  // The child has kInterruptGrace (30 ms) after its SIGALRM to report; on a loaded machine it may
  // not be scheduled in time and is killed instead (still a timeout, without its message). The
  // interrupt path must work in one of three calls; every call must be a timeout.
  std::string messages;
  for (int attempt = 0; attempt < 3; ++attempt) {
    CallOutcome out = run("interruptible", "{}", 500ms);
    EXPECT_EQ(out.status, Status::kTimeout) << out.detail;
    if (out.output.error_message == "stopped by interrupt") return;
    messages += "'" + out.output.error_message + "' ";
  }
  ADD_FAILURE() << "no call was stopped by the runtime's interrupt: " << messages;
}

TEST_F(SandboxTest, MemoryLimitStopsAllocation) {
  CallOutcome out = run("alloc");
  EXPECT_EQ(out.status, Status::kMemoryLimit) << out.detail;
  int megabytes = std::stoi(out.output.z22_json);
  EXPECT_LT(megabytes, 64 + 8);
  EXPECT_GT(megabytes, 16);
}

TEST_F(SandboxTest, ErrorTextAboutMemoryIsNotTheMemoryLimit) {
  // Only the runtime's out_of_memory flag means the memory limit (issue 11 item 3): the error
  // text may come from user code.
  CallOutcome out = run("memory-error");
  EXPECT_EQ(out.status, Status::kCrashed) << out.detail;
  EXPECT_EQ(out.detail, "stopped: memory limit reached");
}

TEST_F(SandboxTest, AbortAndRaiseAreCrashesNotForbidden) {
  for (const char* command : {"abort", "raise"}) {
    CallOutcome out = run(command);
    EXPECT_EQ(out.status, Status::kCrashed) << command << ": " << out.detail;
    EXPECT_NE(out.detail.find("SIGABRT"), std::string::npos) << command << ": " << out.detail;
  }
  CallOutcome out = run("term-self");
  EXPECT_EQ(out.status, Status::kCrashed) << out.detail;
  EXPECT_NE(out.detail.find("SIGTERM"), std::string::npos) << out.detail;
}

TEST_F(SandboxTest, SignalsToAnyOtherProcessAreForbidden) {
  for (const char* command : {"kill-parent", "signal-group", "tgkill-parent"}) {
    CallOutcome out = run(command);
    EXPECT_EQ(out.status, Status::kForbidden) << command << ": " << out.detail;
  }
}

TEST_F(SandboxTest, RuntimeFailureIsACrashWithItsMessage) {
  CallOutcome out = run("runtime-error");
  EXPECT_EQ(out.status, Status::kCrashed);
  EXPECT_EQ(out.detail, "the interpreter broke");
}

TEST_F(SandboxTest, ForbiddenSyscallsKillTheChild) {
  for (const char* command : {"socket", "fork", "kill-parent", "execve"}) {
    CallOutcome out = run(command);
    EXPECT_EQ(out.status, Status::kForbidden) << command << ": " << out.detail;
  }
}

// What the zygote's inherited filter allows for its own loop and a child's set-up, each child's
// own filter takes back: made by the call, each of them kills the child as before.
TEST_F(SandboxTest, TheZygotesOwnSyscallsKillTheChild) {
  int checked = 0;
  for (const auto& name : sandbox_internal::zygote_syscalls()) {
    const int nr = seccomp_syscall_resolve_name(name.c_str());
    ASSERT_NE(nr, __NR_SCMP_ERROR) << name;
    if (nr < 0) continue;
    CallOutcome out = run("syscall", std::to_string(nr));
    EXPECT_EQ(out.status, Status::kForbidden) << name << ": " << out.detail;
    ++checked;
  }
  EXPECT_GE(checked, 10);
}

TEST_F(SandboxTest, OpeningFilesFailsWithEacces) {
  CallOutcome out = run("open");
  ASSERT_EQ(out.status, Status::kOk);
  EXPECT_EQ(out.output.z22_json, "-1 " + std::to_string(EACCES));
  std::string path = "/tmp/wf_sandbox_test_" + std::to_string(::getpid());
  out = run("create", path);
  EXPECT_EQ(out.output.z22_json, "-1 " + std::to_string(EACCES));
  EXPECT_NE(::access(path.c_str(), F_OK), 0);
}

TEST_F(SandboxTest, OnlyStdioAndTheChannelAreOpen) {
  EXPECT_EQ(run("fds").output.z22_json, "0,1,2,3,");
}

TEST_F(SandboxTest, EnvironmentIsEmpty) {
  ::setenv("WF_SECRET_FOR_TEST", "x", 1);
  EXPECT_EQ(run("env").output.z22_json, "0");
}

TEST_F(SandboxTest, OversizedResultIsRejected) {
  CallOutcome out = run("big", std::to_string(100u << 10));
  EXPECT_EQ(out.status, Status::kOutputTooLarge) << out.detail;
  EXPECT_TRUE(out.output.z22_json.empty());
  EXPECT_EQ(run("big", std::to_string(60u << 10)).status, Status::kOk);
}

TEST_F(SandboxTest, CapturedOutputIsTruncated) {
  CallOutcome out = run("print", "100000");
  ASSERT_EQ(out.status, Status::kOk);
  EXPECT_EQ(out.output.captured_output.size(), 1024u);
}

TEST_F(SandboxTest, CrashesAndSilentExitsAreReported) {
  CallOutcome out = run("segv");
  EXPECT_EQ(out.status, Status::kCrashed);
  EXPECT_NE(out.detail.find("SIGSEGV"), std::string::npos) << out.detail;
  out = run("exit");
  EXPECT_EQ(out.status, Status::kCrashed);
  EXPECT_NE(out.detail.find("status 3"), std::string::npos) << out.detail;
}

TEST_F(SandboxTest, ForgedResponseIsAViolation) {
  CallOutcome out = run("forge");
  EXPECT_EQ(out.status, Status::kForbidden) << out.detail;
}

TEST_F(SandboxTest, KeepsServingAfterFailures) {
  run("segv");
  run("socket");
  EXPECT_EQ(run("echo").status, Status::kOk);
  SandboxStats stats = sandbox_->query_stats();
  EXPECT_GT(stats.zygote_pid, 0);
  EXPECT_GE(stats.children_forked, 3u);
  EXPECT_EQ(stats.setup_failures, 0u);
}

TEST_F(SandboxTest, PoolRefillsToItsSize) {
  run("echo");
  // A bound, not an expectation: a fork and warm-up under ASan on a loaded machine can take
  // seconds (2 s was the whole budget before).
  auto until = Clock::now() + 30s;
  while (sandbox_->query_stats().ready_children < 2 && Clock::now() < until) {
    std::this_thread::sleep_for(5ms);
  }
  SandboxStats stats = sandbox_->query_stats();
  EXPECT_EQ(stats.ready_children, 2);  // warmed up and waiting
  EXPECT_EQ(stats.starting_children, 0);
  EXPECT_EQ(sandbox_->ready_children(), 2);
}

TEST_F(SandboxTest, ConcurrentCallsGetTheirOwnAnswers) {
  constexpr int kThreads = 8;
  constexpr int kCalls = 25;
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kCalls; ++i) {
        std::string arguments = std::to_string(t * 1000 + i);
        CallOutcome out = run("echo", arguments);
        if (out.status != Status::kOk || out.output.z22_json != "Z1:" + arguments) ++wrong;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(wrong.load(), 0);
}

// Fair sharing of children (fair_queue.h): one code's calls hold at most children_per_flow
// children; the rest of them queue (bounded, with a wait budget) while other code is served.
class FairShareTest : public SandboxTest {
 protected:
  static void SetUpTestSuite() {
    SandboxLimits limits = test_limits();
    limits.wall = 30s;
    limits.children_per_flow = 2;
    limits.queued_per_flow = 3;
    limits.queue_wait = 20s;
    sandbox_ = start_sandbox("scripted", limits).release();
  }
  // Whatever a test left running ends here, and the next test starts once the queue is empty:
  // no child held, no call waiting.
  void TearDown() override {
    for (auto& call : started_) call->cancel(CancelReason::kShutdown);
    started_.clear();
    EXPECT_TRUE(queue_reaches(0, 0));
  }

  // Waits until the sandbox's fair queue counts `held` children held by calls and `queued` calls
  // waiting for one (the sandbox's test accessor), for 30 s at most: what the tests below order
  // their calls by, rather than sleeps that a slow machine outlasts.
  static ::testing::AssertionResult queue_reaches(std::size_t held, std::size_t queued) {
    std::optional<SandboxQueueCounts> last;
    const auto until = Clock::now() + 30s;
    for (;;) {
      last = sandbox_->queue_counts_for_tests();
      if (last && last->held == held && last->queued == queued) {
        return ::testing::AssertionSuccess();
      }
      if (Clock::now() >= until) break;
      std::this_thread::sleep_for(5ms);
    }
    auto failure = ::testing::AssertionFailure();
    failure << "waited 30 s for " << held << " held and " << queued << " queued; ";
    if (last) return failure << "the queue counts " << last->held << " and " << last->queued;
    return failure << "the sandbox's event loop did not answer";
  }

  // The outcomes of calls started with start() (thread-safe; outlives the calls).
  struct Outcomes {
    std::mutex mutex;
    std::vector<CallOutcome> list;
    std::size_t size() {
      std::lock_guard lock(mutex);
      return list.size();
    }
    CallOutcome at(std::size_t i) {
      std::lock_guard lock(mutex);
      return list.at(i);
    }
  };
  using SharedOutcomes = std::shared_ptr<Outcomes>;

  std::shared_ptr<SandboxCall> start(const std::string& command, const SharedOutcomes& outcomes,
                                     std::chrono::milliseconds budget = 25s,
                                     const std::string& arguments = "{}") {
    CallInput input;
    input.code = command;
    input.function_name = "Z1";
    input.arguments_json = arguments;
    auto call = sandbox_->start(input, Clock::now() + budget, [outcomes](CallOutcome outcome) {
      std::lock_guard lock(outcomes->mutex);
      outcomes->list.push_back(std::move(outcome));
    });
    if (call) started_.push_back(call);
    return call;
  }

  static bool wait_for(const SharedOutcomes& outcomes, std::size_t n, std::chrono::seconds within) {
    const auto until = Clock::now() + within;
    while (outcomes->size() < n && Clock::now() < until) std::this_thread::sleep_for(10ms);
    return outcomes->size() >= n;
  }

  std::vector<std::shared_ptr<SandboxCall>> started_;
};

// One flow's calls are "nap" calls (the flow is the code, not its arguments): a minute's nap holds
// a child until the test cancels it, a nap of 0 ms answers "rested" as soon as it has a child.
constexpr const char* kLongNap = "60000";

TEST_F(FairShareTest, OtherCodeIsServedWhileOneCodeHoldsItsShareAndItsQueueIsFull) {
  auto slow = std::make_shared<Outcomes>();
  std::vector<std::shared_ptr<SandboxCall>> calls;
  // Two long naps hold the flow's two children, three wait in its queue: none ends by itself.
  for (int i = 0; i < 2; ++i) calls.push_back(start("nap", slow, 25s, kLongNap));
  ASSERT_TRUE(queue_reaches(2, 0));
  for (int i = 0; i < 3; ++i) calls.push_back(start("nap", slow, 25s, kLongNap));
  ASSERT_TRUE(queue_reaches(2, 3));
  // Echo is another flow: it gets children at once, again and again.
  for (int i = 0; i < 6; ++i) {
    CallOutcome out = run("echo", std::to_string(i));
    ASSERT_EQ(out.status, Status::kOk) << out.detail;
    EXPECT_EQ(out.output.z22_json, "Z1:" + std::to_string(i));
  }
  EXPECT_EQ(slow->size(), 0u);  // still napping or queued
  // A sixth call of that code finds its flow's queue full: refused at once, naming the limits.
  auto refused = std::make_shared<Outcomes>();
  start("nap", refused, 25s, kLongNap);
  ASSERT_TRUE(wait_for(refused, 1, 30s));
  EXPECT_EQ(refused->at(0).status, Status::kThrottled);
  EXPECT_NE(refused->at(0).detail.find("3 calls waiting"), std::string::npos)
      << refused->at(0).detail;
  for (auto& call : calls) call->cancel(CancelReason::kClientGone);
  ASSERT_TRUE(wait_for(slow, 5, 30s));
  for (std::size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(slow->at(i).status, Status::kCancelled) << slow->at(i).detail;
  }
  // The flow's children were given back: the same code runs again (only a child answers).
  ASSERT_TRUE(queue_reaches(0, 0));
  auto again = std::make_shared<Outcomes>();
  start("nap", again, 25s, "0");
  ASSERT_TRUE(wait_for(again, 1, 30s));
  EXPECT_EQ(again->at(0).status, Status::kOk) << again->at(0).detail;
  EXPECT_EQ(again->at(0).output.z22_json, "rested");
}

TEST_F(FairShareTest, AQueuedCallRunsWhenItsFlowGetsAChildBack) {
  auto held = std::make_shared<Outcomes>();
  auto queued = std::make_shared<Outcomes>();
  auto first = start("nap", held, 25s, kLongNap);
  start("nap", held, 25s, kLongNap);
  ASSERT_TRUE(queue_reaches(2, 0));
  // A short nap of the same code: it would answer at once with a child, but it waits behind its
  // flow's two.
  start("nap", queued, 25s, "0");
  ASSERT_TRUE(queue_reaches(2, 1));
  EXPECT_EQ(queued->size(), 0u);
  first->cancel(CancelReason::kClientGone);  // gives a child back: the third call gets it
  ASSERT_TRUE(wait_for(queued, 1, 30s));
  EXPECT_EQ(queued->at(0).status, Status::kOk) << queued->at(0).detail;
  EXPECT_EQ(queued->at(0).output.z22_json, "rested");
}

class QueueWaitTest : public FairShareTest {
 protected:
  static void SetUpTestSuite() {
    SandboxLimits limits = test_limits();
    limits.wall = 30s;
    limits.children_per_flow = 1;
    limits.queue_wait = 300ms;
    sandbox_ = start_sandbox("scripted", limits).release();
  }
};

TEST_F(QueueWaitTest, ACallThatWaitsLongerThanTheBudgetBehindItsFlowIsThrottled) {
  auto held = std::make_shared<Outcomes>();
  auto queued = std::make_shared<Outcomes>();
  start("sleep", held);
  ASSERT_TRUE(queue_reaches(1, 0));  // it holds the flow's only child
  start("sleep", queued);
  ASSERT_TRUE(wait_for(queued, 1, 30s));
  EXPECT_EQ(queued->at(0).status, Status::kThrottled);
  EXPECT_NE(queued->at(0).detail.find("waited 300 ms"), std::string::npos) << queued->at(0).detail;
  // It waited behind its own flow's cap, not for the pool: no congestion to report.
  EXPECT_EQ(queued->at(0).pool_wait.count(), 0);
}

// The CPU limit with a wall limit far away, so that a busy shared machine cannot turn a CPU-limit
// case into a timeout.
class CpuLimitTest : public SandboxTest {
 protected:
  static void SetUpTestSuite() {
    SandboxLimits limits = test_limits();
    limits.wall = 30s;
    sandbox_ = start_sandbox("scripted", limits).release();
  }
  static CallOutcome run(const std::string& command) {
    return SandboxTest::run(command, "{}", 30s);
  }
};

// The kernel sends SIGXCPU (soft limit, 1 s) and SIGKILL (hard limit, 2 s) when its tick-sampled
// CPU clock reaches them; cpu_ms is the scheduler's exact runtime from wait4, which on a loaded
// machine lags the tick clock (measured: the 2 s hard limit killed at 1.85-1.94 s of rusage, load
// 9 on 2 cores; a plain fork + setrlimit program shows the same; at load 15-20 the soft limit
// killed at 749.7 ms). The bounds allow a lag of 40%: what they must tell apart (the soft limit
// from nothing, the hard limit at >= 1,200 ms from the soft one at <= ~1,000 ms) is a whole second
// apart.
constexpr double kTickClockLag = 0.4;

TEST_F(CpuLimitTest, CpuLimitEndsASpinningChild) {
  const std::uint64_t generation = sandbox_->query_stats().zygote_generation;
  CallOutcome out = run("spin");
  EXPECT_EQ(out.status, Status::kCpuLimit) << out.detail;
  EXPECT_GE(out.cpu_ms, 1000.0 * (1 - kTickClockLag));
  EXPECT_EQ(sandbox_->query_stats().zygote_generation, generation) << "a zygote was replaced";
}

TEST_F(CpuLimitTest, CpuLimitHoldsWhenSigxcpuIsIgnored) {
  const std::uint64_t generation = sandbox_->query_stats().zygote_generation;
  CallOutcome out = run("spin-ignoring-xcpu");
  EXPECT_EQ(out.status, Status::kCpuLimit) << out.detail;
  // Far past the soft limit (which ends "spin" at about 1000 ms): the ignored SIGXCPU did not end
  // it, the hard limit's SIGKILL did.
  EXPECT_GE(out.cpu_ms, 2000.0 * (1 - kTickClockLag));
  // Ended by its own limit, not killed with its zygote (the call would then have been retried).
  EXPECT_EQ(sandbox_->query_stats().zygote_generation, generation) << "a zygote was replaced";
}

// ---- Zygote restarts ------------------------------------------------------------------------
// Each test owns its sandbox: they kill zygotes.

SandboxStats wait_for_generation(Sandbox& sandbox, std::uint64_t generation) {
  auto until = Clock::now() + 10s;
  SandboxStats stats = sandbox.query_stats();
  while (stats.zygote_generation < generation && Clock::now() < until) {
    std::this_thread::sleep_for(10ms);
    stats = sandbox.query_stats();
  }
  return stats;
}

CallOutcome echo(Sandbox& sandbox, const std::string& arguments) {
  CallInput input;
  input.code = "echo";
  input.function_name = "Z1";
  input.arguments_json = arguments;
  return sandbox.run(input, Clock::now() + 10s);
}

// The outcome of a call started with Sandbox::start. The callback owns the promise with the test:
// a test that stops early (a failed ASSERT while the call runs) leaves the sandbox's later
// callback a live promise, not one of a frame that is gone (that aborted the whole binary with
// "Promise already satisfied" instead of reporting the one failure).
struct Outcome {
  std::shared_ptr<std::promise<CallOutcome>> promise =
      std::make_shared<std::promise<CallOutcome>>();
  std::future<CallOutcome> future = promise->get_future();
  std::function<void(CallOutcome)> callback() const {
    return [promise = promise](CallOutcome outcome) { promise->set_value(std::move(outcome)); };
  }
};
TEST(ZygoteRestart, KilledZygoteIsReplacedAndCallsKeepWorking) {
  auto sandbox = start_sandbox("scripted", test_limits());
  SandboxStats before = sandbox->stats();
  ASSERT_GT(before.zygote_pid, 0);
  ASSERT_GT(before.supervisor_pid, 0);
  EXPECT_EQ(before.zygote_generation, 1u);
  ASSERT_EQ(::kill(before.zygote_pid, SIGKILL), 0);
  // The very next call is served (by the next zygote's first child).
  CallOutcome out = echo(*sandbox, "after");
  EXPECT_EQ(out.status, Status::kOk) << out.detail;
  EXPECT_EQ(out.output.z22_json, "Z1:after");
  SandboxStats after = wait_for_generation(*sandbox, 2);
  EXPECT_EQ(after.zygote_generation, 2u);
  EXPECT_GT(after.zygote_pid, 0);
  EXPECT_NE(after.zygote_pid, before.zygote_pid);
  EXPECT_EQ(after.supervisor_pid, before.supervisor_pid);
  EXPECT_NE(::kill(before.zygote_pid, 0), 0) << "the old zygote must be gone";
}

TEST(ZygoteRestart, IdleSandboxNoticesADeadZygoteThroughStats) {
  // /readyz only calls ready_children(): a restart must not wait for the next call.
  auto sandbox = start_sandbox("scripted", test_limits());
  pid_t zygote = sandbox->stats().zygote_pid;
  ASSERT_EQ(::kill(zygote, SIGKILL), 0);
  // No call and no stats query: the sandbox's own event loop notices the death and the new zygote.
  auto until = Clock::now() + 10s;
  auto replaced = [&] {
    SandboxStats stats = sandbox->stats();
    return stats.zygote_pid > 0 && stats.zygote_pid != zygote && sandbox->ready_children() > 0;
  };
  while (!replaced() && Clock::now() < until) std::this_thread::sleep_for(10ms);
  EXPECT_GT(sandbox->ready_children(), 0);
  EXPECT_NE(sandbox->stats().zygote_pid, zygote);
}

TEST(ZygoteRestart, ConcurrentCallsSurviveZygoteKills) {
  auto sandbox = start_sandbox("scripted", test_limits());
  constexpr int kThreads = 4;
  constexpr int kCalls = 60;
  std::atomic<int> wrong{0};
  std::atomic<int> done{0};
  std::vector<std::string> failures(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kCalls; ++i) {
        std::string arguments = std::to_string(t * 1000 + i);
        CallOutcome out = echo(*sandbox, arguments);
        if (out.status != Status::kOk || out.output.z22_json != "Z1:" + arguments) {
          ++wrong;
          failures[static_cast<std::size_t>(t)] = out.detail;
        }
        ++done;
        done.notify_all();
      }
    });
  }
  // Kill the zygote twice while the calls run, each time once a third more calls are done
  // (every call ends by its deadline, so the count always gets there).
  for (int kill = 0; kill < 2; ++kill) {
    const int target = (kill + 1) * kThreads * kCalls / 3;
    for (int seen = done.load(); seen < target; seen = done.load()) done.wait(seen);
    pid_t zygote = sandbox->stats().zygote_pid;
    if (zygote > 0) ::kill(zygote, SIGKILL);
  }
  for (auto& thread : threads) thread.join();
  std::string details;
  for (const auto& f : failures) details += f + "; ";
  EXPECT_EQ(wrong.load(), 0) << details;
  EXPECT_GE(wait_for_generation(*sandbox, 3).zygote_generation, 3u);
}

TEST(ZygoteRestart, ZygoteOverItsMemoryCapIsReplaced) {
  SandboxLimits limits = test_limits();
  limits.zygote_memory_bytes = 4096;  // any zygote is over this: replaced every second
  auto sandbox = start_sandbox("scripted", limits);
  SandboxStats stats = wait_for_generation(*sandbox, 2);
  EXPECT_GE(stats.zygote_generation, 2u);
  CallOutcome out = echo(*sandbox, "capped");
  EXPECT_EQ(out.status, Status::kOk) << out.detail;
}

TEST(ZygoteRestart, EndingTheSandboxEndsItsProcesses) {
  pid_t supervisor = -1;
  pid_t zygote = -1;
  {
    auto sandbox = start_sandbox("scripted", test_limits());
    SandboxStats stats = sandbox->stats();
    supervisor = stats.supervisor_pid;
    zygote = stats.zygote_pid;
  }
  EXPECT_NE(::kill(supervisor, 0), 0);
  auto until = Clock::now() + 5s;
  while (::kill(zygote, 0) == 0 && Clock::now() < until) std::this_thread::sleep_for(5ms);
  EXPECT_NE(::kill(zygote, 0), 0);
}

TEST(ZygoteRestart, TheOomKillerPicksSandboxProcessesFirst) {
  auto sandbox = start_sandbox("scripted", test_limits());
  SandboxStats stats = sandbox->stats();
  auto oom_score_adj = [](pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/oom_score_adj");
    int value = -2000;
    in >> value;
    return value;
  };
  EXPECT_EQ(oom_score_adj(stats.zygote_pid), 1000);  // children inherit it
  EXPECT_EQ(oom_score_adj(stats.supervisor_pid), oom_score_adj(::getpid()));
}

// ---- Self-healing, cancellation, fresh images ------------------------------------------------

// Pids of `parent`'s children (its main thread's list).
std::vector<pid_t> children_of(pid_t parent) {
  std::ifstream in("/proc/" + std::to_string(parent) + "/task/" + std::to_string(parent) +
                   "/children");
  std::vector<pid_t> pids;
  for (pid_t pid; in >> pid;) pids.push_back(pid);
  return pids;
}

// Whether one of `pids` is in a sleep now (its /proc/<pid>/syscall names nanosleep or
// clock_nanosleep); nullopt when no child's system call can be read here (that file needs the
// right to trace the process).
std::optional<bool> one_is_asleep(const std::vector<pid_t>& pids) {
  bool readable = false;
  for (pid_t pid : pids) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/syscall");
    std::string first;  // the system call's number, or "running"
    if (!(in >> first)) continue;
    readable = true;
    if (first == std::to_string(SYS_nanosleep) || first == std::to_string(SYS_clock_nanosleep)) {
      return true;
    }
  }
  if (!readable) return std::nullopt;
  return false;
}

// How long a wait for a condition may take before it fails: far beyond the passing case (which
// returns as soon as the condition holds) on a loaded CI machine.
constexpr auto kPatience = 60s;

// "pid 12 has 3 children: 13 14 15", for a failed wait's message.
std::string children_seen(pid_t parent) {
  const std::vector<pid_t> pids = children_of(parent);
  std::string text =
      "pid " + std::to_string(parent) + " has " + std::to_string(pids.size()) + " children:";
  for (pid_t pid : pids) text += " " + std::to_string(pid);
  return text;
}

// "2 ready, zygote 12 supervisor 11 (before: zygote 9 supervisor 8)", for a failed wait's message.
std::string healing_seen(Sandbox& sandbox, const SandboxStats& before) {
  const SandboxStats now = sandbox.stats();
  return std::to_string(sandbox.ready_children()) + " ready, zygote " +
         std::to_string(now.zygote_pid) + " supervisor " + std::to_string(now.supervisor_pid) +
         " (before: zygote " + std::to_string(before.zygote_pid) + " supervisor " +
         std::to_string(before.supervisor_pid) + ")";
}

// Polls `predicate` until it holds or `limit` passes. A failure says how long it waited and, with
// `seen`, what it saw last.
template <typename Predicate>
::testing::AssertionResult wait_until(Predicate predicate, std::chrono::milliseconds limit,
                                      const std::function<std::string()>& seen = {}) {
  auto until = Clock::now() + limit;
  while (!predicate()) {
    if (Clock::now() >= until) {
      if (predicate()) break;
      auto failure = ::testing::AssertionFailure() << "not within " << limit.count() << " ms";
      if (seen) failure << "; saw " << seen();
      return failure;
    }
    std::this_thread::sleep_for(10ms);
  }
  return ::testing::AssertionSuccess();
}

// The start address of each mapping of `pid` whose VmFlags hold `flag` (from /proc/<pid>/smaps);
// nullopt when the file cannot be read.
std::optional<std::vector<unsigned long>> mappings_flagged(pid_t pid, const std::string& flag) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/smaps");
  if (!in) return std::nullopt;
  std::vector<unsigned long> found;
  unsigned long start = 0;
  bool any = false;
  for (std::string line; std::getline(in, line);) {
    unsigned long begin = 0, end = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &begin, &end) == 2) {
      start = begin;
      any = true;
    } else if (line.rfind("VmFlags:", 0) == 0 &&
               (line + " ").find(" " + flag + " ") != std::string::npos) {
      found.push_back(start);
    }
  }
  if (!any) return std::nullopt;
  return found;
}

// The zygote keeps its own bookkeeping in a mapping that fork does not copy (MADV_DONTFORK, "dc"
// in VmFlags): it writes it between forks, and on pages shared with a child each such write was a
// copy-on-write fault. Its children have no such mapping, and they still serve calls.
TEST(ZygoteRestart, TheZygotesBookkeepingIsNotInItsChildren) {
  auto sandbox = start_sandbox("scripted", test_limits());
  const pid_t zygote = sandbox->stats().zygote_pid;
  ASSERT_GT(zygote, 0);
  ASSERT_TRUE(wait_until([&] { return !children_of(zygote).empty(); }, kPatience,
                         [&] { return children_seen(zygote); }));
  auto in_zygote = mappings_flagged(zygote, "dc");
  ASSERT_TRUE(in_zygote.has_value());
  ASSERT_EQ(in_zygote->size(), 1u);
  for (pid_t child : children_of(zygote)) {
    auto in_child = mappings_flagged(child, "dc");
    if (!in_child) continue;  // gone, or not readable (children are not dumpable)
    EXPECT_TRUE(in_child->empty()) << child;
    std::ifstream maps("/proc/" + std::to_string(child) + "/maps");
    for (std::string line; std::getline(maps, line);) {
      unsigned long begin = 0, end = 0;
      if (std::sscanf(line.c_str(), "%lx-%lx ", &begin, &end) == 2) {
        EXPECT_FALSE(begin <= in_zygote->front() && in_zygote->front() < end) << line;
      }
    }
  }
  for (int i = 0; i < 3; ++i) {
    CallInput input;
    input.code = "echo";
    input.function_name = "Z1";
    input.arguments_json = std::to_string(i);
    CallOutcome out = sandbox->run(input, Clock::now() + 10s);
    EXPECT_EQ(out.status, Status::kOk) << out.detail;
    EXPECT_EQ(out.output.z22_json, "Z1:" + std::to_string(i));
  }
}

TEST(SelfHealing, StoppedZygoteIsKilledAndReplaced) {
  auto sandbox = start_sandbox("scripted", test_limits());
  SandboxStats before = sandbox->query_stats();
  ASSERT_GT(before.zygote_pid, 0);
  const double kills_before =
      metric_value(R"(wf_evaluator_sandbox_zygote_kills_total{language="scripted"})");
  ASSERT_EQ(::kill(before.zygote_pid, SIGSTOP), 0);
  // /readyz tells the truth while the zygote does not answer...
  EXPECT_TRUE(wait_until([&] { return sandbox->ready_children() == 0; }, kPatience,
                         [&] { return std::to_string(sandbox->ready_children()) + " ready"; }));
  // ...and the language is back, with a new zygote.
  EXPECT_TRUE(wait_until(
      [&] {
        return sandbox->ready_children() > 0 && sandbox->stats().zygote_pid > 0 &&
               sandbox->stats().zygote_pid != before.zygote_pid;
      },
      kPatience, [&] { return healing_seen(*sandbox, before); }));
  CallOutcome out = echo(*sandbox, "healed");
  EXPECT_EQ(out.status, Status::kOk) << out.detail;
  EXPECT_EQ(out.output.z22_json, "Z1:healed");
  EXPECT_TRUE(wait_until([&] { return ::kill(before.zygote_pid, 0) != 0; }, kPatience))
      << "the stopped zygote must be killed";
  EXPECT_EQ(metric_value(R"(wf_evaluator_sandbox_zygote_kills_total{language="scripted"})"),
            kills_before + 1);
}

TEST(SelfHealing, KilledSupervisorIsStartedAgain) {
  auto sandbox = start_sandbox("scripted", test_limits());
  SandboxStats before = sandbox->query_stats();
  ASSERT_GT(before.supervisor_pid, 0);
  ASSERT_EQ(::kill(before.supervisor_pid, SIGKILL), 0);
  EXPECT_TRUE(wait_until(
      [&] {
        SandboxStats now = sandbox->stats();
        return sandbox->ready_children() > 0 && now.supervisor_pid > 0 &&
               now.supervisor_pid != before.supervisor_pid;
      },
      kPatience, [&] { return healing_seen(*sandbox, before); }));
  CallOutcome out = echo(*sandbox, "again");
  EXPECT_EQ(out.status, Status::kOk) << out.detail;
  EXPECT_EQ(out.output.z22_json, "Z1:again");
  EXPECT_TRUE(wait_until([&] { return ::kill(before.zygote_pid, 0) != 0; }, kPatience))
      << "the old zygote dies with its supervisor";
}

// Threads of this process whose name is `name` (/proc/self/task/*/comm).
std::vector<pid_t> threads_named(const std::string& name) {
  std::vector<pid_t> tids;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(entry.path() / "comm");
    std::string text;
    std::getline(comm, text);
    if (text == name) tids.push_back(static_cast<pid_t>(std::stoi(entry.path().filename())));
  }
  return tids;
}

// Children started by thread `tid` of this process (/proc/self/task/<tid>/children).
std::vector<pid_t> children_of_thread(pid_t tid) {
  std::ifstream in("/proc/self/task/" + std::to_string(tid) + "/children");
  std::vector<pid_t> pids;
  for (pid_t pid; in >> pid;) pids.push_back(pid);
  return pids;
}

bool contains(const std::vector<pid_t>& pids, pid_t pid) {
  return std::find(pids.begin(), pids.end(), pid) != pids.end();
}

// A re-spawn never runs on the event loop: posix_spawn waits for the new image's exec (80-120 ms
// measured on a loaded machine), which held every request of a one-thread server. The new
// supervisor is the child of the sandbox's spawner thread, not of the loop's thread.
TEST(SelfHealing, ASupervisorIsSpawnedOffTheEventLoop) {
  boost::asio::io_context io;
  auto work = boost::asio::make_work_guard(io);
  std::promise<pid_t> loop_tid;
  std::thread loop([&] {
    loop_tid.set_value(static_cast<pid_t>(::syscall(SYS_gettid)));
    io.run();
  });
  const pid_t loop_thread = loop_tid.get_future().get();
  auto sandbox = start_sandbox("scripted", test_limits(), &io);
  SandboxStats before = sandbox->query_stats();
  ASSERT_GT(before.supervisor_pid, 0);
  ASSERT_EQ(::kill(before.supervisor_pid, SIGKILL), 0);
  SandboxStats after;
  EXPECT_TRUE(wait_until(
      [&] {
        after = sandbox->stats();
        return sandbox->ready_children() > 0 && after.supervisor_pid > 0 &&
               after.supervisor_pid != before.supervisor_pid;
      },
      kPatience, [&] { return healing_seen(*sandbox, before); }));
  EXPECT_FALSE(contains(children_of_thread(loop_thread), after.supervisor_pid));
  pid_t spawner = -1;
  for (pid_t tid : threads_named("wf-sbx-spawn")) {
    if (contains(children_of_thread(tid), after.supervisor_pid)) spawner = tid;
  }
  EXPECT_GT(spawner, 0) << "no spawner thread is the parent of supervisor " << after.supervisor_pid;
  CallOutcome out = echo(*sandbox, "off the loop");
  EXPECT_EQ(out.status, Status::kOk) << out.detail;
  sandbox->shutdown();
  io.stop();
  loop.join();
  EXPECT_FALSE(std::filesystem::exists("/proc/self/task/" + std::to_string(spawner)))
      << "shutdown ends the spawner thread";
  EXPECT_NE(::kill(after.supervisor_pid, 0), 0) << "shutdown ends the supervisor";
}

// The supervisor dies with its parent thread (PR_SET_PDEATHSIG follows the thread): the thread
// that called start_sandbox may end without taking the sandbox down.
TEST(SelfHealing, TheSupervisorOutlivesTheThreadThatStartedTheSandbox) {
  std::unique_ptr<Sandbox> sandbox;
  std::thread([&] { sandbox = start_sandbox("scripted", test_limits()); }).join();
  const SandboxStats before = sandbox->query_stats();
  ASSERT_GT(before.supervisor_pid, 0);
  // Alive and not a zombie (a killed supervisor stays one until the sandbox reaps it).
  auto alive = [](pid_t pid) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string text;
    std::getline(stat, text);
    const auto close = text.rfind(')');
    return close != std::string::npos && close + 2 < text.size() && text[close + 2] != 'Z';
  };
  EXPECT_FALSE(wait_until([&] { return !alive(before.supervisor_pid); }, 500ms))
      << "the supervisor died with the thread that started the sandbox";
  CallOutcome out = echo(*sandbox, "still here");
  EXPECT_EQ(out.status, Status::kOk) << out.detail;
  EXPECT_EQ(sandbox->query_stats().supervisor_pid, before.supervisor_pid);
}

TEST(Cancellation, CancelKillsTheChildAtOnce) {
  auto sandbox = start_sandbox("scripted", test_limits());
  const pid_t zygote = sandbox->query_stats().zygote_pid;
  const auto pool = static_cast<std::size_t>(test_limits().pool_size);
  ASSERT_TRUE(wait_until([&] { return children_of(zygote).size() == pool; }, kPatience,
                         [&] { return children_seen(zygote); }));
  const std::string cancelled_series =
      R"(wf_evaluator_sandbox_cancelled_total{language="scripted",reason="client_gone"})";
  const double cancelled_before = metric_value(cancelled_series);
  CallInput input;
  input.code = "sleep";
  Outcome ended;
  auto call = sandbox->start(input, Clock::now() + 10s, ended.callback());
  ASSERT_NE(call, nullptr);
  // The call's child plus a refilled pool.
  ASSERT_TRUE(wait_until([&] { return children_of(zygote).size() == pool + 1; }, kPatience,
                         [&] { return children_seen(zygote); }));
  call->cancel(CancelReason::kClientGone);
  auto& future = ended.future;
  ASSERT_EQ(future.wait_for(kPatience), std::future_status::ready);
  CallOutcome out = future.get();
  EXPECT_EQ(out.status, Status::kCancelled) << out.detail;
  // Killed and reaped: the process count is back to the pool size.
  EXPECT_TRUE(wait_until([&] { return children_of(zygote).size() == pool; }, kPatience,
                         [&] { return children_seen(zygote); }));
  EXPECT_EQ(metric_value(cancelled_series), cancelled_before + 1);
  call->cancel(CancelReason::kClientGone);  // idempotent
  EXPECT_EQ(metric_value(cancelled_series), cancelled_before + 1);
}

// A child stopped and continued in the middle of a sleep (an operator's SIGSTOP/SIGCONT, strace or
// gdb attaching) goes on: the kernel resumes its sleep through restart_syscall, which the filter
// allows. Before, the resumed sleep was a forbidden system call and the call ended as kForbidden.
TEST(Cancellation, AChildStoppedAndContinuedInASleepAnswers) {
  SandboxLimits limits = test_limits();
  limits.wall = 20s;  // above the nap below
  auto sandbox = start_sandbox("scripted", limits);
  const pid_t zygote = sandbox->query_stats().zygote_pid;
  const auto pool = static_cast<std::size_t>(limits.pool_size);
  ASSERT_TRUE(wait_until([&] { return children_of(zygote).size() == pool; }, kPatience,
                         [&] { return children_seen(zygote); }));
  CallInput input;
  input.code = "nap";
  input.arguments_json = "3000";  // long enough to be seen asleep on a loaded machine
  Outcome ended;
  auto call = sandbox->start(input, Clock::now() + 20s, ended.callback());
  ASSERT_NE(call, nullptr);
  ASSERT_TRUE(wait_until([&] { return children_of(zygote).size() == pool + 1; }, kPatience,
                         [&] { return children_seen(zygote); }));
  // Every child: the idle ones wait in a read, which the kernel restarts as itself.
  const std::vector<pid_t> children = children_of(zygote);
  // The stop must come while the call sleeps, or the test says nothing: wait for the sleep where
  // the children's system calls can be read, else give it 50 ms.
  if (one_is_asleep(children).has_value()) {
    ASSERT_TRUE(wait_until([&] { return one_is_asleep(children).value_or(false); }, kPatience,
                           [&] { return children_seen(zygote); }))
        << "the call never reached its sleep";
  } else {
    std::printf(
        "[   NOTE   ] the children's system calls cannot be read here: the stop is sent "
        "50 ms into the call, which is asleep by then on all but a very loaded machine\n");
    std::this_thread::sleep_for(50ms);
  }
  for (pid_t child : children) ::kill(child, SIGSTOP);
  std::this_thread::sleep_for(50ms);
  for (pid_t child : children) ::kill(child, SIGCONT);
  auto& future = ended.future;
  ASSERT_EQ(future.wait_for(kPatience), std::future_status::ready);
  CallOutcome out = future.get();
  EXPECT_EQ(out.status, Status::kOk) << out.detail;
  EXPECT_EQ(out.output.z22_json, "rested");
}

TEST(Cancellation, RequestDeadlineEndsTheCallAsATimeoutAtOnce) {
  // A wall limit and a request deadline of ten minutes: nothing but the cancellation can end the
  // call within the minute the test waits (a bound for a hang, not a stopwatch).
  SandboxLimits limits = test_limits();
  limits.wall = 600s;
  auto sandbox = start_sandbox("scripted", limits);
  const std::string series =
      R"(wf_evaluator_sandbox_cancelled_total{language="scripted",reason="deadline"})";
  const double before = metric_value(series);
  CallInput input;
  input.code = "sleep";
  Outcome ended;
  auto call = sandbox->start(input, Clock::now() + 600s, ended.callback());
  const pid_t zygote = sandbox->query_stats().zygote_pid;
  const auto pool = static_cast<std::size_t>(limits.pool_size);
  ASSERT_TRUE(wait_until([&] { return children_of(zygote).size() == pool + 1; }, kPatience,
                         [&] { return children_seen(zygote); }));
  call->cancel(CancelReason::kDeadline);
  auto& future = ended.future;
  ASSERT_EQ(future.wait_for(60s), std::future_status::ready)
      << "the cancellation did not end the call (its wall limit is 600 s)";
  CallOutcome out = future.get();
  EXPECT_EQ(out.status, Status::kTimeout) << out.detail;
  // The deadline ended it, not the wall limit of 600 s, and it had less than a minute.
  EXPECT_NE(out.detail.find("the request's deadline ("), std::string::npos) << out.detail;
  EXPECT_EQ(out.detail.find("wall-clock limit"), std::string::npos) << out.detail;
  EXPECT_EQ(out.detail.find("600000"), std::string::npos) << out.detail;
  EXPECT_EQ(metric_value(series), before + 1);
}

// A call that runs longer than call_demote_after is niced by call_nice (so that the service's
// event loops and short calls get the CPU beside it); warm children and short calls are not.
TEST(Scheduling, ACallIsNicedOnlyAfterItHasRunItsGrace) {
  SandboxLimits limits = test_limits();
  limits.wall = 20s;
  limits.call_nice = 7;
  limits.call_demote_after = 2s;
  auto sandbox = start_sandbox("scripted", limits);
  const pid_t zygote = sandbox->query_stats().zygote_pid;
  const int base = ::getpriority(PRIO_PROCESS, 0);
  if (base + limits.call_nice >= 19) {
    GTEST_SKIP() << "this test runs at nice " << base
                 << ": its sandbox children already have the lowest priority, so a demoted child "
                    "cannot be told apart";
  }
  auto niced = [&] {
    std::size_t n = 0;
    for (pid_t child : children_of(zygote)) {
      errno = 0;
      const int nice = ::getpriority(PRIO_PROCESS, static_cast<id_t>(child));
      if (errno == 0 && nice == std::min(19, base + 7)) ++n;
    }
    return n;
  };
  CallInput input;
  input.code = "sleep";
  Outcome ended;
  const auto started = Clock::now();
  auto call = sandbox->start(input, Clock::now() + 15s, ended.callback());
  const auto pool = static_cast<std::size_t>(limits.pool_size);
  ASSERT_TRUE(wait_until([&] { return children_of(zygote).size() == pool + 1; }, kPatience,
                         [&] { return children_seen(zygote); }));
  // Read before the grace can have ended (the call starts after `started`): only then must no
  // child be niced. On a machine so loaded that the child took 2 s to appear, that reading says
  // nothing, and the test goes on to what it can still tell.
  const std::size_t niced_early = niced();
  if (Clock::now() - started < limits.call_demote_after) {
    EXPECT_EQ(niced_early, 0u) << "within its first 2 s the call keeps the zygote's priority";
  } else {
    std::printf(
        "[   NOTE   ] the call's child appeared after its 2 s grace: the check that it is "
        "not niced before then is skipped\n");
  }
  EXPECT_TRUE(
      wait_until([&] { return niced() == 1; }, kPatience,
                 [&] { return std::to_string(niced()) + " niced; " + children_seen(zygote); }))
      << "then only its child is niced";
  call->cancel(CancelReason::kClientGone);
  EXPECT_EQ(ended.future.get().status, Status::kCancelled);
}

TEST(Cancellation, EveryCallOfABurstCanBeCancelled) {
  SandboxLimits limits = test_limits();
  limits.pool_size = 1;
  auto sandbox = start_sandbox("scripted", limits);
  CallInput sleeper;
  sleeper.code = "sleep";
  Outcome first_ended;
  // With a pool of one, most of the burst still waits for a child when it is cancelled; the
  // others are cancelled while their child runs. Either way: cancelled, and nothing lingers.
  auto first = sandbox->start(sleeper, Clock::now() + 10s, first_ended.callback());
  std::vector<std::shared_ptr<SandboxCall>> others;
  std::vector<Outcome> results(4);
  for (auto& result : results) {
    others.push_back(sandbox->start(sleeper, Clock::now() + 10s, result.callback()));
  }
  for (auto& other : others) other->cancel(CancelReason::kShutdown);
  first->cancel(CancelReason::kClientGone);
  for (auto& result : results) {
    auto& future = result.future;
    ASSERT_EQ(future.wait_for(kPatience), std::future_status::ready);
    EXPECT_EQ(future.get().status, Status::kCancelled);
  }
  auto& first_future = first_ended.future;
  ASSERT_EQ(first_future.wait_for(kPatience), std::future_status::ready);
  EXPECT_EQ(first_future.get().status, Status::kCancelled);
  EXPECT_EQ(echo(*sandbox, "after").status, Status::kOk);
}

// The address range of AddressSanitizer's shadow memory in a process of this build (empty in
// other builds). Every ASan process maps it at the same fixed place (MEM_TO_SHADOW of the whole
// 47-bit user address space, about 16 TiB, read-write and mostly never touched): it holds only
// poison bytes, one per 8 bytes of the program's memory, never the program's data, and reading
// it page by page through /proc/<pid>/mem takes hours. memory_contains() skips mappings inside it.
std::pair<unsigned long, unsigned long> sanitizer_shadow() {
#if WF_ASAN
  std::size_t scale = 0;
  std::size_t offset = 0;
  __asan_get_shadow_mapping(&scale, &offset);
  constexpr unsigned long kUserSpaceEnd = 1ul << 47;  // x86-64, 4-level paging
  return {offset, offset + (kUserSpaceEnd >> scale)};
#else
  return {0, 0};
#endif
}

// Whether `needle` occurs in any readable mapping of `pid` (as root: /proc/<pid>/mem), outside
// the sanitizer's shadow memory.
std::optional<bool> memory_contains(pid_t pid, const std::string& needle) {
  const auto [shadow_begin, shadow_end] = sanitizer_shadow();
  const std::string proc = "/proc/" + std::to_string(pid);
  int mem = ::open((proc + "/mem").c_str(), O_RDONLY | O_CLOEXEC);
  if (mem < 0) return std::nullopt;
  std::ifstream maps(proc + "/maps");
  std::string line;
  std::vector<char> chunk(1 << 20);
  bool found = false;
  while (!found && std::getline(maps, line)) {
    unsigned long start = 0, end = 0;
    char perms[5] = {};
    if (std::sscanf(line.c_str(), "%lx-%lx %4s", &start, &end, perms) != 3 || perms[0] != 'r' ||
        (start >= shadow_begin && end <= shadow_end)) {
      continue;
    }
    std::string carry;
    for (unsigned long at = start; at < end && !found;) {
      std::size_t want = std::min<unsigned long>(chunk.size(), end - at);
      ssize_t got = ::pread(mem, chunk.data(), want, static_cast<off_t>(at));
      if (got <= 0) break;  // [vvar] and friends
      std::string window = carry + std::string(chunk.data(), static_cast<std::size_t>(got));
      found = window.find(needle) != std::string::npos;
      carry = window.substr(window.size() - std::min(window.size(), needle.size() - 1));
      at += static_cast<unsigned long>(got);
    }
  }
  ::close(mem);
  return found;
}

std::string file_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

TEST(FreshImage, NoByteOfTheServiceIsInASandboxProcess) {
  // Issue 11 item 1: built at run time, so the marker is in no binary's read-only data.
  const std::string marker = "WFMARK" + std::to_string(std::random_device{}()) + "x" +
                             std::to_string(::getpid()) + "SECRET";
  ::setenv("WF_TEST_API_TOKEN", marker.c_str(), 1);
  auto heap_copy = std::make_unique<std::string>("token=" + marker);
  auto self = memory_contains(::getpid(), marker);
  if (!self) GTEST_SKIP() << "reading /proc/<pid>/mem needs root (CAP_SYS_PTRACE)";
  ASSERT_TRUE(*self) << "the scan must find the marker in the service itself";

  auto sandbox = start_sandbox("scripted", test_limits());
  SandboxStats stats = sandbox->query_stats();
  std::vector<pid_t> processes = {stats.supervisor_pid, stats.zygote_pid};
  ASSERT_TRUE(wait_until([&] { return !children_of(stats.zygote_pid).empty(); }, kPatience,
                         [&] { return children_seen(stats.zygote_pid); }));
  for (pid_t child : children_of(stats.zygote_pid)) processes.push_back(child);
  ASSERT_GE(processes.size(), 3u);
  for (pid_t pid : processes) {
    const std::string proc = "/proc/" + std::to_string(pid);
    EXPECT_EQ(file_text(proc + "/environ").find(marker), std::string::npos) << proc;
    EXPECT_EQ(file_text(proc + "/cmdline").find(marker), std::string::npos) << proc;
    auto found = memory_contains(pid, marker);
    ASSERT_TRUE(found.has_value()) << "cannot read " << proc << "/mem";
    EXPECT_FALSE(*found) << "the service's secret is in the memory of " << proc;
  }
  ::unsetenv("WF_TEST_API_TOKEN");
}

// ---- Metrics ----------------------------------------------------------------------------------

TEST_F(SandboxTest, CallsAndKillsAreCounted) {
  run("echo");
  run("socket");
  sandbox_->stats();
  std::string text = wf::obs::render_metrics();
  EXPECT_NE(text.find(R"(wf_evaluator_sandbox_calls_total{language="scripted",outcome="ok"})"),
            std::string::npos);
  EXPECT_NE(
      text.find(R"(wf_evaluator_sandbox_calls_total{language="scripted",outcome="forbidden"})"),
      std::string::npos);
  EXPECT_NE(text.find(R"(wf_evaluator_sandbox_kills_total{language="scripted",reason="seccomp"})"),
            std::string::npos);
  for (const char* name :
       {"wf_evaluator_sandbox_pool_ready", "wf_evaluator_sandbox_child_cpu_seconds_bucket",
        "wf_evaluator_sandbox_child_peak_rss_bytes_bucket",
        "wf_evaluator_sandbox_fork_to_ready_seconds_bucket",
        "wf_evaluator_sandbox_zygote_restarts_total"}) {
    EXPECT_NE(text.find(name), std::string::npos) << name;
  }
  // promtool, when installed, must accept the exposition.
  if (::access("/usr/bin/promtool", X_OK) != 0) GTEST_SKIP() << "promtool not installed";
  std::string path = "/tmp/wf_sandbox_metrics_" + std::to_string(::getpid()) + ".txt";
  {
    std::ofstream out(path);
    out << text;
  }
  std::string command = "/usr/bin/promtool check metrics < " + path + " 2>&1";
  std::FILE* pipe = ::popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string report;
  char line[512];
  while (std::fgets(line, sizeof(line), pipe) != nullptr) report += line;
  int status = ::pclose(pipe);
  std::remove(path.c_str());
  // Only our families matter here; others in the process registry belong to other modules.
  std::string ours;
  std::size_t at = 0;
  while ((at = report.find("wf_evaluator_sandbox", at)) != std::string::npos) {
    std::size_t end = report.find('\n', at);
    ours += report.substr(at, end - at) + "\n";
    at = end;
  }
  EXPECT_TRUE(ours.empty()) << report;
  (void)status;
}

// ---- The conversation without I/O (child_reply.h) --------------------------------------------

std::string response_frame(std::uint64_t token, std::uint32_t flags, const std::string& z22,
                           const std::string& printed = "", const std::string& error = "") {
  sandbox_internal::ResponseHeader header;
  header.token = token;
  header.flags = flags;
  header.z22_size = header.z22_len = z22.size();
  header.captured_len = printed.size();
  header.error_len = error.size();
  std::string frame(reinterpret_cast<const char*>(&header), sizeof(header));
  return frame + z22 + printed + error;
}

TEST(ReplyReader, ReadsAFrameThatArrivesInPieces) {
  using State = sandbox_internal::ReplyReader::State;
  sandbox_internal::ReplyReader reader(42, test_limits());
  const std::string bytes = "R" + response_frame(42, sandbox_internal::kFlagOk, "{}", "out");
  for (std::size_t i = 0; i + 1 < bytes.size(); ++i) {
    ASSERT_EQ(reader.feed(&bytes[i], 1), State::kMore) << "byte " << i;
  }
  ASSERT_EQ(reader.feed(&bytes.back(), 1), State::kComplete);
  CallOutcome out = reader.outcome(false, 3000ms);
  EXPECT_EQ(out.status, Status::kOk);
  EXPECT_EQ(out.output.z22_json, "{}");
  EXPECT_EQ(out.output.captured_output, "out");
}

TEST(ReplyReader, ForgedOversizedAndFailedFramesAreRecognised) {
  using State = sandbox_internal::ReplyReader::State;
  {
    sandbox_internal::ReplyReader reader(42, test_limits());
    const std::string forged = "R" + response_frame(41, sandbox_internal::kFlagOk, "{}");
    EXPECT_EQ(reader.feed(forged.data(), forged.size()), State::kViolation);
  }
  {
    sandbox_internal::ReplyReader reader(42, test_limits());
    const std::string big = "R" + response_frame(42, sandbox_internal::kFlagOk,
                                                 std::string(test_limits().output_bytes + 1, 'x'));
    EXPECT_EQ(reader.feed(big.data(), big.size()), State::kViolation);
  }
  {
    sandbox_internal::ReplyReader reader(42, test_limits());
    const std::string failed = "Fsandbox child: seccomp: EPERM";
    EXPECT_EQ(reader.feed(failed.data(), failed.size()), State::kSetupFailed);
    EXPECT_EQ(reader.problem(), "sandbox child: seccomp: EPERM");
    EXPECT_FALSE(reader.ready());
  }
}

TEST(ReplyReader, OnlyTheRuntimesFlagMeansTheMemoryLimit) {
  sandbox_internal::ReplyReader reader(7, test_limits());
  const std::string text = "R" + response_frame(7, 0, "", "", "out of memory: memory limit");
  reader.feed(text.data(), text.size());
  EXPECT_EQ(reader.outcome(false, 3000ms).status, Status::kCrashed);
  sandbox_internal::ReplyReader flagged(7, test_limits());
  const std::string oom = "R" + response_frame(7, sandbox_internal::kFlagOutOfMemory, "", "", "x");
  flagged.feed(oom.data(), oom.size());
  EXPECT_EQ(flagged.outcome(false, 3000ms).status, Status::kMemoryLimit);
}

TEST(OutcomeOfExit, EachEndingMapsToItsStatus) {
  struct Case {
    int kind, value;
    std::uint64_t cpu_us, maxrss_kb;
    Status status;
  };
  const SandboxLimits limits = test_limits();  // 1 s CPU, 64 MiB
  const std::uint64_t near_memory_kb = (limits.memory_bytes >> 10) * 95 / 100;
  const Case cases[] = {
      {CLD_EXITED, 3, 0, 1000, Status::kCrashed},
      {CLD_KILLED, SIGSYS, 0, 1000, Status::kForbidden},
      {CLD_KILLED, SIGXCPU, 1000000, 1000, Status::kCpuLimit},
      {CLD_KILLED, SIGKILL, 1990000, 1000, Status::kCpuLimit},
      {CLD_KILLED, SIGABRT, 1000, 1000, Status::kCrashed},
      {CLD_DUMPED, SIGSEGV, 1000, 1000, Status::kCrashed},
      {CLD_KILLED, SIGSEGV, 1000, near_memory_kb, Status::kMemoryLimit},
      {CLD_KILLED, SIGKILL, 1000, near_memory_kb, Status::kMemoryLimit},
      {CLD_KILLED, SIGTERM, 1000, near_memory_kb, Status::kCrashed},
  };
  for (const Case& c : cases) {
    int kill_reason = -2;
    sandbox_internal::ChildExit exit{true, c.kind, c.value, c.cpu_us, c.maxrss_kb};
    CallOutcome out = sandbox_internal::outcome_of_exit(exit, limits, kill_reason);
    EXPECT_EQ(out.status, c.status) << c.kind << "/" << c.value << ": " << out.detail;
    EXPECT_NE(kill_reason, -2);
  }
  int kill_reason = 0;
  EXPECT_EQ(sandbox_internal::outcome_of_exit({}, limits, kill_reason).status, Status::kCrashed);
}

TEST(OutcomeOfExit, HardLimitKillIsTheCpuLimitThoughRusageLagsTheTickClock) {
  // RLIMIT_CPU is enforced on the tick-sampled CPU clock, which runs ahead of the exact runtime
  // wait4 reports on a loaded machine (a 2 s hard limit killed children at 1.85-1.94 s of
  // rusage). With a 20 s limit (hard 21 s), 7 % less is 19.5 s: still the CPU limit.
  SandboxLimits limits = test_limits();
  limits.cpu = std::chrono::seconds(20);
  int kill_reason = 0;
  sandbox_internal::ChildExit hard{true, CLD_KILLED, SIGKILL, 19500000, 1000};
  CallOutcome out = sandbox_internal::outcome_of_exit(hard, limits, kill_reason);
  EXPECT_EQ(out.status, Status::kCpuLimit) << out.detail;
  EXPECT_EQ(kill_reason, sandbox_internal::kKillCpu);
  // A SIGKILL well before the soft limit is not the CPU limit.
  sandbox_internal::ChildExit early{true, CLD_KILLED, SIGKILL, 5000000, 1000};
  EXPECT_EQ(sandbox_internal::outcome_of_exit(early, limits, kill_reason).status, Status::kCrashed);
}

TEST(SeccompFilter, BuildsWithAndWithoutExtras) {
  auto program = sandbox_internal::build_seccomp_filter({});
  ASSERT_TRUE(program.has_value()) << program.error();
  EXPECT_GT(program->size(), 10u);
  EXPECT_TRUE(sandbox_internal::build_seccomp_filter({"mprotect"}).has_value());
  auto bad = sandbox_internal::build_seccomp_filter({"no_such_syscall"});
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().find("no_such_syscall"), std::string::npos);
}

TEST(SeccompFilter, TheChildFilterIsTheSelfSignalCheckThenTheProgram) {
  auto program = sandbox_internal::build_seccomp_filter({});
  ASSERT_TRUE(program.has_value()) << program.error();
  std::vector<sock_filter> out(sandbox_internal::kMaxChildFilterLength);
  const std::size_t length =
      sandbox_internal::compose_child_filter(*program, 4242, out.data(), out.size());
  ASSERT_EQ(length, sandbox_internal::kSelfSignalCheckLength + program->size());
  EXPECT_EQ(std::memcmp(out.data() + sandbox_internal::kSelfSignalCheckLength, program->data(),
                        program->size() * sizeof(sock_filter)),
            0);
  bool names_self = false;
  for (std::size_t i = 0; i < sandbox_internal::kSelfSignalCheckLength; ++i) {
    names_self = names_self || (BPF_CLASS(out[i].code) == BPF_JMP && out[i].k == 4242u);
  }
  EXPECT_TRUE(names_self);
  EXPECT_EQ(sandbox_internal::compose_child_filter(*program, 4242, out.data(), length - 1), 0u);
  EXPECT_EQ(sandbox_internal::compose_child_filter({}, 4242, out.data(), out.size()), 0u);
}

// A classic BPF interpreter for the instructions seccomp filters use, to compare what filters
// decide without installing them.
std::uint32_t run_bpf(const std::vector<sock_filter>& program, const seccomp_data& data) {
  std::uint32_t a = 0, x = 0;
  std::uint32_t memory[BPF_MEMWORDS] = {};
  const auto* bytes = reinterpret_cast<const unsigned char*>(&data);
  for (std::size_t pc = 0; pc < program.size(); ++pc) {
    const sock_filter& in = program[pc];
    switch (in.code) {
      case BPF_LD | BPF_W | BPF_ABS:
        if (in.k % 4 != 0 || in.k + 4 > sizeof(data)) ADD_FAILURE() << "load at " << in.k;
        std::memcpy(&a, bytes + in.k, 4);
        break;
      case BPF_LD | BPF_IMM:
        a = in.k;
        break;
      case BPF_LD | BPF_MEM:
        a = memory[in.k % BPF_MEMWORDS];
        break;
      case BPF_LDX | BPF_IMM:
        x = in.k;
        break;
      case BPF_LDX | BPF_MEM:
        x = memory[in.k % BPF_MEMWORDS];
        break;
      case BPF_ST:
        memory[in.k % BPF_MEMWORDS] = a;
        break;
      case BPF_STX:
        memory[in.k % BPF_MEMWORDS] = x;
        break;
      case BPF_ALU | BPF_AND | BPF_K:
        a &= in.k;
        break;
      case BPF_ALU | BPF_OR | BPF_K:
        a |= in.k;
        break;
      case BPF_ALU | BPF_ADD | BPF_K:
        a += in.k;
        break;
      case BPF_ALU | BPF_SUB | BPF_K:
        a -= in.k;
        break;
      case BPF_MISC | BPF_TAX:
        x = a;
        break;
      case BPF_MISC | BPF_TXA:
        a = x;
        break;
      case BPF_JMP | BPF_JA:
        pc += in.k;
        break;
      case BPF_JMP | BPF_JEQ | BPF_K:
        pc += a == in.k ? in.jt : in.jf;
        break;
      case BPF_JMP | BPF_JGT | BPF_K:
        pc += a > in.k ? in.jt : in.jf;
        break;
      case BPF_JMP | BPF_JGE | BPF_K:
        pc += a >= in.k ? in.jt : in.jf;
        break;
      case BPF_JMP | BPF_JSET | BPF_K:
        pc += (a & in.k) != 0 ? in.jt : in.jf;
        break;
      case BPF_RET | BPF_K:
        return in.k;
      case BPF_RET | BPF_A:
        return a;
      default:
        ADD_FAILURE() << "BPF instruction the test does not interpret: " << in.code;
        return 0;
    }
  }
  ADD_FAILURE() << "the program ran off its end";
  return 0;
}

// The kernel's rule for stacked filters (kernel/seccomp.c, seccomp_run_filters): every filter
// runs, newest first; the action that is most restrictive (lowest as a signed value) wins, the
// newest one on a tie.
std::uint32_t run_stacked(const std::vector<sock_filter>& older,
                          const std::vector<sock_filter>& newer, const seccomp_data& data) {
  std::uint32_t result = SECCOMP_RET_ALLOW;
  for (const auto* filter : {&newer, &older}) {
    const std::uint32_t action = run_bpf(*filter, data);
    if (static_cast<std::int32_t>(action & SECCOMP_RET_ACTION_FULL) <
        static_cast<std::int32_t>(result & SECCOMP_RET_ACTION_FULL)) {
      result = action;
    }
  }
  return result;
}

std::vector<sock_filter> child_filter(const std::vector<sock_filter>& program, pid_t self) {
  std::vector<sock_filter> out(sandbox_internal::kMaxChildFilterLength);
  out.resize(sandbox_internal::compose_child_filter(program, self, out.data(), out.size()));
  return out;
}

// The two stages (the zygote's filter, inherited; the child's short one) decide every system
// call exactly as the single filter made of libseccomp's export of the children's rules would:
// every syscall number of this architecture and the x32 one, another architecture's, and the
// signal calls aimed at the child itself or elsewhere. A rule added to one list and not the
// other fails here.
TEST(SeccompFilter, TheZygoteAndChildFiltersTogetherDecideAsTheAllowList) {
  const pid_t self = 4242;
  const std::vector<std::vector<std::string>> extras = {
      {}, {"mprotect", "getrusage", "rt_sigreturn", "madvise", "mremap"}, {"fstat", "close"}};
  for (const auto& extra : extras) {
    auto reference = sandbox_internal::build_seccomp_filter(extra);
    auto zygote = sandbox_internal::build_zygote_filter(extra);
    auto tail = sandbox_internal::build_child_tail(extra);
    ASSERT_TRUE(reference && zygote && tail);
    const std::vector<sock_filter> single = child_filter(*reference, self);
    const std::vector<sock_filter> child = child_filter(*tail, self);
    ASSERT_FALSE(single.empty());
    ASSERT_FALSE(child.empty());
    // The point of the split: what a child installs is short.
    EXPECT_LT(child.size(), 64u);

    std::vector<std::uint64_t> first_args = {0,
                                             static_cast<std::uint64_t>(self),
                                             static_cast<std::uint64_t>(self + 1),
                                             1,
                                             0xffffffffu,
                                             ~std::uint64_t{0},
                                             (std::uint64_t{1} << 32) | std::uint64_t(self)};
    int allowed = 0, refused = 0, killed = 0;
    const std::uint32_t arches[] = {seccomp_arch_native(), std::uint32_t{AUDIT_ARCH_I386},
                                    std::uint32_t{AUDIT_ARCH_AARCH64}};
    for (std::uint32_t arch : arches) {
      for (std::uint32_t base : {0u, 0x40000000u}) {
        for (std::uint32_t n = 0; n < 512; ++n) {
          for (std::uint64_t arg0 : first_args) {
            seccomp_data data{};
            data.nr = static_cast<int>(base + n);
            data.arch = arch;
            data.args[0] = arg0;
            data.args[1] = static_cast<std::uint64_t>(self);
            const std::uint32_t want = run_bpf(single, data);
            ASSERT_EQ(run_stacked(*zygote, child, data), want)
                << "nr " << data.nr << " arch " << std::hex << arch << " arg0 " << arg0;
            if (arg0 != 0) continue;
            const std::uint32_t action = want & SECCOMP_RET_ACTION_FULL;
            (action == SECCOMP_RET_ALLOW   ? allowed
             : action == SECCOMP_RET_ERRNO ? refused
                                           : killed) += 1;
          }
        }
      }
    }
    // The comparison covered all three outcomes.
    EXPECT_GT(allowed, 20);
    EXPECT_GT(refused, 20);
    EXPECT_GT(killed, 1000);

    // The zygote's own filter lets its loop and a child's set-up through.
    for (const auto& name : sandbox_internal::zygote_syscalls()) {
      const int nr = seccomp_syscall_resolve_name(name.c_str());
      ASSERT_NE(nr, __NR_SCMP_ERROR) << name;
      if (nr < 0) continue;
      seccomp_data data{};
      data.nr = nr;
      data.arch = seccomp_arch_native();
      EXPECT_EQ(run_bpf(*zygote, data), SECCOMP_RET_ALLOW) << name;
    }
  }
}

class FailingRuntime final : public FakeRuntime {
 public:
  const char* name() const override { return "failing"; }
  bool initialize(std::string& error) override {
    error = "interpreter files missing";
    return false;
  }
};

TEST(StartSandbox, InitialisationFailureThrowsWithTheReason) {
  try {
    start_sandbox("failing", test_limits());
    FAIL() << "start_sandbox did not throw";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("interpreter files missing"), std::string::npos)
        << e.what();
  }
}

class BadSyscallRuntime final : public FakeRuntime {
 public:
  const char* name() const override { return "badsyscall"; }
  std::vector<std::string> extra_syscalls() const override { return {"not_a_syscall"}; }
};

TEST(StartSandbox, UnknownExtraSyscallThrows) {
  EXPECT_THROW(start_sandbox("badsyscall", test_limits()), std::runtime_error);
}

// ---- Stray wake-ups (issue 7: a healthy call reported "killed by SIGKILL") --------------------
// A completed Asio wait is a hint, not proof (see "Stray wake-ups" in sandbox.cc). The sandbox
// took a stray wake-up of a child's pidfd for the child's exit, ended the call and killed the
// child.

TEST(StrayWakeUps, PidfdExitedOnlyOnceTheProcessHasEnded) {
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::pause();
    ::_exit(0);
  }
  const int pidfd = sandbox_internal::pidfd_open_process(pid);
  ASSERT_GE(pidfd, 0);
  EXPECT_FALSE(sandbox_internal::pidfd_exited(pidfd));
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  ASSERT_EQ(::waitpid(pid, nullptr, 0), pid);
  EXPECT_TRUE(sandbox_internal::pidfd_exited(pidfd));
  ::close(pidfd);
}

CallInput echo_call(const std::string& arguments) {
  CallInput input;
  input.code = "echo";
  input.function_name = "Z1";
  input.arguments_json = arguments;
  return input;
}

// Bounded stress (<= 2,000 calls, <= 25 s of calls) on an event loop run by two threads, as in
// wf-evaluator (a stray wake-up needs one thread collecting events while another closes and opens
// descriptors). Before the fix about one call in 300 of such a stream ended "killed by SIGKILL".
TEST(StrayWakeUps, NoCallOfAConcurrentStreamFails) {
  boost::asio::io_context io;
  auto work = boost::asio::make_work_guard(io);
  std::vector<std::thread> loop;
  for (int i = 0; i < 2; ++i) loop.emplace_back([&io] { io.run(); });
  SandboxLimits limits = test_limits();
  limits.pool_size = 4;
  // Only a stray wake-up may fail a call here. Eight callers outrun a pool of 4 on a loaded
  // machine, and a call waits for a child within its wall limit: test_limits()'s 3 s ended 2 of
  // 2,000 calls as "no child became ready before the deadline" (load ~17, ctest -j4, session 16).
  limits.wall = 30s;
  auto sandbox = start_sandbox("scripted", limits, &io);
  constexpr int kCalls = 2000;
  constexpr int kThreads = 8;
  const auto stop_at = Clock::now() + 25s;
  std::atomic<int> next{0}, done{0}, failed{0};
  std::mutex mutex;
  std::string first_failure;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = next++; i < kCalls && Clock::now() < stop_at; i = next++) {
        const std::string arguments = std::to_string(i);
        CallOutcome out = sandbox->run(echo_call(arguments), Clock::now() + 30s);
        ++done;
        if (out.status == Status::kOk && out.output.z22_json == "Z1:" + arguments) continue;
        std::lock_guard lock(mutex);
        if (failed++ == 0) first_failure = out.detail;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  io.stop();
  for (auto& thread : loop) thread.join();
  sandbox->shutdown();
  EXPECT_EQ(failed.load(), 0) << "of " << done.load() << " calls; first: " << first_failure;
  EXPECT_GE(done.load(), 200) << "too few calls in 25 s to say anything";
}

// Answers whether its child was warmed up: warm_up() runs in the child only (this runtime's zygote
// never warms, rebase_memory() being false), so the flag is the child's own.
bool g_child_warmed = false;

class WarmthRuntime final : public FakeRuntime {
 public:
  const char* name() const override { return "warmth"; }
  void warm_up() override { g_child_warmed = true; }
  CallOutput call(const CallInput&) override {
    CallOutput out;
    out.ok = true;
    out.z22_json = g_child_warmed ? "warm" : "cold";
    return out;
  }
};

// `calls` calls one after the other, each once the pool is full again (so the zygote's rule
// "the pool is nearly full" holds at every take) and `pause` after that; what each child said.
std::vector<std::string> warmth_of_calls(std::chrono::milliseconds warm_idle, int calls,
                                         std::chrono::milliseconds pause,
                                         std::vector<CallOutcome>* outcomes = nullptr) {
  SandboxLimits limits = test_limits();
  limits.warm_idle = warm_idle;
  auto sandbox = start_sandbox("warmth", limits);
  std::vector<std::string> said;
  for (int i = 0; i < calls; ++i) {
    const auto until = Clock::now() + 30s;
    while (sandbox->query_stats().ready_children < limits.pool_size && Clock::now() < until) {
      std::this_thread::sleep_for(2ms);
    }
    std::this_thread::sleep_for(pause);
    CallInput input;
    input.code = "any";
    input.function_name = "Z1";
    CallOutcome out = sandbox->run(input, Clock::now() + 10s);
    said.push_back(out.status == Status::kOk ? out.output.z22_json : "failed: " + out.detail);
    if (outcomes != nullptr) outcomes->push_back(std::move(out));
  }
  sandbox->shutdown();
  return said;
}

// A steady stream of calls (a mean gap between takes far under warm_idle, here an hour) gets cold
// children once the mean has fallen (about six takes); the first pool is warm. Without the rule
// every child of a full pool was warmed.
TEST(WarmUp, ChildrenOfASteadyStreamStartCold) {
  const std::vector<std::string> said = warmth_of_calls(std::chrono::hours(1), 16, 0ms);
  ASSERT_EQ(said.size(), 16u);
  EXPECT_EQ(said[0], "warm");
  for (std::size_t i = 11; i < said.size(); ++i) EXPECT_EQ(said[i], "cold") << "call " << i;
}

// wf_evaluator_sandbox_children_started_total counts every child handed to the service as warm or
// cold: at least as many of each as the calls' children said (the pool's last children are
// handed out too, uncalled).
TEST(WarmUp, ChildrenStartedAreCountedWarmOrCold) {
  const std::string warm =
      R"(wf_evaluator_sandbox_children_started_total{language="warmth",warm="true"})";
  const std::string cold =
      R"(wf_evaluator_sandbox_children_started_total{language="warmth",warm="false"})";
  const double warm_before = metric_value(warm);
  const double cold_before = metric_value(cold);
  const std::vector<std::string> said = warmth_of_calls(std::chrono::hours(1), 16, 0ms);
  const auto said_warm = static_cast<double>(std::count(said.begin(), said.end(), "warm"));
  const auto said_cold = static_cast<double>(std::count(said.begin(), said.end(), "cold"));
  ASSERT_GT(said_cold, 0);
  ASSERT_EQ(said_warm + said_cold, 16);
  EXPECT_GE(metric_value(warm) - warm_before, said_warm);
  EXPECT_GE(metric_value(cold) - cold_before, said_cold);
}

// Each outcome says whether its child was warm (as the child itself says) and how long the call
// had it; the slowest calls' breakdown (the evaluator's debug line) reads them.
TEST(WarmUp, TheOutcomeSaysWhetherItsChildWasWarm) {
  std::vector<CallOutcome> outcomes;
  const std::vector<std::string> said = warmth_of_calls(std::chrono::hours(1), 16, 0ms, &outcomes);
  ASSERT_EQ(outcomes.size(), 16u);
  int warm = 0, cold = 0;
  for (std::size_t i = 0; i < said.size(); ++i) {
    ASSERT_EQ(outcomes[i].status, Status::kOk) << said[i];
    EXPECT_EQ(outcomes[i].child_warm, said[i] == "warm" ? 1 : 0) << "call " << i;
    EXPECT_GT(outcomes[i].in_child.count(), 0) << "call " << i;
    (said[i] == "warm" ? warm : cold) += 1;
  }
  EXPECT_GT(warm, 0);
  EXPECT_GT(cold, 0);
  EXPECT_EQ(CallOutcome{}.child_warm, -1);  // no child: neither
}

// A pause longer than warm_idle before each take: every child is warm.
TEST(WarmUp, ChildrenTakenAfterPausesAreWarm) {
  const std::vector<std::string> said = warmth_of_calls(1ms, 8, 5ms);
  for (std::size_t i = 0; i < said.size(); ++i) EXPECT_EQ(said[i], "warm") << "call " << i;
}

// The default is warm_idle 0 (since session 17): a steady stream's children are warm whenever the
// pool is nearly full, as the test below shows of 0; with 10 at 3x capacity the accepted calls'
// pool wait p99 about doubled (bench/README.md, "The tails that grew").
TEST(WarmUp, TheDefaultIsToWarmEveryChildOfAFullPool) {
  EXPECT_EQ(SandboxLimits{}.warm_idle.count(), 0);
}

// warm_idle 0: the earlier rule, every child of a nearly full pool is warm, however close the
// takes.
TEST(WarmUp, ZeroWarmsEveryChildOfAFullPool) {
  const std::vector<std::string> said = warmth_of_calls(0ms, 16, 0ms);
  for (std::size_t i = 0; i < said.size(); ++i) EXPECT_EQ(said[i], "warm") << "call " << i;
}

class WarmUpDiesRuntime final : public FakeRuntime {
 public:
  const char* name() const override { return "warmupdies"; }
  void warm_up() override { ::syscall(SYS_socket, AF_INET, SOCK_STREAM, 0); }
};

TEST(StartSandbox, ChildThatCannotLockDownFailsStartUp) {
  EXPECT_THROW(start_sandbox("warmupdies", test_limits()), std::runtime_error);
}

}  // namespace
}  // namespace wf::evaluator

int main(int argc, char** argv) {
  using namespace wf::evaluator;
  static const RuntimeEntry kRuntimes[] = {
      {"scripted",
       +[]() -> std::unique_ptr<LanguageRuntime> { return std::make_unique<ScriptedRuntime>(); }},
      {"failing",
       +[]() -> std::unique_ptr<LanguageRuntime> { return std::make_unique<FailingRuntime>(); }},
      {"badsyscall",
       +[]() -> std::unique_ptr<LanguageRuntime> { return std::make_unique<BadSyscallRuntime>(); }},
      {"warmupdies",
       +[]() -> std::unique_ptr<LanguageRuntime> { return std::make_unique<WarmUpDiesRuntime>(); }},
      {"warmth",
       +[]() -> std::unique_ptr<LanguageRuntime> { return std::make_unique<WarmthRuntime>(); }},
  };
  return wf::evaluator::testing::sandbox_test_main(argc, argv, kRuntimes);
}
