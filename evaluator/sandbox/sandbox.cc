// Service side of the sandbox: receives zygotes from the supervisor, takes ready children off the
// zygote's handoff socket, runs one call per child over its channel, enforces the wall clock
// (pidfd + SIGKILL) and the output cap, maps how the child ended to CallOutcome::Status, and
// reconnects to the next zygote when one dies (see zygote.h for the process tree).

#include "evaluator/sandbox/sandbox.h"

#include <fcntl.h>
#include <fmt/core.h>
#include <poll.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>

#include "evaluator/sandbox/protocol.h"
#include "evaluator/sandbox/zygote.h"
#include "wf/obs/log.h"
#include "wf/obs/metrics.h"

namespace wf::evaluator {
namespace {

using namespace sandbox_internal;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using Status = CallOutcome::Status;

// How long after the wall limit the child may still answer (a runtime that supports
// request_interrupt stops user code on SIGALRM and reports; others are killed).
constexpr milliseconds kInterruptGrace{30};
// How long to wait for a killed child to be reported exited before asking the zygote.
constexpr milliseconds kReapWait{2000};
constexpr milliseconds kZygoteReplyTimeout{10000};
// How long a call waits for a restarted zygote (the supervisor forks it from initialised memory:
// normally a few ms plus the first child's warm-up).
constexpr milliseconds kRestartWait{10000};
constexpr std::size_t kMaxErrorText = 4096;

std::string signal_name(int sig) {
  const char* abbrev = ::sigabbrev_np(sig);
  return abbrev != nullptr ? std::string("SIG") + abbrev : fmt::format("signal {}", sig);
}

std::uint64_t random_token() {
  thread_local std::mt19937_64 engine{std::random_device{}()};
  return engine();
}

bool readable_now(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & (POLLIN | POLLHUP | POLLERR)) != 0;
}

// ---- Metrics ----------------------------------------------------------------------------------

constexpr std::array<const char*, 8> kOutcomeNames = {
    "ok",        "timeout", "cpu_limit",  "memory_limit", "output_too_large",
    "forbidden", "crashed", "unavailable"};

enum KillReason : std::size_t {
  kKillWallClock,  // the service's SIGKILL at the wall-clock limit / request deadline
  kKillCpu,        // RLIMIT_CPU (SIGXCPU, then SIGKILL)
  kKillMemory,     // died by a signal near the memory limit
  kKillSeccomp,    // SIGSYS from the seccomp filter
  kKillProtocol,   // the service's SIGKILL after a protocol violation (forged/oversized frames)
  kKillSignal,     // any other signal (crash)
  kKillReasons
};
constexpr std::array<const char*, kKillReasons> kKillNames = {
    "wall_clock", "cpu_limit", "memory_limit", "seccomp", "protocol", "signal"};

// The sandbox's metric families (names pass promtool check metrics; labels are bounded: the
// language family, the outcome and the kill reason).
struct SandboxMetrics {
  explicit SandboxMetrics(const std::string& language) {
    auto& registry = wf::obs::registry();
    auto& calls = prometheus::BuildCounter()
                      .Name("wf_evaluator_sandbox_calls_total")
                      .Help("Calls run in a sandbox child, by language and outcome.")
                      .Register(registry);
    for (std::size_t i = 0; i < kOutcomeNames.size(); ++i) {
      outcome[i] = &calls.Add({{"language", language}, {"outcome", kOutcomeNames[i]}});
    }
    auto& kills = prometheus::BuildCounter()
                      .Name("wf_evaluator_sandbox_kills_total")
                      .Help(
                          "Sandbox children that ended by a signal instead of answering, by "
                          "language and reason.")
                      .Register(registry);
    for (std::size_t i = 0; i < kKillReasons; ++i) {
      kill[i] = &kills.Add({{"language", language}, {"reason", kKillNames[i]}});
    }
    restarts = &prometheus::BuildCounter()
                    .Name("wf_evaluator_sandbox_zygote_restarts_total")
                    .Help("Zygotes the supervisor forked again after the previous one died.")
                    .Register(registry)
                    .Add({{"language", language}});
    pool_ready = &prometheus::BuildGauge()
                      .Name("wf_evaluator_sandbox_pool_ready")
                      .Help(
                          "Children forked, locked down and warm, waiting for a call (as of "
                          "the last zygote status query).")
                      .Register(registry)
                      .Add({{"language", language}});
    child_cpu = &prometheus::BuildHistogram()
                     .Name("wf_evaluator_sandbox_child_cpu_seconds")
                     .Help("User+system CPU of a sandbox child from fork to its answer.")
                     .Register(registry)
                     .Add({{"language", language}}, prometheus::Histogram::BucketBoundaries{
                                                        0.0005, 0.001, 0.002, 0.005, 0.01, 0.025,
                                                        0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10});
    child_rss = &prometheus::BuildHistogram()
                     .Name("wf_evaluator_sandbox_child_peak_rss_bytes")
                     .Help("Peak resident set size of a sandbox child (ru_maxrss).")
                     .Register(registry)
                     .Add({{"language", language}},
                          prometheus::Histogram::BucketBoundaries{8u << 20, 16u << 20, 32u << 20,
                                                                  64u << 20, 128u << 20, 256u << 20,
                                                                  512u << 20, 1024.0 * (1u << 20)});
    fork_to_ready = &prometheus::BuildHistogram()
                         .Name("wf_evaluator_sandbox_fork_to_ready_seconds")
                         .Help(
                             "Time from fork to a locked-down, warm child (off the request "
                             "path).")
                         .Register(registry)
                         .Add({{"language", language}},
                              prometheus::Histogram::BucketBoundaries{
                                  0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1});
  }

