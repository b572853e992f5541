// Fibers over Boost.Context with pooled, lazily committed stacks (see fiber.h).
#include "orchestrator/engine/fiber.h"

#include <pthread.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <unwind.h>

#include <algorithm>
#include <boost/context/fiber.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "orchestrator/engine/engine_metrics.h"
#include "wf/obs/log.h"
#include "wf/obs/metrics.h"
#include "wf/obs/process_stats.h"

#if WF_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#if WF_TSAN
#include <sanitizer/tsan_interface.h>
#endif

namespace wf::orchestrator::engine_detail {

namespace bctx = boost::context;

namespace {

std::size_t page_size() {
  static const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  return page;
}

double thread_cpu_now_us() {
  timespec ts{};
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return 0;
  return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) / 1e3;
}

// The stack a fiber switch goes to (or came from), as AddressSanitizer wants it described.
struct StackBounds {
  const void* bottom = nullptr;
  std::size_t size = 0;
};

// AddressSanitizer must know which stack is current: every switch is announced before the jump
// (with the stack it goes to) and completed on the other side (learning the stack it came
// from). Without this, an exception thrown on a fiber makes ASan unpoison, and then check, the
// thread's stack instead of the fiber's. `fake_stack` keeps the detect_stack_use_after_return
// frames of the side that leaves; null when it leaves for good. No-ops in other builds.
void switch_starts([[maybe_unused]] void** fake_stack, [[maybe_unused]] StackBounds to) {
#if WF_ASAN
  __sanitizer_start_switch_fiber(fake_stack, to.bottom, to.size);
#endif
}

void switch_ends([[maybe_unused]] void* fake_stack, [[maybe_unused]] StackBounds* from) {
#if WF_ASAN
  __sanitizer_finish_switch_fiber(fake_stack, from != nullptr ? &from->bottom : nullptr,
                                  from != nullptr ? &from->size : nullptr);
#endif
}

// ThreadSanitizer must know which fiber runs, too: each Fiber has a TSan context of its own
// (tsan_fiber), and the thread's is noted when a slice starts. A switch is announced just before
// the jump and synchronises (flags 0): what one side did before it happens before what the other
// does after it, as the jump itself guarantees. Without this, TSan keeps one call stack and one
// clock per thread across fibers whose stacks come and go: mismatched function entries and exits
// and false reports. (Boost.Context 1.81 annotates only its ucontext backend.) No-ops elsewhere.
void* tsan_current() {
#if WF_TSAN
  return __tsan_get_current_fiber();
#else
  return nullptr;
#endif
}

void* tsan_create() {
#if WF_TSAN
  return __tsan_create_fiber(0);
#else
  return nullptr;
#endif
}

void tsan_destroy([[maybe_unused]] void* fiber) {
#if WF_TSAN
  if (fiber != nullptr) __tsan_destroy_fiber(fiber);
#endif
}

void tsan_switch([[maybe_unused]] void* to) {
#if WF_TSAN
  __tsan_switch_to_fiber(to, 0);
#endif
}

// A finished fiber's first frames (Boost's entry, the body's lambda) never return: its last
// switch leaves them. Their redzones would stay poisoned in ASan's shadow and fault the next user
// of those addresses (the stack reused, or a new mapping where it was), so they are cleared when
// the stack is released: [low, high). No-op in other builds.
void forget_stack_poison([[maybe_unused]] const char* low, [[maybe_unused]] const char* high) {
#if WF_ASAN
  __asan_unpoison_memory_region(low, static_cast<std::size_t>(high - low));
#endif
}

// A parked fiber's frames are kept packed: a bitmap of its stack's 8-byte words from the stack
// pointer to the top, then the words that are not zero, in order. Frames hold many zero words
// (empty containers and strings, null pointers, cleared flags, slots a call never wrote), which
// then cost one bit each (bench/slow_calls: memory per parked call).
using StackWord = std::uint64_t;
constexpr std::size_t kWordBytes = sizeof(StackWord);
constexpr std::size_t kWordsPerMapWord = 64;

// Stack words read and written so that AddressSanitizer leaves them unchecked: a frame's
// redzones are poisoned in its shadow, and packing reads (and restoring writes back) whole
// frames, redzones included.
[[gnu::no_sanitize_address]] StackWord load_stack_word(const char* at) {
  StackWord w;
#if WF_ASAN
  for (std::size_t i = 0; i < kWordBytes; ++i) {
    reinterpret_cast<volatile char*>(&w)[i] = static_cast<const volatile char*>(at)[i];
  }
#else
  std::memcpy(&w, at, kWordBytes);
#endif
  return w;
}

[[gnu::no_sanitize_address]] void store_stack_word(char* at, StackWord w) {
#if WF_ASAN
  for (std::size_t i = 0; i < kWordBytes; ++i) {
    static_cast<volatile char*>(at)[i] = reinterpret_cast<const char*>(&w)[i];
  }
#else
  std::memcpy(at, &w, kWordBytes);
#endif
}

// Stacks: mmap'd with a guard page below, committed by the kernel page by page as they are
// touched. Released stacks are kept for reuse (up to a bound) after their pages beyond the top
// kKeepHot bytes are given back, so an idle pool costs little memory. Only a stack whose fiber
// went beyond them has any such page (see release_cold): a shallow call's stack goes back to the
// pool without a system call.
class StackPool {
 public:
  static constexpr std::size_t kKeepHot = 32u << 10;

  StackPool(std::size_t usable, std::size_t max_idle) : max_idle_(max_idle) {
    const std::size_t page = page_size();
    usable_ = (std::max<std::size_t>(usable, 64u << 10) + page - 1) / page * page;
  }
  ~StackPool() {
    for (void* base : idle_) munmap(base, usable_ + page_size());
  }

  bctx::stack_context allocate() {
    void* base = nullptr;
    {
      std::lock_guard lock(mu_);
      if (!idle_.empty()) {
        base = idle_.back();
        idle_.pop_back();
      }
    }
    if (base == nullptr) base = map();
    bctx::stack_context sc;
    sc.size = usable_;
    sc.sp = static_cast<char*>(base) + page_size() + usable_;
    return sc;
  }

