// Service side of the sandbox, on an Asio event loop: no thread waits for a child.
//
//  * Core (one per language, on its own strand): the supervisor (spawned from a fresh image; its
//    socket and pidfd), the current zygote (ZygoteLink: control socket, handoff socket, pidfd),
//    the calls waiting for a child, and a timer that refreshes a stats snapshot twice a second,
//    kills a zygote that does not answer in time (its supervisor then forks a new one) and
//    re-creates a supervisor that died or hung.
//  * ProcessCall (one per call, on its own strand): sends the request on the child's channel,
//    reads the reply as it comes (ReplyReader), and ends on whichever comes first: the answer,
//    the child's exit (pidfd), the wall-clock timer, or cancel(). Endings without an answer ask
//    the zygote how the child ended (it is the child's parent) and map that to an outcome.
// See zygote.h for the process tree.
//
// Stray wake-ups: a completed Asio wait means the descriptor was reported ready, not that it is.
// Asio recycles its per-descriptor state, and an event that one thread's epoll_wait collected for
// a descriptor that another thread closes meanwhile is delivered to the next descriptor given that
// state: often the pidfd of another call's child, as children exit while calls end and new ones
// start. Reads and receives notice (EAGAIN) and wait again; every pidfd wait checks
// pidfd_exited() before it counts as an exit. (Taking a stray wake-up for the child's exit ended
// a healthy call without an answer: the call killed its own child and reported "killed by
// SIGKILL", about once in 300-400 calls on a loaded 2-core machine; issue 7.)

#include "evaluator/sandbox/sandbox.h"

#include <fcntl.h>
#include <fmt/core.h>
#include <poll.h>
#include <sched.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <deque>
#include <expected>
#include <future>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>

#include "evaluator/sandbox/child_reply.h"
#include "evaluator/sandbox/fair_queue.h"
#include "evaluator/sandbox/protocol.h"
#include "evaluator/sandbox/sandbox_metrics.h"
#include "evaluator/sandbox/supervisor_image.h"
#include "wf/obs/log.h"

namespace wf::evaluator {

const char* cancel_reason_name(CancelReason reason) {
  return sandbox_internal::kCancelNames[static_cast<std::size_t>(reason)];
}

std::shared_ptr<SandboxCall> Sandbox::start(CallInput input,
                                            std::chrono::steady_clock::time_point deadline,
                                            CallCompletion done) {
  done(run(input, deadline));
  return nullptr;
}

CallOutcome Sandbox::run(const CallInput& input, std::chrono::steady_clock::time_point deadline) {
  std::promise<CallOutcome> promise;
  std::future<CallOutcome> future = promise.get_future();
  start(input, deadline,
        [&promise](CallOutcome outcome) { promise.set_value(std::move(outcome)); });
  return future.get();
}

namespace {

using namespace sandbox_internal;
namespace asio = boost::asio;
using Descriptor = asio::posix::stream_descriptor;
using Strand = asio::strand<asio::io_context::executor_type>;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using Status = CallOutcome::Status;

// How long after the wall limit the child may still answer (a runtime that supports
// request_interrupt stops user code on SIGALRM and reports; others are killed).
constexpr milliseconds kInterruptGrace{30};
// How long to wait for a killed child to be reported exited before asking the zygote anyway.
constexpr milliseconds kReapWait{2000};
constexpr milliseconds kRefreshEvery{500};
// A snapshot older than this says nothing: ready_children() is 0 (the zygote is late).
constexpr milliseconds kStaleAfter{1500};
// A zygote that leaves a request unanswered this long is killed (and so replaced).
constexpr milliseconds kZygoteAnswerWithin{3000};
// Without a working zygote this long, the supervisor is killed and started again.
constexpr milliseconds kSupervisorAnswerWithin{15000};
constexpr milliseconds kStartWait{120000};
constexpr int kMaxSetupFailures = 3;
constexpr int kStatusAttempts = 20;

void set_nonblocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

bool demotes(const SandboxLimits& limits) {
  return limits.call_nice > 0 || limits.call_policy != SandboxLimits::CallPolicy::kNormal;
}

// Lowers a child's scheduling priority once its call has run call_demote_after
// (SandboxLimits::call_nice, call_policy). The service may lower the priority of its own user's
// processes unprivileged; the child is alive (its call has not ended, its pidfd is held), so
// `pid` is that child. Best effort: on failure the call keeps the zygote's priority.
void set_call_priority(pid_t pid, const SandboxLimits& limits) {
  if (limits.call_policy != SandboxLimits::CallPolicy::kNormal) {
    sched_param param{};
    param.sched_priority = 0;
    ::sched_setscheduler(
        pid, limits.call_policy == SandboxLimits::CallPolicy::kIdle ? SCHED_IDLE : SCHED_BATCH,
        &param);
  }
  if (limits.call_nice > 0) {
    static const int base = ::getpriority(PRIO_PROCESS, 0);
    ::setpriority(PRIO_PROCESS, static_cast<id_t>(pid), std::min(19, base + limits.call_nice));
  }
}

CallOutcome failure(Status status, std::string detail) {
  CallOutcome outcome;
  outcome.status = status;
  outcome.detail = std::move(detail);
  return outcome;
}

// ---- Blocking steps of start_sandbox (before any event loop is involved) -------------------

struct RawLink {
  int control = -1, handoff = -1, pidfd = -1;
  pid_t zygote = -1;
  std::uint64_t generation = 0;
};

bool wait_readable(int fd, Clock::time_point until) {
  for (;;) {
    auto left = std::chrono::ceil<milliseconds>(until - Clock::now()).count();
    pollfd p{fd, POLLIN, 0};
    int n = ::poll(&p, 1, static_cast<int>(std::max<long>(0, left)));
    if (n == 1) return true;
    if (n == 0 || errno != EINTR) return false;
  }
}

struct Received {
  std::optional<RawLink> link;
  bool again = false;  // nothing to read yet
  bool eof = false;    // the supervisor is gone
  std::string error;   // when !link
};

// One SupervisorMessage; flags = MSG_DONTWAIT on the event loop.
Received receive_zygote(int socket, int flags) {
  SupervisorMessage message;
  int fds[3] = {-1, -1, -1};
  int nfds = 0;
  Received received;
  if (!recv_message(socket, &message, sizeof(message), fds, 3, &nfds, flags)) {
    received.again = errno == EAGAIN;
    received.eof = !received.again;
    received.error = "the sandbox supervisor is gone";
    return received;
  }
  if (message.ok == 0 || nfds != 3) {
    for (int i = 0; i < nfds; ++i) ::close(fds[i]);
    received.error = message.text[0] != '\0' ? std::string(message.text) : "the supervisor failed";
    return received;
  }
  received.link = RawLink{fds[0], fds[1], fds[2], message.zygote_pid, message.generation};
  return received;
}

std::expected<ZygoteReply, std::string> blocking_reply(int control, Clock::time_point until) {
  if (!wait_readable(control, until)) return std::unexpected("the zygote did not answer");
  ZygoteReply reply;
  int nfds = 0;
  if (!recv_message(control, &reply, sizeof(reply), nullptr, 0, &nfds)) {
    return std::unexpected("the zygote died during start-up");
  }
  return reply;
}

// ---- One zygote generation -----------------------------------------------------------------

struct PendingReply {
  ZygoteOp op;
  Clock::time_point sent;
  std::function<void(const ZygoteReply*)> done;  // nullptr reply: the zygote is gone
};

struct ZygoteLink {
  ZygoteLink(const Strand& strand, const RawLink& raw)
      : control(strand, raw.control),
        handoff(strand, raw.handoff),
        pidfd(strand, raw.pidfd),
        zygote(raw.zygote),
        generation(raw.generation) {
    set_nonblocking(raw.control);
    set_nonblocking(raw.handoff);
  }
  Descriptor control, handoff, pidfd;
  pid_t zygote;
  std::uint64_t generation;
  bool hello = false;
  bool handoff_armed = false;
  std::atomic<bool> gone{false};
  std::deque<PendingReply> replies;
};

struct ChildFds {
  pid_t pid = -1;
  int channel = -1;
  int pidfd = -1;
  bool warm = false;  // the zygote ran its warm-up call in it (CallOutcome::child_warm)
};

class ProcessCall;

// ---- The per-language core -------------------------------------------------------------------

class Core : public std::enable_shared_from_this<Core> {
 public:
  Core(asio::io_context& io, std::string runtime, const SandboxLimits& limits)
      : io_(io),
        strand_(asio::make_strand(io)),
        runtime_(std::move(runtime)),
        limits_(limits),
        metrics_(runtime_),
        supervisor_socket_(strand_),
        supervisor_pidfd_(strand_),
        refresh_(strand_),
        respawn_(strand_),
        spawner_(std::make_unique<SupervisorSpawner>(runtime_, limits)),
        queue_(FairQueueOptions{limits.children_per_flow, limits.queued_per_flow,
                                limits.queued_total}) {}

