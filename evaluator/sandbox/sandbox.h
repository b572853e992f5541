#pragma once
// The sandbox as the evaluator service uses it: one zygote per language family, each keeping a
// pool of pre-forked, pre-warmed children; start() hands a call to a child and completes when it
// answers, without any thread waiting for it (the child's channel, its pidfd and the wall-clock
// timer are waited on by an Asio event loop).
//
// Every sandbox process comes from a fresh image: start_sandbox() re-executes this program as a
// supervisor (environment LD_BIND_NOW=1 only, configuration over a socket; see
// supervisor_image.h), which initialises the runtime and forks the zygote. So no byte of the
// service's memory is in a child, and a dead supervisor can be re-created from the
// multi-threaded service. Every program that starts sandboxes must therefore call
// run_sandbox_supervisor_if_requested() first thing in main().

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "evaluator/sandbox/runtime.h"

namespace boost::asio {
class io_context;
}  // namespace boost::asio

namespace wf::evaluator {

struct SandboxLimits {
  std::chrono::milliseconds wall{10000};            // parent kills the child after this
  std::chrono::seconds cpu{5};                      // RLIMIT_CPU soft limit (hard = soft + 1)
  std::uint64_t memory_bytes = 256u << 20;          // address-space / data budget for user code
  std::uint64_t output_bytes = 1u << 20;            // max bytes of result the child may send
  std::uint64_t captured_output_bytes = 16u << 10;  // max printed text kept
  int pool_size = 4;                                // pre-forked children per language
  // A child is warmed up (a trivial call before it reports ready: its own call then runs without
  // the first call's page faults, ~0.23 ms more CPU in all for Python) only while the pool is
  // nearly full and calls take children on average at least warm_idle apart (a mean of the gaps
  // between takes that rises at once after a pause and falls by 1/8 per take); under a steady
  // stream of calls children start cold and that CPU goes to calls. 0 (the default since session
  // 17): warm whenever the pool is nearly full; with 10 at 3x capacity the accepted calls' pool
  // wait p99 about doubled for ~8% less children's CPU (bench/README.md, session 17, wf/polite9).
  std::chrono::milliseconds warm_idle{0};

  // The supervisor kills (and so replaces) a zygote whose RSS grows beyond this; 0 = no cap.
  std::uint64_t zygote_memory_bytes = 512u << 20;

  // Fair sharing of children (evaluator/sandbox/fair_queue.h, docs/limits.md "Sandbox
  // children"): a flow (one caller's calls of one code string) holds at most children_per_flow
  // children at once (0 = no cap); its further calls wait in a queue of at most queued_per_flow
  // (429 beyond), all flows together at most queued_total (503 beyond), each at most queue_wait.
  std::size_t children_per_flow = 16;
  std::size_t queued_per_flow = 2048;
  std::size_t queued_total = 8192;
  std::chrono::milliseconds queue_wait{10000};