  // `deep`: the fiber is known to have had frames below the top kKeepHot bytes (it parked there).
  void deallocate(bctx::stack_context& sc, bool deep) {
    char* base = static_cast<char*>(sc.sp) - usable_ - page_size();
    {
      std::lock_guard lock(mu_);
      if (idle_.size() < max_idle_) {
        if (usable_ > kKeepHot) release_cold(base, deep);
        idle_.push_back(base);
        return;
      }
    }
    munmap(base, usable_ + page_size());
  }

  // The lowest address of the kKeepHot bytes kept at the top of a stack whose top is `top`.
  static const char* hot_low(const char* top) { return top - kKeepHot; }

  std::size_t usable() const { return usable_; }

 private:
  // Gives back the pages below the top kKeepHot bytes of a released stack, if it has any. The
  // page just below them (the probe) tells: a fiber whose frames went further down wrote there
  // (each call pushes a return address), so a probe of zero words means none of them were
  // touched. A probe not resident reads as zeros (the kernel's zero page: no memory, one minor
  // fault, once after each deep use). (A frame of over a page of words never written could step
  // over the probe unseen: then pages stay committed in an idle stack, memory only, until a
  // deeper use.)
  void release_cold(char* base, bool deep) {
    char* low = base + page_size();
    const char* probe = low + usable_ - kKeepHot - page_size();
    if (!deep) {
      // Four words a step (a page is a multiple of 32 bytes), the bound read once: ~1,100
      // instructions a scan.
      StackWord any = 0;
      const char* const end = probe + page_size();
      for (const char* at = probe; at < end; at += 4 * kWordBytes) {
        any |= load_stack_word(at) | load_stack_word(at + kWordBytes) |
               load_stack_word(at + 2 * kWordBytes) | load_stack_word(at + 3 * kWordBytes);
      }
      if (any == 0) return;
    }
    madvise(low, usable_ - kKeepHot, MADV_DONTNEED);
  }

  void* map() const {
    const std::size_t total = usable_ + page_size();
    void* base = mmap(nullptr, total, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (base == MAP_FAILED) {
      throw std::runtime_error("cannot map a fiber stack of " + std::to_string(total) +
                               " bytes: lower max_call_depth or raise vm.max_map_count");
    }
    mprotect(base, page_size(), PROT_NONE);  // guard page
    return base;
  }

  std::size_t usable_ = 0;
  std::size_t max_idle_;
  std::mutex mu_;
  std::vector<void*> idle_;
};

}  // namespace

class HotParked;
struct Fiber;

// A retirable wait (fiber.h, await_retirable): shared by the parked fiber, the I/O that ends the
// wait, the pool's sweeper and, after a retirement, the replay.
struct RetireWait {
  enum class Phase {
    kWaiting,   // the fiber is parked
    kAnswered,  // the answer came first: the fiber resumes with it
    kRetiring,  // the sweeper resumed the fiber to unwind it
    kRetired,   // it has unwound: the answer starts the replay
    kReplayed,  // the replay has started
  };
  std::mutex mu;
  Phase phase = Phase::kWaiting;
  FiberPool::Impl* pool = nullptr;
  std::function<void(Resume)> resume;  // the park's, once the fiber has parked
  std::shared_ptr<void> answer;
  std::shared_ptr<const void> tag;  // what identifies the wait; once retired, what `how` kept
  RetireTag how{};
  std::chrono::steady_clock::time_point parked_at;
  std::chrono::steady_clock::time_point answered_at;
  // The retired fiber's, for its replay.
  FiberLogContext log;
  std::function<void()> body;
  double cpu_us = 0;
  std::optional<EvaluationStart> start;
  bool loop_start = false;  // the retired fiber started on the event loop (Fiber::loop_start)
};

struct Fiber {
  Fiber() = default;
  Fiber(const Fiber&) = delete;
  Fiber& operator=(const Fiber&) = delete;
  ~Fiber() { tsan_destroy(tsan_fiber); }