  asio::io_context& io() { return io_; }
  const SandboxLimits& limits() const { return limits_; }
  const std::string& language() const { return runtime_; }
  SandboxMetrics& metrics() { return metrics_; }

  // Blocking, before the loop runs anything of this core: the first supervisor and zygote.
  void start_blocking() {
    auto spawned = spawner_->spawn_and_wait();
    if (!spawned) throw std::runtime_error(spawned.error());
    supervisor_ = spawned->pid;
    const Clock::time_point until = Clock::now() + kStartWait;
    auto fail = [&](const std::string& why) {
      ::kill(supervisor_, SIGKILL);
      ::waitpid(supervisor_, nullptr, 0);
      ::close(spawned->socket);
      ::close(spawned->pidfd);
      return std::runtime_error(why);
    };
    if (!wait_readable(spawned->socket, until)) throw fail("the supervisor sent no zygote");
    Received received = receive_zygote(spawned->socket, 0);
    if (!received.link) throw fail(received.error);
    const RawLink* raw = &*received.link;
    auto hello = blocking_reply(raw->control, until);
    if (!hello || hello->op != ZygoteOp::kHello || hello->ok == 0) {
      std::string why = !hello                   ? hello.error()
                        : hello->text[0] != '\0' ? std::string(hello->text)
                                                 : "the zygote's start-up failed";
      for (int fd : {raw->control, raw->handoff, raw->pidfd}) ::close(fd);
      throw fail(why);
    }
    ZygoteRequest request;
    request.op = ZygoteOp::kStats;
    if (send_message(raw->control, &request, sizeof(request), nullptr, 0)) {
      if (auto reply = blocking_reply(raw->control, until); reply && reply->op == request.op) {
        publish(*reply, raw->zygote, raw->generation);
      }
    }
    set_nonblocking(spawned->socket);
    supervisor_socket_.assign(spawned->socket);
    supervisor_pidfd_.assign(spawned->pidfd);
    link_ = std::make_shared<ZygoteLink>(strand_, *raw);
    link_->hello = true;
  }

  // Arms every wait; from here on the core lives on its strand.
  void begin() {
    asio::post(strand_, [self = shared_from_this()] {
      self->watch_supervisor();
      self->watch_link(self->link_);
      self->schedule_refresh();
    });
  }

  // Ends the supervisor (which kills its zygote and so the pool) and fails waiting calls. On the
  // strand, or with the loop stopped.
  void close();

  // Waits for the supervisor to exit (after close()), then ends the spawner's thread (a spawn
  // under way when close() came is discarded: on_spawned, or the dropped handler's destructor).
  void reap_supervisor() {
    if (supervisor_ > 0) {
      while (::waitpid(supervisor_, nullptr, 0) < 0 && errno == EINTR) {
      }
      supervisor_ = -1;
    }
    spawner_->stop();
  }

  // Queues `call` for a child under `ticket` (new for each request of the call); a refusal
  // (queue full) is sent to the call with ProcessCall::refuse.
  void request_child(std::shared_ptr<ProcessCall> call, FairQueue::Ticket ticket);
  // The call that asked under `ticket` ended while waiting: off the queue, unless it was already
  // given a child (its give_child is on the way; the call releases that child).
  void withdraw(const FlowKey& key, FairQueue::Ticket ticket) {
    asio::post(strand_, [self = shared_from_this(), key, ticket] {
      if (self->queue_.remove(key, ticket)) self->queued_.erase(ticket);
    });
  }
  // A child a call of `key` held is done: the flow may have the next one.
  void release(const FlowKey& key) {
    asio::post(strand_, [self = shared_from_this(), key] {
      self->queue_.release(key);
      self->serve_waiters();
    });
  }
  FairQueue::Ticket next_ticket() { return next_ticket_.fetch_add(1); }

  // How child `pid` of `link` ended (asks its zygote; retries while it is not reaped yet).
  void query_exit(std::shared_ptr<ZygoteLink> link, pid_t pid,
                  std::function<void(ChildExit, bool zygote_gone)> done) {
    asio::post(strand_, [self = shared_from_this(), link = std::move(link), pid,
                         done = std::move(done)]() mutable {
      self->ask_status(std::move(link), pid, std::move(done), kStatusAttempts);
    });
  }

  SandboxStats stats() const {
    std::lock_guard lock(snapshot_mutex_);
    return snapshot_;
  }

  int ready_children() const {
    std::lock_guard lock(snapshot_mutex_);
    if (snapshot_.zygote_pid < 0 || Clock::now() - refreshed_at_ > kStaleAfter) return 0;
    return snapshot_.ready_children + snapshot_.starting_children;
  }

  std::string unavailable_reason() const {
    std::lock_guard lock(snapshot_mutex_);
    return unavailable_reason_;
  }

  // The fair queue's counts, read on the strand (Sandbox::queue_counts_for_tests).
  void ask_queue_counts(std::function<void(SandboxQueueCounts)> done) {
    asio::post(strand_, [self = shared_from_this(), done = std::move(done)] {
      const FairQueue::Counts counts = self->queue_.counts();
      done(SandboxQueueCounts{counts.held, counts.queued});
    });
  }

