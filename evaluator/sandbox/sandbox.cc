// Service side of the sandbox: talks to the zygote over the control socket, runs one call per
// child over its channel, enforces the wall clock (pidfd + SIGKILL) and the output cap, and maps
// how the child ended to CallOutcome::Status.

#include "evaluator/sandbox/sandbox.h"

#include <fcntl.h>
#include <fmt/core.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>

#include "evaluator/sandbox/protocol.h"
#include "evaluator/sandbox/zygote.h"

namespace wf::evaluator {
namespace {

using namespace sandbox_internal;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// How long after the wall limit the child may still answer (a runtime that supports
// request_interrupt stops user code on SIGALRM and reports; others are killed).
constexpr milliseconds kInterruptGrace{30};
// How long to wait for a killed child to be reported exited before asking the zygote.
constexpr milliseconds kReapWait{2000};
constexpr milliseconds kZygoteReplyTimeout{10000};
constexpr std::size_t kMaxErrorText = 4096;

std::string signal_name(int sig) {
  const char* abbrev = ::sigabbrev_np(sig);
  return abbrev != nullptr ? std::string("SIG") + abbrev : fmt::format("signal {}", sig);
}

std::uint64_t random_token() {
  thread_local std::mt19937_64 engine{std::random_device{}()};
  return engine();
}

// Both ends of one handed-out child, closed on destruction.
struct ChildHandle {
  pid_t pid = -1;
  int channel = -1;
  int pidfd = -1;
  ChildHandle() = default;
  ChildHandle(const ChildHandle&) = delete;
  ChildHandle& operator=(const ChildHandle&) = delete;
  ~ChildHandle() {
    if (channel >= 0) ::close(channel);
    if (pidfd >= 0) ::close(pidfd);
  }
};

class ProcessSandbox final : public Sandbox {
 public:
  ProcessSandbox(std::unique_ptr<LanguageRuntime> runtime, const SandboxLimits& limits, int control,
                 pid_t zygote)
      : runtime_(std::move(runtime)),
        name_(runtime_->name()),
        limits_(limits),
        control_(control),
        zygote_(zygote) {}

  ~ProcessSandbox() override {
    ::close(control_);  // the zygote sees EOF, kills its pool and exits
    int status = 0;
    while (::waitpid(zygote_, &status, 0) < 0 && errno == EINTR) {
    }
  }

  CallOutcome run(const CallInput& input, Clock::time_point deadline) override {
    Clock::time_point start = Clock::now();
    if (deadline <= start) {
      return failure(CallOutcome::Status::kTimeout,
                     "the request's deadline passed before the call");
    }
    milliseconds wall = std::min(limits_.wall, std::chrono::ceil<milliseconds>(deadline - start));
    bool deadline_bound = wall < limits_.wall;
    std::string last_error;
    for (int attempt = 0; attempt < 3; ++attempt) {
      ChildHandle child;
      if (!get_child(child, last_error)) {
        return failure(CallOutcome::Status::kUnavailable,
                       fmt::format("no {} sandbox child: {}", name_, last_error));
      }
      bool setup_died = false;
      CallOutcome outcome = converse(child, input, start + wall, wall, deadline_bound, setup_died);
      if (!setup_died) return outcome;
      last_error = outcome.detail;
      if (Clock::now() >= start + wall) break;
    }
    return failure(
        CallOutcome::Status::kUnavailable,
        fmt::format("{} sandbox children die before they are ready: {}", name_, last_error));
  }

  // Children in the pool, warm or still warming up: either serves without a fork on the request
  // path, and counting only warm ones would make /readyz flap exactly when the service is busy.
  int ready_children() const override {
    SandboxStats s = stats();
    return s.ready_children + s.starting_children;
  }