  FiberLogContext log;
  std::function<void()> body;
  std::function<void(Fiber*)> schedule;  // makes the fiber runnable again (pool or run_here)
  FiberPool::Impl* pool = nullptr;       // a pool's fiber (Resume::kLoop); null for run_here's
  bctx::fiber self;                      // the fiber while it is not running
  bctx::fiber back;                      // the thread's context while the fiber runs
  std::function<void(std::function<void(Resume)>)> park_fn;  // run once the fiber has parked
  std::exception_ptr park_error;  // park_fn threw: rethrown in the fiber when it resumes
  const char* stack_low = nullptr;
  std::size_t stack_size = 0;
  const char* parked_sp = nullptr;         // park()'s frame address when it last parked
  const char* deepest_park = nullptr;      // the lowest stack pointer it parked at
  std::unique_ptr<std::uint64_t[]> saved;  // the live frames while parked, packed (pack_stack)
  HotParked* hot_list = nullptr;           // its pool's (HotParked)
  bool hot = false;                        // parked with its frames in place, in hot_list
  const char* saved_from = nullptr;        // where they go back to
  std::size_t saved_words = 0;             // stack words from saved_from to the top
  std::size_t saved_bytes = 0;             // what `saved` takes
  void* fake_stack = nullptr;              // ASan's, while parked (switch_starts)
  const char* exit_frame = nullptr;        // the body's lambda when it left for good
  StackBounds thread_stack;                // of the thread running the fiber (ASan builds only)
  void* tsan_fiber = tsan_create();        // its ThreadSanitizer context (TSan builds only)
  void* tsan_thread = nullptr;  // the running thread's, while a slice runs (TSan builds only)
  double cpu_us = 0;
  double slice_start_us = 0;
  // The slice's start by the steady clock (read in user space, where the thread's CPU clock is a
  // system call): leave_loop_if_over's first test.
  std::chrono::steady_clock::time_point slice_start_wall;
  bool on_loop = false;  // this slice runs on the event loop (start_here, Resume::kLoop)
  // Started on the event loop (start_here), or a replay of such a fiber: its replay may start
  // there too, where its answer arrives (FiberPool::Impl::replay).
  bool loop_start = false;
  bool done = false;
  bool replayable = false;                 // its body may run again after a retirement
  bool unwinding = false;                  // being retired: unwind_retired to run_body
  bool returning = false;                  // retired, returning to its top (await_staged_or_return)
  std::shared_ptr<RetireWait> waiting;     // the retirable wait it is parked on
  RetirableStart staged_start;             // stage_retirable's, until await_staged takes it
  std::shared_ptr<const void> staged_tag;  // the same
  std::shared_ptr<RetireWait> replay;      // a replay's wait whose answer is still to be taken
  std::optional<EvaluationStart> eval_start;     // evaluation_start()'s, carried on retirement
  std::optional<EvaluationStart> carried_start;  // a replay's, until evaluation_start() takes it
};

namespace {

thread_local Fiber* t_current = nullptr;
// True while this thread runs the work a fiber parked for (run_slice): a resume(Resume::kLoop)
// called from inside it must not run the fiber there and then, nested in its own park.
thread_local bool t_in_park_start = false;
// True on the pool's sweeper (FiberPool::Impl::sweep): a fiber it resumes to be retired unwinds
// there and then, on its thread, not on the pool's (no wake-up of a pool thread, which would
// take a core from an event loop: bench/README.md, "retire11").
thread_local bool t_sweeper = false;

// Makes a parked fiber runnable again: on the pool, or (Resume::kLoop) on the event loop.
void wake(Fiber* f, Resume where);

// The allocator Boost.Context copies into each fiber: takes a pooled stack and notes its bounds.
struct PooledStack {
  StackPool* pool;
  Fiber* fiber;
  bctx::stack_context allocate() {
    bctx::stack_context sc = pool->allocate();
    fiber->stack_low = static_cast<const char*>(sc.sp) - sc.size;
    fiber->stack_size = sc.size;
    return sc;
  }
  void deallocate(bctx::stack_context& sc) noexcept {
    // The frames still live at the last switch: from a page below the lambda's to the top
    // (the whole stack if it never got there).
    const char* top = static_cast<const char*>(sc.sp);
    const char* low = fiber->stack_low;
    if (fiber->exit_frame != nullptr) low = std::max(low, fiber->exit_frame - page_size());
    forget_stack_poison(low, top);
    // A park's restored frames (restore_parked_stack) wrote every word from its stack pointer,
    // up to a page below park()'s frame, to the top: zeros too, which the probe cannot see.
    pool->deallocate(sc, fiber->deepest_park != nullptr &&
                             fiber->deepest_park < StackPool::hot_low(top) + 2 * page_size());
  }
};

void retired(Fiber* f);

void run_body(Fiber* f) {
  try {
    f->body();
    if (f->returning) {
      // Its top did not end the retired run (end_retired_run): whatever it did on the way is
      // done; the replay still answers, so the call does not wait for ever.
      obs::count_bug("orchestrator.fiber", "a retired run returned to its fiber's top");
      f->returning = false;
      retired(f);
    }
  } catch (const bctx::detail::forced_unwind&) {
    throw;
  } catch (const std::exception& e) {
    obs::count_bug("orchestrator.fiber", e.what());
  } catch (...) {
    if (f->unwinding) {
      // Not rethrown: the retirement's unwinding (unwind_retired) ends here, and the runtime
      // frees its exception as the handler ends.
      f->unwinding = false;
      retired(f);
    } else {
      obs::count_bug("orchestrator.fiber", "unknown exception");
    }
  }
  f->body = nullptr;
}

// A parked fiber keeps none of its stack's pages: its live frames, from the stack pointer at
// the switch to the top of the stack, are copied to the heap (packed: pack_stack below) and every
// page of the stack goes back to the kernel; the frames are copied back, at the same addresses,
// just before the fiber runs again. A call waiting on the evaluator with 4.8 KiB
// of frames kept two pages (8 KiB) before (bench/slow_calls: KiB per parked call). Nothing may
// touch a parked fiber's stack (park()'s `start` gets copies: see await()).
//
// The stack pointer of the suspended context is the fiber handle's only member (Boost.Context's
// fcontext_t); park()'s frame address, less a margin for its own locals and the registers the
// switch saves, is the fallback should that ever not hold.
constexpr std::uintptr_t kParkedMargin = 1024;

const char* suspended_sp(const Fiber& f) {
  const char* sp = nullptr;
  static_assert(sizeof(bctx::fiber) == sizeof(sp), "Boost.Context's fiber holds one pointer");
  std::memcpy(&sp, static_cast<const void*>(&f.self), sizeof(sp));
  const char* top = f.stack_low + f.stack_size;
  if (sp > f.stack_low && sp <= f.parked_sp && sp < top) return sp;
  return f.parked_sp - std::min<std::uintptr_t>(kParkedMargin, f.parked_sp - f.stack_low);
}

std::size_t map_words(std::size_t words) {
  return (words + kWordsPerMapWord - 1) / kWordsPerMapWord;
}

// Packs the `words` stack words at `from`; the packed form's size in words is in `*packed_words`.
std::unique_ptr<StackWord[]> pack_stack(const char* from, std::size_t words,
                                        std::size_t* packed_words) {
  std::size_t nonzero = 0;
  for (std::size_t i = 0; i < words; ++i) nonzero += load_stack_word(from + i * kWordBytes) != 0;
  const std::size_t map = map_words(words);
  *packed_words = map + nonzero;
  auto packed = std::make_unique_for_overwrite<StackWord[]>(*packed_words);
  std::fill_n(packed.get(), map, StackWord{0});
  StackWord* out = packed.get() + map;
  for (std::size_t i = 0; i < words; ++i) {
    const StackWord w = load_stack_word(from + i * kWordBytes);
    if (w == 0) continue;
    packed[i / kWordsPerMapWord] |= StackWord{1} << (i % kWordsPerMapWord);
    *out++ = w;
  }
  return packed;
}

void unpack_stack(const StackWord* packed, char* to, std::size_t words) {
  const StackWord* in = packed + map_words(words);
  for (std::size_t i = 0; i < words; ++i) {
    const bool kept = (packed[i / kWordsPerMapWord] >> (i % kWordsPerMapWord)) & 1;
    store_stack_word(to + i * kWordBytes, kept ? *in++ : StackWord{0});
  }
}

// Saves a parked fiber's frames off its stack and gives every page of the stack back; returns
// the bytes the saved frames take.
std::size_t save_parked_stack(Fiber& f) {
  if (f.stack_low == nullptr || f.parked_sp == nullptr) return 0;
  // From a word boundary (the stack pointer of a switch is 16-byte aligned; the fallback's may
  // not be); the top of the stack is a page boundary.
  const auto sp = reinterpret_cast<std::uintptr_t>(suspended_sp(f));
  const char* from = reinterpret_cast<const char*>(sp - sp % kWordBytes);
  const char* top = f.stack_low + f.stack_size;
  f.saved_words = static_cast<std::size_t>(top - from) / kWordBytes;
  f.saved_from = from;
  std::size_t packed_words = 0;
  f.saved = pack_stack(from, f.saved_words, &packed_words);
  madvise(const_cast<char*>(f.stack_low), f.stack_size, MADV_DONTNEED);
  f.saved_bytes = packed_words * kWordBytes;
  return f.saved_bytes;
}

// Puts a parked fiber's saved frames back in place; returns the bytes they took.
std::size_t restore_parked_stack(Fiber& f) {
  if (!f.saved) return 0;
  unpack_stack(f.saved.get(), const_cast<char*>(f.saved_from), f.saved_words);
  f.saved.reset();
  return std::exchange(f.saved_bytes, 0);
}

}  // namespace

// The last few fibers to park keep their frames on their stacks: one that resumes soon (a call
// whose evaluator answers in a millisecond) finds its stack as it left it, without the copy out
// and back, the madvise and the page faults that fill the stack again (bench/orchestrator_cpu:
// two system calls and a few faults per call). When more than `capacity` are parked, the one
// parked longest is saved and its pages released as any parked fiber's were before, so memory per
// parked call beyond the first `capacity` stays that of its saved frames (bench/slow_calls).
class HotParked {
 public:
  explicit HotParked(std::size_t capacity) : capacity_(capacity) {}

