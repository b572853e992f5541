#pragma once
// Starting a sandbox supervisor from a fresh image (private to evaluator/sandbox).
//
// The service is multi-threaded and holds secrets (its environment, argv, configuration, heap),
// so a supervisor is never forked from it: it is /proc/self/exe executed again (posix_spawn, safe
// from any thread) with an environment of LD_BIND_NOW=1 only and one argument,
// `--wf-sandbox-supervisor`. Its only input is a SupervisorConfig message on fd 3, a
// SOCK_SEQPACKET socket that then carries the usual SupervisorMessages back (protocol.h).
// Nothing of the service's memory reaches the supervisor, its zygotes or their children.

#include <sys/types.h>

#include <condition_variable>
#include <deque>
#include <expected>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "evaluator/sandbox/sandbox.h"

namespace wf::evaluator::sandbox_internal {

inline constexpr const char* kSupervisorFlag = "--wf-sandbox-supervisor";
inline constexpr int kSupervisorSocketFd = 3;

struct SpawnedSupervisor {
  pid_t pid = -1;
  int socket = -1;  // the service's end (close-on-exec)
  int pidfd = -1;
};

// Spawns a supervisor for `runtime` and sends it its configuration. Thread-safe, but blocks the
// calling thread until the new image has been exec'd (posix_spawn waits for the child's exec:
// milliseconds, tens of them on a loaded machine), and the supervisor is killed when that thread
// ends (PR_SET_PDEATHSIG follows the parent thread): call it through a SupervisorSpawner.
std::expected<SpawnedSupervisor, std::string> spawn_supervisor(const std::string& runtime,
                                                               const SandboxLimits& limits);

using SpawnResult = std::expected<SpawnedSupervisor, std::string>;

// Ends a spawned supervisor that nobody will use (SIGKILL, reap, close its descriptors).
void discard_supervisor(const SpawnedSupervisor& spawned);

// One thread that spawns a sandbox's supervisors, so that a re-spawn never blocks the service's
// event loop (with one event-loop thread, a supervisor re-spawn on the loop held every request
// for 80-120 ms), and so that every supervisor's parent thread (whose end kills it, see
// spawn_supervisor) lives exactly as long as the sandbox. The thread sleeps between spawns.
class SupervisorSpawner {
 public:
  SupervisorSpawner(std::string runtime, const SandboxLimits& limits);
  ~SupervisorSpawner();  // stop()
  SupervisorSpawner(const SupervisorSpawner&) = delete;
  SupervisorSpawner& operator=(const SupervisorSpawner&) = delete;

  // Spawns on the spawner's thread and calls `done` there with the result (which `done` then
  // owns). After stop(), or if stop() comes first, `done` is never called.
  void spawn(std::function<void(SpawnResult)> done);
  // Spawns on the spawner's thread and waits for the result (start-up, never on an event loop).
  SpawnResult spawn_and_wait();
  // Joins the thread; spawns not started are dropped. The supervisors it spawned then die
  // (PR_SET_PDEATHSIG): call it once the sandbox has ended them. Idempotent.
  void stop();

 private:
  // Shared with the thread, so that a detached thread (stop() from inside a job) outlives this.
  struct State {
    std::string runtime;
    SandboxLimits limits;
    std::mutex mutex;
    std::condition_variable wake;
    std::deque<std::function<void(SpawnResult)>> jobs;
    bool stopping = false;
  };
  static void run(const std::shared_ptr<State>& state);

  std::shared_ptr<State> state_;
  std::thread thread_;
};

}  // namespace wf::evaluator::sandbox_internal