  void record(const CallOutcome& outcome, int kill_reason) {
    outcome_of(outcome.status).Increment();
    if (kill_reason >= 0) kill[static_cast<std::size_t>(kill_reason)]->Increment();
    if (outcome.cpu_ms > 0) child_cpu->Observe(outcome.cpu_ms / 1000.0);
    if (outcome.peak_rss_bytes > 0) {
      child_rss->Observe(static_cast<double>(outcome.peak_rss_bytes));
    }
  }

  prometheus::Counter& outcome_of(Status status) {
    return *outcome[std::min(static_cast<std::size_t>(status), kOutcomeNames.size() - 1)];
  }

  std::array<prometheus::Counter*, kOutcomeNames.size()> outcome{};
  std::array<prometheus::Counter*, kKillReasons> kill{};
  prometheus::Counter* restarts = nullptr;
  prometheus::Gauge* pool_ready = nullptr;
  prometheus::Histogram* child_cpu = nullptr;
  prometheus::Histogram* child_rss = nullptr;
  prometheus::Histogram* fork_to_ready = nullptr;
};

// ---- Connections to one zygote ------------------------------------------------------------------

// The service's ends of one zygote (one generation). Shared by the calls using it; closed when
// the last of them lets go after a restart replaced it.
struct Connection {
  int control = -1;
  int handoff = -1;
  int zygote_pidfd = -1;
  pid_t zygote = -1;
  std::uint64_t generation = 0;
  std::mutex control_mutex;
  std::atomic<bool> gone{false};
  Connection() = default;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection() {
    for (int fd : {control, handoff, zygote_pidfd}) {
      if (fd >= 0) ::close(fd);
    }
  }
  bool zygote_dead() const { return zygote_pidfd >= 0 && readable_now(zygote_pidfd); }
};

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
  ProcessSandbox(std::unique_ptr<LanguageRuntime> runtime, const SandboxLimits& limits,
                 int supervisor_socket, pid_t supervisor, std::shared_ptr<Connection> first)
      : runtime_(std::move(runtime)),
        name_(runtime_->name()),
        limits_(limits),
        supervisor_socket_(supervisor_socket),
        supervisor_(supervisor),
        connection_(std::move(first)),
        metrics_(name_) {}

