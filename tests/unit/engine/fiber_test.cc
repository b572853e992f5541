// Fibers (orchestrator/engine/fiber.h): parked fibers hold no thread, CPU time and the log
// context follow the fiber across threads, the stack is the fiber's own.
#include "orchestrator/engine/fiber.h"

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <future>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "wf/obs/log.h"

namespace wf::orchestrator::engine_detail {
namespace {

// Resume functions handed out by parked fibers, called later by the test.
class Parked {
 public:
  void add(std::function<void()> resume) {
    std::lock_guard lock(mu_);
    resumes_.push_back(std::move(resume));
  }
  std::size_t size() {
    std::lock_guard lock(mu_);
    return resumes_.size();
  }
  void resume_all() {
    std::vector<std::function<void()>> all;
    {
      std::lock_guard lock(mu_);
      all.swap(resumes_);
    }
    for (auto& r : all) r();
  }

 private:
  std::mutex mu_;
  std::vector<std::function<void()>> resumes_;
};

bool wait_for(const std::function<bool()>& done) {
  for (int i = 0; i < 2000 && !done(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return done();
}

double thread_cpu_ms() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

void burn_ms(double ms) {
  const double start = thread_cpu_ms();
  volatile unsigned x = 0;
  while (thread_cpu_ms() - start < ms) {
    for (int i = 0; i < 10000; ++i) x = x * 31 + static_cast<unsigned>(i);
  }
}

TEST(Fibers, AThousandParkedFibersOnOneThread) {
  FiberPool pool({.threads = 1, .stack_bytes = 256u << 10, .idle_stacks = 4});
  Parked parked;
  std::atomic<int> finished{0};
  for (int i = 0; i < 1000; ++i) {
    pool.spawn({}, [&] {
      park([&](std::function<void()> resume) { parked.add(std::move(resume)); });
      ++finished;
    });
  }
  ASSERT_TRUE(wait_for([&] { return parked.size() == 1000; })) << parked.size();
  EXPECT_EQ(pool.live(), 1000u);
  EXPECT_EQ(finished.load(), 0);
  parked.resume_all();  // from this thread: each fiber continues on the pool's one thread
  ASSERT_TRUE(wait_for([&] { return finished.load() == 1000; })) << finished.load();
  EXPECT_TRUE(wait_for([&] { return pool.live() == 0; }));
}

TEST(Fibers, AwaitReturnsTheValueGivenFromAnotherThread) {
  FiberPool pool({.threads = 2, .stack_bytes = 256u << 10, .idle_stacks = 4});
  std::promise<int> result;
  pool.spawn({}, [&] {
    int v = await<int>([](std::function<void(int)> done) {
      std::thread([done = std::move(done)] { done(42); }).detach();
    });
    result.set_value(v);
  });
  EXPECT_EQ(result.get_future().get(), 42);
}

TEST(Fibers, CpuTimeIsChargedToTheFiberThatUsedIt) {
  FiberPool pool({.threads = 1, .stack_bytes = 256u << 10, .idle_stacks = 4});
  Parked parked;
  std::promise<double> busy_cpu;
  std::promise<double> idle_cpu;
  pool.spawn({}, [&] {  // parks while the other burns CPU on the same thread
    const double start = fiber_cpu_us();
    park([&](std::function<void()> resume) { parked.add(std::move(resume)); });
    idle_cpu.set_value((fiber_cpu_us() - start) / 1000.0);
  });
  pool.spawn({}, [&] {
    const double start = fiber_cpu_us();
    burn_ms(30);
    park([&](std::function<void()> resume) { parked.add(std::move(resume)); });
    burn_ms(30);
    busy_cpu.set_value((fiber_cpu_us() - start) / 1000.0);
  });
  ASSERT_TRUE(wait_for([&] { return parked.size() == 2; }));
  parked.resume_all();
  const double busy = busy_cpu.get_future().get();
  const double idle = idle_cpu.get_future().get();
  EXPECT_GE(busy, 60.0 * 0.95);
  EXPECT_LT(idle, 30.0) << "the parked fiber was charged for the other one's CPU";
}

TEST(Fibers, LogLinesCarryTheFibersTraceIdOnEveryThread) {
  obs::install_ecs_logger("fiber-test", "0", spdlog::level::info);
  FiberPool pool({.threads = 2, .stack_bytes = 256u << 10, .idle_stacks = 4});
  Parked parked;
  std::promise<void> done;
  ::testing::internal::CaptureStdout();
  pool.spawn({"4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "fiber-req"}, [&] {
    spdlog::info("before parking");
    park([&](std::function<void()> resume) {
      std::thread([&parked, resume = std::move(resume)] { parked.add(resume); }).detach();
    });
    spdlog::info("after parking");
    done.set_value();
  });
  ASSERT_TRUE(wait_for([&] { return parked.size() == 1; }));
  spdlog::info("from the test thread");
  parked.resume_all();
  done.get_future().get();
  spdlog::default_logger()->flush();
  std::istringstream lines(::testing::internal::GetCapturedStdout());
  int with_trace = 0;
  for (std::string line; std::getline(lines, line);) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded()) continue;
    const std::string message = j.value("message", "");
    if (message == "from the test thread") {
      EXPECT_FALSE(j.contains("trace.id")) << line;
    }
    if (message == "before parking" || message == "after parking") {
      EXPECT_EQ(j.value("trace.id", ""), "4bf92f3577b34da6a3ce929d0e0e4736") << line;
      ++with_trace;
    }
  }
  EXPECT_EQ(with_trace, 2);
}

TEST(Fibers, StackLeftIsTheFibersOwn) {
  FiberPool pool({.threads = 1, .stack_bytes = 512u << 10, .idle_stacks = 4});
  std::size_t left = 0;
  pool.run_here({}, [&] { left = stack_left(); });
  EXPECT_GT(left, 400u << 10);
  EXPECT_LE(left, 512u << 10);
  EXPECT_GE(pool.stack_bytes(), 512u << 10);
}

// current_stack() is the running fiber's stack, else the thread's: it holds the caller's frame,
// and stack_left() measures down to its low end.
TEST(Fibers, CurrentStackHoldsTheFrame) {
  const auto holds = [](const StackRange& s, const char* sp) {
    return s.low != nullptr && s.low < sp && sp < s.high;
  };
  const StackRange thread = current_stack();
  const auto* here = static_cast<const char*>(__builtin_frame_address(0));
  EXPECT_TRUE(holds(thread, here));
  FiberPool pool({.threads = 1, .stack_bytes = 512u << 10, .idle_stacks = 4});
  StackRange fiber;
  const char* sp = nullptr;
  std::size_t left = 0;
  pool.run_here({}, [&] {
    fiber = current_stack();
    sp = static_cast<const char*>(__builtin_frame_address(0));
    left = stack_left();
  });
  EXPECT_TRUE(holds(fiber, sp));
  EXPECT_FALSE(holds(fiber, here));
  EXPECT_GE(static_cast<std::size_t>(fiber.high - fiber.low), 512u << 10);
  // stack_left() measures from its own frame, a little below the lambda's.
  EXPECT_LE(left, static_cast<std::size_t>(sp - fiber.low));
  EXPECT_GT(left + 4096, static_cast<std::size_t>(sp - fiber.low));
}

// Touches `kib` KiB of stack below the caller.
__attribute__((noinline)) int touch_stack(int kib) {
  volatile char block[1024];
  for (std::size_t i = 0; i < sizeof block; i += 64) block[i] = static_cast<char>(i);
  return kib <= 1 ? block[0] : touch_stack(kib - 1) + block[64];
}

// The low end of the running fiber's stack: stack_left() measures from its own frame, which lies
// just below this small one (a caller with large locals would put them between the two: a
// caller with a 12 KB array measured the low end 3 pages too high, and the check below then read
// 3 pages past the stack's top, which were resident under ThreadSanitizer).
__attribute__((noinline)) const char* fiber_stack_low() {
  return static_cast<const char*>(__builtin_frame_address(0)) - stack_left();
}

// The mapping of /proc/self/maps that holds `address`: its bounds and permissions ("rw-p"), or
// an empty `perms` when none does.
struct Mapping {
  std::uintptr_t start = 0, end = 0;
  std::string perms;
};
Mapping mapping_of(const void* address) {
  const auto a = reinterpret_cast<std::uintptr_t>(address);
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    Mapping m;
    char dash = 0;
    std::istringstream in(line);
    in >> std::hex >> m.start >> dash >> m.end >> m.perms;
    if (in && m.start <= a && a < m.end) return m;
  }
  return {};
}

// Resident pages of [base, base + bytes).
std::size_t resident_pages(const char* base, std::size_t bytes) {
  const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> resident(bytes / page);
  if (mincore(const_cast<char*>(base), bytes, resident.data()) != 0) {
    ADD_FAILURE() << "mincore: " << errno;
    return 0;
  }
  std::size_t count = 0;
  for (unsigned char r : resident) count += r & 1;
  return count;
}

// A parked fiber's frames are kept off its stack (exactly their bytes, not whole pages): no page
// of the stack stays resident while it waits, and every frame is back, unchanged, when it resumes.
// The pages counted are exactly the stack's: from its low end (rounded to a page, which must be
// the top of the guard page below it) up to its usable size.
TEST(Fibers, AParkedFiberKeepsNoStackPagesAndGetsItsFramesBack) {
  const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  // hot_parked 0: every parked fiber's frames leave its stack at once.
  FiberPool pool({.threads = 1, .stack_bytes = 1u << 20, .idle_stacks = 4, .hot_parked = 0});
  Parked parked;
  const char* low = nullptr;
  std::size_t resident_while_running = 0;
  std::promise<bool> intact;
  pool.spawn({}, [&] {
    touch_stack(256);  // an earlier, deeper moment of the evaluation
    const char* measured = fiber_stack_low();
    low = reinterpret_cast<const char*>((reinterpret_cast<std::uintptr_t>(measured) + page / 2) /
                                        page * page);
    // Live frames across more than one page, with a pattern that a lost page would zero.
    volatile std::uint32_t frame[3000];
    for (std::uint32_t i = 0; i < 3000; ++i) frame[i] = i * 2654435761u;
    resident_while_running = resident_pages(low, pool.stack_bytes());
    park([&](std::function<void()> resume) { parked.add(std::move(resume)); });
    bool same = true;
    for (std::uint32_t i = 0; i < 3000; ++i) same = same && frame[i] == i * 2654435761u;
    intact.set_value(same);
  });
  ASSERT_TRUE(wait_for([&] { return parked.size() == 1; }));
  const std::size_t count = resident_pages(low, pool.stack_bytes());
  const Mapping stack = mapping_of(low);
  const Mapping below = mapping_of(low - 1);
  parked.resume_all();
  EXPECT_TRUE(intact.get_future().get());
  // The range counted is the stack: one read-write mapping that holds all of it, with the guard
  // page (no access) right below.
  EXPECT_EQ(stack.perms.substr(0, 2), "rw");
  EXPECT_LE(reinterpret_cast<std::uintptr_t>(low) + pool.stack_bytes(), stack.end);
  EXPECT_EQ(below.perms.substr(0, 3), "---") << "the page below the stack's low end";
  EXPECT_EQ(below.end, reinterpret_cast<std::uintptr_t>(low));
  // The count sees the frames of a running fiber (the top page at least), and none once parked.
  EXPECT_GT(resident_while_running, 0u);
  EXPECT_EQ(count, 0u) << count << " pages of the parked fiber's stack are resident";
}

// Touches `kib` KiB of stack below the caller, then parks there (its frames leave the stack and
// come back: hot_parked 0).
__attribute__((noinline)) int park_deep(int kib, Parked& parked) {
  volatile char block[1024];
  for (std::size_t i = 0; i < sizeof block; i += 64) block[i] = static_cast<char>(i + 1);
  if (kib <= 1) {
    park([&](std::function<void()> resume) { parked.add(std::move(resume)); });
    return block[0];
  }
  return park_deep(kib - 1, parked) + block[64];
}

// A stack goes back to the pool with only its top 32 KiB committed: after a fiber that ran 256 KiB
// deep, and after one that parked that deep, none of the pages below stay resident. (Shallow fibers
// give theirs back without a system call: their stacks have no such page; bench/orchestrator_cpu
// --mode strace.)
TEST(Fibers, AReleasedStackKeepsOnlyItsTopAfterADeepFiber) {
  const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  constexpr std::size_t kHot = 32u << 10;
  // One idle stack: every fiber below runs on the same one.
  FiberPool pool({.threads = 1, .stack_bytes = 1u << 20, .idle_stacks = 1, .hot_parked = 0});
  const char* low = nullptr;
  auto stack_low = [&] {
    const char* measured = fiber_stack_low();
    low = reinterpret_cast<const char*>((reinterpret_cast<std::uintptr_t>(measured) + page / 2) /
                                        page * page);
  };
  // The page just below the top 32 KiB is the pool's probe: reading it maps the kernel's zero page,
  // which mincore counts (it takes no memory).
  const std::size_t cold = pool.stack_bytes() - kHot - page;
  std::size_t resident_deep = 0;
  pool.run_here({}, [&] {
    stack_low();
    touch_stack(256);
    resident_deep = resident_pages(low, cold);
  });
  ASSERT_NE(low, nullptr);
  EXPECT_GE(resident_deep, (200u << 10) / page);  // the check sees the pages touched
  EXPECT_EQ(resident_pages(low, cold), 0u) << "after a deep fiber";
  pool.run_here({}, [&] { touch_stack(4); });
  EXPECT_EQ(resident_pages(low, cold), 0u) << "after a shallow fiber";
  Parked parked;
  std::promise<void> finished;
  const char* parked_low = nullptr;
  pool.spawn({}, [&] {
    parked_low = fiber_stack_low();
    park_deep(256, parked);
    finished.set_value();
  });
  ASSERT_TRUE(wait_for([&] { return parked.size() == 1; }));
  parked.resume_all();
  finished.get_future().get();
  ASSERT_TRUE(wait_for([&] { return pool.live() == 0; }));
  EXPECT_LT(std::abs(parked_low - low), static_cast<std::ptrdiff_t>(page)) << "the same stack";
  EXPECT_EQ(resident_pages(low, cold), 0u) << "after a fiber that parked deep";
}

// A parked fiber's saved frames are packed: its zero words cost a bit each, the others their
// bytes. A frame of 24 KiB, one word in eight not zero, is saved in less than a third of its size
// and comes back word for word (zeros where zeros were, whatever the stack held before).
TEST(Fibers, ParkedFramesArePackedAndComeBackWordForWord) {
  FiberPool pool({.threads = 1, .stack_bytes = 1u << 20, .idle_stacks = 4, .hot_parked = 0});
  Parked parked;
  std::promise<bool> intact;
  constexpr std::size_t kWords = 3072;  // 24 KiB
  pool.spawn({}, [&] {
    volatile std::uint64_t frame[kWords];
    for (std::size_t i = 0; i < kWords; ++i) frame[i] = i % 8 == 3 ? i * 0x9E3779B97F4A7C15u : 0;
    park([&](std::function<void()> resume) { parked.add(std::move(resume)); });
    bool same = true;
    for (std::size_t i = 0; i < kWords; ++i) {
      same = same && frame[i] == (i % 8 == 3 ? i * 0x9E3779B97F4A7C15u : 0);
    }
    intact.set_value(same);
  });
  ASSERT_TRUE(wait_for([&] { return parked.size() == 1; }));
  const std::size_t saved = pool.saved_frame_bytes();
  parked.resume_all();
  EXPECT_TRUE(intact.get_future().get());
  // (Under AddressSanitizer the array may live on its fake stack, off the fiber's.)
  if (!WF_ASAN) {
    EXPECT_GT(saved, kWords * 8 / 8) << "the words that are not zero are kept";
  }
  EXPECT_LT(saved, kWords * 8 / 3) << "zero words cost a bit each";
  ASSERT_TRUE(wait_for([&] { return pool.live() == 0; }));
  EXPECT_EQ(pool.saved_frame_bytes(), 0u);
}

// The latest fibers to park keep their frames where they are (no copy, no madvise: a short wait
// costs nothing more); once more than hot_parked are parked, the one parked longest keeps no page
// of its stack; both get their frames back.
TEST(Fibers, OnlyTheLatestParkedFibersKeepTheirStackPages) {
  std::array<Parked, 2> parked;
  std::array<const char*, 2> low = {};
  std::array<std::promise<bool>, 2> intact;
  FiberPool pool({.threads = 1, .stack_bytes = 1u << 20, .idle_stacks = 4, .hot_parked = 1});
  auto fiber = [&](int n) {
    return [&, n] {
      const auto page = static_cast<std::uintptr_t>(sysconf(_SC_PAGESIZE));
      low[n] = reinterpret_cast<const char*>(
          (reinterpret_cast<std::uintptr_t>(fiber_stack_low()) + page / 2) / page * page);
      volatile std::uint32_t frame[3000];
      for (std::uint32_t i = 0; i < 3000; ++i) frame[i] = (i + n) * 2654435761u;
      park([&](std::function<void()> resume) { parked[n].add(std::move(resume)); });
      bool same = true;
      for (std::uint32_t i = 0; i < 3000; ++i) same = same && frame[i] == (i + n) * 2654435761u;
      intact[n].set_value(same);
    };
  };
  pool.spawn({}, fiber(0));
  ASSERT_TRUE(wait_for([&] { return parked[0].size() == 1; }));
  const std::size_t first_alone = resident_pages(low[0], pool.stack_bytes());
  pool.spawn({}, fiber(1));
  ASSERT_TRUE(wait_for([&] { return parked[1].size() == 1; }));
  const std::size_t first_after = resident_pages(low[0], pool.stack_bytes());
  const std::size_t second = resident_pages(low[1], pool.stack_bytes());
  parked[0].resume_all();
  parked[1].resume_all();
  EXPECT_GE(first_alone, 3u) << "the only parked fiber keeps its frames in place";
  EXPECT_EQ(first_after, 0u) << "the fiber parked longest keeps no page once another parks";
  EXPECT_GE(second, 3u);
  EXPECT_TRUE(intact[0].get_future().get());
  EXPECT_TRUE(intact[1].get_future().get());
}

// Many fibers parked and resumed in turn on two threads, each checking its own frames: the frames
// go back to the stack they came from whichever thread resumes them.
TEST(Fibers, ParkedFramesSurviveManyParksOnTwoThreads) {
  FiberPool pool({.threads = 2, .stack_bytes = 256u << 10, .idle_stacks = 8});
  std::atomic<int> good{0}, finished{0};
  for (int n = 0; n < 64; ++n) {
    pool.spawn({}, [&, n] {
      volatile int mine[700];
      for (int i = 0; i < 700; ++i) mine[i] = n * 1000 + i;
      bool same = true;
      for (int round = 0; round < 20; ++round) {
        const int v = await<int>([round](std::function<void(int)> done) {
          std::thread([done = std::move(done), round] { done(round); }).detach();
        });
        same = same && v == round;
        for (int i = 0; i < 700; ++i) same = same && mine[i] == n * 1000 + i;
      }
      if (same) ++good;
      ++finished;
    });
  }
  ASSERT_TRUE(wait_for([&] { return finished.load() == 64; })) << finished.load();
  EXPECT_EQ(good.load(), 64);
}

// The running thread, read afresh: pthread_self() is declared const, so within one function the
// compiler may reuse a value read before the fiber moved to another thread.
[[gnu::noinline, gnu::noipa]] std::thread::id current_thread() {
  return std::this_thread::get_id();
}

TEST(Fibers, StartHereRunsOnTheCallerUntilItParksThenOnThePool) {
  FiberPool pool({.threads = 1, .stack_bytes = 256u << 10, .idle_stacks = 4});
  Parked parked;
  std::thread::id first, second;
  std::promise<void> done;
  pool.start_here({}, [&] {
    first = current_thread();
    park([&](std::function<void()> resume) { parked.add(std::move(resume)); });
    second = current_thread();
    done.set_value();
  });
  // start_here returned at the park: the caller did not wait for the parked work.
  EXPECT_EQ(first, std::this_thread::get_id());
  EXPECT_EQ(parked.size(), 1u);
  parked.resume_all();
  done.get_future().get();
  EXPECT_NE(second, std::this_thread::get_id());
}

TEST(Fibers, ALongFirstSliceLeavesTheCallersThreadForThePool) {
  FiberPool pool({.threads = 1, .stack_bytes = 256u << 10, .idle_stacks = 4});
  const std::thread::id caller = std::this_thread::get_id();
  std::atomic<bool> returned{false};
  std::atomic<bool> moved{false};
  std::promise<void> done;
  pool.start_here({}, [&] {
    // Spins (CPU, no I/O) asking to leave the loop once the slice is over 1 ms; bounded in time.
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (current_thread() == caller && std::chrono::steady_clock::now() < until) {
      const double start = thread_cpu_ms();
      while (thread_cpu_ms() - start < 0.2) {
      }
      leave_loop_if_over(std::chrono::milliseconds(1));
    }
    moved = current_thread() != caller;
    wait_for([&] { return returned.load(); });  // the caller got its thread back meanwhile
    done.set_value();
  });
  returned = true;
  ASSERT_EQ(done.get_future().wait_for(std::chrono::seconds(30)), std::future_status::ready);
  EXPECT_TRUE(moved);
}

TEST(Fibers, LeavingTheLoopIsANoOpOutsideAFirstSliceStartedHere) {
  leave_loop_if_over(std::chrono::microseconds(0));  // no fiber: returns at once
  FiberPool pool({.threads = 1, .stack_bytes = 256u << 10, .idle_stacks = 4});
  std::thread::id before, after;
  pool.run_here({}, [&] {  // run_here: a worker's own fiber, not an event loop's
    before = current_thread();
    leave_loop_if_over(std::chrono::microseconds(0));
    after = current_thread();
  });
  EXPECT_EQ(before, std::this_thread::get_id());
  EXPECT_EQ(after, before);
}

TEST(Fibers, RunHereWaitsForParkedWork) {
  FiberPool pool({.threads = 1, .stack_bytes = 256u << 10, .idle_stacks = 4});
  int v = 0;
  pool.run_here({}, [&] {
    v = await<int>([](std::function<void(int)> done) {
      std::thread([done = std::move(done)] {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        done(7);
      }).detach();
    });
  });
  EXPECT_EQ(v, 7);
}

}  // namespace
}  // namespace wf::orchestrator::engine_detail