  // One kStats round trip, completing on the strand (nullptr reply: no answer).
  void ask_stats(std::function<void(const ZygoteReply*)> done) {
    asio::post(strand_, [self = shared_from_this(), done = std::move(done)]() mutable {
      ZygoteRequest request;
      request.op = ZygoteOp::kStats;
      if (!self->usable(self->link_)) return done(nullptr);
      auto link = self->link_;
      self->send_request(link, request,
                         [self, link, done = std::move(done)](const ZygoteReply* reply) {
                           if (reply != nullptr) {
                             self->publish(*reply, link->zygote, link->generation);
                           }
                           done(reply);
                         });
    });
  }

 private:
  static bool usable(const std::shared_ptr<ZygoteLink>& link) {
    return link && link->hello && !link->gone;
  }

  void publish(const ZygoteReply& reply, pid_t zygote, std::uint64_t generation) {
    std::lock_guard lock(snapshot_mutex_);
    snapshot_.zygote_pid = zygote;
    snapshot_.supervisor_pid = supervisor_;
    snapshot_.zygote_generation = generation;
    snapshot_.ready_children = reply.ready;
    snapshot_.starting_children = reply.starting;
    snapshot_.children_forked = reply.forked;
    snapshot_.setup_failures = reply.setup_failures;
    snapshot_.mean_fork_to_ready_ms = reply.ready_count > 0
                                          ? static_cast<double>(reply.fork_to_ready_ns) /
                                                static_cast<double>(reply.ready_count) / 1e6
                                          : 0;
    refreshed_at_ = Clock::now();
    unavailable_reason_.clear();
    metrics_.pool_ready->Set(reply.ready);
  }

  void publish_down(const std::string& why) {
    std::lock_guard lock(snapshot_mutex_);
    snapshot_.zygote_pid = -1;
    snapshot_.supervisor_pid = supervisor_;
    snapshot_.ready_children = snapshot_.starting_children = 0;
    unavailable_reason_ = why;
    metrics_.pool_ready->Set(0);
  }

  // -- The zygote link --------------------------------------------------------------------------

  void watch_link(const std::shared_ptr<ZygoteLink>& link) {
    watch_zygote_exit(link);
    read_control(link);
  }

  // A completed pidfd wait is checked against the pidfd (see "Stray wake-ups" above).
  void watch_zygote_exit(const std::shared_ptr<ZygoteLink>& link) {
    link->pidfd.async_wait(Descriptor::wait_read,
                           [self = shared_from_this(), link](const error_code& ec) {
                             if (ec || link->gone) return;
                             if (!pidfd_exited(link->pidfd.native_handle())) {
                               return self->watch_zygote_exit(link);
                             }
                             self->link_lost(link, "the zygote died");
                           });
  }

  void read_control(const std::shared_ptr<ZygoteLink>& link) {
    link->control.async_wait(Descriptor::wait_read,
                             [self = shared_from_this(), link](const error_code& ec) {
                               if (!ec && !link->gone) self->on_control(link);
                             });
  }

  void on_control(const std::shared_ptr<ZygoteLink>& link) {
    for (;;) {
      ZygoteReply reply;
      int scratch[kMaxMessageFds];
      int nfds = 0;
      if (!recv_message(link->control.native_handle(), &reply, sizeof(reply), scratch,
                        kMaxMessageFds, &nfds, MSG_DONTWAIT)) {
        if (errno == EAGAIN) break;
        return link_lost(link, "the zygote closed its control socket");
      }
      for (int i = 0; i < nfds; ++i) ::close(scratch[i]);
      if (!link->hello) {
        on_hello(link, reply);
      } else if (link->replies.empty() || link->replies.front().op != reply.op) {
        return kill_zygote(link, "the zygote answered out of step");
      } else {
        PendingReply pending = std::move(link->replies.front());
        link->replies.pop_front();
        pending.done(&reply);
      }
      if (link->gone) return;
    }
    read_control(link);
  }

  void on_hello(const std::shared_ptr<ZygoteLink>& link, const ZygoteReply& hello) {
    if (hello.op != ZygoteOp::kHello || hello.ok == 0) {
      return link_lost(
          link, hello.text[0] != '\0' ? std::string(hello.text) : "the zygote's start-up failed");
    }
    link->hello = true;
    if (link_ && link_ != link) link_lost(link_, "replaced");
    link_ = link;
    metrics_.restarts->Increment();
    obs::log_event(spdlog::level::warn,
                   fmt::format("{} zygote {} (generation {}) is serving", runtime_, link->zygote,
                               link->generation),
                   {obs::field_str("event.action", "zygote-restart"),
                    obs::field_str("wf.language", runtime_)});
    refresh();
    serve_waiters();
  }

  void link_lost(const std::shared_ptr<ZygoteLink>& link, const std::string& why) {
    if (link->gone.exchange(true)) return;
    error_code ignored;
    link->control.close(ignored);
    link->handoff.close(ignored);
    link->pidfd.close(ignored);
    auto replies = std::move(link->replies);
    for (auto& pending : replies) pending.done(nullptr);
    if (link == link_) {
      link_.reset();
      lost_at_ = Clock::now();
      publish_down(fmt::format("the {} zygote is being replaced ({})", runtime_, why));
    }
  }

  void kill_zygote(const std::shared_ptr<ZygoteLink>& link, const std::string& why) {
    if (link->gone) return;
    metrics_.zygote_kills->Increment();
    obs::log_event(
        spdlog::level::warn,
        fmt::format("killing {} zygote {}: {}; its supervisor starts a new one", runtime_,
                    link->zygote, why),
        {obs::field_str("event.action", "zygote-kill"), obs::field_str("wf.language", runtime_)});
    pidfd_signal(link->pidfd.native_handle(), SIGKILL);
    link_lost(link, why);
  }

  void send_request(const std::shared_ptr<ZygoteLink>& link, const ZygoteRequest& request,
                    std::function<void(const ZygoteReply*)> done) {
    if (!send_message(link->control.native_handle(), &request, sizeof(request), nullptr, 0)) {
      done(nullptr);
      return kill_zygote(link, "its control socket is full or broken");
    }
    link->replies.push_back({request.op, Clock::now(), std::move(done)});
  }

  void ask_status(std::shared_ptr<ZygoteLink> link, pid_t pid,
                  std::function<void(ChildExit, bool)> done, int attempts_left) {
    if (!link || link->gone) return done(ChildExit{}, true);
    ZygoteRequest request;
    request.op = ZygoteOp::kStatus;
    request.pid = pid;
    send_request(link, request,
                 [self = shared_from_this(), link, pid, done = std::move(done),
                  attempts_left](const ZygoteReply* reply) mutable {
                   if (reply == nullptr) return done(ChildExit{}, true);
                   if (reply->ok != 0) {
                     return done(ChildExit{true, reply->exit_kind, reply->exit_value, reply->cpu_us,
                                           reply->maxrss_kb},
                                 false);
                   }
                   if (attempts_left <= 1) return done(ChildExit{}, false);
                   self->retry_status(std::move(link), pid, std::move(done), attempts_left - 1);
                 });
  }