  ~ProcessSandbox() override {
    {
      std::lock_guard lock(connection_mutex_);
      connection_.reset();
      pending_.reset();
    }
    ::close(supervisor_socket_);  // the supervisor kills the zygote (and so the pool) and exits
    int status = 0;
    while (::waitpid(supervisor_, &status, 0) < 0 && errno == EINTR) {
    }
  }

  CallOutcome run(const CallInput& input, Clock::time_point deadline) override {
    Clock::time_point start = Clock::now();
    if (deadline <= start) {
      return record(failure(Status::kTimeout, "the request's deadline passed before the call"), -1);
    }
    milliseconds wall = std::min(limits_.wall, std::chrono::ceil<milliseconds>(deadline - start));
    bool deadline_bound = wall < limits_.wall;
    const Clock::time_point wall_end = start + wall;
    std::string last_error;
    int setup_failures = 0;
    while (setup_failures < 3) {
      std::shared_ptr<Connection> connection = usable_connection(wall_end, last_error);
      if (!connection) {
        return record(failure(Status::kUnavailable,
                              fmt::format("no {} sandbox child: {}", name_, last_error)),
                      -1);
      }
      ChildHandle child;
      if (!get_child(*connection, child, wall_end, last_error)) {
        if (connection->gone) continue;  // the zygote died: wait for the next one
        return record(failure(Status::kUnavailable,
                              fmt::format("no {} sandbox child: {}", name_, last_error)),
                      -1);
      }
      bool setup_died = false;
      int kill_reason = -1;
      CallOutcome outcome = converse(*connection, child, input, wall_end, wall, deadline_bound,
                                     setup_died, kill_reason);
      if (!setup_died) return record(std::move(outcome), kill_reason);
      last_error = outcome.detail;
      // Children of a zygote that died are killed with it: that costs no attempt.
      if (!connection->gone) ++setup_failures;
      if (Clock::now() >= wall_end) break;
    }
    return record(
        failure(Status::kUnavailable, fmt::format("{} sandbox children die before they are "
                                                  "ready: {}",
                                                  name_, last_error)),
        -1);
  }

  // Children in the pool, warm or still warming up: either serves without a fork on the request
  // path, and counting only warm ones would make /readyz flap exactly when the service is busy.
  int ready_children() const override {
    SandboxStats s = stats();
    return s.ready_children + s.starting_children;
  }

  SandboxStats stats() const override {
    SandboxStats stats;
    stats.supervisor_pid = supervisor_;
    std::shared_ptr<Connection> connection = current();
    if (connection && connection->zygote_dead()) connection->gone = true;
    if (!connection || connection->gone) {
      // Nobody may be calling (a /readyz probe that fails stops the traffic): reconnect here.
      std::string error;
      connection = usable_connection(Clock::now() + milliseconds(500), error);
    }
    if (!connection) {
      metrics_.pool_ready->Set(0);
      return stats;
    }
    ZygoteRequest request;
    request.op = ZygoteOp::kStats;
    ZygoteReply reply;
    if (!exchange(*connection, request, reply)) {
      metrics_.pool_ready->Set(0);
      return stats;
    }
    stats.zygote_pid = connection->zygote;
    stats.zygote_generation = connection->generation;
    stats.ready_children = reply.ready;
    stats.starting_children = reply.starting;
    stats.children_forked = reply.forked;
    stats.setup_failures = reply.setup_failures;
    if (reply.ready_count > 0) {
      stats.mean_fork_to_ready_ms = static_cast<double>(reply.fork_to_ready_ns) /
                                    static_cast<double>(reply.ready_count) / 1e6;
    }
    metrics_.pool_ready->Set(reply.ready);
    return stats;
  }

 private:
  static CallOutcome failure(Status status, std::string detail) {
    CallOutcome outcome;
    outcome.status = status;
    outcome.detail = std::move(detail);
    return outcome;
  }

