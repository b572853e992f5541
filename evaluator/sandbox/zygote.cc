#include "evaluator/sandbox/zygote.h"

#include <fcntl.h>
#include <fmt/core.h>
#include <malloc.h>
#include <poll.h>
#include <sys/mman.h>
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
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory_resource>
#include <new>
#include <string>
#include <vector>

#include "evaluator/sandbox/child.h"
#include "evaluator/sandbox/file_image.h"
#include "evaluator/sandbox/protocol.h"
#include "evaluator/sandbox/seccomp_filter.h"

namespace wf::evaluator::sandbox_internal {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

struct PoolChild {
  pid_t pid = -1;
  int channel = -1;  // the service's end; the child holds the other one as fd 3
  int pidfd = -1;
  bool ready = false;
  bool warm = false;  // warmed up before it reported ready (spawn)
  Clock::time_point forked;
  std::uint64_t fork_to_ready_ns = 0;
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

std::string describe_wait_status(int status) {
  if (WIFEXITED(status)) return fmt::format("exited with status {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const char* abbrev = ::sigabbrev_np(WTERMSIG(status));
    return abbrev != nullptr ? fmt::format("was killed by SIG{}", abbrev)
                             : fmt::format("was killed by signal {}", WTERMSIG(status));
  }
  return "ended";
}

// glibc puts freed chunks on an "unsorted" list that the next malloc not served from tcache
// walks, writing to every chunk on it. In a child, each of those writes is a copy-on-write page
// fault (~2-3 us). A malloc that no free chunk fits exactly makes that walk happen here, before
// the fork: measured 380 -> 320 page faults per trivial Python call.
void sort_free_chunks() {
  void* volatile sorter = std::malloc(100 * 1024 + 40);
  std::free(sorter);
}

// What the supervisor prepared once for every zygote it forks.
struct Prepared {
  LanguageRuntime* runtime = nullptr;
  std::vector<sock_filter> zygote_filter;  // installed by the zygote (seccomp_filter.h)
  std::vector<sock_filter> child_tail;     // each child's filter after its self-signal check
  std::uint64_t address_space = 0;
  std::uint64_t data = 0;
  std::string process_name;
  int devnull = -1;
};

// The zygote's own bookkeeping (this object and what its containers allocate) lives in one
// mapping that fork does not copy (MADV_DONTFORK; see zygote_main): a child never needs it, and
// the zygote writes it all the time. On pages a child shares, each of those writes was a
// copy-on-write fault in the zygote after every fork (~11 per call: its heap, glibc's arena,
// which a malloc and free per fork also wrote). So nothing here may be read in a child: spawn()
// hands the child only copies on its stack.
class Zygote {
 public:
  Zygote(const Prepared& prepared, int control, int handoff, const SandboxLimits& limits,
         std::pmr::memory_resource* memory)
      : zygote_pid_(::getpid()),
        prepared_(prepared),
        control_(control),
        handoff_(handoff),
        limits_(limits),
        pool_size_(static_cast<std::size_t>(std::max(1, limits.pool_size))),
        warm_idle_(limits.warm_idle),
        mean_take_gap_(2 * warm_idle_),
        pool_(memory),
        reaped_(memory),
        fds_(memory) {}