  void retry_status(std::shared_ptr<ZygoteLink> link, pid_t pid,
                    std::function<void(ChildExit, bool)> done, int attempts_left) {
    auto timer = std::make_shared<asio::steady_timer>(strand_, milliseconds(1));
    timer->async_wait([self = shared_from_this(), timer, link = std::move(link), pid,
                       done = std::move(done), attempts_left](const error_code&) mutable {
      self->ask_status(std::move(link), pid, std::move(done), attempts_left);
    });
  }

  // -- Handing children to waiting calls ---------------------------------------------------------

  void serve_waiters();
  void publish_queue() {
    const FairQueue::Counts counts = queue_.counts();
    metrics_.queued[kQueueFlowCap]->Set(static_cast<double>(counts.queued_at_cap));
    metrics_.queued[kQueueNoChild]->Set(static_cast<double>(counts.queued - counts.queued_at_cap));
    metrics_.children_held->Set(static_cast<double>(counts.held));
    metrics_.flows_at_cap->Set(static_cast<double>(counts.flows_at_cap));
    metrics_.flows->Set(static_cast<double>(counts.flows));
    metrics_.callers->Set(static_cast<double>(counts.callers));
  }
  bool take_child(const std::shared_ptr<ZygoteLink>& link, ChildFds& child);

  // -- Health: snapshot refresh, late zygotes, dead or hung supervisors ------------------------

  void schedule_refresh() {
    refresh_.expires_after(kRefreshEvery);
    refresh_.async_wait([self = shared_from_this()](const error_code& ec) {
      if (ec || self->closed_) return;
      self->check_health();
      self->schedule_refresh();
    });
  }

  void check_health() {
    publish_queue();
    const auto now = Clock::now();
    if (usable(link_) && !link_->replies.empty() &&
        now - link_->replies.front().sent > kZygoteAnswerWithin) {
      kill_zygote(link_, fmt::format("it left a request unanswered for {} ms",
                                     kZygoteAnswerWithin.count()));
    }
    if (usable(link_)) return refresh();
    if (supervisor_ > 0 && now - lost_at_ > kSupervisorAnswerWithin) {
      obs::log_event(spdlog::level::warn,
                     fmt::format("the {} supervisor started no working zygote within {} s; "
                                 "killing it",
                                 runtime_, kSupervisorAnswerWithin.count() / 1000),
                     {obs::field_str("event.action", "supervisor-kill"),
                      obs::field_str("wf.language", runtime_)});
      pidfd_signal(supervisor_pidfd_.native_handle(), SIGKILL);
      lost_at_ = now;
    }
  }

  void refresh() {
    if (!usable(link_) || stats_pending_) return;
    stats_pending_ = true;
    ZygoteRequest request;
    request.op = ZygoteOp::kStats;
    auto link = link_;
    send_request(link, request, [self = shared_from_this(), link](const ZygoteReply* reply) {
      self->stats_pending_ = false;
      if (reply != nullptr) self->publish(*reply, link->zygote, link->generation);
    });
  }

  // -- The supervisor --------------------------------------------------------------------------

  void watch_supervisor() {
    supervisor_socket_.async_wait(Descriptor::wait_read,
                                  [self = shared_from_this()](const error_code& ec) {
                                    if (!ec) self->on_supervisor_message();
                                  });
    watch_supervisor_exit();
  }

  // A completed pidfd wait is checked against the pidfd (see "Stray wake-ups" above).
  void watch_supervisor_exit() {
    supervisor_pidfd_.async_wait(Descriptor::wait_read,
                                 [self = shared_from_this()](const error_code& ec) {
                                   if (ec) return;
                                   if (!pidfd_exited(self->supervisor_pidfd_.native_handle())) {
                                     return self->watch_supervisor_exit();
                                   }
                                   self->on_supervisor_exit();
                                 });
  }

  void on_supervisor_message() {
    for (;;) {
      Received received = receive_zygote(supervisor_socket_.native_handle(), MSG_DONTWAIT);
      if (received.link) {
        watch_link(std::make_shared<ZygoteLink>(strand_, *received.link));  // kHello comes first
        continue;
      }
      if (received.again) break;
      publish_down(fmt::format("the {} supervisor: {}", runtime_, received.error));
      if (received.eof) return;  // the supervisor is gone; its pidfd says when
    }
    supervisor_socket_.async_wait(Descriptor::wait_read,
                                  [self = shared_from_this()](const error_code& ec) {
                                    if (!ec) self->on_supervisor_message();
                                  });
  }

  void on_supervisor_exit() {
    int status = 0;
    ::waitpid(supervisor_, &status, WNOHANG);
    error_code ignored;
    supervisor_socket_.close(ignored);
    supervisor_pidfd_.close(ignored);
    supervisor_ = -1;
    if (link_) link_lost(link_, "its supervisor died");
    publish_down(fmt::format("the {} supervisor died; starting a new one", runtime_));
    if (closed_) return;
    const auto now = Clock::now();
    respawn_delay_ =
        now - last_respawn_ < std::chrono::seconds(10)
            ? std::min(milliseconds(5000), std::max(milliseconds(100), respawn_delay_ * 2))
            : milliseconds(0);
    last_respawn_ = now;
    respawn_.expires_after(respawn_delay_);
    respawn_.async_wait([self = shared_from_this()](const error_code& ec) {
      if (!ec && !self->closed_) self->respawn_supervisor();
    });
  }

  // The spawn runs on the spawner's thread (posix_spawn waits for the new image's exec, which
  // took 80-120 ms on a loaded machine: on the loop it held every request of a one-thread
  // server); its result comes back to the strand.
  void respawn_supervisor() {
    std::weak_ptr<Core> weak = weak_from_this();
    spawner_->spawn([weak](SpawnResult spawned) {
      OwnedSpawn owned(spawned);
      auto self = weak.lock();
      if (!self) return;  // the sandbox is gone: the owned supervisor is discarded
      asio::post(self->strand_, [self, owned = std::move(owned)]() mutable {
        self->on_spawned(std::move(owned));
      });
    });
  }

  // A spawn's result that ends the supervisor unless taken (a handler dropped at shutdown).
  struct OwnedSpawn {
    explicit OwnedSpawn(const SpawnResult& result) {
      if (result) {
        spawned = *result;
      } else {
        error = result.error();
      }
    }
    OwnedSpawn(OwnedSpawn&& other) noexcept
        : spawned(std::exchange(other.spawned, SpawnedSupervisor{})),
          error(std::move(other.error)) {}
    OwnedSpawn& operator=(OwnedSpawn&&) = delete;
    ~OwnedSpawn() {
      if (spawned.pid > 0) discard_supervisor(spawned);
    }
    bool ok() const { return spawned.pid > 0; }
    SpawnedSupervisor take() { return std::exchange(spawned, SpawnedSupervisor{}); }
    SpawnedSupervisor spawned;  // pid -1: none
    std::string error;
  };