  // `f` has just parked (on this thread).
  void parked(Fiber& f) {
    if (capacity_ == 0) {
      saved_bytes_.fetch_add(save_parked_stack(f), std::memory_order_relaxed);
      return;
    }
    std::lock_guard lock(mu_);
    fibers_.push_back(&f);
    f.hot = true;
    if (fibers_.size() > capacity_) {
      Fiber* oldest = fibers_.front();
      fibers_.erase(fibers_.begin());
      oldest->hot = false;
      // Under the lock: it cannot be resumed meanwhile.
      saved_bytes_.fetch_add(save_parked_stack(*oldest), std::memory_order_relaxed);
    }
  }

  // `f` is about to run again: its frames are back in place when this returns.
  void resuming(Fiber& f) {
    if (f.parked_sp == nullptr) return;  // its first slice
    {
      std::lock_guard lock(mu_);
      if (f.hot) {
        fibers_.erase(std::find(fibers_.begin(), fibers_.end(), &f));
        f.hot = false;
        return;
      }
    }
    saved_bytes_.fetch_sub(restore_parked_stack(f), std::memory_order_relaxed);
  }

  // What the saved frames of the parked fibers take now.
  std::size_t saved_bytes() const { return saved_bytes_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::size_t> saved_bytes_{0};
  std::mutex mu_;
  std::vector<Fiber*> fibers_;  // oldest first
  std::size_t capacity_;
};

namespace {

// Runs one slice of `f` on this thread. Returns true when the fiber has finished; otherwise it
// has parked and its park work has been started (after which `f` may already run elsewhere).
bool run_slice(Fiber* f) {
  {
    // A replay's lines up to its answer were written by the run it replays: not again.
    obs::LogScope scope(f->log.trace_id, f->log.span_id, f->log.request_id, f->replay != nullptr);
    Fiber* outer = t_current;
    t_current = f;
    f->slice_start_us = thread_cpu_now_us();
    f->slice_start_wall = std::chrono::steady_clock::now();
    f->hot_list->resuming(*f);
    void* thread_fake_stack = nullptr;
    switch_starts(&thread_fake_stack, {f->stack_low, f->stack_size});
    f->tsan_thread = tsan_current();
    tsan_switch(f->tsan_fiber);
    f->self = std::move(f->self).resume();
    switch_ends(thread_fake_stack, nullptr);
    // A finished fiber's CPU time is read by no one: the thread's CPU clock (a system call) is
    // read at the end of a slice only when the fiber will run again.
    if (!f->done) f->cpu_us += thread_cpu_now_us() - f->slice_start_us;
    t_current = outer;
  }
  f->on_loop = false;  // any later slice runs where schedule() puts it
  if (f->done) return true;
  f->hot_list->parked(*f);
  auto start = std::move(f->park_fn);
  f->park_fn = nullptr;
  auto resumed = std::make_shared<std::atomic<bool>>(false);
  const bool was_in_start = std::exchange(t_in_park_start, true);
  try {
    start([f, resumed](Resume where) {
      if (!resumed->exchange(true)) wake(f, where);
    });
    t_in_park_start = was_in_start;
  } catch (...) {
    t_in_park_start = was_in_start;
    // The work the fiber waits for could not start: the fiber resumes with the exception.
    if (!resumed->exchange(true)) {
      f->park_error = std::current_exception();
      f->schedule(f);
    } else {
      obs::count_bug("orchestrator.fiber", "parked work threw after resuming its fiber");
    }
  }
  return false;
}

Fiber* make_fiber(StackPool& stacks, HotParked& hot, FiberLogContext log,
                  std::function<void()> body) {
  auto* f = new Fiber;
  f->hot_list = &hot;
  f->log = std::move(log);
  f->body = std::move(body);
  // Boost.Context's fiber starts on its new stack as it is made, and jumps back at once: under
  // ThreadSanitizer that entry belongs to the new fiber's context, not the thread's.
  void* thread = tsan_current();
  tsan_switch(f->tsan_fiber);
  f->self = bctx::fiber(std::allocator_arg, PooledStack{&stacks, f}, [f](bctx::fiber&& back) {
    switch_ends(nullptr, &f->thread_stack);
    f->back = std::move(back);
    run_body(f);
    f->done = true;
    f->exit_frame = static_cast<const char*>(__builtin_frame_address(0));
    switch_starts(nullptr, f->thread_stack);  // for good: its fake stack goes
    tsan_switch(f->tsan_thread);
    return std::move(f->back);
  });
  tsan_switch(thread);
  return f;
}

}  // namespace

struct FiberPool::Impl {
  explicit Impl(const FiberPoolOptions& options)
      : stacks(options.stack_bytes, options.idle_stacks),
        hot(options.hot_parked),
        loop(options.loop),
        retire_after(options.retire_after) {
    const int n = std::max(1, options.threads);
    for (int i = 0; i < n; ++i) {
      threads.emplace_back([this, i] {
        obs::name_this_thread("wf-engine-" + std::to_string(i));
        work();
      });
    }
    if (retire_after.count() > 0) {
      sweeper = std::thread([this] {
        obs::name_this_thread("wf-retire");
        t_sweeper = true;
        sweep();
      });
    }
  }