  [[noreturn]] void run() {
    std::string error;
    // The children's allow-list, widened by what this loop and a child's set-up need, installed
    // once here and inherited by every fork: a child adds only a short filter (seccomp_filter.h).
    if (!install_seccomp_filter(prepared_.zygote_filter)) {
      hello(false,
            std::string("the zygote cannot install its seccomp filter: ") + std::strerror(errno));
      ::_exit(1);
    }
    if (!start(error)) {
      hello(false, error);
      ::_exit(1);
    }
    std::pmr::vector<pollfd>& fds = fds_;
    for (;;) {
      sweep();
      push_ready();
      refill();
      fds.clear();
      fds.push_back({control_, POLLIN, 0});
      if (handoff_blocked_) fds.push_back({handoff_, POLLOUT, 0});
      const std::size_t first_child = fds.size();
      for (const auto& child : pool_) {
        if (!child.ready) fds.push_back({child.channel, POLLIN, 0});
      }
      const bool starting = fds.size() > first_child;
      int timeout_ms = starting ? 200 : 1000;
      if (pool_.size() + queued_ < pool_size_) timeout_ms = 20;  // refill backoff
      int n = ::poll(fds.data(), fds.size(), timeout_ms);
      if (n < 0 && errno != EINTR) shutdown(2);
      if (handoff_blocked_ && n > 0 && (fds[1].revents & (POLLOUT | POLLERR | POLLHUP)) != 0) {
        handoff_blocked_ = false;
      }
      if (starting) {
        check_starting();
        // A child that became ready goes to the service before any control message is answered:
        // a kStats then counts it where a kTaken right behind it finds it (on the handoff socket).
        push_ready();
      }
      if (n > 0 && (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0) drain_control();
    }
  }

 private:
  bool start(std::string& error) {
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

  // Warm children give the lowest latency when a call finds the pool stocked. When calls take
  // children about as fast as they become ready (the pool is not nearly full), a new child is
  // handed out soon anyway: skipping its warm-up makes it ready sooner and saves CPU per call
  // (measured per trivial call: Python 0.94 -> 0.68 ms, JavaScript 0.61 -> 0.35 ms of child
  // CPU). Nor is a child warmed while calls come in a steady stream (mean gap between takes under
  // warm_idle): the pool is then stocked only because admission control keeps few calls in
  // flight, the CPU is what limits the calls, and warming costs ~0.23 ms of it per Python child
  // (~20 page faults; bench/README.md, "Warm-up that knows the load"). The first children
  // (nothing taken yet) are always warm.
  bool spawn(std::string& error) {
    return spawn(error, taken_ == 0 || (queued_ + 1 >= pool_size_ && idle()));
  }

  bool idle() const { return warm_idle_.count() == 0 || mean_take_gap_ >= warm_idle_; }

  // The mean gap between takes rises at once to a longer gap (capped at twice warm_idle: one
  // pause says the pool is idle) and falls by an eighth of the difference per shorter one, so a
  // few close takes of an idle pool's callers do not make children cold, and a steady stream does
  // within about six takes.
  void note_take(Clock::time_point now) {
    const auto cap = std::chrono::duration_cast<Clock::duration>(2 * warm_idle_);
    const Clock::duration gap = std::min(cap, now - last_take_);
    last_take_ = now;
    if (gap >= mean_take_gap_) {
      mean_take_gap_ = gap;
    } else {
      mean_take_gap_ -= (mean_take_gap_ - gap) / 8;
    }
  }

  bool spawn(std::string& error, bool warm) {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
      error = std::string("socketpair: ") + std::strerror(errno);
      return false;
    }
    // What the child needs, on the stack: this object is not in the child (see the class).
    ChildConfig config;
    config.zygote_pid = zygote_pid_;
    config.devnull_fd = prepared_.devnull;
    config.seccomp_program = &prepared_.child_tail;
    config.cpu_seconds = static_cast<std::uint64_t>(std::max<long>(1, limits_.cpu.count()));
    config.address_space_bytes = prepared_.address_space;
    config.data_bytes = prepared_.data;
    config.process_name = prepared_.process_name.c_str();
    config.warm_up = warm;
    LanguageRuntime* const runtime = prepared_.runtime;
    const int channel = sv[1];
    Clock::time_point forked = Clock::now();
    pid_t pid = ::fork();
    if (pid < 0) {
      error = std::string("fork: ") + std::strerror(errno);
      ::close(sv[0]);
      ::close(sv[1]);
      return false;
    }
    if (pid == 0) run_child(*runtime, channel, config);
    ::close(sv[1]);
    PoolChild child;
    child.pid = pid;
    child.channel = sv[0];
    child.pidfd = pidfd_open_process(pid);
    child.forked = forked;
    child.warm = warm;
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

  // Keeps pool_size children forked or queued on the handoff socket. All missing children are
  // forked in one go (batch refill), outside any request's path.
  void refill() {
    auto now = Clock::now();
    if (now < next_spawn_) return;
    while (pool_.size() + queued_ < pool_size_) {
      std::string error;
      if (!spawn(error)) {
        last_setup_error_ = error;
        next_spawn_ = now + milliseconds(100);
        return;
      }
    }
  }

  // Sends every ready child to the service: [channel, pidfd] with its fork-to-ready time.
  void push_ready() {
    for (std::size_t i = 0; i < pool_.size() && !handoff_blocked_;) {
      PoolChild& child = pool_[i];
      if (!child.ready) {
        ++i;
        continue;
      }
      HandoffMessage message;
      message.pid = child.pid;
      message.fork_to_ready_ns = child.fork_to_ready_ns;
      message.warm = child.warm ? 1 : 0;
      int fds[2] = {child.channel, child.pidfd};
      if (!send_handoff(message, fds)) return;
      ::close(child.channel);
      ::close(child.pidfd);
      pool_.erase(pool_.begin() + static_cast<std::ptrdiff_t>(i));
      ++queued_;
    }
  }

  bool send_handoff(const HandoffMessage& message, const int* fds) {
    iovec iov{const_cast<HandoffMessage*>(&message), sizeof(message)};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(2 * sizeof(int))] = {};
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(2 * sizeof(int));
    std::memcpy(CMSG_DATA(cmsg), fds, 2 * sizeof(int));
    for (;;) {
      ssize_t n = ::sendmsg(handoff_, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n == static_cast<ssize_t>(sizeof(message))) return true;
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == ENOBUFS)) {
        handoff_blocked_ = true;
        return false;
      }
      shutdown(0);  // the service is gone
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
        child.fork_to_ready_ns = static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - child.forked)
                .count());
        ++ready_count_;
        fork_to_ready_ns_ += child.fork_to_ready_ns;
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
      next_spawn_ =
          Clock::now() + milliseconds(std::min(1000, 10 << std::min(consecutive_failures_, 7)));
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

