#pragma once
// The process tree behind one Sandbox (private to evaluator/sandbox):
//
//   service ── supervisor ── zygote ── children (one call each)
//
// * The supervisor is a fresh image of the program (supervisor_image.h), spawned by the service
//   with an environment of LD_BIND_NOW=1 only. It initialises the language runtime once, builds
//   the seccomp program, then forks a zygote and hands the service that zygote's sockets. It stays
//   single-threaded and idle, so it can fork again at any time: when a zygote dies (a bug, the OOM
//   killer, an operator, or its memory cap), it forks a new one from its own, already initialised,
//   memory (a few ms) and hands the service its sockets. The multi-threaded service never forks.
// * The zygote keeps a pool of pre-forked, locked-down, warmed-up children. It pushes each ready
//   child to the service over the handoff socket (the socket's queue is the pool), reaps
//   children, and answers questions about their wait status on the control socket.

#include <sys/types.h>

#include <memory>

#include "evaluator/sandbox/runtime.h"
#include "evaluator/sandbox/sandbox.h"

namespace wf::evaluator::sandbox_internal {

// Runs in the freshly forked supervisor; never returns. On `service_socket` it sends one
// SupervisorMessage per zygote (ok) or one with the error text when initialisation fails.
[[noreturn]] void run_supervisor(std::unique_ptr<LanguageRuntime> runtime, int service_socket,
                                 const SandboxLimits& limits, pid_t service_pid);

}  // namespace wf::evaluator::sandbox_internal
