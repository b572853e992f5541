#pragma once
// Evaluations run on fibers (Boost.Context): each has its own stack, sized from the call-depth
// limit, and parks instead of blocking when a port waits for I/O. A bounded pool of threads runs
// the fibers' slices; an I/O completion makes its fiber runnable again on that pool, so no thread
// is held while a request is in flight. Each slice carries the fiber's log context (trace and
// request ids) and adds the thread CPU time it used to the fiber's own account.
//
// Most slices run on the pool. Three kinds run on the service's event loop (EventLoop), to save
// the hand-offs between threads (each a wake-up, and for the pool a futex): a fiber started there
// (start_here) runs there until it first parks, a fiber whose I/O ends there resumes there
// when the waiting code asked for it (Resume::kLoop: the rest of its work is light), and the
// replay of a retired fiber that started there, when its answer arrives there and is light
// (await_retirable). A slice on the loop that uses more than its budget of CPU moves on to the
// pool (leave_loop_if_over). A retirement's unwinding runs on the sweeper that decides it.
//
// A parked fiber may resume on another thread: code that runs on a fiber must not hold a
// thread-local's address, a lock, or a pthread_self() value (declared const: the compiler may
// reuse it) across a park. Thread-locals read inside their own functions (logging, the
// allocator) are fine.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "orchestrator/engine/event_loop.h"
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
  // The service's event loop, where Resume::kLoop fibers resume; null: they resume on the pool.
  std::shared_ptr<EventLoop> loop;
  // Parked fibers that keep their frames on their stacks, the latest to park (fiber.cc,
  // HotParked); any other parked fiber's frames are saved off its stack and its pages released.
  std::size_t hot_parked = 8;
  // A fiber started as replayable (spawn, start_here) and parked on await_retirable() for longer
  // than this is retired: it unwinds and gives its stack back, and its body runs again on a new
  // fiber once the wait is over, where await_retirable() returns the answer at once (see
  // await_retirable). Zero: never.
  std::chrono::milliseconds retire_after{0};
};

// The start of an evaluation (run_metadata.h's RunStart, here so that fibers carry it).
struct EvaluationStart {
  std::chrono::system_clock::time_point wall;
  std::chrono::steady_clock::time_point mono;
  double cpu_us = 0;  // fiber_cpu_us() at the start
};

// Where a parked fiber goes on once its wait is over.
enum class Resume {
  kPool,  // on the pool's threads
  // On the thread that ends the wait, when that is a thread of the pool's event loop (not inside
  // another fiber's slice, nor inside the parking fiber's own `start`: then deferred on the loop
  // after the current handler); from any other thread, on the pool. For waits whose remaining
  // work is light: a fiber resumed on the loop is held to leave_loop_if_over's budget there too.
  kLoop,
};

// What every slice of a fiber runs under.
struct FiberLogContext {
  // Views of strings that `owner` keeps alive (the request's CallContext, shared with its work:
  // a parked or retired call holds one copy of its ids), or that outlive the fiber.
  std::string_view trace_id;
  std::string_view span_id;
  std::string_view request_id;
  std::shared_ptr<const void> owner;
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
  // `replayable`: `body` may be run again from its start after a retirement (await_retirable):
  // whatever it does before its wait it can do twice, and it holds nothing it moves away.
  void spawn(FiberLogContext log, std::function<void()> body, bool replayable = false);
  // Runs `body` on a new fiber on the calling thread until it finishes or first parks; after a
  // park it continues on the pool's threads (or the loop: Resume::kLoop). Never waits: for
  // event-loop threads. Called inside a fiber, or off the loop when the pool has one (a queued
  // call started by another's answer), it spawns() instead.
  void start_here(FiberLogContext log, std::function<void()> body, bool replayable = false);
  // Runs `body` on a new fiber on the calling thread and returns when it has finished; while it
  // is parked the calling thread waits.
  void run_here(FiberLogContext log, std::function<void()> body);