  void drain_control() {
    for (;;) {
      ZygoteRequest request;
      int nfds = 0;
      if (!recv_message(control_, &request, sizeof(request), nullptr, 0, &nfds, MSG_DONTWAIT)) {
        if (errno == EAGAIN || errno == EINTR) return;
        shutdown(0);  // EOF: the service (or this sandbox) is gone
      }
      handle(request);
    }
  }

  void handle(const ZygoteRequest& request) {
    ZygoteReply reply;
    reply.op = request.op;
    switch (request.op) {
      case ZygoteOp::kTaken:
        if (queued_ > 0) --queued_;
        ++taken_;
        note_take(Clock::now());
        // Fork the replacement now, not at the next turn of the loop: a kStats right behind a
        // burst of kTaken would otherwise count an emptied pool (no child ready or starting),
        // and /readyz would report a busy evaluator as not ready until the next refresh.
        refill();
        return;  // no reply
      case ZygoteOp::kStatus:
        status(request.pid, reply);
        break;
      case ZygoteOp::kStats:
        reply.ok = 1;
        break;
      case ZygoteOp::kGetChild:
      case ZygoteOp::kHello:
        break;
    }
    fill_counts(reply);
    if (!send_message(control_, &reply, sizeof(reply), nullptr, 0)) shutdown(0);
  }