  CallOutcome record(CallOutcome outcome, int kill_reason) {
    metrics_.record(outcome, kill_reason);
    return outcome;
  }

  std::shared_ptr<Connection> current() const {
    std::lock_guard lock(connection_mutex_);
    return connection_;
  }

  // The current zygote's connection; when it is gone, waits (until `until`, at most
  // kRestartWait) for the supervisor's next zygote and its first ready child. Only one thread
  // waits on the supervisor socket; the others wait for it on restart_mutex_.
  std::shared_ptr<Connection> usable_connection(Clock::time_point until, std::string& error) const {
    std::shared_ptr<Connection> connection = current();
    if (connection && !connection->gone) return connection;
    until = std::min(until, Clock::now() + kRestartWait);
    std::unique_lock restart(restart_mutex_, std::defer_lock);
    if (!restart.try_lock_until(until)) {
      error = "a zygote restart is in progress";
      return nullptr;
    }
    connection = current();
    if (connection && !connection->gone) return connection;  // another call reconnected
    if (!pending_) {
      pending_ = receive_zygote_from(supervisor_socket_, until, error);
      if (!pending_) return nullptr;
    }
    if (!wait_hello(*pending_, until, error)) {
      if (pending_->gone) pending_.reset();
      return nullptr;
    }
    {
      std::lock_guard lock(connection_mutex_);
      connection_ = std::move(pending_);
      connection = connection_;
    }
    metrics_.restarts->Increment();
    obs::log_event(
        spdlog::level::warn, fmt::format("{} zygote restarted by its supervisor", name_),
        {obs::field_str("event.action", "zygote-restart"), obs::field_str("wf.language", name_)});
    return connection;
  }

 public:
  static std::shared_ptr<Connection> receive_zygote_from(int socket, Clock::time_point until,
                                                         std::string& error) {
    if (!wait_readable(socket, until)) {
      error = "the supervisor has not started a new zygote yet";
      return nullptr;
    }
    SupervisorMessage message;
    int fds[3] = {-1, -1, -1};
    int nfds = 0;
    if (!recv_message(socket, &message, sizeof(message), fds, 3, &nfds)) {
      error = "the sandbox supervisor is gone; restart the service";
      return nullptr;
    }
    if (message.ok == 0 || nfds != 3) {
      for (int i = 0; i < nfds; ++i) ::close(fds[i]);
      error = message.text[0] != '\0' ? std::string(message.text) : "the supervisor failed";
      return nullptr;
    }
    auto connection = std::make_shared<Connection>();
    connection->control = fds[0];
    connection->handoff = fds[1];
    connection->zygote_pidfd = fds[2];
    connection->zygote = message.zygote_pid;
    connection->generation = message.generation;
    return connection;
  }

  // The zygote's kHello (sent once its first child is ready).
  static bool wait_hello(Connection& connection, Clock::time_point until, std::string& error) {
    if (!wait_readable(connection.control, until)) {
      error = "the new zygote has no ready child yet";
      return false;
    }
    ZygoteReply hello;
    int nfds = 0;
    if (!recv_message(connection.control, &hello, sizeof(hello), nullptr, 0, &nfds)) {
      connection.gone = true;
      error = "the zygote died during start-up";
      return false;
    }
    if (hello.op != ZygoteOp::kHello || hello.ok == 0) {
      connection.gone = true;
      error = hello.text[0] != '\0' ? std::string(hello.text) : "the zygote's start-up failed";
      return false;
    }
    return true;
  }

  static bool wait_readable(int fd, Clock::time_point until) {
    for (;;) {
      auto left = std::chrono::ceil<milliseconds>(until - Clock::now()).count();
      pollfd p{fd, POLLIN, 0};
      int n = ::poll(&p, 1, static_cast<int>(std::max<long>(0, left)));
      if (n == 1) return true;
      if (n == 0 || errno != EINTR) return false;
    }
  }

