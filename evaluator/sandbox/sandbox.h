#pragma once
// The sandbox as the evaluator service uses it: one zygote per language family, each keeping a
// pool of pre-forked, pre-warmed children; run() hands a call to a child and waits for it.
// start_sandbox() must be called in main() before the process starts any thread: it forks a
// single-threaded supervisor that initialises the runtime and forks the zygote, and forks a new
// zygote whenever one dies, so the (multi-threaded) service never forks (see zygote.h).

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "evaluator/sandbox/runtime.h"

namespace wf::evaluator {

struct SandboxLimits {
  std::chrono::milliseconds wall{10000};            // parent kills the child after this
  std::chrono::seconds cpu{5};                      // RLIMIT_CPU soft limit (hard = soft + 1)
  std::uint64_t memory_bytes = 256u << 20;          // address-space / data budget for user code
  std::uint64_t output_bytes = 1u << 20;            // max bytes of result the child may send
  std::uint64_t captured_output_bytes = 16u << 10;  // max printed text kept
  int pool_size = 4;                                // pre-forked children per language

  // The supervisor kills (and so replaces) a zygote whose RSS grows beyond this; 0 = no cap.
  std::uint64_t zygote_memory_bytes = 512u << 20;
};

struct CallOutcome {
  enum class Status {
    kOk,              // the runtime answered; output.z22_json is the Z22 (may carry a user error)
    kTimeout,         // wall-clock limit: killed
    kCpuLimit,        // RLIMIT_CPU: SIGXCPU/SIGKILL
    kMemoryLimit,     // out of memory
    kOutputTooLarge,  // result bigger than output_bytes
    kForbidden,       // seccomp killed it (SIGSYS)
    kCrashed,         // killed by another signal, or exited without answering
    kUnavailable,     // no child could be had (zygote down)
  };
  Status status = Status::kCrashed;
  CallOutput output;
  std::string detail;                // human-readable detail for errors: signal name, limit, ...
  double cpu_ms = 0;                 // the child's own user+system CPU (from its rusage)
  std::uint64_t peak_rss_bytes = 0;  // the child's ru_maxrss
};

// Counters of one sandbox's zygote (for metrics, /readyz and bench_sandbox).
struct SandboxStats {
  int zygote_pid = -1;        // -1 once the zygote is gone
  int ready_children = 0;     // forked, locked down, warmed up, waiting for a call
  int starting_children = 0;  // forked, still locking down / warming up
  std::uint64_t children_forked = 0;
  std::uint64_t setup_failures = 0;  // children that died before they were ready
  double mean_fork_to_ready_ms = 0;  // mean time from fork to "ready" over all ready children

  // The process that forks a new zygote when one dies (-1 when unknown).
  int supervisor_pid = -1;
  // 1 for the first zygote, +1 per restart (0 when unknown).
  std::uint64_t zygote_generation = 0;
};

class Sandbox {
 public:
  virtual ~Sandbox() = default;
  // Thread-safe; blocks the calling thread until the call ends or `deadline` passes.
  virtual CallOutcome run(const CallInput& input,
                          std::chrono::steady_clock::time_point deadline) = 0;
  // Children ready in the pool now (for /readyz and metrics). Counts children still warming up
  // too (0 only when the pool is empty or the zygote is gone); stats() tells them apart.
  virtual int ready_children() const = 0;
  // Zygote counters; one short round trip to the zygote. Thread-safe.
  virtual SandboxStats stats() const { return {}; }
};

// Forks the zygote for `runtime` (taking ownership) and starts its pool. Call before any thread
// exists in this process. Throws std::runtime_error with a message that names the fix on failure.
std::unique_ptr<Sandbox> start_sandbox(std::unique_ptr<LanguageRuntime> runtime,
                                       const SandboxLimits& limits);

}  // namespace wf::evaluator