  void fill_counts(ZygoteReply& reply) const {
    reply.ready = static_cast<std::int32_t>(queued_);
    for (const auto& child : pool_) (child.ready ? reply.ready : reply.starting) += 1;
    reply.forked = forked_;
    reply.setup_failures = setup_failures_;
    reply.ready_count = ready_count_;
    reply.fork_to_ready_ns = fork_to_ready_ns_;
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
  const Prepared& prepared_;
  int control_;
  int handoff_;
  SandboxLimits limits_;
  std::size_t pool_size_;
  std::chrono::milliseconds warm_idle_;
  Clock::duration mean_take_gap_;  // between the service's takes (note_take)
  Clock::time_point last_take_{};
  std::pmr::deque<PoolChild> pool_;  // forked, not yet handed to the service
  std::size_t queued_ = 0;           // on the handoff socket, not yet taken by the service
  std::uint64_t taken_ = 0;          // children the service took
  bool handoff_blocked_ = false;
  std::pmr::deque<Reaped> reaped_;
  std::pmr::vector<pollfd> fds_;  // run()'s, kept across turns
  std::uint64_t forked_ = 0;
  std::uint64_t setup_failures_ = 0;
  std::uint64_t ready_count_ = 0;
  std::uint64_t fork_to_ready_ns_ = 0;
  int consecutive_failures_ = 0;
  Clock::time_point next_spawn_{};
  std::string last_setup_error_;
};

void reset_signals() {
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  std::signal(SIGCHLD, SIG_DFL);
  std::signal(SIGPIPE, SIG_IGN);
}

// Address-space and data budgets of a child = what the process already uses + the user budget.
void measure_memory(Prepared& prepared, const SandboxLimits& limits) {
  long page = ::sysconf(_SC_PAGESIZE);
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  unsigned long size = 0, resident = 0, shared = 0, text = 0, lib = 0, data = 0;
  if (f != nullptr) {
    if (std::fscanf(f, "%lu %lu %lu %lu %lu %lu", &size, &resident, &shared, &text, &lib, &data) !=
        6) {
      size = data = 0;
    }
    std::fclose(f);
  }
  std::uint64_t p = static_cast<std::uint64_t>(page);
  prepared.address_space =
      size * p + limits.memory_bytes + prepared.runtime->address_space_overhead();
  prepared.data = data * p + limits.memory_bytes;
}

std::uint64_t rss_bytes(pid_t pid) {
  std::FILE* f = std::fopen(fmt::format("/proc/{}/statm", pid).c_str(), "re");
  if (f == nullptr) return 0;
  unsigned long size = 0, resident = 0;
  if (std::fscanf(f, "%lu %lu", &size, &resident) != 2) resident = 0;
  std::fclose(f);
  return static_cast<std::uint64_t>(resident) * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
}

[[noreturn]] void zygote_main(const Prepared& prepared, int control, int handoff,
                              const SandboxLimits& limits, pid_t supervisor_pid) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != supervisor_pid) ::_exit(1);
  std::string name = std::string("wf-zygote-") + prepared.runtime->name();
  ::prctl(PR_SET_NAME, name.c_str());
  // Children run with an empty environment (run_child); emptied here once, so that no child
  // writes to the C library's data for it. (The supervisor's was LD_BIND_NOW=1 only, which the
  // dynamic linker read at start-up.)
  environ = nullptr;
  // Under memory pressure the kernel's OOM killer should pick a sandbox child (or this zygote,
  // which the supervisor replaces) before the service or the supervisor. Children inherit it.
  if (int fd = ::open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC); fd >= 0) {
    (void)!::write(fd, "1000", 4);
    ::close(fd);
  }
  // Over a file image (file_image.h) the zygote starts with none of the image's pages mapped, and
  // fork copies the page-table entries of what the zygote has mapped only: one child-sized call
  // here maps the pages a call touches, so children inherit those entries (no fault on a page a
  // call only reads) and not the rest of the image. Our own fixed code, before any child exists.
  if (prepared.runtime->rebase_memory()) prepared.runtime->warm_up();
  // The zygote's bookkeeping in a mapping of its own that children do not inherit (see Zygote).
  // Pages are taken as they are first written; past the buffer, the heap serves (still right,
  // only dearer). Without MADV_DONTFORK (or the mapping), on the heap and the stack as before.
  constexpr std::size_t kStateBytes = std::size_t{1} << 20;
  void* state = ::mmap(nullptr, kStateBytes, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (state != MAP_FAILED && ::madvise(state, kStateBytes, MADV_DONTFORK) != 0) {
    ::munmap(state, kStateBytes);
    state = MAP_FAILED;
  }
  if (state == MAP_FAILED) {
    Zygote zygote(prepared, control, handoff, limits, std::pmr::new_delete_resource());
    zygote.run();
  }
  // The object first, its containers' memory after it.
  constexpr std::size_t kObjectBytes =
      (sizeof(Zygote) + sizeof(std::pmr::monotonic_buffer_resource) +
       sizeof(std::pmr::unsynchronized_pool_resource) + 63) &
      ~std::size_t{63};
  char* base = static_cast<char*>(state);
  auto* buffer = new (base + sizeof(Zygote)) std::pmr::monotonic_buffer_resource(
      base + kObjectBytes, kStateBytes - kObjectBytes, std::pmr::new_delete_resource());
  auto* pools = new (base + sizeof(Zygote) + sizeof(std::pmr::monotonic_buffer_resource))
      std::pmr::unsynchronized_pool_resource(buffer);
  auto* zygote = new (base) Zygote(prepared, control, handoff, limits, pools);
  zygote->run();
}

