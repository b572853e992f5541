#pragma once
// What a request's work tells the admission control in front of it about its waits (docs/limits.md,
// "The adaptive limit"): when it waits for I/O holding no thread (an evaluation fiber parked on the
// evaluator or the wiki) and when that I/O has ended, and how long a downstream service says the
// call waited for capacity (the evaluator's wait for a sandbox child). The service's gate
// implements it; the orchestrator's engine and evaluator client call it. Thread-safe: the calls
// may come from any thread, in order for one wait (parked, then resumed).

#include <chrono>
#include <string_view>

namespace wf {

// Response header of wf-evaluator's evaluate route: milliseconds (decimal) the call waited for a
// sandbox child because none was free (absent: it did not wait). The orchestrator's evaluator
// client reports it as IoWaitObserver::congested.
inline constexpr std::string_view kPoolWaitHeader = "x-wikifunctions-pool-wait-ms";

class IoWaitObserver {
 public:
  virtual ~IoWaitObserver() = default;
  // The work is about to wait for I/O (its thread is free).
  virtual void parked() = 0;
  // The I/O it waited for has ended: it is runnable again.
  virtual void resumed() = 0;
  // A downstream service reports that the call waited this long for capacity.
  virtual void congested(std::chrono::nanoseconds waited) = 0;
};

}  // namespace wf