  ~Impl() {
    {
      std::unique_lock lock(mu);
      // Parked fibers wait for I/O completions, which end at their deadlines or when the event
      // loop they run on stops: wait a bounded time, then leave them (their memory with them).
      idle_cv.wait_for(lock, std::chrono::seconds(5), [&] { return live == 0; });
    }
    {
      std::lock_guard lock(retire_mu);
      sweeper_stopping = true;
    }
    retire_cv.notify_all();
    if (sweeper.joinable()) sweeper.join();
    {
      std::lock_guard lock(mu);
      stopping = true;
    }
    cv.notify_all();
    for (auto& t : threads) t.join();
    if (live != 0) {
      obs::count_bug("orchestrator.fiber",
                     std::to_string(live) + " fibers were still parked at shutdown");
    }
  }

  // Notifies under the lock: once it is released, a pool thread may run `f` to its end and the
  // pool may be destroyed (its last fiber finished) while this thread, often an I/O thread that
  // resumed `f`, would still be about to signal `cv` (ThreadSanitizer: pthread_cond_signal racing
  // pthread_cond_destroy in Fibers.AwaitReturnsTheValueGivenFromAnotherThread).
  void post(Fiber* f) {
    std::lock_guard lock(mu);
    queue.push_back(f);
    cv.notify_one();
  }

  void work() {
    for (;;) {
      Fiber* f = nullptr;
      {
        std::unique_lock lock(mu);
        cv.wait(lock, [&] { return stopping || !queue.empty(); });
        if (queue.empty()) return;
        f = queue.front();
        queue.pop_front();
      }
      count_slice(false);
      if (run_slice(f)) finish(f);
    }
  }

  // A slice on the calling thread, an event-loop thread: leave_loop_if_over holds it to its budget.
  void run_on_loop(Fiber* f) {
    count_slice(true);
    f->on_loop = true;
    if (run_slice(f)) finish(f);
  }

  void count_slice(bool on_loop) {
    auto& m = metrics();
    if (on_loop) {
      loop_slices.fetch_add(1, std::memory_order_relaxed);
      m.slices_loop.Increment();
    } else {
      pool_slices.fetch_add(1, std::memory_order_relaxed);
      m.slices_pool.Increment();
    }
  }

  // A new fiber of the pool, counted live; any later slice runs where schedule() puts it.
  Fiber* adopt(FiberLogContext log, std::function<void()> body) {
    Fiber* f = make_fiber(stacks, hot, std::move(log), std::move(body));
    f->schedule = [this](Fiber* fiber) { post(fiber); };
    f->pool = this;
    std::lock_guard lock(mu);
    ++live;
    return f;
  }

  void finish(Fiber* f) {
    delete f;
    std::lock_guard lock(mu);
    if (--live == 0) idle_cv.notify_all();
  }

  // A retired fiber's wait counts as live until its replay starts (the pool outlives it).
  void hold() {
    std::lock_guard lock(mu);
    ++live;
  }

  // A fiber has parked on the retirable wait `w` (its resume function is set): the sweeper
  // retires it once it has waited retire_after.
  void watch(std::shared_ptr<RetireWait> w) {
    std::lock_guard lock(retire_mu);
    const bool was_empty = waits.empty();
    waits.push_back(std::move(w));
    if (was_empty) retire_cv.notify_one();
  }

  // The sweeper: retires the waits that are still parked retire_after after they parked, oldest
  // first (they were parked in order). Answered waits leave the queue when their time comes.
  void sweep() {
    std::unique_lock lock(retire_mu);
    while (!sweeper_stopping) {
      if (waits.empty()) {
        retire_cv.wait(lock, [&] { return sweeper_stopping || !waits.empty(); });
        continue;
      }
      const auto due = waits.front()->parked_at + retire_after;
      if (std::chrono::steady_clock::now() < due) {
        // A twentieth of retire_after late at most (5 ms by default): the waits due meanwhile
        // go in one wake-up, not one each (a thousand calls a second would wake it a thousand
        // times), in batches small enough (~3 at 667 retirements a second) that the event loops
        // do not wait behind them. A quarter (25 ms: ~17 a batch) put the fast calls beside
        // 2,000 slow ones at 2.2-2.6x their unloaded p99, this at 1.6-1.9x (bench/README.md,
        // "Figures before and after session 19").
        retire_cv.wait_until(lock, due + retire_after / 20);
        continue;
      }
      std::shared_ptr<RetireWait> w = std::move(waits.front());
      waits.pop_front();
      lock.unlock();
      retire(*w);
      w.reset();
      lock.lock();
    }
  }