class Supervisor {
 public:
  Supervisor(std::unique_ptr<LanguageRuntime> runtime, int service, const SandboxLimits& limits)
      : runtime_(std::move(runtime)), service_(service), limits_(limits) {}

  [[noreturn]] void run() {
    std::string error;
    if (!prepare(error)) {
      SupervisorMessage message;
      copy_text(message.text, sizeof(message.text), error);
      send_message(service_, &message, sizeof(message), nullptr, 0);
      ::_exit(1);
    }
    std::string previous;
    int fast_deaths = 0;
    for (std::uint64_t generation = 1;; ++generation) {
      int pidfd = -1;
      pid_t zygote = fork_zygote(generation, previous, pidfd);
      if (zygote < 0) {
        previous = "fork of a new zygote failed: " + std::string(std::strerror(errno));
        if (!wait_service(milliseconds(1000))) ::_exit(0);
        continue;
      }
      Clock::time_point born = Clock::now();
      int status = watch(zygote, pidfd, previous);
      ::close(pidfd);
      if (status < 0) ::_exit(0);  // the service is gone; the zygote has been killed
      previous = fmt::format("zygote {} (generation {}) {}{}", zygote, generation,
                             describe_wait_status(status), previous);
      // A zygote that keeps dying at once (e.g. its first child cannot lock down) is restarted
      // with an exponential back-off instead of in a tight loop.
      fast_deaths = Clock::now() - born < std::chrono::seconds(2) ? fast_deaths + 1 : 0;
      if (fast_deaths > 1) {
        milliseconds delay{std::min(5000, 50 << std::min(fast_deaths, 7))};
        if (!wait_service(delay)) ::_exit(0);
      }
    }
  }

 private:
  bool prepare(std::string& error) {
    runtime_->set_memory_budget(limits_.memory_bytes);
    if (!runtime_->initialize(error)) {
      error =
          std::string(runtime_->name()) + " runtime failed to initialise in the zygote: " + error;
      return false;
    }
    auto zygote_filter = build_zygote_filter(runtime_->extra_syscalls());
    if (!zygote_filter) {
      error = "cannot build the seccomp filter: " + zygote_filter.error();
      return false;
    }
    auto child_tail = build_child_tail(runtime_->extra_syscalls());
    if (!child_tail) {
      error = "cannot build the children's seccomp filter: " + child_tail.error();
      return false;
    }
    prepared_.runtime = runtime_.get();
    prepared_.zygote_filter = std::move(*zygote_filter);
    prepared_.child_tail = std::move(*child_tail);
    prepared_.process_name = std::string("wf-child-") + runtime_->name();
    prepared_.devnull = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    if (prepared_.devnull < 0) {
      error = std::string("cannot open /dev/null: ") + std::strerror(errno);
      return false;
    }
    // A runtime whose memory becomes a file image (file_image.h) runs one child-sized call first,
    // so that what the first call of every child would allocate or initialise lazily is in the
    // image rather than written again by each child.
    if (runtime_->rebase_memory()) runtime_->warm_up();
    // Every child's first large malloc would otherwise consolidate the fastbins left over from
    // initialisation, writing (copy-on-write faulting) dozens of scattered heap pages per call.
    // No fastbins from now on, and the current ones merged once, here.
    // malloc_trim also returns the free pages inside the heap: a smaller zygote is cheaper to
    // fork and each child cheaper to tear down (Python zygote RSS 14.8 -> 8.7 MiB).
    ::mallopt(M_MXFAST, 0);
    ::malloc_trim(0);
    sort_free_chunks();
    if (runtime_->rebase_memory() && !rebase(error)) return false;
    measure_memory(prepared_, limits_);
    return true;
  }

