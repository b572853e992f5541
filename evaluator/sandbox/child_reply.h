#pragma once
// One call's conversation with a child, without the I/O (private to evaluator/sandbox): the
// request frame, reading the child's bytes (ready byte, response frame) as they arrive, and
// turning what the sandbox observed (the frame's flags, the exit status) into a CallOutcome.
// Outcomes come only from observations: frame flags written by the sandbox's own C++ code in the
// child, signals, rlimits; never from error text, which user code controls.

#include <chrono>
#include <cstdint>
#include <string>

#include "evaluator/sandbox/protocol.h"
#include "evaluator/sandbox/sandbox.h"

namespace wf::evaluator::sandbox_internal {

// The request frame: header (with a fresh random token) followed by code, name and arguments.
std::string build_request(const CallInput& input, const SandboxLimits& limits,
                          std::chrono::milliseconds wall, std::uint64_t& token);

// "the request's deadline (N ms) was reached" or "wall-clock limit of N ms reached".
std::string wall_detail(bool deadline_bound, std::chrono::milliseconds wall);

class ReplyReader {
 public:
  enum class State {
    kMore,         // keep reading
    kComplete,     // a whole, valid response: outcome()
    kSetupFailed,  // the child failed before it was ready: problem() says why
    kViolation,    // forged or oversized frame: problem() says which
  };
  ReplyReader(std::uint64_t token, const SandboxLimits& limits);
  State feed(const char* data, std::size_t size);
  bool ready() const { return ready_; }
  const std::string& problem() const { return problem_; }
  CallOutcome outcome(bool deadline_bound, std::chrono::milliseconds wall) const;

 private:
  State check_header();

  std::uint64_t token_;
  SandboxLimits limits_;
  std::string in_;  // everything after the ready byte
  ResponseHeader header_{};
  bool ready_ = false;
  bool have_header_ = false;
  std::size_t need_ = sizeof(ResponseHeader);
  std::string problem_;
};

// How a child that gave no complete answer ended (from its zygote's wait4).
struct ChildExit {
  bool known = false;
  int exit_kind = 0;  // CLD_EXITED / CLD_KILLED / CLD_DUMPED
  int exit_value = 0;
  std::uint64_t cpu_us = 0;
  std::uint64_t maxrss_kb = 0;
};

// The outcome of a child that ended without a complete answer after it was ready; sets
// kill_reason (KillReason) when a signal ended it.
CallOutcome outcome_of_exit(const ChildExit& exit, const SandboxLimits& limits, int& kill_reason);

// cpu_ms and peak_rss_bytes from the exit's rusage.
void apply_usage(CallOutcome& outcome, const ChildExit& exit);

}  // namespace wf::evaluator::sandbox_internal
