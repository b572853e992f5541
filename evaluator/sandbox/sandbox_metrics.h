#pragma once
// The sandbox's metric families (private to evaluator/sandbox). Names pass promtool check
// metrics; labels are bounded: the language family, the outcome, the kill or cancel reason.

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>

#include <array>
#include <cstddef>
#include <string>

#include "evaluator/sandbox/sandbox.h"

namespace wf::evaluator::sandbox_internal {

inline constexpr std::array<const char*, 10> kOutcomeNames = {
    "ok",        "timeout", "cpu_limit",   "memory_limit", "output_too_large",
    "forbidden", "crashed", "unavailable", "cancelled",    "throttled"};

// Why a call waits for a child (label of the queue metrics): its flow holds all the children it
// may, or no child is ready in the pool.
enum QueueReason : int { kQueueFlowCap, kQueueNoChild, kQueueReasons };
inline constexpr std::array<const char*, kQueueReasons> kQueueReasonNames = {"flow_cap",
                                                                             "no_child"};
// Why a call got no child at all.
enum QueueRefusal : int { kRefusedFlowFull, kRefusedTotalFull, kRefusedWaitBudget, kRefusals };
inline constexpr std::array<const char*, kRefusals> kQueueRefusalNames = {
    "flow_queue_full", "queue_full", "wait_budget"};

enum KillReason : int {
  kKillNone = -1,
  kKillWallClock,  // the service's SIGKILL at the wall-clock limit / request deadline
  kKillCpu,        // RLIMIT_CPU (SIGXCPU, then SIGKILL)
  kKillMemory,     // died by a signal near the memory limit
  kKillSeccomp,    // SIGSYS from the seccomp filter
  kKillProtocol,   // the service's SIGKILL after a protocol violation (forged/oversized frames)
  kKillSignal,     // any other signal (crash)
  kKillCancel,     // the service's SIGKILL when the caller cancelled the call
  kKillReasons
};
inline constexpr std::array<const char*, kKillReasons> kKillNames = {
    "wall_clock", "cpu_limit", "memory_limit", "seccomp", "protocol", "signal", "cancelled"};

inline constexpr std::array<const char*, 3> kCancelNames = {"client_gone", "deadline", "shutdown"};

struct SandboxMetrics {
  explicit SandboxMetrics(const std::string& language);
  void record(const CallOutcome& outcome, int kill_reason);

  std::array<prometheus::Counter*, kOutcomeNames.size()> outcome{};
  std::array<prometheus::Counter*, kKillReasons> kill{};
  std::array<prometheus::Counter*, kCancelNames.size()> cancelled{};
  prometheus::Counter* restarts = nullptr;
  prometheus::Counter* zygote_kills = nullptr;
  prometheus::Counter* supervisor_restarts = nullptr;
  prometheus::Gauge* pool_ready = nullptr;
  prometheus::Histogram* child_cpu = nullptr;
  prometheus::Histogram* child_rss = nullptr;
  prometheus::Histogram* fork_to_ready = nullptr;
  std::array<prometheus::Counter*, 2> children_started{};  // [0] cold, [1] warm
  std::array<prometheus::Gauge*, kQueueReasons> queued{};
  std::array<prometheus::Histogram*, kQueueReasons> queue_wait{};
  std::array<prometheus::Counter*, kRefusals> refused{};
  prometheus::Gauge* children_held = nullptr;
  prometheus::Gauge* flows_at_cap = nullptr;
  prometheus::Gauge* flows = nullptr;
  prometheus::Gauge* callers = nullptr;
};

}  // namespace wf::evaluator::sandbox_internal
