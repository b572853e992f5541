// Both sides of a supervisor's start from a fresh image: spawn_supervisor (in the service) and
// run_sandbox_supervisor_if_requested (first thing in main() of the spawned image).

#include "evaluator/sandbox/supervisor_image.h"

#include <fcntl.h>
#include <fmt/core.h>
#include <pthread.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <future>
#include <string>
#include <string_view>
#include <type_traits>

#include "evaluator/sandbox/protocol.h"
#include "evaluator/sandbox/zygote.h"

namespace wf::evaluator {
namespace sandbox_internal {
namespace {

// The limits a supervisor takes from the service, one line each, for both directions of the copy:
// `copy(config_field, limits_field)` for every field the SupervisorConfig carries.
template <typename Config, typename Limits, typename Copy>
void each_limit(Config& config, Limits& limits, Copy copy) {
  copy(config.wall_ms, limits.wall);
  copy(config.cpu_seconds, limits.cpu);
  copy(config.memory_bytes, limits.memory_bytes);
  copy(config.output_bytes, limits.output_bytes);
  copy(config.captured_output_bytes, limits.captured_output_bytes);
  copy(config.zygote_memory_bytes, limits.zygote_memory_bytes);
  copy(config.pool_size, limits.pool_size);
  copy(config.group_nice, limits.group_nice);
  copy(config.warm_idle_ms, limits.warm_idle);
}

template <typename T>
T raw_of(const T& value) {
  return value;
}
template <typename Rep, typename Period>
Rep raw_of(const std::chrono::duration<Rep, Period>& value) {
  return value.count();
}

SupervisorConfig config_of(const std::string& runtime, const SandboxLimits& limits) {
  SupervisorConfig config;
  config.service_pid = ::getpid();
  copy_text(config.runtime, sizeof(config.runtime), runtime);
  each_limit(config, limits, [](auto& to, const auto& from) {
    to = static_cast<std::remove_reference_t<decltype(to)>>(raw_of(from));
  });
  return config;
}

SandboxLimits limits_of(const SupervisorConfig& config) {
  SandboxLimits limits;
  each_limit(config, limits,
             [](const auto& from, auto& to) { to = std::remove_reference_t<decltype(to)>(from); });
  return limits;
}

// Lowers the weight of this session's scheduling group (SandboxLimits::group_nice): where the
// kernel groups by session (autogroup), the nice of a process counts only inside its group, and
// /proc/self/autogroup sets the group's own. Raising it needs no privilege. The kernel takes one
// change per 100 ms from unprivileged processes (EAGAIN otherwise; the other language's
// supervisor may have just made one), so this retries for a second. Best effort: without
// autogroup (e.g. in a container's cgroup) it changes nothing.
void set_group_nice(int nice) {
  for (int attempt = 0; attempt < 50; ++attempt) {
    const int fd = ::open("/proc/self/autogroup", O_WRONLY | O_CLOEXEC);
    if (fd < 0) return;
    const std::string text = std::to_string(nice);
    const ssize_t written = ::write(fd, text.data(), text.size());
    const int error = errno;
    ::close(fd);
    if (written >= 0 || error != EAGAIN) return;
    ::usleep(20000);
  }
}

// posix_spawn with the child's end on fd 3, default signal dispositions, an empty signal mask
// and an environment of LD_BIND_NOW only, in a session of its own. Returns the pid or -1 (errno
// set).
//
// The own session matters for scheduling: where the kernel groups processes by session
// (CONFIG_SCHED_AUTOGROUP, on by default on Debian hosts and VMs), the service and its sandboxes
// are then two groups of equal weight, so children that spin until their CPU limit use the
// sandbox group's share and the service's event loops still get the CPU when they wake (/healthz
// p99 beside 8 spinning children: 21-105 ms in one session, mostly 2-16 ms in two;
// bench/README.md). It also keeps a terminal's Ctrl-C away from the sandbox: the service shuts it
// down itself.
pid_t spawn_image(int child_end) {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attributes;
  posix_spawn_file_actions_init(&actions);
  posix_spawnattr_init(&attributes);
  // dup2 clears close-on-exec on fd 3 (child_end is >= 10, never 3 itself).
  posix_spawn_file_actions_adddup2(&actions, child_end, kSupervisorSocketFd);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attributes, &none);
  posix_spawnattr_setsigdefault(&attributes, &all);
  posix_spawnattr_setflags(&attributes,
                           POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSID);
  char name[] = "wf-sandbox-supervisor";
  char flag[64];
  copy_text(flag, sizeof(flag), kSupervisorFlag);
  char* argv[] = {name, flag, nullptr};
  // The one variable: every symbol of the image and its libraries is bound here, once, instead
  // of lazily in each sandbox child (a child's first call of a function through the PLT looked
  // the symbol up in every loaded library, mozjs included, and wrote the GOT: measured 321 ->
  // 301-306 page faults per trivial Python call). Children clear their environment.
  char bind_now[] = "LD_BIND_NOW=1";
  char* envp[] = {bind_now, nullptr};
  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, "/proc/self/exe", &actions, &attributes, argv, envp);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  if (rc != 0) {
    errno = rc;
    return -1;
  }
  return pid;
}

}  // namespace