  void on_spawned(OwnedSpawn owned) {
    if (closed_) return;  // discarded with `owned`
    if (!owned.ok()) {
      publish_down(fmt::format("cannot start a {} supervisor: {}", runtime_, owned.error));
      respawn_.expires_after(milliseconds(1000));
      respawn_.async_wait([self = shared_from_this()](const error_code& ec) {
        if (!ec && !self->closed_) self->respawn_supervisor();
      });
      return;
    }
    const SpawnedSupervisor spawned = owned.take();
    supervisor_ = spawned.pid;
    set_nonblocking(spawned.socket);
    supervisor_socket_.assign(spawned.socket);
    supervisor_pidfd_.assign(spawned.pidfd);
    lost_at_ = Clock::now();
    metrics_.supervisor_restarts->Increment();
    obs::log_event(spdlog::level::warn,
                   fmt::format("started a new {} supervisor (pid {})", runtime_, supervisor_),
                   {obs::field_str("event.action", "supervisor-restart"),
                    obs::field_str("wf.language", runtime_)});
    watch_supervisor();
  }

  asio::io_context& io_;
  Strand strand_;
  std::string runtime_;
  SandboxLimits limits_;
  SandboxMetrics metrics_;
  pid_t supervisor_ = -1;
  Descriptor supervisor_socket_;
  Descriptor supervisor_pidfd_;
  asio::steady_timer refresh_;
  asio::steady_timer respawn_;
  milliseconds respawn_delay_{0};
  Clock::time_point last_respawn_{};
  std::unique_ptr<SupervisorSpawner> spawner_;  // every supervisor comes from its thread
  std::shared_ptr<ZygoteLink> link_;            // the serving zygote (hello received), if any
  Clock::time_point lost_at_ = Clock::now();
  bool stats_pending_ = false;
  bool closed_ = false;
  // Calls waiting for a child, by ticket; the queue decides who is next.
  struct Queued {
    std::shared_ptr<ProcessCall> call;
    Clock::time_point since;
    QueueReason reason;
  };
  FairQueue queue_;
  std::unordered_map<FairQueue::Ticket, Queued> queued_;
  std::atomic<FairQueue::Ticket> next_ticket_{1};

  mutable std::mutex snapshot_mutex_;  // guards the three below
  SandboxStats snapshot_;
  Clock::time_point refreshed_at_{};
  std::string unavailable_reason_;
};

// ---- One call --------------------------------------------------------------------------------

class ProcessCall final : public SandboxCall, public std::enable_shared_from_this<ProcessCall> {
 public:
  ProcessCall(std::shared_ptr<Core> core, CallInput input, Clock::time_point deadline,
              CallCompletion done)
      : core_(std::move(core)),
        strand_(asio::make_strand(core_->io())),
        input_(std::move(input)),
        done_(std::move(done)),
        channel_(strand_),
        pidfd_(strand_),
        timer_(strand_) {
    const Clock::time_point now = Clock::now();
    wall_ = std::min(core_->limits().wall, std::chrono::ceil<milliseconds>(deadline - now));
    deadline_bound_ = wall_ < core_->limits().wall;
    wall_end_ = now + wall_;
    flow_ = FlowKey{input_.caller, code_hash(input_.code)};
  }

  void begin() {
    asio::post(strand_, [self = shared_from_this()] {
      if (self->wall_.count() <= 0) {
        return self->finish(
            failure(Status::kTimeout, "the request's deadline passed before the call"), kKillNone);
      }
      self->ask_for_child();
    });
  }

  const FlowKey& flow() const { return flow_; }
  // From the core when the call is queued: its flow held all its children then.
  void set_at_cap(bool at_cap) { at_cap_ = at_cap; }

  // From the core: the call's request under `ticket` was refused (queue full).
  void refuse(FairQueue::Ticket ticket, QueueRefusal why) {
    asio::post(strand_, [self = shared_from_this(), ticket, why] {
      if (self->phase_.load() != Phase::kWaiting || self->seat_ != Seat::kQueued ||
          self->ticket_ != ticket) {
        return;
      }
      self->seat_ = Seat::kNone;
      self->finish(self->refusal(why), kKillNone);
    });
  }

  void cancel(CancelReason reason) override {
    asio::post(strand_, [self = shared_from_this(), reason] { self->on_cancel(reason); });
  }

  // From the core: a ready child for this call (or for nobody, when it ended meanwhile).
  void give_child(std::shared_ptr<ZygoteLink> link, ChildFds child) {
    asio::post(strand_, [self = shared_from_this(), link = std::move(link), child] {
      self->on_child(link, child);
    });
  }

 private:
  enum class Phase { kWaiting, kTalking, kEnding, kDone };
  enum class Ending { kTimeout, kViolation, kSetupFailed, kNoAnswer };
  // Where the call is in the core's fair queue: nowhere, waiting for a child, or holding one.
  enum class Seat { kNone, kQueued, kHeld };

  // Queues the call for a child, for at most the queue-time budget (then on_timer refuses it).
  void ask_for_child() {
    asked_at_ = Clock::now();
    queue_wait_end_ = std::min(wall_end_, asked_at_ + core_->limits().queue_wait);
    arm_timer(queue_wait_end_);
    ticket_ = core_->next_ticket();
    seat_ = Seat::kQueued;
    core_->request_child(shared_from_this(), ticket_);
  }

  // The wall-clock timer of a call in its child; first, when the child's priority is to be
  // lowered after call_demote_after (so short calls, most of them, run at the zygote's priority
  // and only long ones yield to the service and to other calls), the demotion.
  void arm_talking_timer() {
    const SandboxLimits& limits = core_->limits();
    const Clock::time_point wall = wall_end_ + kInterruptGrace;
    demote_pending_ = demotes(limits);
    if (demote_pending_ && limits.call_demote_after.count() == 0) {
      demote_pending_ = false;
      set_call_priority(child_, limits);
    }
    const Clock::time_point demote_at = Clock::now() + limits.call_demote_after;
    arm_timer(demote_pending_ && demote_at < wall ? demote_at : wall);
    if (demote_pending_ && demote_at >= wall) demote_pending_ = false;
  }

  CallOutcome refusal(QueueRefusal why) const {
    const SandboxLimits& limits = core_->limits();
    switch (why) {
      case kRefusedFlowFull:
        return failure(
            Status::kThrottled,
            fmt::format("this code already has {} calls waiting for a {} sandbox child "
                        "behind the {} its calls may hold at once",
                        limits.queued_per_flow, core_->language(), limits.children_per_flow));
      case kRefusedWaitBudget:
        if (at_cap_) {
          return failure(
              Status::kThrottled,
              fmt::format("this code's calls hold all {} {} sandbox children its calls "
                          "may hold at once, and this call waited {} ms for one",
                          limits.children_per_flow, core_->language(), limits.queue_wait.count()));
        }
        return failure(Status::kUnavailable,
                       fmt::format("no {} sandbox child within the queue-time budget of {} ms",
                                   core_->language(), limits.queue_wait.count()));
      case kRefusedTotalFull:
      case kRefusals:
        break;
    }
    return failure(Status::kUnavailable,
                   fmt::format("{} calls are already waiting for a {} sandbox child",
                               limits.queued_total, core_->language()));
  }