  SandboxStats stats() const override {
    SandboxStats stats;
    ZygoteRequest request;
    request.op = ZygoteOp::kStats;
    ZygoteReply reply;
    if (!exchange(request, reply, nullptr, nullptr)) return stats;
    stats.zygote_pid = zygote_;
    stats.ready_children = reply.ready;
    stats.starting_children = reply.starting;
    stats.children_forked = reply.forked;
    stats.setup_failures = reply.setup_failures;
    if (reply.ready_count > 0) {
      stats.mean_fork_to_ready_ms = static_cast<double>(reply.fork_to_ready_ns) /
                                    static_cast<double>(reply.ready_count) / 1e6;
    }
    return stats;
  }

 private:
  static CallOutcome failure(CallOutcome::Status status, std::string detail) {
    CallOutcome outcome;
    outcome.status = status;
    outcome.detail = std::move(detail);
    return outcome;
  }

  // One request/reply with the zygote. Serialised: the zygote answers strictly in order.
  bool exchange(const ZygoteRequest& request, ZygoteReply& reply, int* fds, int* nfds) const {
    std::lock_guard lock(control_mutex_);
    if (zygote_gone_) return false;
    int received = 0;
    int scratch[2];
    bool ok = send_message(control_, &request, sizeof(request), nullptr, 0);
    if (ok) {
      pollfd p{control_, POLLIN, 0};
      int n;
      do {
        n = ::poll(&p, 1, static_cast<int>(kZygoteReplyTimeout.count()));
      } while (n < 0 && errno == EINTR);
      ok = n == 1 &&
           recv_message(control_, &reply, sizeof(reply), fds ? fds : scratch, 2, &received);
    }
    if (!ok || reply.op != request.op) {
      zygote_gone_ = true;  // out of step or dead: never trust this socket again
      for (int i = 0; i < received; ++i) ::close((fds ? fds : scratch)[i]);
      return false;
    }
    if (fds == nullptr) {
      for (int i = 0; i < received; ++i) ::close(scratch[i]);
    } else {
      *nfds = received;
    }
    return true;
  }

  bool get_child(ChildHandle& child, std::string& error) {
    ZygoteRequest request;
    request.op = ZygoteOp::kGetChild;
    ZygoteReply reply;
    int fds[2] = {-1, -1};
    int nfds = 0;
    if (!exchange(request, reply, fds, &nfds)) {
      error = "the zygote is gone (see the service log for its exit); restart the service";
      return false;
    }
    if (reply.ok == 0 || nfds != 2) {
      for (int i = 0; i < nfds; ++i) ::close(fds[i]);
      error = reply.text[0] != '\0' ? reply.text : "the zygote sent no child";
      return false;
    }
    child.pid = reply.pid;
    child.channel = fds[0];
    child.pidfd = fds[1];
    return true;
  }

  struct ExitStatus {
    bool known = false;
    int exit_kind = 0;
    int exit_value = 0;
    std::uint64_t cpu_us = 0;
    std::uint64_t maxrss_kb = 0;
  };

  // Kills the child if still alive, waits for it to exit and asks the zygote how it ended.
  ExitStatus kill_and_reap(const ChildHandle& child) const {
    pidfd_signal(child.pidfd, SIGKILL);
    pollfd p{child.pidfd, POLLIN, 0};
    Clock::time_point until = Clock::now() + kReapWait;
    while (Clock::now() < until) {
      int n = ::poll(&p, 1, static_cast<int>(kReapWait.count()));
      if (n == 1) break;
      if (n < 0 && errno != EINTR) break;
    }
    ExitStatus status;
    ZygoteRequest request;
    request.op = ZygoteOp::kStatus;
    request.pid = child.pid;
    for (int attempt = 0; attempt < 20 && !status.known; ++attempt) {
      ZygoteReply reply;
      if (!exchange(request, reply, nullptr, nullptr)) break;
      if (reply.ok != 0) {
        status.known = true;
        status.exit_kind = reply.exit_kind;
        status.exit_value = reply.exit_value;
        status.cpu_us = reply.cpu_us;
        status.maxrss_kb = reply.maxrss_kb;
      } else {
        ::usleep(1000);
      }
    }
    return status;
  }