  // Moves the initialised runtime's memory into a sealed file image. Without one (say, no memfd
  // sealing) children still work, each fork copying the anonymous memory as before; a process
  // whose mapping failed half-way has lost memory and must not fork zygotes.
  bool rebase(std::string& error) {
    FileImage image;
    std::string why;
    if (rebase_onto_file_image(image, why)) return true;
    if (!image.broken) return true;
    error = std::string(runtime_->name()) +
            " runtime: cannot move its memory into a file image: " + why;
    return false;
  }

  // Forks a zygote with fresh sockets and hands the service its ends. Returns its pid.
  pid_t fork_zygote(std::uint64_t generation, const std::string& previous, int& pidfd) {
    int control[2], handoff[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, control) != 0) return -1;
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, handoff) != 0) {
      ::close(control[0]);
      ::close(control[1]);
      return -1;
    }
    pid_t self = ::getpid();
    pid_t pid = ::fork();
    if (pid == 0) {
      ::close(service_);
      ::close(control[0]);
      ::close(handoff[0]);
      zygote_main(prepared_, control[1], handoff[1], limits_, self);
    }
    ::close(control[1]);
    ::close(handoff[1]);
    if (pid < 0) {
      ::close(control[0]);
      ::close(handoff[0]);
      return -1;
    }
    pidfd = pidfd_open_process(pid);
    SupervisorMessage message;
    message.ok = 1;
    message.zygote_pid = pid;
    message.generation = generation;
    copy_text(message.text, sizeof(message.text), previous);
    int fds[3] = {control[0], handoff[0], pidfd};
    bool sent = pidfd >= 0 && send_message(service_, &message, sizeof(message), fds, 3);
    ::close(control[0]);
    ::close(handoff[0]);
    if (!sent) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      ::_exit(0);
    }
    return pid;
  }

  // Waits until the zygote ends (returns its wait status) or the service goes away (kills the
  // zygote, returns -1). Every second, checks the zygote's RSS against its cap.
  int watch(pid_t zygote, int pidfd, std::string& note) {
    note.clear();
    for (;;) {
      pollfd fds[2] = {{service_, POLLIN, 0}, {pidfd, POLLIN, 0}};
      int n = ::poll(fds, 2, 1000);
      if (n < 0 && errno != EINTR) return -1;
      if (n > 0 && (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
        ::kill(zygote, SIGKILL);
        ::waitpid(zygote, nullptr, 0);
        return -1;
      }
      if (n > 0 && (fds[1].revents & POLLIN) != 0) {
        int status = 0;
        while (::waitpid(zygote, &status, 0) < 0 && errno == EINTR) {
        }
        return status;
      }
      if (limits_.zygote_memory_bytes != 0) {
        std::uint64_t rss = rss_bytes(zygote);
        if (rss > limits_.zygote_memory_bytes) {
          note = fmt::format(" after its RSS reached {} MiB (cap {} MiB)", rss >> 20,
                             limits_.zygote_memory_bytes >> 20);
          ::kill(zygote, SIGKILL);
        }
      }
    }
  }

  // Sleeps up to `delay`; false when the service went away meanwhile.
  bool wait_service(milliseconds delay) {
    pollfd fd{service_, POLLIN, 0};
    int n = ::poll(&fd, 1, static_cast<int>(delay.count()));
    return n == 0 || (n < 0 && errno == EINTR);
  }

  std::unique_ptr<LanguageRuntime> runtime_;
  int service_;
  SandboxLimits limits_;
  Prepared prepared_;
};

}  // namespace

void run_supervisor(std::unique_ptr<LanguageRuntime> runtime, int service_socket,
                    const SandboxLimits& limits, pid_t service_pid) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != service_pid) ::_exit(1);
  std::string name = std::string("wf-super-") + runtime->name();
  ::prctl(PR_SET_NAME, name.c_str());
  // Start from a clean signal state whatever the service had set up.
  reset_signals();
  const int keep[] = {0, 1, 2, service_socket};
  close_all_fds_except(keep, 4);
  Supervisor supervisor(std::move(runtime), service_socket, limits);
  supervisor.run();
}

}  // namespace wf::evaluator::sandbox_internal