  void arm_timer(Clock::time_point at) {
    const std::uint64_t generation = ++timer_generation_;
    timer_.expires_at(at);
    timer_.async_wait([self = shared_from_this(), generation](const error_code& ec) {
      if (!ec && generation == self->timer_generation_) self->on_timer();
    });
  }

  // The call's timer: the child's demotion, the queue-time budget, or the wall-clock limit.
  void on_timer() {
    const Phase phase = phase_.load();
    if (phase == Phase::kTalking && demote_pending_) {
      demote_pending_ = false;
      // Not a pid the zygote reaped meanwhile (its pidfd would be readable).
      if (!pidfd_exited(pidfd_.native_handle())) set_call_priority(child_, core_->limits());
      return arm_timer(wall_end_ + kInterruptGrace);
    }
    if (phase == Phase::kWaiting && queue_wait_end_ < wall_end_) {
      core_->metrics().refused[kRefusedWaitBudget]->Increment();
      return finish(refusal(kRefusedWaitBudget), kKillNone);
    }
    on_wall_end();
  }

  // The wall-clock limit or the request's deadline.
  void on_wall_end() {
    switch (phase_.load()) {
      case Phase::kWaiting: {
        std::string why = core_->unavailable_reason();
        return finish(failure(Status::kUnavailable,
                              fmt::format("no {} sandbox child: {}", core_->language(),
                                          why.empty() ? "no child became ready before the "
                                                        "deadline (the pool is exhausted)"
                                                      : why)),
                      kKillNone);
      }
      case Phase::kTalking:
        return end(Ending::kTimeout, wall_detail(deadline_bound_, wall_));
      case Phase::kEnding:
        return ask_exit();  // the killed child was not reported exited in time: ask anyway
      case Phase::kDone:
        return;
    }
  }

  void on_cancel(CancelReason reason) {
    const Phase phase = phase_.load();
    if (phase == Phase::kDone) return;
    core_->metrics().cancelled[static_cast<std::size_t>(reason)]->Increment();
    // The request's deadline: what the wall-clock timer does, now (the caller gets its timeout
    // error, not a cancellation). Whichever noticed it first, the detail names the deadline and
    // the time the call had, not the wall limit it did not reach.
    if (reason == CancelReason::kDeadline && phase != Phase::kEnding) {
      const Clock::time_point started = wall_end_ - wall_;
      wall_ = std::min(wall_, std::chrono::ceil<milliseconds>(Clock::now() - started));
      deadline_bound_ = true;
      return on_wall_end();
    }
    int kill_reason = kKillNone;
    if (phase != Phase::kWaiting && pidfd_.is_open()) {
      pidfd_signal(pidfd_.native_handle(), SIGKILL);  // its zygote reaps it
      kill_reason = kKillCancel;
    }
    finish(failure(Status::kCancelled,
                   fmt::format("cancelled ({}); the child was killed", cancel_reason_name(reason))),
           kill_reason);
  }

  void on_child(const std::shared_ptr<ZygoteLink>& link, ChildFds child) {
    if (phase_.load() != Phase::kWaiting) {
      pidfd_signal(child.pidfd, SIGKILL);
      ::close(child.channel);
      ::close(child.pidfd);
      core_->release(flow_);  // the core counted it held by this call's flow
      return;
    }
    count_pool_wait();
    seat_ = Seat::kHeld;
    phase_ = Phase::kTalking;
    ++attempt_;
    link_ = link;
    child_ = child.pid;
    handed_at_ = Clock::now();
    child_warm_ = child.warm;
    channel_.assign(child.channel);
    pidfd_.assign(child.pidfd);
    // Not set_nonblocking: every send and recv on the channel passes MSG_DONTWAIT, and asio makes
    // the descriptor non-blocking itself (FIONBIO) at its first wait; the fcntl pair was two more
    // system calls per call.
    // The child's SIGALRM at the call's wall end (not a full wall limit after the wait for this
    // child), so that an interruptible runtime can report within kInterruptGrace of it.
    const auto left =
        std::max(milliseconds(1), std::chrono::ceil<milliseconds>(wall_end_ - Clock::now()));
    request_ = build_request(input_, core_->limits(), left, token_);
    written_ = 0;
    reader_.emplace(token_, core_->limits());
    arm_talking_timer();
    send_more();
    wait_channel();
    wait_exit();
  }

  // A completed pidfd wait is checked against the pidfd (see "Stray wake-ups" above): taking a
  // stray wake-up for the child's exit ended the call without an answer and killed a healthy child.
  void wait_exit() {
    pidfd_.async_wait(Descriptor::wait_read,
                      [self = shared_from_this(), attempt = attempt_](const error_code& ec) {
                        if (ec || attempt != self->attempt_) return;
                        if (!pidfd_exited(self->pidfd_.native_handle())) return self->wait_exit();
                        self->on_exit();
                      });
  }