  // How a child is scheduled once its call has run call_demote_after (set by the service;
  // forking, warming up and short calls keep the zygote's priority): a nice increment (0-19) and
  // a policy. So the service's event loops, and short calls, get the CPU promptly beside children
  // that spin. 0 and kNormal: never changed.
  enum class CallPolicy { kNormal, kBatch, kIdle };
  int call_nice = 10;
  CallPolicy call_policy = CallPolicy::kNormal;
  std::chrono::milliseconds call_demote_after{50};
  // Nice (0-19) of the sandbox's scheduling group as a whole: each supervisor runs in a session of
  // its own, which autogroup (hosts and VMs, not containers) schedules as one group with the
  // weight of a nice-0 process however many children spin in it. Above 0 the group weighs less
  // than the service's, so the service's threads get a CPU sooner when both want one; the
  // children then get less CPU whenever anything else on the machine wants it. 0: unchanged.
  int group_nice = 0;
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
    kCancelled,       // the caller cancelled it (client gone, deadline, shutdown); child killed
    kThrottled,       // its flow holds all the children it may and its queue is full, or the
                      // call waited longer than queue_wait behind its own flow (HTTP 429)
  };
  Status status = Status::kCrashed;
  CallOutput output;
  std::string detail;                // human-readable detail for errors: signal name, limit, ...
  double cpu_ms = 0;                 // the child's own user+system CPU (from its rusage)
  std::uint64_t peak_rss_bytes = 0;  // the child's ru_maxrss
  // How long the call waited in the fair queue for a child because none was free (reason
  // no_child: the pool's capacity), not behind its own flow's cap. The orchestrator's adaptive
  // limit counts it as congestion (docs/limits.md, "The adaptive limit").
  std::chrono::nanoseconds pool_wait{0};
  // From the moment the call was handed its child to its outcome: writing the call, the child's
  // run, reading its answer (the last child's, after a setup failure). 0 without a child.
  std::chrono::nanoseconds in_child{0};
  // Whether that child was warmed up by its zygote before it was ready (1), started cold (0),
  // or the call had no child (-1): sandbox_warm_idle_ms, docs/limits.md.
  int child_warm = -1;
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

// The fair queue's counts at one moment (Sandbox::queue_counts_for_tests).
struct SandboxQueueCounts {
  std::size_t held = 0;    // children held by calls (given to a call, not yet given back)
  std::size_t queued = 0;  // calls waiting for a child
};

// Why a caller cancels a call (label of wf_evaluator_sandbox_cancelled_total).
enum class CancelReason { kClientGone, kDeadline, kShutdown };
const char* cancel_reason_name(CancelReason reason);

// A call in flight. cancel() is thread-safe and idempotent: the child is killed at once (and
// reaped by its zygote), and the completion runs with Status::kCancelled unless it already ran.
class SandboxCall {
 public:
  virtual ~SandboxCall() = default;
  virtual void cancel(CancelReason reason) = 0;
};

using CallCompletion = std::function<void(CallOutcome)>;

class Sandbox {
 public:
  virtual ~Sandbox() = default;
  // Starts a call; `done` runs exactly once, on the sandbox's event loop (never inside start()
  // for the process sandbox). Thread-safe. The default runs run() and completes at once (fakes).
  virtual std::shared_ptr<SandboxCall> start(CallInput input,
                                             std::chrono::steady_clock::time_point deadline,
                                             CallCompletion done);
  // Blocking form (tests, benchmarks): waits for start()'s completion. Never call it on the
  // sandbox's event loop. Implementations override start(), run(), or both.
  virtual CallOutcome run(const CallInput& input, std::chrono::steady_clock::time_point deadline);
  // Children ready in the pool as of the last refresh (for /readyz and metrics): warm or still
  // warming up; 0 while the zygote is gone, late to answer, or being replaced. Never blocks.
  virtual int ready_children() const = 0;
  // The last refreshed counters (refreshed in the background about twice a second). Never blocks.
  virtual SandboxStats stats() const { return {}; }
  // Asks the zygote now (tests, benchmarks): one round trip; blocks the calling thread, so never
  // on the event loop. Falls back to stats() when the zygote does not answer within 2 s.
  virtual SandboxStats query_stats() { return stats(); }
  // Test accessor (tests only; the service reads the queue through its metrics): the fair queue's
  // counts now, read on the sandbox's event loop, so that a test can wait until its calls hold
  // their children or wait in the queue instead of sleeping. Blocks the calling thread, so never
  // call it on the event loop; nullopt when the loop does not answer within 2 s, or for a sandbox
  // without a queue (fakes).
  virtual std::optional<SandboxQueueCounts> queue_counts_for_tests() { return std::nullopt; }
  // Ends the supervisor (and so its zygote and pool) and fails calls still waiting for a child.
  // With the server's event loop: call after the loop stopped and before it is destroyed (the
  // sandbox's descriptors and timers live on it). Idempotent; the destructor calls it too.
  virtual void shutdown() {}
};

// A runtime that this program can run in a sandbox, by LanguageRuntime::name().
struct RuntimeEntry {
  const char* name;
  std::unique_ptr<LanguageRuntime> (*make)();
};

// Call first thing in main() of every program that calls start_sandbox():
//   if (auto code = run_sandbox_supervisor_if_requested(argc, argv, runtimes)) return *code;
// Returns std::nullopt unless this process is a sandbox supervisor image; otherwise it runs the
// supervisor (which never returns) or returns the exit code of a failed start.
std::optional<int> run_sandbox_supervisor_if_requested(int argc, char** argv,
                                                       std::span<const RuntimeEntry> runtimes);

// Starts the supervisor for the runtime named `runtime` (from a fresh image of this program) and
// waits until its first zygote has a ready child. The sandbox waits on its children on `loop`
// (the server's event loop; it must outlive the sandbox); without one, the sandbox runs its own
// event loop on one thread. Throws std::runtime_error with a message that names the fix.
std::unique_ptr<Sandbox> start_sandbox(const std::string& runtime, const SandboxLimits& limits,
                                       boost::asio::io_context* loop = nullptr);

}  // namespace wf::evaluator