  static void apply_usage(CallOutcome& outcome, const ExitStatus& status) {
    outcome.cpu_ms = static_cast<double>(status.cpu_us) / 1000.0;
    outcome.peak_rss_bytes = status.maxrss_kb * 1024u;
  }

  CallOutcome converse(const ChildHandle& child, const CallInput& input, Clock::time_point wall_end,
                       milliseconds wall, bool deadline_bound, bool& setup_died) {
    using Status = CallOutcome::Status;
    setup_died = false;
    RequestHeader header;
    header.wall_ms = static_cast<std::uint32_t>(wall.count());
    header.token = random_token();
    header.captured_limit = limits_.captured_output_bytes;
    header.output_limit = limits_.output_bytes;
    header.code_len = input.code.size();
    header.name_len = input.function_name.size();
    header.args_len = input.arguments_json.size();
    std::string request;
    request.reserve(sizeof(header) + input.code.size() + input.function_name.size() +
                    input.arguments_json.size());
    request.append(reinterpret_cast<const char*>(&header), sizeof(header));
    request += input.code;
    request += input.function_name;
    request += input.arguments_json;

    ::fcntl(child.channel, F_SETFL, ::fcntl(child.channel, F_GETFL) | O_NONBLOCK);
    std::size_t written = 0;
    std::string in;  // everything after the ready byte
    bool ready = false;
    bool eof = false;
    bool have_header = false;
    ResponseHeader response;
    std::size_t need = sizeof(ResponseHeader);
    const std::size_t cap = sizeof(ResponseHeader) + limits_.output_bytes +
                            limits_.captured_output_bytes + kMaxErrorText;
    const Clock::time_point kill_at = wall_end + kInterruptGrace;
    char buffer[65536];

    auto timeout = [&]() {
      CallOutcome outcome = failure(
          Status::kTimeout,
          deadline_bound ? fmt::format("the request's deadline ({} ms) was reached", wall.count())
                         : fmt::format("wall-clock limit of {} ms reached", wall.count()));
      apply_usage(outcome, kill_and_reap(child));
      return outcome;
    };
    auto violation = [&](std::string detail) {
      CallOutcome outcome = failure(Status::kForbidden, std::move(detail));
      apply_usage(outcome, kill_and_reap(child));
      return outcome;
    };

    for (;;) {
      Clock::time_point now = Clock::now();
      if (now >= kill_at) return timeout();
      pollfd fds[2] = {
          {child.channel, static_cast<short>(POLLIN | (written < request.size() ? POLLOUT : 0)), 0},
          {child.pidfd, POLLIN, 0}};
      int wait_ms = static_cast<int>(std::chrono::ceil<milliseconds>(kill_at - now).count());
      int n = ::poll(fds, 2, wait_ms);
      if (n < 0 && errno != EINTR) return violation(fmt::format("poll: {}", std::strerror(errno)));
      if (n <= 0) continue;
      if ((fds[0].revents & POLLOUT) != 0 && written < request.size()) {
        ssize_t sent = ::send(child.channel, request.data() + written, request.size() - written,
                              MSG_NOSIGNAL | MSG_DONTWAIT);
        if (sent > 0) written += static_cast<std::size_t>(sent);
        // EPIPE and friends: the child is gone; its EOF below says how.
      }
      if ((fds[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
        for (;;) {
          ssize_t got = ::recv(child.channel, buffer, sizeof(buffer), MSG_DONTWAIT);
          if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
            eof = true;
            break;
          }
          if (got < 0) break;
          std::size_t offset = 0;
          if (!ready) {
            if (buffer[0] != kReadyByte) {
              setup_died = true;
              CallOutcome outcome = failure(Status::kUnavailable, "child failed to lock down");
              if (buffer[0] == 'F' && got > 1) {
                outcome.detail.assign(buffer + 1, static_cast<std::size_t>(got - 1));
              }
              kill_and_reap(child);
              return outcome;
            }
            ready = true;
            offset = 1;
          }
          in.append(buffer + offset, static_cast<std::size_t>(got) - offset);
          if (!have_header && in.size() >= sizeof(ResponseHeader)) {
            std::memcpy(&response, in.data(), sizeof(response));
            if (response.magic != kResponseMagic || response.token != header.token) {
              return violation("user code wrote to the sandbox's result channel");
            }
            if (response.z22_len > limits_.output_bytes ||
                response.captured_len > limits_.captured_output_bytes ||
                response.error_len > kMaxErrorText) {
              return violation("the child's response exceeds the announced limits");
            }
            have_header = true;
            need = sizeof(ResponseHeader) + response.z22_len + response.captured_len +
                   response.error_len;
          }
          if (in.size() > cap) return violation("the child sent more than any response can hold");
          if (have_header && in.size() >= need) break;
        }
      }
      if (have_header && in.size() >= need) break;
      // The child exited: the kernel closes its files before the pidfd turns readable, so
      // everything it wrote has been read above.
      if ((fds[1].revents & POLLIN) != 0 && (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) == 0) {
        eof = true;
      }
      if (eof) break;
    }

    if (have_header && in.size() >= need) {
      pidfd_signal(child.pidfd, SIGKILL);  // it is on its way out; do not wait for it
      CallOutcome outcome;
      std::size_t at = sizeof(ResponseHeader);
      outcome.output.z22_json.assign(in, at, response.z22_len);
      at += response.z22_len;
      outcome.output.captured_output.assign(in, at, response.captured_len);
      at += response.captured_len;
      outcome.output.error_message.assign(in, at, response.error_len);
      outcome.output.ok = (response.flags & kFlagOk) != 0;
      outcome.output.out_of_memory = (response.flags & kFlagOutOfMemory) != 0;
      outcome.cpu_ms = static_cast<double>(response.cpu_us) / 1000.0;
      outcome.peak_rss_bytes = response.maxrss_kb * 1024u;
      if ((response.flags & kFlagInterrupted) != 0) {
        outcome.status = Status::kTimeout;
        outcome.detail =
            deadline_bound ? fmt::format("the request's deadline ({} ms) was reached", wall.count())
                           : fmt::format("wall-clock limit of {} ms reached", wall.count());
      } else if ((response.flags & kFlagTooLarge) != 0) {
        outcome.status = Status::kOutputTooLarge;
        outcome.detail = fmt::format("the result has {} bytes; the limit is {} bytes",
                                     response.z22_size, limits_.output_bytes);
      } else if (outcome.output.out_of_memory ||
                 (!outcome.output.ok &&
                  outcome.output.error_message.find("memory") != std::string::npos)) {
        outcome.status = Status::kMemoryLimit;
        outcome.detail = fmt::format("memory limit of {} MiB reached", limits_.memory_bytes >> 20);
      } else if (!outcome.output.ok) {
        outcome.status = Status::kCrashed;
        outcome.detail = outcome.output.error_message.empty() ? "the runtime gave no result"
                                                              : outcome.output.error_message;
      } else {
        outcome.status = Status::kOk;
      }
      return outcome;
    }

    // The child ended without a complete answer.
    ExitStatus status = kill_and_reap(child);
    if (!ready) {
      setup_died = true;
      return failure(
          Status::kUnavailable,
          status.known && status.exit_kind == CLD_EXITED
              ? fmt::format("child exited with status {} before it was ready", status.exit_value)
              : std::string("child was killed before it was ready"));
    }
    CallOutcome outcome;
    apply_usage(outcome, status);
    const std::uint64_t cpu_limit_us = static_cast<std::uint64_t>(limits_.cpu.count()) * 1000000u;
    if (!status.known) {
      outcome.status = Status::kCrashed;
      outcome.detail = "the child ended without answering (exit status unknown)";
    } else if (status.exit_kind == CLD_EXITED) {
      outcome.status = Status::kCrashed;
      outcome.detail =
          fmt::format("the child exited with status {} without answering", status.exit_value);
    } else if (status.exit_value == SIGSYS) {
      outcome.status = Status::kForbidden;
      outcome.detail = "a forbidden system call was made (killed by seccomp, SIGSYS)";
    } else if (status.exit_value == SIGXCPU ||
               (status.exit_value == SIGKILL && status.cpu_us + 50000 >= cpu_limit_us)) {
      outcome.status = Status::kCpuLimit;
      outcome.detail = fmt::format("CPU limit of {} s reached", limits_.cpu.count());
    } else if ((status.exit_value == SIGSEGV || status.exit_value == SIGBUS ||
                status.exit_value == SIGABRT || status.exit_value == SIGKILL) &&
               status.maxrss_kb * 1024u >= limits_.memory_bytes / 10 * 9) {
      outcome.status = Status::kMemoryLimit;
      outcome.detail = fmt::format("killed by {} near the memory limit of {} MiB",
                                   signal_name(status.exit_value), limits_.memory_bytes >> 20);
    } else {
      outcome.status = Status::kCrashed;
      outcome.detail = fmt::format("killed by {}", signal_name(status.exit_value));
    }
    return outcome;
  }

  std::unique_ptr<LanguageRuntime> runtime_;  // owned; only used inside the zygote
  std::string name_;
  SandboxLimits limits_;
  int control_;
  pid_t zygote_;
  mutable std::mutex control_mutex_;
  mutable bool zygote_gone_ = false;
};

}  // namespace

std::unique_ptr<Sandbox> start_sandbox(std::unique_ptr<LanguageRuntime> runtime,
                                       const SandboxLimits& limits) {
  if (!runtime) throw std::runtime_error("start_sandbox: no runtime given");
  std::string name = runtime->name();
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    throw std::runtime_error(
        fmt::format("start_sandbox({}): socketpair: {}", name, std::strerror(errno)));
  }
  pid_t service = ::getpid();
  pid_t zygote = ::fork();
  if (zygote < 0) {
    ::close(sv[0]);
    ::close(sv[1]);
    throw std::runtime_error(fmt::format("start_sandbox({}): fork: {} (raise the process limit)",
                                         name, std::strerror(errno)));
  }
  if (zygote == 0) {
    ::close(sv[0]);
    sandbox_internal::run_zygote(std::move(runtime), sv[1], limits, service);
  }
  ::close(sv[1]);