  // Most requests fit the socket buffer and go out at once; the rest when it drains.
  void send_more() {
    while (written_ < request_.size()) {
      ssize_t sent = ::send(channel_.native_handle(), request_.data() + written_,
                            request_.size() - written_, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (sent > 0) {
        written_ += static_cast<std::size_t>(sent);
        continue;
      }
      if (sent < 0 && errno == EINTR) continue;
      if (sent < 0 && errno == EAGAIN) {
        channel_.async_wait(Descriptor::wait_write, [self = shared_from_this(),
                                                     attempt = attempt_](const error_code& ec) {
          if (!ec && attempt == self->attempt_ && self->phase_.load() == Phase::kTalking) {
            self->send_more();
          }
        });
      }
      return;  // EPIPE and friends: the child is gone; its exit says how
    }
  }

  void wait_channel() {
    channel_.async_wait(Descriptor::wait_read, [self = shared_from_this(),
                                                attempt = attempt_](const error_code& ec) {
      if (!ec && attempt == self->attempt_ && self->phase_.load() == Phase::kTalking) {
        self->on_readable();
      }
    });
  }

  // Reads what is there. Returns false when the channel reached EOF.
  bool drain(ReplyReader::State& state) {
    thread_local char buffer[65536];
    for (;;) {
      ssize_t got = ::recv(channel_.native_handle(), buffer, sizeof(buffer), MSG_DONTWAIT);
      if (got < 0 && errno == EINTR) continue;
      if (got < 0 && errno == EAGAIN) return true;
      if (got <= 0) return false;
      state = reader_->feed(buffer, static_cast<std::size_t>(got));
      if (state != ReplyReader::State::kMore) return true;
    }
  }

  void on_readable() {
    ReplyReader::State state = ReplyReader::State::kMore;
    const bool open = drain(state);
    if (handle(state)) return;
    if (!open) return end(Ending::kNoAnswer, {});
    wait_channel();
  }

  // The child exited: the kernel closed its files before the pidfd turned readable, so whatever
  // it wrote is in the channel now.
  void on_exit() {
    exit_seen_ = true;
    const Phase phase = phase_.load();
    if (phase == Phase::kEnding) return ask_exit();
    if (phase != Phase::kTalking) return;
    ReplyReader::State state = ReplyReader::State::kMore;
    drain(state);
    if (handle(state)) return;
    end(Ending::kNoAnswer, {});
  }

  // True when `state` ended the conversation.
  bool handle(ReplyReader::State state) {
    switch (state) {
      case ReplyReader::State::kMore:
        return false;
      case ReplyReader::State::kComplete:
        pidfd_signal(pidfd_.native_handle(), SIGKILL);  // on its way out; do not wait for it
        finish(reader_->outcome(deadline_bound_, wall_), kKillNone);
        return true;
      case ReplyReader::State::kSetupFailed:
        end(Ending::kSetupFailed, reader_->problem());
        return true;
      case ReplyReader::State::kViolation:
        end(Ending::kViolation, reader_->problem());
        return true;
    }
    return false;
  }

  // No answer: kill the child, wait (bounded) for its exit, then ask its zygote how it ended.
  void end(Ending ending, std::string detail) {
    ending_ = ending;
    ending_detail_ = std::move(detail);
    phase_ = Phase::kEnding;
    pidfd_signal(pidfd_.native_handle(), SIGKILL);
    error_code ignored;
    channel_.close(ignored);
    arm_timer(Clock::now() + kReapWait);
    // The pidfd wait armed in on_child is still pending unless it already fired.
    if (exit_seen_) ask_exit();
  }

  void ask_exit() {
    if (asked_exit_) return;
    asked_exit_ = true;
    ++timer_generation_;  // the reap timer no longer matters
    core_->query_exit(link_, child_, [self = shared_from_this()](ChildExit exit, bool gone) {
      asio::post(self->strand_, [self, exit, gone] { self->on_exit_status(exit, gone); });
    });
  }

  void on_exit_status(const ChildExit& exit, bool zygote_gone) {
    if (phase_.load() != Phase::kEnding) return;
    const bool ready = reader_ && reader_->ready();
    switch (ending_) {
      case Ending::kTimeout: {
        CallOutcome outcome = failure(Status::kTimeout, ending_detail_);
        apply_usage(outcome, exit);
        return finish(std::move(outcome), kKillWallClock);
      }
      case Ending::kViolation: {
        CallOutcome outcome = failure(Status::kForbidden, ending_detail_);
        apply_usage(outcome, exit);
        return finish(std::move(outcome), kKillProtocol);
      }
      case Ending::kSetupFailed:
        return retry(ending_detail_, true);
      case Ending::kNoAnswer:
        break;
    }
    if (zygote_gone || (link_ && link_->gone)) {
      // Killed with its zygote (PR_SET_PDEATHSIG) rather than by what it ran: run the call
      // again in a child of the next zygote, at no cost to its attempts.
      return retry("the zygote died during the call", false);
    }
    if (!ready) {
      return retry(
          exit.known && exit.exit_kind == CLD_EXITED
              ? fmt::format("child exited with status {} before it was ready", exit.exit_value)
              : std::string("child was killed before it was ready"),
          true);
    }
    int kill_reason = kKillNone;
    CallOutcome outcome = outcome_of_exit(exit, core_->limits(), kill_reason);
    finish(std::move(outcome), kill_reason);
  }

  void retry(const std::string& why, bool counts) {
    if (counts) ++setup_failures_;
    leave_queue();
    close_child();
    if (setup_failures_ >= kMaxSetupFailures || Clock::now() >= wall_end_) {
      return finish(failure(Status::kUnavailable,
                            fmt::format("{} sandbox children die before they are ready: {}",
                                        core_->language(), why)),
                    kKillNone);
    }
    phase_ = Phase::kWaiting;
    asked_exit_ = exit_seen_ = false;
    reader_.reset();
    ask_for_child();
  }

  void close_child() {
    error_code ignored;
    channel_.close(ignored);
    pidfd_.close(ignored);
    link_.reset();
  }

  // Gives back the call's place in the fair queue, or the child its flow held.
  void leave_queue() {
    if (seat_ == Seat::kQueued) core_->withdraw(flow_, ticket_);
    if (seat_ == Seat::kHeld) core_->release(flow_);
    seat_ = Seat::kNone;
  }

  // The wait since ask_for_child, when the call waited for the pool rather than behind its own
  // flow's cap (CallOutcome::pool_wait).
  void count_pool_wait() {
    if (asked_at_ == Clock::time_point{}) return;
    if (!at_cap_) pool_wait_ += Clock::now() - asked_at_;
    asked_at_ = {};
  }

  void finish(CallOutcome outcome, int kill_reason) {
    if (seat_ == Seat::kQueued) count_pool_wait();
    outcome.pool_wait = pool_wait_;
    if (handed_at_ != Clock::time_point{}) {
      outcome.in_child = Clock::now() - handed_at_;
      outcome.child_warm = child_warm_ ? 1 : 0;
    }
    leave_queue();
    phase_ = Phase::kDone;
    ++timer_generation_;
    timer_.cancel();
    close_child();
    core_->metrics().record(outcome, kill_reason);
    CallCompletion done = std::move(done_);
    done_ = nullptr;
    if (done) done(std::move(outcome));
  }

  std::shared_ptr<Core> core_;
  Strand strand_;
  CallInput input_;
  CallCompletion done_;
  Descriptor channel_;
  Descriptor pidfd_;
  asio::steady_timer timer_;
  std::uint64_t timer_generation_ = 0;
  std::atomic<Phase> phase_{Phase::kWaiting};
  milliseconds wall_{0};
  bool deadline_bound_ = false;
  Clock::time_point wall_end_;
  std::shared_ptr<ZygoteLink> link_;
  pid_t child_ = -1;
  std::string request_;
  std::size_t written_ = 0;
  std::uint64_t token_ = 0;
  std::optional<ReplyReader> reader_;
  Ending ending_ = Ending::kNoAnswer;
  std::string ending_detail_;
  std::uint64_t attempt_ = 0;  // +1 per child: handlers of an earlier child's waits are stale
  bool exit_seen_ = false;
  bool asked_exit_ = false;
  int setup_failures_ = 0;
  FlowKey flow_;
  FairQueue::Ticket ticket_ = 0;
  Seat seat_ = Seat::kNone;
  Clock::time_point queue_wait_end_;
  std::atomic<bool> at_cap_{false};
  Clock::time_point
      asked_at_{};  // when the call asked for its child (ask_for_child), until it had one
  std::chrono::nanoseconds pool_wait_{0};
  Clock::time_point handed_at_{};  // when the call's (last) child was handed to it
  bool child_warm_ = false;        // that child was warmed up by its zygote
  bool demote_pending_ = false;    // the talking timer lowers the child's priority first
};

// ---- Core parts that need ProcessCall ----------------------------------------------------------

bool Core::take_child(const std::shared_ptr<ZygoteLink>& link, ChildFds& child) {
  for (;;) {
    HandoffMessage message;
    int fds[kMaxMessageFds] = {-1, -1, -1};
    int nfds = 0;
    if (!recv_message(link->handoff.native_handle(), &message, sizeof(message), fds, kMaxMessageFds,
                      &nfds, MSG_DONTWAIT)) {
      if (errno != EAGAIN) link_lost(link, "the zygote closed its handoff socket");
      return false;
    }
    if (nfds != 2) {
      for (int i = 0; i < nfds; ++i) ::close(fds[i]);
      continue;
    }
    child = {message.pid, fds[0], fds[1], message.warm != 0};
    ZygoteRequest taken;
    taken.op = ZygoteOp::kTaken;  // no reply; the zygote forks a replacement
    if (!send_message(link->control.native_handle(), &taken, sizeof(taken), nullptr, 0)) {
      kill_zygote(link, "its control socket is full or broken");
    }
    metrics_.fork_to_ready->Observe(static_cast<double>(message.fork_to_ready_ns) / 1e9);
    metrics_.children_started[message.warm != 0 ? 1 : 0]->Increment();
    return true;
  }
}

void Core::request_child(std::shared_ptr<ProcessCall> call, FairQueue::Ticket ticket) {
  asio::post(strand_, [self = shared_from_this(), call = std::move(call), ticket]() mutable {
    if (self->closed_) return call->cancel(CancelReason::kShutdown);
    const FairQueue::Pushed pushed = self->queue_.push(call->flow(), ticket);
    call->set_at_cap(pushed.at_cap);
    if (pushed.admission != FairQueue::Admission::kQueued) {
      const QueueRefusal why = pushed.admission == FairQueue::Admission::kFlowFull
                                   ? kRefusedFlowFull
                                   : kRefusedTotalFull;
      self->metrics_.refused[why]->Increment();
      return call->refuse(ticket, why);
    }
    self->queued_.emplace(ticket, Queued{std::move(call), Clock::now(),
                                         pushed.at_cap ? kQueueFlowCap : kQueueNoChild});
    self->serve_waiters();
  });
}

// Takes a child from the zygote only for a call that may have one now (fair_queue.h decides
// which), so a flow at its cap never takes a child that another flow's call could use.
void Core::serve_waiters() {
  if (!queue_.eligible() || !usable(link_)) return;
  auto link = link_;
  while (queue_.eligible()) {
    ChildFds child;
    if (!take_child(link, child)) break;
    const std::optional<FairQueue::Ticket> ticket = queue_.pop();
    auto it = ticket ? queued_.find(*ticket) : queued_.end();
    if (it == queued_.end()) {  // not reached: the queue and queued_ change together
      pidfd_signal(child.pidfd, SIGKILL);
      ::close(child.channel);
      ::close(child.pidfd);
      continue;
    }
    Queued queued = std::move(it->second);
    queued_.erase(it);
    metrics_.queue_wait[queued.reason]->Observe(
        std::chrono::duration<double>(Clock::now() - queued.since).count());
    queued.call->give_child(link, child);
  }
  if (!queue_.eligible() || link->gone || link->handoff_armed) return;
  link->handoff_armed = true;
  link->handoff.async_wait(Descriptor::wait_read,
                           [self = shared_from_this(), link](const error_code& ec) {
                             link->handoff_armed = false;
                             if (!ec) self->serve_waiters();
                           });
}

void Core::close() {
  closed_ = true;
  error_code ignored;
  refresh_.cancel();
  respawn_.cancel();
  if (link_) link_lost(link_, "the sandbox is closing");
  supervisor_socket_.close(ignored);  // the supervisor kills its zygote and exits
  supervisor_pidfd_.close(ignored);
  auto queued = std::move(queued_);
  queued_.clear();
  for (auto& [ticket, waiting] : queued) waiting.call->cancel(CancelReason::kShutdown);
}

// ---- The Sandbox -------------------------------------------------------------------------------

class ProcessSandbox final : public Sandbox {
 public:
  ProcessSandbox(std::string runtime, const SandboxLimits& limits, asio::io_context* loop) {
    if (loop == nullptr) {
      own_loop_ = std::make_unique<asio::io_context>(1);
      loop = own_loop_.get();
    }
    core_ = std::make_shared<Core>(*loop, std::move(runtime), limits);
    core_->start_blocking();
    core_->begin();
    if (own_loop_) {
      thread_ = std::thread([io = own_loop_.get()] {
        auto guard = asio::make_work_guard(*io);
        io->run();
      });
    }
  }