  // Resumes a parked fiber to unwind it (park_retirable: unwind_retired), unless its answer
  // came first; called on the sweeper, where the fiber then runs (wake: run_retiring).
  static void retire(RetireWait& w) {
    std::function<void(Resume)> resume;
    {
      std::lock_guard lock(w.mu);
      if (w.phase != RetireWait::Phase::kWaiting || !w.resume) return;
      w.phase = RetireWait::Phase::kRetiring;
      resume = w.resume;
    }
    resume(Resume::kPool);
  }

  // The body of a retired fiber runs again on a new fiber, with the wait's answer to take. A
  // fiber that started on the event loop replays there when its answer arrives there and is
  // light (`where`, as a fiber not retired goes on there: wake), held to the same budget; else
  // on the pool. (Not one that started on the pool: its body was not read on the loop.)
  void replay(const std::shared_ptr<RetireWait>& w, Resume where) {
    Fiber* f = make_fiber(stacks, hot, std::move(w->log), std::move(w->body));
    f->schedule = [this](Fiber* fiber) { post(fiber); };
    f->pool = this;
    f->replayable = true;
    f->loop_start = w->loop_start;
    f->cpu_us = w->cpu_us;
    f->carried_start = w->start;
    f->replay = w;
    replays.fetch_add(1, std::memory_order_relaxed);
    // Counted live since its retirement (hold).
    if (where == Resume::kLoop && f->loop_start) {
      wake(f, Resume::kLoop);
    } else {
      post(f);
    }
  }

  // A slice on the sweeper's thread (wake): the retirement's unwinding, or, when the answer came
  // meanwhile, the fiber going on with it.
  void run_retiring(Fiber* f) {
    count_slice(false);
    if (run_slice(f)) finish(f);
  }

  StackPool stacks;
  HotParked hot;
  std::mutex mu;
  std::condition_variable cv;
  std::condition_variable idle_cv;
  std::deque<Fiber*> queue;
  std::size_t live = 0;
  bool stopping = false;
  std::shared_ptr<EventLoop> loop;
  std::atomic<std::uint64_t> loop_slices{0};
  std::atomic<std::uint64_t> pool_slices{0};
  std::vector<std::thread> threads;
  // Retirement (fiber.h, await_retirable).
  std::chrono::milliseconds retire_after;
  std::mutex retire_mu;
  std::condition_variable retire_cv;
  std::deque<std::shared_ptr<RetireWait>> waits;  // parked retirable waits, oldest first
  bool sweeper_stopping = false;
  std::atomic<std::uint64_t> replays{0};
  std::thread sweeper;
};

namespace {

void wake(Fiber* f, Resume where) {
  FiberPool::Impl* pool = f->pool;
  // The sweeper's resume (retire) outside any fiber's slice or park: the retirement.
  if (t_sweeper && t_current == nullptr && !t_in_park_start && pool != nullptr) {
    pool->run_retiring(f);
    return;
  }
  if (where == Resume::kLoop && pool != nullptr && pool->loop &&
      pool->loop->running_in_this_thread()) {
    if (t_current == nullptr && !t_in_park_start) {
      pool->run_on_loop(f);
    } else {
      pool->loop->defer([pool, f] { pool->run_on_loop(f); });
    }
    return;
  }
  f->schedule(f);
}

// At the top of a fiber unwound by its retirement (unwind_retired): its body, log context, CPU
// account and evaluation start go to its wait, and the answer (now or when it comes) starts the
// replay.
void retired(Fiber* f) {
  std::shared_ptr<RetireWait> w = std::move(f->waiting);
  if (!w || f->pool == nullptr) {
    obs::count_bug("orchestrator.fiber", "a fiber unwound for retirement without a retired wait");
    return;
  }
  FiberPool::Impl* pool = f->pool;
  bool answered = false;
  {
    std::lock_guard lock(w->mu);
    w->log = std::move(f->log);
    w->body = std::move(f->body);
    w->cpu_us = fiber_cpu_us();
    w->start = f->eval_start;
    w->loop_start = f->loop_start;
    w->resume = nullptr;  // the fiber ends here: nothing resumes it
    w->tag = w->how.shrink(w->tag.get());
    answered = w->answer != nullptr;
    w->phase = answered ? RetireWait::Phase::kReplayed : RetireWait::Phase::kRetired;
  }
  metrics().fibers_retired.Increment();
  pool->hold();
  if (answered) pool->replay(w, Resume::kPool);
}

void answer_wait(const std::shared_ptr<RetireWait>& w, std::shared_ptr<void> answer, Resume where) {
  std::function<void(Resume)> resume;
  bool replay = false;
  {
    std::lock_guard lock(w->mu);
    w->answer = std::move(answer);
    w->answered_at = std::chrono::steady_clock::now();
    switch (w->phase) {
      case RetireWait::Phase::kWaiting:
        w->phase = RetireWait::Phase::kAnswered;
        resume = w->resume;
        break;
      case RetireWait::Phase::kRetired:
        w->phase = RetireWait::Phase::kReplayed;
        replay = true;
        break;
      default:  // kRetiring: the unwound fiber starts the replay (retired)
        break;
    }
  }
  if (resume) resume(where);
  if (replay) w->pool->replay(w, where);
}

}  // namespace

FiberPool::FiberPool(FiberPoolOptions options) : impl_(std::make_unique<Impl>(options)) {}
FiberPool::~FiberPool() = default;

void FiberPool::spawn(FiberLogContext log, std::function<void()> body, bool replayable) {
  Fiber* f = impl_->adopt(std::move(log), std::move(body));
  f->replayable = replayable;
  impl_->post(f);
}

void FiberPool::start_here(FiberLogContext log, std::function<void()> body, bool replayable) {
  // Not nested in another fiber's slice (an answer that starts queued work: the admission gate),
  // and not on a thread other than the loop's when there is one: there it starts on the pool.
  if (t_current != nullptr || (impl_->loop && !impl_->loop->running_in_this_thread())) {
    spawn(std::move(log), std::move(body), replayable);
    return;
  }
  Fiber* f = impl_->adopt(std::move(log), std::move(body));
  f->replayable = replayable;
  f->loop_start = true;
  impl_->run_on_loop(f);
}

void FiberPool::run_here(FiberLogContext log, std::function<void()> body) {
  struct Waiter {
    std::mutex mu;
    std::condition_variable cv;
    bool runnable = false;
  } waiter;
  Fiber* f = make_fiber(impl_->stacks, impl_->hot, std::move(log), std::move(body));
  f->schedule = [&waiter](Fiber*) {
    std::lock_guard lock(waiter.mu);
    waiter.runnable = true;
    waiter.cv.notify_one();  // under the lock: the waiter may return as soon as it is released
  };
  impl_->count_slice(false);
  while (!run_slice(f)) {
    std::unique_lock lock(waiter.mu);
    waiter.cv.wait(lock, [&] { return waiter.runnable; });
    waiter.runnable = false;
    impl_->count_slice(false);
  }
  delete f;
}

std::size_t FiberPool::stack_bytes() const {
  return impl_->stacks.usable();
}

std::size_t FiberPool::live() const {
  std::lock_guard lock(impl_->mu);
  return impl_->live;
}

std::size_t FiberPool::saved_frame_bytes() const {
  return impl_->hot.saved_bytes();
}

std::uint64_t FiberPool::retired() const {
  return impl_->replays.load(std::memory_order_relaxed);
}

FiberPool::Slices FiberPool::slices() const {
  return {impl_->loop_slices.load(), impl_->pool_slices.load()};
}

void park(std::function<void(std::function<void()> resume)> start) {
  park_to([start = std::move(start)](std::function<void(Resume)> resume) {
    start([resume = std::move(resume)] { resume(Resume::kPool); });
  });
}

void park_to(std::function<void(std::function<void(Resume)> resume)> start) {
  Fiber* f = t_current;
  if (f == nullptr) {
    std::mutex mu;
    std::condition_variable cv;
    bool resumed = false;
    start([&](Resume) {
      std::lock_guard lock(mu);
      resumed = true;
      cv.notify_one();
    });
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return resumed; });
    return;
  }
  f->park_fn = std::move(start);
  f->parked_sp = static_cast<const char*>(__builtin_frame_address(0));
  if (f->deepest_park == nullptr || f->parked_sp < f->deepest_park) f->deepest_park = f->parked_sp;
  switch_starts(&f->fake_stack, f->thread_stack);
  tsan_switch(f->tsan_thread);
  f->back = std::move(f->back).resume();
  switch_ends(f->fake_stack, &f->thread_stack);  // possibly on another thread
  if (f->park_error) std::rethrow_exception(std::exchange(f->park_error, nullptr));
}

