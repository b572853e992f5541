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

#include <expected>
#include <string>

#include "evaluator/sandbox/sandbox.h"

namespace wf::evaluator::sandbox_internal {

inline constexpr const char* kSupervisorFlag = "--wf-sandbox-supervisor";
inline constexpr int kSupervisorSocketFd = 3;

struct SpawnedSupervisor {
  pid_t pid = -1;
  int socket = -1;  // the service's end (close-on-exec)
  int pidfd = -1;
};

// Spawns a supervisor for `runtime` and sends it its configuration. Thread-safe.
std::expected<SpawnedSupervisor, std::string> spawn_supervisor(const std::string& runtime,
                                                               const SandboxLimits& limits);

}  // namespace wf::evaluator::sandbox_internal