 private:
  // One request/reply with the zygote. Serialised: the zygote answers strictly in order.
  static bool exchange(Connection& connection, const ZygoteRequest& request, ZygoteReply& reply) {
    std::lock_guard lock(connection.control_mutex);
    if (connection.gone) return false;
    int received = 0;
    int scratch[kMaxMessageFds];
    bool ok = send_message(connection.control, &request, sizeof(request), nullptr, 0);
    if (ok) {
      pollfd p{connection.control, POLLIN, 0};
      int n;
      do {
        n = ::poll(&p, 1, static_cast<int>(kZygoteReplyTimeout.count()));
      } while (n < 0 && errno == EINTR);
      ok = n == 1 && recv_message(connection.control, &reply, sizeof(reply), scratch,
                                  kMaxMessageFds, &received);
    }
    for (int i = 0; i < received; ++i) ::close(scratch[i]);
    if (!ok || reply.op != request.op) {
      connection.gone = true;  // out of step or dead: never trust this socket again
      return false;
    }
    return true;
  }

  // Takes the next ready child off the handoff socket (waiting until `until` when the pool is
  // empty) and tells the zygote, which forks a replacement.
  bool get_child(Connection& connection, ChildHandle& child, Clock::time_point until,
                 std::string& error) {
    for (;;) {
      if (connection.gone) {
        error = "the zygote died";
        return false;
      }
      HandoffMessage message;
      int fds[kMaxMessageFds] = {-1, -1, -1};
      int nfds = 0;
      if (recv_message(connection.handoff, &message, sizeof(message), fds, kMaxMessageFds, &nfds,
                       MSG_DONTWAIT)) {
        if (nfds != 2) {
          for (int i = 0; i < nfds; ++i) ::close(fds[i]);
          continue;
        }
        child.pid = message.pid;
        child.channel = fds[0];
        child.pidfd = fds[1];
        ZygoteRequest taken;
        taken.op = ZygoteOp::kTaken;
        if (!send_message(connection.control, &taken, sizeof(taken), nullptr, 0)) {
          connection.gone = true;
        }
        metrics_.fork_to_ready->Observe(static_cast<double>(message.fork_to_ready_ns) / 1e9);
        return true;
      }
      if (errno != EAGAIN && errno != EINTR) {
        connection.gone = true;  // EOF: the zygote is gone
        error = "the zygote died";
        return false;
      }
      // The pool is empty: wait for the zygote's next child, or for the zygote's death.
      auto left = std::chrono::ceil<milliseconds>(until - Clock::now()).count();
      if (left <= 0) {
        error = "no child became ready before the deadline (the pool is exhausted)";
        return false;
      }
      pollfd p[2] = {{connection.handoff, POLLIN, 0}, {connection.zygote_pidfd, POLLIN, 0}};
      int n = ::poll(p, 2, static_cast<int>(left));
      if (n > 0 && (p[1].revents & POLLIN) != 0 && (p[0].revents & POLLIN) == 0) {
        connection.gone = true;
      }
    }
  }

  struct ExitStatus {
    bool known = false;
    int exit_kind = 0;
    int exit_value = 0;
    std::uint64_t cpu_us = 0;
    std::uint64_t maxrss_kb = 0;
  };