std::expected<SpawnedSupervisor, std::string> spawn_supervisor(const std::string& runtime,
                                                               const SandboxLimits& limits) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    return std::unexpected(fmt::format("socketpair: {}", std::strerror(errno)));
  }
  int child_end = ::fcntl(sv[1], F_DUPFD_CLOEXEC, 10);
  ::close(sv[1]);
  if (child_end < 0) {
    ::close(sv[0]);
    return std::unexpected(fmt::format("fcntl(F_DUPFD): {}", std::strerror(errno)));
  }
  pid_t pid = spawn_image(child_end);
  int spawn_errno = errno;
  ::close(child_end);
  if (pid < 0) {
    ::close(sv[0]);
    return std::unexpected(
        fmt::format("posix_spawn(/proc/self/exe): {} (the sandbox re-executes this program; "
                    "/proc must be mounted and the binary must still exist)",
                    std::strerror(spawn_errno)));
  }
  SpawnedSupervisor spawned{pid, sv[0], pidfd_open_process(pid)};
  const SupervisorConfig config = config_of(runtime, limits);
  if (spawned.pidfd < 0 || !send_message(spawned.socket, &config, sizeof(config), nullptr, 0)) {
    std::string why = std::strerror(errno);
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    ::close(spawned.socket);
    if (spawned.pidfd >= 0) ::close(spawned.pidfd);
    return std::unexpected("cannot hand the supervisor its configuration: " + why);
  }
  return spawned;
}

void discard_supervisor(const SpawnedSupervisor& spawned) {
  if (spawned.pid > 0) {
    ::kill(spawned.pid, SIGKILL);
    while (::waitpid(spawned.pid, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  if (spawned.socket >= 0) ::close(spawned.socket);
  if (spawned.pidfd >= 0) ::close(spawned.pidfd);
}

SupervisorSpawner::SupervisorSpawner(std::string runtime, const SandboxLimits& limits)
    : state_(std::make_shared<State>()) {
  state_->runtime = std::move(runtime);
  state_->limits = limits;
  thread_ = std::thread([state = state_] { run(state); });
}

SupervisorSpawner::~SupervisorSpawner() {
  stop();
}

void SupervisorSpawner::spawn(std::function<void(SpawnResult)> done) {
  {
    std::lock_guard lock(state_->mutex);
    if (state_->stopping) return;
    state_->jobs.push_back(std::move(done));
  }
  state_->wake.notify_one();
}

SpawnResult SupervisorSpawner::spawn_and_wait() {
  auto promise = std::make_shared<std::promise<SpawnResult>>();
  std::future<SpawnResult> result = promise->get_future();
  spawn([promise](SpawnResult spawned) { promise->set_value(std::move(spawned)); });
  // A stopped spawner drops the job (and its promise): broken_promise.
  try {
    return result.get();
  } catch (const std::future_error&) {
    return std::unexpected("the sandbox is shutting down");
  }
}

void SupervisorSpawner::stop() {
  std::deque<std::function<void(SpawnResult)>> dropped;
  {
    std::lock_guard lock(state_->mutex);
    state_->stopping = true;
    dropped.swap(state_->jobs);
  }
  state_->wake.notify_one();
  dropped.clear();  // outside the lock: a job's captures may be anything
  if (!thread_.joinable()) return;
  if (thread_.get_id() == std::this_thread::get_id()) {
    thread_.detach();  // the last owner let go inside a job: the thread ends after it
  } else {
    thread_.join();
  }
}

void SupervisorSpawner::run(const std::shared_ptr<State>& state) {
  ::pthread_setname_np(::pthread_self(), "wf-sbx-spawn");
  std::unique_lock lock(state->mutex);
  for (;;) {
    state->wake.wait(lock, [&] { return state->stopping || !state->jobs.empty(); });
    if (state->stopping) return;
    auto done = std::move(state->jobs.front());
    state->jobs.pop_front();
    lock.unlock();
    done(spawn_supervisor(state->runtime, state->limits));
    done = nullptr;  // what it captured goes now, outside the lock
    lock.lock();
  }
}

}  // namespace sandbox_internal

std::optional<int> run_sandbox_supervisor_if_requested(int argc, char** argv,
                                                       std::span<const RuntimeEntry> runtimes) {
  using namespace sandbox_internal;
  if (argc != 2 || std::string_view(argv[1]) != kSupervisorFlag) return std::nullopt;
  // Die with the service; keep none of its descriptors that were not close-on-exec.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  const int keep[] = {0, 1, 2, kSupervisorSocketFd};
  close_all_fds_except(keep, 4);
  SupervisorConfig config;
  int nfds = 0;
  if (!recv_message(kSupervisorSocketFd, &config, sizeof(config), nullptr, 0, &nfds) ||
      config.magic != kSupervisorConfigMagic) {
    return 1;  // not started by a sandbox (or the service went away)
  }
  if (config.group_nice > 0) set_group_nice(std::min(config.group_nice, 19));
  std::unique_ptr<LanguageRuntime> runtime;
  for (const auto& entry : runtimes) {
    if (std::string_view(entry.name) == config.runtime) runtime = entry.make();
  }
  if (!runtime) {
    SupervisorMessage message;
    copy_text(message.text, sizeof(message.text),
              fmt::format("this program has no '{}' runtime to start (its main() passes the "
                          "runtimes it links to run_sandbox_supervisor_if_requested)",
                          config.runtime));
    send_message(kSupervisorSocketFd, &message, sizeof(message), nullptr, 0);
    return 1;
  }
  run_supervisor(std::move(runtime), kSupervisorSocketFd, limits_of(config), config.service_pid);
}

}  // namespace wf::evaluator
