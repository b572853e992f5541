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

// The child's one filter, written into `out`: a check that lets kill/tkill/tgkill (allowed by
// `program`) through only when their first argument is `self` (aimed at any other process they
// kill the child, SIGSYS), then `program` (build_seccomp_filter's) for everything. Returns its
// length, or 0 when `out` is too small. One filter instead of two stacked ones: every filter a
// child installs is checked, JIT-compiled and its action cache built at install (~28 us for the
// small self-signal one) and freed again at exit.
inline constexpr std::size_t kSelfSignalCheckLength = 11;
inline constexpr std::size_t kMaxChildFilterLength = 1024;
std::size_t compose_child_filter(const std::vector<sock_filter>& program, pid_t self,
                                 sock_filter* out, std::size_t capacity);

// In the child: sets no_new_privs and installs `filter`. Returns false (errno set) on failure.
bool install_seccomp_filter(const sock_filter* filter, std::size_t length);
bool install_seccomp_filter(const std::vector<sock_filter>& filter);

// The common allow-list by name (for tests and documentation).
const std::vector<std::string>& allowed_syscalls();

}  // namespace wf::evaluator::sandbox_internal
