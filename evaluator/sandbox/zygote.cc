#include "evaluator/sandbox/zygote.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include "evaluator/sandbox/child.h"
#include "evaluator/sandbox/protocol.h"
#include "evaluator/sandbox/seccomp_filter.h"

namespace wf::evaluator::sandbox_internal {
namespace {

using Clock = std::chrono::steady_clock;

struct PoolChild {
  pid_t pid = -1;
  int channel = -1;  // the service's end; the child holds the other one as fd 3
  int pidfd = -1;
  bool ready = false;
  Clock::time_point forked;
};

struct Reaped {
  pid_t pid = -1;
  int exit_kind = 0;
  int exit_value = 0;
  std::uint64_t cpu_us = 0;
  std::uint64_t maxrss_kb = 0;
};

constexpr std::size_t kReapedKept = 1024;

std::uint64_t cpu_us_of(const rusage& usage) {
  return static_cast<std::uint64_t>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1000000u +
         static_cast<std::uint64_t>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
}

class Zygote {
 public:
  Zygote(std::unique_ptr<LanguageRuntime> runtime, int control, int devnull,
         const SandboxLimits& limits)
      : zygote_pid_(::getpid()),
        devnull_(devnull),
        runtime_(std::move(runtime)),
        control_(control),
        limits_(limits) {}