  auto fail = [&](const std::string& why) -> std::runtime_error {
    ::close(sv[0]);
    ::kill(zygote, SIGKILL);
    int status = 0;
    ::waitpid(zygote, &status, 0);
    std::string how;
    if (WIFEXITED(status)) how = fmt::format("exited with status {}", WEXITSTATUS(status));
    if (WIFSIGNALED(status)) how = fmt::format("killed by {}", signal_name(WTERMSIG(status)));
    return std::runtime_error(fmt::format(
        "start_sandbox({}): {} (zygote {}). The sandbox needs fork, seccomp-bpf and "
        "no_new_privs (not blocked by the container runtime) and the {} runtime's files.",
        name, why, how, name));
  };
  pollfd p{sv[0], POLLIN, 0};
  int n;
  do {
    n = ::poll(&p, 1, 120000);
  } while (n < 0 && errno == EINTR);
  if (n != 1) throw fail("the zygote did not report ready within 120 s");
  sandbox_internal::ZygoteReply hello;
  int nfds = 0;
  if (!sandbox_internal::recv_message(sv[0], &hello, sizeof(hello), nullptr, 0, &nfds)) {
    throw fail("the zygote died during start-up");
  }
  if (hello.op != sandbox_internal::ZygoteOp::kHello || hello.ok == 0) {
    throw fail(hello.text[0] != '\0' ? std::string(hello.text) : "start-up failed");
  }
  return std::make_unique<ProcessSandbox>(std::move(runtime), limits, sv[0], zygote);
}

}  // namespace wf::evaluator