  // Kills the child if still alive, waits for it to exit and asks the zygote how it ended.
  static ExitStatus kill_and_reap(Connection& connection, const ChildHandle& child) {
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
      if (!exchange(connection, request, reply)) break;
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

  CallOutcome converse(Connection& connection, const ChildHandle& child, const CallInput& input,
                       Clock::time_point wall_end, milliseconds wall, bool deadline_bound,
                       bool& setup_died, int& kill_reason) {
    setup_died = false;
    kill_reason = -1;
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

    // Every send/recv below is MSG_DONTWAIT. A request that fits the socket buffer (almost all)
    // goes out at once, without waiting for poll first.
    std::size_t written = 0;
    {
      ssize_t sent =
          ::send(child.channel, request.data(), request.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (sent > 0) written = static_cast<std::size_t>(sent);
    }
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
      apply_usage(outcome, kill_and_reap(connection, child));
      kill_reason = kKillWallClock;
      return outcome;
    };
    auto violation = [&](std::string detail) {
      CallOutcome outcome = failure(Status::kForbidden, std::move(detail));
      apply_usage(outcome, kill_and_reap(connection, child));
      kill_reason = kKillProtocol;
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
              kill_and_reap(connection, child);
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
    ExitStatus status = kill_and_reap(connection, child);
    if (connection.zygote_dead()) {
      // Killed with its zygote (PR_SET_PDEATHSIG) rather than by what it ran: the call is run
      // again by a child of the next zygote.
      connection.gone = true;
      setup_died = true;
      return failure(Status::kUnavailable, "the zygote died during the call");
    }
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
      kill_reason = kKillSeccomp;
      outcome.status = Status::kForbidden;
      outcome.detail = "a forbidden system call was made (killed by seccomp, SIGSYS)";
    } else if (status.exit_value == SIGXCPU ||
               (status.exit_value == SIGKILL && status.cpu_us + 50000 >= cpu_limit_us)) {
      kill_reason = kKillCpu;
      outcome.status = Status::kCpuLimit;
      outcome.detail = fmt::format("CPU limit of {} s reached", limits_.cpu.count());
    } else if ((status.exit_value == SIGSEGV || status.exit_value == SIGBUS ||
                status.exit_value == SIGABRT || status.exit_value == SIGKILL) &&
               status.maxrss_kb * 1024u >= limits_.memory_bytes / 10 * 9) {
      kill_reason = kKillMemory;
      outcome.status = Status::kMemoryLimit;
      outcome.detail = fmt::format("killed by {} near the memory limit of {} MiB",
                                   signal_name(status.exit_value), limits_.memory_bytes >> 20);
    } else {
      kill_reason = kKillSignal;
      outcome.status = Status::kCrashed;
      outcome.detail = fmt::format("killed by {}", signal_name(status.exit_value));
    }
    return outcome;
  }

  std::unique_ptr<LanguageRuntime> runtime_;  // owned; only used inside the supervisor
  std::string name_;
  SandboxLimits limits_;
  int supervisor_socket_;
  pid_t supervisor_;
  mutable std::mutex connection_mutex_;  // guards connection_
  mutable std::shared_ptr<Connection> connection_;
  // One thread at a time takes the next zygote; guards pending_.
  mutable std::timed_mutex restart_mutex_;
  mutable std::shared_ptr<Connection> pending_;  // received, its kHello not yet
  mutable SandboxMetrics metrics_;
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
  pid_t supervisor = ::fork();
  if (supervisor < 0) {
    ::close(sv[0]);
    ::close(sv[1]);
    throw std::runtime_error(fmt::format("start_sandbox({}): fork: {} (raise the process limit)",
                                         name, std::strerror(errno)));
  }
  if (supervisor == 0) {
    ::close(sv[0]);
    sandbox_internal::run_supervisor(std::move(runtime), sv[1], limits, service);
  }
  ::close(sv[1]);

  auto fail = [&](const std::string& why) -> std::runtime_error {
    ::close(sv[0]);
    ::kill(supervisor, SIGKILL);
    int status = 0;
    ::waitpid(supervisor, &status, 0);
    return std::runtime_error(fmt::format(
        "start_sandbox({}): {}. The sandbox needs fork, seccomp-bpf and no_new_privs (not "
        "blocked by the container runtime) and the {} runtime's files.",
        name, why, name));
  };
  const Clock::time_point until = Clock::now() + std::chrono::seconds(120);
  std::string error;
  std::shared_ptr<Connection> first = ProcessSandbox::receive_zygote_from(sv[0], until, error);
  if (!first) throw fail(error);
  if (!ProcessSandbox::wait_hello(*first, until, error)) throw fail(error);
  return std::make_unique<ProcessSandbox>(std::move(runtime), limits, sv[0], supervisor,
                                          std::move(first));
}

}  // namespace wf::evaluator