  [[noreturn]] void run() {
    std::string error;
    if (!start(error)) {
      hello(false, error);
      ::_exit(1);
    }
    for (;;) {
      sweep();
      refill();
      std::vector<pollfd> fds;
      fds.push_back({control_, POLLIN, 0});
      int starting = 0;
      for (const auto& child : pool_) {
        if (!child.ready) {
          fds.push_back({child.channel, POLLIN, 0});
          ++starting;
        }
      }
      int timeout_ms = starting > 0 ? 200 : 1000;
      if (pool_.size() < static_cast<std::size_t>(limits_.pool_size)) timeout_ms = 20;  // backoff
      int n = ::poll(fds.data(), fds.size(), timeout_ms);
      if (n < 0 && errno != EINTR) shutdown(2);
      if (starting > 0) check_starting();
      if (n > 0 && (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
        ZygoteRequest request;
        int nfds = 0;
        if (!recv_message(control_, &request, sizeof(request), nullptr, 0, &nfds)) shutdown(0);
        handle(request);
      }
    }
  }

 private:
  bool start(std::string& error) {
    runtime_->set_memory_budget(limits_.memory_bytes);
    if (!runtime_->initialize(error)) {
      error =
          std::string(runtime_->name()) + " runtime failed to initialise in the zygote: " + error;
      return false;
    }
    auto program = build_seccomp_filter(runtime_->extra_syscalls());
    if (!program) {
      error = "cannot build the seccomp filter: " + program.error();
      return false;
    }
    program_ = std::move(*program);
    measure_memory();
    process_name_ = std::string("wf-child-") + runtime_->name();

    // Prove the whole lock-down works before the service relies on it.
    if (!spawn(error)) return false;
    auto give_up = Clock::now() + std::chrono::seconds(60);
    while (Clock::now() < give_up) {
      pollfd fd{pool_.front().channel, POLLIN, 0};
      ::poll(&fd, 1, 100);
      check_starting();
      if (!pool_.empty() && pool_.front().ready) {
        hello(true, {});
        return true;
      }
      if (pool_.empty()) {
        error = "the first sandbox child died while locking down: " + last_setup_error_;
        return false;
      }
    }
    error = "the first sandbox child did not become ready within 60 s";
    return false;
  }

  void hello(bool ok, const std::string& error) {
    ZygoteReply reply;
    reply.op = ZygoteOp::kHello;
    reply.ok = ok ? 1 : 0;
    copy_text(reply.text, sizeof(reply.text), error);
    send_message(control_, &reply, sizeof(reply), nullptr, 0);
  }

  // Address-space and data budgets of a child = what the zygote already uses + the user budget.
  void measure_memory() {
    long page = ::sysconf(_SC_PAGESIZE);
    std::FILE* f = std::fopen("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0, shared = 0, text = 0, lib = 0, data = 0;
    if (f != nullptr) {
      if (std::fscanf(f, "%lu %lu %lu %lu %lu %lu", &size, &resident, &shared, &text, &lib,
                      &data) != 6) {
        size = data = 0;
      }
      std::fclose(f);
    }
    std::uint64_t p = static_cast<std::uint64_t>(page);
    address_space_ = size * p + limits_.memory_bytes + runtime_->address_space_overhead();
    data_ = data * p + limits_.memory_bytes;
  }

  bool spawn(std::string& error) {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
      error = std::string("socketpair: ") + std::strerror(errno);
      return false;
    }
    pid_t pid = ::fork();
    if (pid < 0) {
      error = std::string("fork: ") + std::strerror(errno);
      ::close(sv[0]);
      ::close(sv[1]);
      return false;
    }
    if (pid == 0) {
      ChildConfig config;
      config.zygote_pid = zygote_pid_;
      config.devnull_fd = devnull_;
      config.seccomp_program = &program_;
      config.cpu_seconds = static_cast<std::uint64_t>(std::max<long>(1, limits_.cpu.count()));
      config.address_space_bytes = address_space_;
      config.data_bytes = data_;
      config.process_name = process_name_.c_str();
      run_child(*runtime_, sv[1], config);
    }
    ::close(sv[1]);
    PoolChild child;
    child.pid = pid;
    child.channel = sv[0];
    child.pidfd = pidfd_open_process(pid);
    child.forked = Clock::now();
    ++forked_;
    if (child.pidfd < 0) {
      error = std::string("pidfd_open: ") + std::strerror(errno);
      ::kill(pid, SIGKILL);
      ::close(child.channel);
      return false;
    }
    pool_.push_back(child);
    return true;
  }

  void refill() {
    auto now = Clock::now();
    if (now < next_spawn_) return;
    while (pool_.size() < static_cast<std::size_t>(std::max(1, limits_.pool_size))) {
      std::string error;
      if (!spawn(error)) {
        last_setup_error_ = error;
        next_spawn_ = now + std::chrono::milliseconds(100);
        return;
      }
    }
  }

  void discard(std::size_t index) {
    PoolChild& child = pool_[index];
    pidfd_signal(child.pidfd, SIGKILL);
    ::close(child.pidfd);
    ::close(child.channel);
    pool_.erase(pool_.begin() + static_cast<std::ptrdiff_t>(index));
  }

  void check_starting() {
    for (std::size_t i = 0; i < pool_.size();) {
      PoolChild& child = pool_[i];
      if (child.ready) {
        ++i;
        continue;
      }
      char byte = 0;
      ssize_t n = ::recv(child.channel, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        ++i;
        continue;
      }
      if (n == 1 && byte == kReadyByte) {
        child.ready = true;
        ++ready_count_;
        fork_to_ready_ns_ += static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - child.forked)
                .count());
        consecutive_failures_ = 0;
        ++i;
        continue;
      }
      // Died or failed while locking down: keep its message, back off before forking again.
      char text[1024] = {};
      ssize_t got = ::recv(child.channel, text, sizeof(text) - 1, MSG_DONTWAIT);
      if (got > 1 && text[0] == kSetupFailedByte) {
        last_setup_error_.assign(text + 1, static_cast<std::size_t>(got - 1));
      } else {
        last_setup_error_ = "the child exited during lock-down/warm-up";
      }
      ++setup_failures_;
      ++consecutive_failures_;
      next_spawn_ = Clock::now() + std::chrono::milliseconds(
                                       std::min(1000, 10 << std::min(consecutive_failures_, 7)));
      discard(i);
    }
  }

  void sweep() {
    int status = 0;
    rusage usage{};
    pid_t pid;
    while ((pid = ::wait4(-1, &status, WNOHANG, &usage)) > 0) record(pid, status, usage);
  }

  void record(pid_t pid, int status, const rusage& usage) {
    Reaped r;
    r.pid = pid;
    if (WIFEXITED(status)) {
      r.exit_kind = CLD_EXITED;
      r.exit_value = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
      r.exit_kind = WCOREDUMP(status) ? CLD_DUMPED : CLD_KILLED;
      r.exit_value = WTERMSIG(status);
    }
    r.cpu_us = cpu_us_of(usage);
    r.maxrss_kb = static_cast<std::uint64_t>(usage.ru_maxrss);
    reaped_.push_back(r);
    if (reaped_.size() > kReapedKept) reaped_.pop_front();
  }

  void handle(const ZygoteRequest& request) {
    ZygoteReply reply;
    reply.op = request.op;
    switch (request.op) {
      case ZygoteOp::kGetChild:
        hand_out(reply);
        return;
      case ZygoteOp::kStatus:
        status(request.pid, reply);
        break;
      case ZygoteOp::kStats:
        reply.ok = 1;
        break;
      case ZygoteOp::kHello:
        break;
    }
    fill_counts(reply);
    if (!send_message(control_, &reply, sizeof(reply), nullptr, 0)) shutdown(0);
  }

