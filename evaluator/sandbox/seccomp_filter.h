#pragma once
// The seccomp-bpf allow-list of a sandbox child, in two stages. Installing any filter costs the
// installing process a fixed kernel price (cBPF -> eBPF, JIT image, action cache, ~25 us even
// for 13 instructions) plus a share that grows with its length: the whole allow-list (~120
// instructions) cost each child ~85 us, while a filter inherited across fork costs nothing. So:
//  - the zygote installs the allow-list once, widened by what its own loop and a child's set-up
//    before lock-down need (zygote_syscalls()): build_zygote_filter;
//  - each child installs a short filter that takes those back and checks that kill/tkill/tgkill
//    name the child itself: compose_child_filter(build_child_tail(...), pid).
// The kernel runs both and the most restrictive action wins, so a child gets exactly what the
// single filter build_seccomp_filter + compose_child_filter gives (tested instruction by
// instruction in sandbox_test). Built once in the supervisor with libseccomp, exported as BPF.

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

// The zygote's filter: build_seccomp_filter(extra) that also allows zygote_syscalls().
std::expected<std::vector<sock_filter>, std::string> build_zygote_filter(
    const std::vector<std::string>& extra);

// The child's part after the self-signal check: zygote_syscalls() that build_seccomp_filter(extra)
// does not allow get that filter's action back (kill, or EACCES for a file-system one); anything
// else is left to the zygote's filter (ALLOW). Ends with a return.
std::expected<std::vector<sock_filter>, std::string> build_child_tail(
    const std::vector<std::string>& extra);

// What the zygote's filter adds to the children's allow-list (by name), and why: see the table.
const std::vector<std::string>& zygote_syscalls();

// A child's filter, written into `out`: a check that lets kill/tkill/tgkill (allowed by
// `program`) through only when their first argument is `self` (aimed at any other process they
// kill the child, SIGSYS), then `program` for everything (build_child_tail's over the zygote's
// filter; or a whole allow-list, build_seccomp_filter's, as the reference the tests compare
// with). Returns its length, or 0 when `out` is too small. One filter, not two stacked ones:
// every filter a child installs costs it the fixed price above.
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