  ~ProcessSandbox() override { shutdown(); }

  void shutdown() override {
    if (!core_) return;
    asio::io_context& io = core_->io();
    if (io.stopped()) {
      core_->close();
    } else {
      std::promise<void> closed;
      asio::post(io, [&] {
        core_->close();
        closed.set_value();
      });
      closed.get_future().wait_for(std::chrono::seconds(5));
    }
    core_->reap_supervisor();
    if (own_loop_) {
      own_loop_->stop();
      thread_.join();
    }
    core_.reset();  // what still refers to it are handlers on the loop, destroyed with it
  }

  std::shared_ptr<SandboxCall> start(CallInput input, Clock::time_point deadline,
                                     CallCompletion done) override {
    if (!core_) {
      done(failure(Status::kUnavailable, "the sandbox is shut down"));
      return nullptr;
    }
    auto call = std::make_shared<ProcessCall>(core_, std::move(input), deadline, std::move(done));
    call->begin();
    return call;
  }

  int ready_children() const override { return core_ ? core_->ready_children() : 0; }
  SandboxStats stats() const override { return core_ ? core_->stats() : SandboxStats{}; }

  SandboxStats query_stats() override {
    auto promise = std::make_shared<std::promise<void>>();
    std::future<void> answered = promise->get_future();
    core_->ask_stats([promise](const ZygoteReply*) { promise->set_value(); });
    answered.wait_for(std::chrono::seconds(2));
    return core_->stats();
  }

  std::optional<SandboxQueueCounts> queue_counts_for_tests() override {
    if (!core_) return std::nullopt;
    auto promise = std::make_shared<std::promise<SandboxQueueCounts>>();
    std::future<SandboxQueueCounts> answered = promise->get_future();
    core_->ask_queue_counts([promise](SandboxQueueCounts counts) { promise->set_value(counts); });
    if (answered.wait_for(std::chrono::seconds(2)) != std::future_status::ready)
      return std::nullopt;
    try {
      return answered.get();
    } catch (const std::future_error&) {  // the loop dropped the handler (it was stopped)
      return std::nullopt;
    }
  }

 private:
  std::unique_ptr<asio::io_context> own_loop_;  // only without the caller's loop
  std::shared_ptr<Core> core_;
  std::thread thread_;
};

}  // namespace

std::unique_ptr<Sandbox> start_sandbox(const std::string& runtime, const SandboxLimits& limits,
                                       asio::io_context* loop) {
  try {
    return std::make_unique<ProcessSandbox>(runtime, limits, loop);
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(fmt::format(
        "start_sandbox({}): {}. The sandbox needs fork, seccomp-bpf and no_new_privs (not "
        "blocked by the container runtime) and the {} runtime's files.",
        runtime, e.what(), runtime));
  }
}

}  // namespace wf::evaluator