  void fill_counts(ZygoteReply& reply) const {
    for (const auto& child : pool_) (child.ready ? reply.ready : reply.starting) += 1;
    reply.forked = forked_;
    reply.setup_failures = setup_failures_;
    reply.ready_count = ready_count_;
    reply.fork_to_ready_ns = fork_to_ready_ns_;
  }

  void hand_out(ZygoteReply& reply) {
    check_starting();
    std::size_t chosen = pool_.size();
    for (std::size_t i = 0; i < pool_.size() && chosen == pool_.size(); ++i) {
      if (pool_[i].ready) chosen = i;
    }
    if (chosen == pool_.size() && !pool_.empty()) chosen = 0;  // oldest still warming up
    if (chosen == pool_.size()) {
      std::string error;
      if (!spawn(error)) {
        copy_text(reply.text, sizeof(reply.text), error);
        fill_counts(reply);
        if (!send_message(control_, &reply, sizeof(reply), nullptr, 0)) shutdown(0);
        return;
      }
      chosen = pool_.size() - 1;
    }
    PoolChild child = pool_[chosen];
    pool_.erase(pool_.begin() + static_cast<std::ptrdiff_t>(chosen));
    reply.ok = 1;
    reply.pid = child.pid;
    fill_counts(reply);
    // The service will refill: report the pool as it will be once refilled (refill() runs next).
    int fds[2] = {child.channel, child.pidfd};
    bool sent = send_message(control_, &reply, sizeof(reply), fds, 2);
    ::close(child.channel);
    ::close(child.pidfd);
    if (!sent) shutdown(0);
  }

  void status(pid_t pid, ZygoteReply& reply) {
    reply.pid = pid;
    auto found = std::find_if(reaped_.rbegin(), reaped_.rend(),
                              [pid](const Reaped& r) { return r.pid == pid; });
    if (found == reaped_.rend()) {
      int status = 0;
      rusage usage{};
      if (::wait4(pid, &status, WNOHANG, &usage) == pid) {
        record(pid, status, usage);
        found = reaped_.rbegin();
      }
    }
    if (found == reaped_.rend()) return;
    reply.ok = 1;
    reply.exit_kind = found->exit_kind;
    reply.exit_value = found->exit_value;
    reply.cpu_us = found->cpu_us;
    reply.maxrss_kb = found->maxrss_kb;
  }

  [[noreturn]] void shutdown(int code) {
    for (auto& child : pool_) {
      pidfd_signal(child.pidfd, SIGKILL);
      ::close(child.channel);
      ::close(child.pidfd);
    }
    for (auto& child : pool_) ::waitpid(child.pid, nullptr, 0);
    ::_exit(code);
  }

  pid_t zygote_pid_;
  int devnull_;
  std::unique_ptr<LanguageRuntime> runtime_;
  int control_;
  SandboxLimits limits_;
  std::vector<sock_filter> program_;
  std::uint64_t address_space_ = 0;
  std::uint64_t data_ = 0;
  std::string process_name_;
  std::deque<PoolChild> pool_;
  std::deque<Reaped> reaped_;
  std::uint64_t forked_ = 0;
  std::uint64_t setup_failures_ = 0;
  std::uint64_t ready_count_ = 0;
  std::uint64_t fork_to_ready_ns_ = 0;
  int consecutive_failures_ = 0;
  Clock::time_point next_spawn_{};
  std::string last_setup_error_;
};

}  // namespace

void run_zygote(std::unique_ptr<LanguageRuntime> runtime, int control, const SandboxLimits& limits,
                pid_t service_pid) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != service_pid) ::_exit(1);
  std::string name = std::string("wf-zygote-") + runtime->name();
  ::prctl(PR_SET_NAME, name.c_str());
  // Start from a clean signal state whatever the service had set up.
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  std::signal(SIGCHLD, SIG_DFL);
  std::signal(SIGPIPE, SIG_IGN);

  int devnull = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  const int keep[] = {0, 1, 2, control, devnull};
  close_all_fds_except(keep, 5);

  Zygote zygote(std::move(runtime), control, devnull, limits);
  zygote.run();
}

}  // namespace wf::evaluator::sandbox_internal
