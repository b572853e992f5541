#pragma once
// Evaluations run on fibers (Boost.Context): each has its own stack, sized from the call-depth
// limit, and parks instead of blocking when a port waits for I/O. A bounded pool of threads runs
// the fibers' slices; an I/O completion makes its fiber runnable again on that pool, so no thread
// is held while a request is in flight. Each slice carries the fiber's log context (trace and
// request ids) and adds the thread CPU time it used to the fiber's own account.
//
// A parked fiber may resume on another thread: code that runs on a fiber must not hold a
// thread-local's address, a lock, or a pthread_self() value (declared const: the compiler may
// reuse it) across a park. Thread-locals read inside their own functions (logging, the
// allocator) are fine.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "wf/io_wait.h"
#include "wf/sanitizer.h"

namespace wf::orchestrator::engine_detail {

// How many times more stack a nested call may take under AddressSanitizer, whose instrumented
// frames are larger, than in the Release build: with 4, max_call_depth 10000 still ends in the
// depth Z5 there (StackDepth.*; docs/testing.md, "Sanitizers"). ThreadSanitizer's frames grow
// less: 2.
inline constexpr std::size_t kSanitizerStackFactor = WF_ASAN ? 4 : WF_TSAN ? 2 : 1;

struct FiberPoolOptions {
  int threads = 2;                     // threads running fiber slices (CPU work)
  std::size_t stack_bytes = 1u << 20;  // usable stack of each fiber (pages are touched lazily)
  std::size_t idle_stacks = 32;        // stacks kept mapped for reuse
};

// What every slice of a fiber runs under.
struct FiberLogContext {
  std::string trace_id;
  std::string span_id;
  std::string request_id;
  // Told when the fiber waits for I/O in await() and when that I/O ends (the admission gate's
  // running count; docs/limits.md "The adaptive limit"). May be null.
  std::shared_ptr<IoWaitObserver> io_wait;
};

class FiberPool {
 public:
  explicit FiberPool(FiberPoolOptions options);
  // Waits (bounded) for running fibers to finish, then stops the threads.
  ~FiberPool();
  FiberPool(const FiberPool&) = delete;
  FiberPool& operator=(const FiberPool&) = delete;

  // Runs `body` on a new fiber on the pool's threads and returns at once. `body` must not throw
  // (an exception is counted as a bug and ends the fiber).
  void spawn(FiberLogContext log, std::function<void()> body);
  // Runs `body` on a new fiber on the calling thread until it finishes or first parks; after a
  // park it continues on the pool's threads. Never waits: for event-loop threads.
  void start_here(FiberLogContext log, std::function<void()> body);
  // Runs `body` on a new fiber on the calling thread and returns when it has finished; while it
  // is parked the calling thread waits.
  void run_here(FiberLogContext log, std::function<void()> body);

  std::size_t stack_bytes() const;
  // Fibers started and not yet finished (running, runnable or parked).
  std::size_t live() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// Parks the running fiber and calls `start` with a resume function once it is parked; the fiber
// continues after resume() has been called (exactly once, from any thread, possibly from inside
// `start`). Outside a fiber, `start` is called the same way and the calling thread waits.
// While a fiber is parked its frames are kept off its stack (fiber.cc, save_parked_stack): `start`
// and whatever it starts must not read or write the parked fiber's locals through pointers or
// references; they work on copies (as await() does) and on the heap.
void park(std::function<void(std::function<void()> resume)> start);

// The running fiber's IoWaitObserver (FiberLogContext::io_wait); null outside a fiber.
std::shared_ptr<IoWaitObserver> fiber_io_wait();

// Waits for an asynchronous operation: `start(done)` must call done(value) exactly once, from any
// thread. Parks the running fiber (or blocks outside one) until then. The fiber's IoWaitObserver
// hears parked() once the fiber is parked, before the operation starts, and resumed() when it is
// done (the fiber is runnable from then: its wait for a CPU thread counts as running).
template <typename T>
T await(std::function<void(std::function<void(T)>)> start) {
  auto slot = std::make_shared<std::unique_ptr<T>>();
  // `start` is moved into the parked work: it may still be running on another thread when the
  // fiber has been resumed and this frame is gone.
  park([start = std::move(start), slot, io = fiber_io_wait()](std::function<void()> resume) {
    if (io) io->parked();
    start([slot, resume = std::move(resume), io](T value) {
      *slot = std::make_unique<T>(std::move(value));
      if (io) io->resumed();
      resume();
    });
  });
  return std::move(**slot);
}

// On the first slice of a fiber started with start_here (an event-loop thread): once that slice
// has used more than `budget` of CPU, the fiber moves to the pool's threads and goes on there, so a
// long evaluation that never waits for I/O does not hold the event loop (and every connection on
// it) for its whole run. Anywhere else, a no-op.
void leave_loop_if_over(std::chrono::microseconds budget);

// True on a fiber.
bool on_fiber();
// CPU time (µs) the running fiber has used over all its slices so far; outside a fiber, the
// calling thread's CPU time.
double fiber_cpu_us();
// Bytes left below the current stack pointer on the running fiber's stack, or on the calling
// thread's stack outside a fiber.
std::size_t stack_left();

}  // namespace wf::orchestrator::engine_detail