bool retirable_here() {
  const Fiber* f = t_current;
  return f != nullptr && f->replayable && f->pool != nullptr && f->pool->retire_after.count() > 0 &&
         !f->replay;
}

std::shared_ptr<void> take_replay_answer(const void* tag, const RetireTag& how, double* waited_us) {
  Fiber* f = t_current;
  if (f == nullptr || !f->replay) return nullptr;
  std::shared_ptr<RetireWait> w = std::move(f->replay);
  // From here on the replay does what the retired run did not (or, with another tag, something
  // new): its lines are written.
  obs::set_log_muted(false);
  if (!how.same(tag, w->tag.get())) return nullptr;
  if (waited_us != nullptr) {
    *waited_us += std::chrono::duration<double, std::micro>(w->answered_at - w->parked_at).count();
  }
  return std::move(w->answer);
}

bool being_retired() {
  const Fiber* f = t_current;
  return f != nullptr && f->unwinding;
}

bool replaying() {
  const Fiber* f = t_current;
  return f != nullptr && f->replay != nullptr;
}

void end_replay() {
  Fiber* f = t_current;
  if (f == nullptr || !f->replay) return;
  f->replay.reset();
  obs::set_log_muted(false);
}

EvaluationStart evaluation_start(const EvaluationStart& now) {
  Fiber* f = t_current;
  if (f == nullptr) return now;
  if (f->carried_start) {
    f->eval_start = std::exchange(f->carried_start, std::nullopt);
  } else {
    f->eval_start = now;
  }
  return *f->eval_start;
}

namespace {

// "WF\0\0RTRD": the class of a retirement's unwinding, no C++ exception's ("GNUCC++\0").
constexpr _Unwind_Exception_Class kRetireClass = 0x5746000052545244ULL;

// Called for each frame of a retirement's unwinding before its cleanups run: nothing to stop,
// run_body's handler ends it. Reaching the end of the stack means that handler is missing.
_Unwind_Reason_Code retire_stop(int, _Unwind_Action actions, _Unwind_Exception_Class,
                                _Unwind_Exception*, _Unwind_Context*, void*) {
  if ((actions & _UA_END_OF_STACK) != 0) std::terminate();
  return _URC_NO_REASON;
}

// Ends a fiber being retired: a forced unwind runs every frame's cleanups up to run_body, in one
// pass (a throw walks the frames twice: once to find its handler, once to unwind them; and
// again from each catch that rethrows). Called in park_retirable with nothing of its own to
// destroy.
[[noreturn]] void unwind_retired(Fiber* f) {
  f->unwinding = true;
#if WF_ASAN
  // What __cxa_throw does under ASan (an interceptor): the frames about to be left have their
  // redzones cleared, or the landing pads' calls would find them poisoned.
  __asan_handle_no_return();
#endif
  auto* e = new _Unwind_Exception{};
  e->exception_class = kRetireClass;
  e->exception_cleanup = [](_Unwind_Reason_Code, _Unwind_Exception* x) { delete x; };
  _Unwind_ForcedUnwind(e, &retire_stop, nullptr);
  std::terminate();  // returns only when no frame could be unwound
}

}  // namespace

