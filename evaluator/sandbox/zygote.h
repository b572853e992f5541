#pragma once
// The zygote of one language family: a single-threaded process forked from the service before
// any thread exists. It initialises the interpreter once, keeps a pool of pre-forked, locked-down,
// warmed-up children, hands them to the service over its control socket, reaps them and keeps
// their wait status and rusage for the service to ask about. Private to evaluator/sandbox.

#include <sys/types.h>

#include <memory>

#include "evaluator/sandbox/runtime.h"
#include "evaluator/sandbox/sandbox.h"

namespace wf::evaluator::sandbox_internal {

// Runs in the freshly forked zygote; never returns. Sends one kHello reply on `control` once the
// first child is ready (or with the error text when initialisation or lock-down fails).
[[noreturn]] void run_zygote(std::unique_ptr<LanguageRuntime> runtime, int control,
                             const SandboxLimits& limits, pid_t service_pid);

}  // namespace wf::evaluator::sandbox_internal
