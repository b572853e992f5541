#pragma once
// A sandbox child: forked by the zygote, locks itself down, warms up, serves exactly one call
// on its channel and exits. Private to evaluator/sandbox.

#include <linux/filter.h>
#include <sys/types.h>

#include <cstdint>
#include <vector>

#include "evaluator/sandbox/runtime.h"

namespace wf::evaluator::sandbox_internal {

struct ChildConfig {
  pid_t zygote_pid = 0;
  int devnull_fd = -1;
  const std::vector<sock_filter>* seccomp_program = nullptr;
  std::uint64_t cpu_seconds = 5;
  std::uint64_t address_space_bytes = 0;  // RLIMIT_AS; 0 = leave unlimited
  std::uint64_t data_bytes = 0;           // RLIMIT_DATA; 0 = leave unlimited
  const char* process_name = "wf-child";
  // Run LanguageRuntime::warm_up() before reporting ready. A warm child answers a trivial call in
  // ~0.05 ms instead of ~0.5 ms, but warming costs ~0.25 ms more CPU in total than the cold call
  // would; the zygote skips it while the service is waiting for children (see Zygote::spawn).
  bool warm_up = true;
};

// Child bytes after the ready byte when lock-down failed: 'F', then a message, then EOF.
inline constexpr char kSetupFailedByte = 'F';

// Never returns: the process ends with _exit.
[[noreturn]] void run_child(LanguageRuntime& runtime, int channel, const ChildConfig& config);

}  // namespace wf::evaluator::sandbox_internal