namespace {

// Parks `f` on a new retirable wait (kept in f->waiting); false when it resumed to be retired,
// true when it has the answer (in f->waiting->answer).
bool wait_retirably(Fiber* f,
                    std::function<void(std::function<void(std::shared_ptr<void>, Resume)>)> start,
                    std::shared_ptr<const void> tag, const RetireTag& how) {
  auto w = std::make_shared<RetireWait>();
  w->pool = f->pool;
  w->tag = std::move(tag);
  w->how = how;
  w->parked_at = std::chrono::steady_clock::now();
  f->waiting = w;
  park_to([w, start = std::move(start)](std::function<void(Resume)> resume) {
    {
      std::lock_guard lock(w->mu);
      w->resume = std::move(resume);
    }
    w->pool->watch(w);
    start([w](std::shared_ptr<void> answer, Resume where) {
      answer_wait(w, std::move(answer), where);
    });
  });
  std::lock_guard lock(w->mu);
  // Resumed to be retired, but the answer came meanwhile: no need to.
  if (w->phase == RetireWait::Phase::kRetiring && w->answer) {
    w->phase = RetireWait::Phase::kAnswered;
  }
  return w->phase != RetireWait::Phase::kRetiring;
}

// Nothing with a destructor is alive where unwind_retired is called: this frame has no cleanup
// for the unwinding to stop at (each costs a restart of the unwinder, ~8k instructions). The
// staged work and tag are the fiber's; wait_retirably's arguments are gone when it returns.
// `returning` (await_staged_or_return): a retirement returns null instead.
[[gnu::noinline]] std::shared_ptr<void> park_retirable(Fiber* f, const RetireTag& how,
                                                       bool returning) {
  if (!wait_retirably(f, std::move(f->staged_start), std::move(f->staged_tag), how)) {
    if (returning) {
      f->returning = true;
      return nullptr;
    }
    unwind_retired(f);
  }
  std::shared_ptr<RetireWait> w = std::move(f->waiting);
  w->tag.reset();
  return std::move(w->answer);
}

// Outside a fiber (stage_retirable, await_staged): the calling thread's.
struct StagedWait {
  RetirableStart start;
  std::shared_ptr<const void> tag;
};
thread_local StagedWait t_staged;

// The staged work, awaited as await() does (not retirable here).
[[gnu::noinline]] std::shared_ptr<void> await_unretired(RetirableStart start) {
  auto slot = std::make_shared<std::shared_ptr<void>>();
  // `start` is moved into the parked work: it may still be running on another thread when the
  // fiber has been resumed and this frame is gone.
  park_to([start = std::move(start), slot](std::function<void(Resume)> resume) {
    start([slot, resume = std::move(resume)](std::shared_ptr<void> answer, Resume where) {
      *slot = std::move(answer);
      resume(where);
    });
  });
  return std::move(*slot);
}

}  // namespace

void stage_retirable(RetirableStart start, std::shared_ptr<const void> tag) {
  if (Fiber* f = t_current; f != nullptr) {
    f->staged_start = std::move(start);
    f->staged_tag = std::move(tag);
  } else {
    t_staged = StagedWait{std::move(start), std::move(tag)};
  }
}

namespace {

std::shared_ptr<void> await_staged_here(const RetireTag& how, double* waited_us, bool returning) {
  Fiber* f = t_current;
  if (f == nullptr) {
    t_staged.tag.reset();
    return await_unretired(std::exchange(t_staged.start, nullptr));
  }
  if (f->replay) {
    if (auto answer = take_replay_answer(f->staged_tag.get(), how, waited_us)) {
      f->staged_start = nullptr;
      f->staged_tag.reset();
      return answer;
    }
  }
  if (!retirable_here()) {
    f->staged_tag.reset();
    return await_unretired(std::exchange(f->staged_start, nullptr));
  }
  return park_retirable(f, how, returning);
}

}  // namespace

std::shared_ptr<void> await_staged(const RetireTag& how, double* waited_us) {
  return await_staged_here(how, waited_us, false);
}

std::shared_ptr<void> await_staged_or_return(const RetireTag& how, double* waited_us) {
  return await_staged_here(how, waited_us, true);
}

bool retired_run() {
  const Fiber* f = t_current;
  return f != nullptr && f->returning;
}

void end_retired_run() {
  Fiber* f = t_current;
  if (f == nullptr || !f->returning) {
    obs::count_bug("orchestrator.fiber", "end_retired_run outside a retired run");
    std::terminate();
  }
  f->returning = false;
  unwind_retired(f);
}

void leave_loop_if_over(std::chrono::microseconds budget) {
  Fiber* f = t_current;
  if (f == nullptr || !f->on_loop) return;
  // A slice's CPU time on one thread is never more than its wall-clock time: while the latter
  // is within the budget, the thread's CPU clock (a system call: four per nest request, checked
  // every 32 steps) need not be read.
  if (std::chrono::steady_clock::now() - f->slice_start_wall < budget) return;
  if (thread_cpu_now_us() - f->slice_start_us < static_cast<double>(budget.count())) return;
  park([](std::function<void()> resume) { resume(); });  // resumes on the pool
}

bool on_fiber() {
  return t_current != nullptr;
}

std::shared_ptr<IoWaitObserver> fiber_io_wait() {
  const Fiber* f = t_current;
  return f == nullptr ? nullptr : f->log.io_wait;
}

double fiber_cpu_us() {
  const Fiber* f = t_current;
  if (f == nullptr) return thread_cpu_now_us();
  return f->cpu_us + (thread_cpu_now_us() - f->slice_start_us);
}

StackRange current_stack() {
  if (const Fiber* f = t_current; f != nullptr) {
    if (f->stack_low == nullptr) return {};
    return {f->stack_low, f->stack_low + f->stack_size};
  }
  thread_local const StackRange thread_stack = [] {
    pthread_attr_t attr;
    void* addr = nullptr;
    std::size_t size = 0;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
      pthread_attr_getstack(&attr, &addr, &size);
      pthread_attr_destroy(&attr);
    }
    if (addr == nullptr) return StackRange{};
    return StackRange{static_cast<const char*>(addr), static_cast<const char*>(addr) + size};
  }();
  return thread_stack;
}

std::size_t stack_left() {
  const char* sp = static_cast<const char*>(__builtin_frame_address(0));
  const char* low = current_stack().low;
  if (low == nullptr) return static_cast<std::size_t>(-1);  // unknown: no check
  if (sp <= low) return 0;
  return static_cast<std::size_t>(sp - low);
}

}  // namespace wf::orchestrator::engine_detail