  std::size_t stack_bytes() const;
  // Fibers started and not yet finished (running, runnable or parked).
  std::size_t live() const;
  // Slices run so far, by where (also wf_orchestrator_evaluation_slices_total{thread}): on the
  // event loop (start_here, Resume::kLoop) or on the pool's threads (and run_here's caller).
  struct Slices {
    std::uint64_t loop = 0;
    std::uint64_t pool = 0;
  };
  Slices slices() const;
  // Bytes the parked fibers' saved frames take now (packed off their stacks: fiber.cc,
  // save_parked_stack); the hot ones (FiberPoolOptions::hot_parked) keep theirs in place.
  std::size_t saved_frame_bytes() const;
  // Fibers retired so far (await_retirable), and replays started after their answers.
  std::uint64_t retired() const;

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
// The same, but the resume function says where the fiber goes on (Resume); park()'s always says
// Resume::kPool. Outside a fiber, as park().
void park_to(std::function<void(std::function<void(Resume)> resume)> start);

// The running fiber's IoWaitObserver (FiberLogContext::io_wait); null outside a fiber.
std::shared_ptr<IoWaitObserver> fiber_io_wait();

// Waits for an asynchronous operation: `start(done)` must call done(value) exactly once, from any
// thread. Parks the running fiber (or blocks outside one) until then. The fiber's IoWaitObserver
// hears parked() once the fiber is parked, before the operation starts, and resumed() when it is
// done (the fiber is runnable from then: its wait for a CPU thread counts as running).
// `light` (may be null: Resume::kPool) is asked, on the thread that calls done(value), whether
// what the fiber does with `value` is light enough for the event loop (Resume::kLoop).
template <typename T>
T await(std::function<void(std::function<void(T)>)> start, bool (*light)(const T&) = nullptr) {
  auto slot = std::make_shared<std::unique_ptr<T>>();
  // `start` is moved into the parked work: it may still be running on another thread when the
  // fiber has been resumed and this frame is gone.
  park_to([start = std::move(start), slot, light,
           io = fiber_io_wait()](std::function<void(Resume)> resume) {
    if (io) io->parked();
    start([slot, resume = std::move(resume), light, io](T value) {
      const Resume where = light != nullptr && light(value) ? Resume::kLoop : Resume::kPool;
      *slot = std::make_unique<T>(std::move(value));
      if (io) io->resumed();
      resume(where);
    });
  });
  return std::move(**slot);
}

// Retiring a parked fiber (issue 7, bench/README.md "Seventh round"): a request that is one
// top-level code call keeps its fiber's frames and the engine's nodes while the evaluator works
// (~7 KiB of the ~19 KiB a parked call held). A wait started with await_retirable() on a fiber
// spawned as replayable, still not over after FiberPoolOptions::retire_after, is retired: the
// fiber resumes, a forced unwind takes it to its top (every frame's destructor runs) and it ends,
// its stack going back to the pool; its body, log context, CPU account and evaluation start are
// kept with the wait. When the answer comes, the body runs again from its start on a new fiber
// (a replay: the same steps, reading what the first run cached), and the replay's
// await_retirable() for the same wait (`same(tag, its tag)`) returns that answer without a round
// trip. So the answer's handling (return-type check, fallback, result cache, metadata) is the
// fiber path's own code: the envelopes are the same. A fiber is retired at most once per wait.
// Where each part runs: the unwinding on the pool's sweeper thread (`wf-retire`), which resumes
// the fiber there rather than waking a pool thread; the replay, for a fiber started on the event
// loop (start_here) whose answer arrives on the loop and is light, on the loop there and then, as
// a fiber not retired goes on there (Resume::kLoop, held to the same budget), else on the pool.
//
// The unwinding of a retired fiber is a forced unwind (_Unwind_ForcedUnwind, as pthread_cancel
// does), started in await_retirable(): the C++ runtime runs the frames' cleanups in one pass,
// without first searching the stack for a handler as a throw does (bench/README.md, session 16
// "retire8"). It is no C++ exception: catch (const std::exception&) and typed handlers do not see
// it; a catch (...) on the way does, and must rethrow it:
//   catch (...) { if (being_retired()) throw; ... }
// Only the fiber's top ends it. (Its handler gets no object: a catch (const abi::__forced_unwind&)
// binds a null reference, which UBSan reports.)
bool being_retired();

// Whether a wait started now could be retired: a pool fiber spawned as replayable, with
// retire_after set, not already past a replay's wait.
bool retirable_here();
// How a retirable wait is known again on the replay: `shrink(tag)` gives what a retired wait
// keeps of its tag (e.g. a digest instead of the whole call), `same(tag, kept)` tells whether a
// new wait's tag is the one a retired wait kept.
struct RetireTag {
  std::shared_ptr<const void> (*shrink)(const void* tag);
  bool (*same)(const void* tag, const void* kept);
};

// On a replay whose answer is still to be taken and whose kept tag is the same as `tag`
// (`how.same`): the answer (a T of await_retirable) and the time the retired wait took (added
// to *waited_us); null otherwise. An answer whose tag is not the same is dropped (the replay then
// waits anew).
std::shared_ptr<void> take_replay_answer(const void* tag, const RetireTag& how, double* waited_us);
// True on a replay until its answer is taken (the engine skips what the first run did: the
// result cache's lookup). While it is true the fiber's log lines are not written (the retired
// run wrote them) and its object-cache lookups are not counted.
bool replaying();
// A replay that has finished its evaluation without taking its answer (it stopped before: the
// deadline, a hang-up) drops it: what it does from here on, the retired run did not do, and its
// log lines are written. Elsewhere, a no-op.
void end_replay();
// The start of the evaluation on this fiber: `now` (recorded, for a retirement to carry), or on
// a replay, what its retired fiber recorded.
EvaluationStart evaluation_start(const EvaluationStart& now);

// A retirable wait's work, boxed: `done(answer, where)` takes the answer as a shared_ptr<void>.
using RetirableStart = std::function<void(std::function<void(std::shared_ptr<void>, Resume)>)>;

// await()'s `start` and `light` as a RetirableStart: the fiber's IoWaitObserver hears parked()
// and resumed() as in await(), and `light` says where the fiber goes on with the answer (a T).
template <typename T>
RetirableStart retirable_start(std::function<void(std::function<void(T)>)> start,
                               bool (*light)(const T&)) {
  return [start = std::move(start), light,
          io = fiber_io_wait()](std::function<void(std::shared_ptr<void>, Resume)> done) {
    if (io) io->parked();
    start([done = std::move(done), light, io](T value) {
      const Resume where = light != nullptr && light(value) ? Resume::kLoop : Resume::kPool;
      auto boxed = std::make_shared<T>(std::move(value));
      if (io) io->resumed();
      done(std::move(boxed), where);
    });
  };
}

// The two halves of await_retirable, for a caller whose frame must own nothing while the fiber
// waits: each frame the retirement's unwinding has a cleanup to run in costs a restart of the
// unwinder (~4k instructions; bench/README.md, session 18 "replay10"). stage_retirable() keeps
// `start` and `tag` on the running fiber (call it in a statement of its own, so that its
// arguments are gone when it returns); await_staged() then waits for them as await_retirable()
// does and returns the answer (a T of retirable_start), with no object of its own alive while
// it is parked.
void stage_retirable(RetirableStart start, std::shared_ptr<const void> tag);
std::shared_ptr<void> await_staged(const RetireTag& how, double* waited_us);

// await_staged(), but a retirement does not unwind the fiber from the wait: it returns null,
// and the caller returns to its top by ordinary returns (as from a cancellation: the engine's
// interpreter stops with Abort::kRetired), where end_retired_run() ends the run. The frames on
// the way destroy what they own as they return, as the unwinding would, without the unwinder
// (each frame it steps through costs an FDE lookup and its CFA program, each cleanup a restart:
// ~96k instructions per retirement with 8 such frames; bench/README.md, "retire11"). Every
// frame between the wait and the top must return at once and do nothing else while
// retired_run() (no answer, no log line, no metric).
std::shared_ptr<void> await_staged_or_return(const RetireTag& how, double* waited_us);
// True on a fiber whose wait (await_staged_or_return) returned null for its retirement, while it
// returns to its top.
bool retired_run();
// At that top, with nothing left alive in its own frame: ends the retired run. The frames above
// it (the fiber's body, whose code does not know of retirement) are left by the forced unwind
// (see being_retired), and the answer then starts the replay as for any retired fiber.
[[noreturn]] void end_retired_run();

// await(), retirably (see above) when retirable_here(); `tag` identifies the wait (`how` says
// what a retirement keeps of it and how the replay knows it again). *waited_us gets the wall time
// of a retired wait when its answer is taken on the replay (the caller's own stopwatch saw none of
// it).
template <typename T>
T await_retirable(std::function<void(std::function<void(T)>)> start, bool (*light)(const T&),
                  std::shared_ptr<const void> tag, const RetireTag& how, double* waited_us) {
  stage_retirable(retirable_start<T>(std::move(start), light), std::move(tag));
  return std::move(*static_cast<T*>(await_staged(how, waited_us).get()));
}

// On a slice of a fiber that runs on the event loop (started there with start_here, or resumed
// there with Resume::kLoop): once that slice has used more than `budget` of CPU, the fiber moves
// to the pool's threads and goes on there, so a long evaluation that never waits for I/O does not
// hold the event loop (and every connection on it) for its whole run. Anywhere else, a no-op.
void leave_loop_if_over(std::chrono::microseconds budget);

// True on a fiber.
bool on_fiber();
// CPU time (µs) the running fiber has used over all its slices so far; outside a fiber, the
// calling thread's CPU time.
double fiber_cpu_us();
// Bytes left below the current stack pointer on the running fiber's stack, or on the calling
// thread's stack outside a fiber.
std::size_t stack_left();
// The bounds [low, high) of that stack; both null when unknown (then nothing is checked).
struct StackRange {
  const char* low = nullptr;
  const char* high = nullptr;
};
StackRange current_stack();

}  // namespace wf::orchestrator::engine_detail
