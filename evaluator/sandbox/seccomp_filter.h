#pragma once
// The seccomp-bpf allow-list of a sandbox child. Built once in the zygote with libseccomp and
// exported as raw BPF, so that a child installs it with one prctl (about 0.1 ms).

#include <linux/filter.h>
#include <sys/types.h>

#include <array>
#include <cstddef>
#include <expected>
#include <string>
#include <vector>

namespace wf::evaluator::sandbox_internal {

// The syscalls every child may make (see the table in seccomp_filter.cc), plus `extra` (names,
// e.g. from LanguageRuntime::extra_syscalls()). File-system syscalls fail with EACCES, ioctl
// with ENOTTY; anything else kills the process (SIGSYS).
std::expected<std::vector<sock_filter>, std::string> build_seccomp_filter(
    const std::vector<std::string>& extra);

// A second, per-child filter: kill/tkill/tgkill (allowed by the main filter) only when their first
// argument is `self`; aimed at any other process they kill the child (SIGSYS). Stacked filters
// all apply and the strictest answer wins, so this one only narrows the main one.
inline constexpr std::size_t kSelfSignalFilterLength = 11;
std::array<sock_filter, kSelfSignalFilterLength> self_signal_filter(pid_t self);
bool install_seccomp_filter(const sock_filter* filter, std::size_t length);

// In the child: sets no_new_privs and installs `filter`. Returns false (errno set) on failure.
bool install_seccomp_filter(const std::vector<sock_filter>& filter);

// The common allow-list by name (for tests and documentation).
const std::vector<std::string>& allowed_syscalls();

}  // namespace wf::evaluator::sandbox_internal
