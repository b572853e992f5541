#include "evaluator/sandbox/child_reply.h"

#include <fmt/core.h>
#include <sys/wait.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <random>

#include "evaluator/sandbox/child.h"
#include "evaluator/sandbox/sandbox_metrics.h"

namespace wf::evaluator::sandbox_internal {
namespace {

constexpr std::size_t kMaxErrorText = 4096;

std::uint64_t random_token() {
  thread_local std::mt19937_64 engine{std::random_device{}()};
  return engine();
}

std::string signal_name(int sig) {
  const char* abbrev = ::sigabbrev_np(sig);
  return abbrev != nullptr ? std::string("SIG") + abbrev : fmt::format("signal {}", sig);
}

}  // namespace

std::string build_request(const CallInput& input, const SandboxLimits& limits,
                          std::chrono::milliseconds wall, std::uint64_t& token) {
  RequestHeader header;
  header.wall_ms = static_cast<std::uint32_t>(wall.count());
  header.token = token = random_token();
  header.captured_limit = limits.captured_output_bytes;
  header.output_limit = limits.output_bytes;
  header.code_len = input.code.size();
  header.name_len = input.function_name.size();
  header.args_len = input.arguments_json.size();
  header.converters_len = input.converters_json.size();
  std::string request;
  request.reserve(sizeof(header) + input.code.size() + input.function_name.size() +
                  input.arguments_json.size() + input.converters_json.size());
  request.append(reinterpret_cast<const char*>(&header), sizeof(header));
  request += input.code;
  request += input.function_name;
  request += input.arguments_json;
  request += input.converters_json;
  return request;
}

std::string wall_detail(bool deadline_bound, std::chrono::milliseconds wall) {
  return deadline_bound ? fmt::format("the request's deadline ({} ms) was reached", wall.count())
                        : fmt::format("wall-clock limit of {} ms reached", wall.count());
}

ReplyReader::ReplyReader(std::uint64_t token, const SandboxLimits& limits)
    : token_(token), limits_(limits) {}

ReplyReader::State ReplyReader::feed(const char* data, std::size_t size) {
  if (size == 0) return State::kMore;
  if (!ready_) {
    if (data[0] != kReadyByte) {
      problem_ = data[0] == kSetupFailedByte && size > 1 ? std::string(data + 1, size - 1)
                                                         : "child failed to lock down";
      return State::kSetupFailed;
    }
    ready_ = true;
    ++data;
    --size;
  }
  in_.append(data, size);
  if (!have_header_ && in_.size() >= sizeof(ResponseHeader)) {
    if (State state = check_header(); state != State::kMore) return state;
  }
  const std::size_t cap =
      sizeof(ResponseHeader) + limits_.output_bytes + limits_.captured_output_bytes + kMaxErrorText;
  if (in_.size() > cap) {
    problem_ = "the child sent more than any response can hold";
    return State::kViolation;
  }
  return have_header_ && in_.size() >= need_ ? State::kComplete : State::kMore;
}

ReplyReader::State ReplyReader::check_header() {
  std::memcpy(&header_, in_.data(), sizeof(header_));
  if (header_.magic != kResponseMagic || header_.token != token_) {
    problem_ = "user code wrote to the sandbox's result channel";
    return State::kViolation;
  }
  if (header_.z22_len > limits_.output_bytes ||
      header_.captured_len > limits_.captured_output_bytes || header_.error_len > kMaxErrorText) {
    problem_ = "the child's response exceeds the announced limits";
    return State::kViolation;
  }
  have_header_ = true;
  need_ = sizeof(ResponseHeader) + header_.z22_len + header_.captured_len + header_.error_len;
  return State::kMore;
}

CallOutcome ReplyReader::outcome(bool deadline_bound, std::chrono::milliseconds wall) const {
  CallOutcome outcome;
  std::size_t at = sizeof(ResponseHeader);
  outcome.output.z22_json.assign(in_, at, header_.z22_len);
  at += header_.z22_len;
  outcome.output.captured_output.assign(in_, at, header_.captured_len);
  at += header_.captured_len;
  outcome.output.error_message.assign(in_, at, header_.error_len);
  outcome.output.ok = (header_.flags & kFlagOk) != 0;
  outcome.output.out_of_memory = (header_.flags & kFlagOutOfMemory) != 0;
  outcome.cpu_ms = static_cast<double>(header_.cpu_us) / 1000.0;
  outcome.peak_rss_bytes = header_.maxrss_kb * 1024u;
  if ((header_.flags & kFlagInterrupted) != 0) {
    outcome.status = CallOutcome::Status::kTimeout;
    outcome.detail = wall_detail(deadline_bound, wall);
  } else if ((header_.flags & kFlagTooLarge) != 0) {
    outcome.status = CallOutcome::Status::kOutputTooLarge;
    outcome.detail = fmt::format("the result has {} bytes; the limit is {} bytes", header_.z22_size,
                                 limits_.output_bytes);
  } else if (outcome.output.out_of_memory) {
    // Only the runtime's own flag (an allocation failure it observed), never the error text.
    outcome.status = CallOutcome::Status::kMemoryLimit;
    outcome.detail = fmt::format("memory limit of {} MiB reached", limits_.memory_bytes >> 20);
  } else if (!outcome.output.ok) {
    outcome.status = CallOutcome::Status::kCrashed;
    outcome.detail = outcome.output.error_message.empty() ? "the runtime gave no result"
                                                          : outcome.output.error_message;
  } else {
    outcome.status = CallOutcome::Status::kOk;
  }
  return outcome;
}

void apply_usage(CallOutcome& outcome, const ChildExit& exit) {
  outcome.cpu_ms = static_cast<double>(exit.cpu_us) / 1000.0;
  outcome.peak_rss_bytes = exit.maxrss_kb * 1024u;
}

CallOutcome outcome_of_exit(const ChildExit& exit, const SandboxLimits& limits, int& kill_reason) {
  using Status = CallOutcome::Status;
  CallOutcome outcome;
  apply_usage(outcome, exit);
  outcome.status = Status::kCrashed;
  kill_reason = kKillNone;
  const int sig = exit.exit_value;
  const std::uint64_t cpu_limit_us = static_cast<std::uint64_t>(limits.cpu.count()) * 1000000u;
  // The kernel enforces RLIMIT_CPU on its tick-sampled CPU clock (utime + stime counted in whole
  // ticks), while wait4 reports the scheduler's exact runtime. On a loaded machine the tick clock
  // runs ahead: a child SIGKILLed at the hard limit (soft + 1 s) has measured 1.85-1.94 s of
  // rusage for a 2 s hard limit (load 9 on 2 cores). A SIGKILL after a tenth less than the soft
  // limit is the hard limit; a fixed margin would misclassify it at larger limits (20 s soft:
  // killed at a 21 s tick clock, 19.5 s reported).
  const std::uint64_t cpu_margin_us = std::max<std::uint64_t>(50000, cpu_limit_us / 10);
  const bool near_memory_limit = exit.maxrss_kb * 1024u >= limits.memory_bytes / 10 * 9;
  if (!exit.known) {
    outcome.detail = "the child ended without answering (exit status unknown)";
  } else if (exit.exit_kind == CLD_EXITED) {
    outcome.detail = fmt::format("the child exited with status {} without answering", sig);
  } else if (sig == SIGSYS) {
    kill_reason = kKillSeccomp;
    outcome.status = Status::kForbidden;
    outcome.detail = "a forbidden system call was made (killed by seccomp, SIGSYS)";
  } else if (sig == SIGXCPU || (sig == SIGKILL && exit.cpu_us + cpu_margin_us >= cpu_limit_us)) {
    kill_reason = kKillCpu;
    outcome.status = Status::kCpuLimit;
    outcome.detail = fmt::format("CPU limit of {} s reached", limits.cpu.count());
  } else if ((sig == SIGSEGV || sig == SIGBUS || sig == SIGABRT || sig == SIGKILL) &&
             near_memory_limit) {
    kill_reason = kKillMemory;
    outcome.status = Status::kMemoryLimit;
    outcome.detail = fmt::format("killed by {} near the memory limit of {} MiB", signal_name(sig),
                                 limits.memory_bytes >> 20);
  } else {
    kill_reason = kKillSignal;
    outcome.detail = fmt::format("killed by {}", signal_name(sig));
  }
  return outcome;
}

}  // namespace wf::evaluator::sandbox_internal
