#pragma once
// The seccomp-bpf allow-list of a sandbox child. Built once in the zygote with libseccomp and
// exported as raw BPF, so that a child installs it with one prctl (about 0.1 ms).

#include <linux/filter.h>

#include <expected>
#include <string>
#include <vector>

namespace wf::evaluator::sandbox_internal {

// The syscalls every child may make (see the table in seccomp_filter.cc), plus `extra` (names,
// e.g. from LanguageRuntime::extra_syscalls()). File-system syscalls fail with EACCES, ioctl
// with ENOTTY; anything else kills the process (SIGSYS).
std::expected<std::vector<sock_filter>, std::string> build_seccomp_filter(
    const std::vector<std::string>& extra);

// In the child: sets no_new_privs and installs `filter`. Returns false (errno set) on failure.
bool install_seccomp_filter(const std::vector<sock_filter>& filter);

// The common allow-list by name (for tests and documentation).
const std::vector<std::string>& allowed_syscalls();

}  // namespace wf::evaluator::sandbox_internal
