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

inline constexpr std::array<const char*, 9> kOutcomeNames = {
    "ok",        "timeout", "cpu_limit",   "memory_limit", "output_too_large",
    "forbidden", "crashed", "unavailable", "cancelled"};

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
};

}  // namespace wf::evaluator::sandbox_internal
