#include "evaluator/sandbox/seccomp_filter.h"

#include <fmt/core.h>
#include <linux/audit.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "wf/sanitizer.h"

namespace wf::evaluator::sandbox_internal {
namespace {

// Allowed outright. One line per group: why the child needs it.
const std::vector<std::string> kAllowed = {
    // The call's channel (fd 3) and /dev/null on fds 0-2: the only fds that exist.
    "read",
    "write",
    "writev",  // the response in one syscall (header + result + printed text + error)
    // Heap management of the interpreters (malloc, arenas, GC); bounded by RLIMIT_AS/RLIMIT_DATA.
    "brk",
    "mmap",
    "munmap",
    "mremap",
    "madvise",
    // Ending the one call.
    "exit",
    "exit_group",
    // Own signal handling: SIGALRM interrupt (setitimer), user handlers; SIGKILL stays uncatchable.
    "rt_sigreturn",
    "rt_sigaction",
    "rt_sigprocmask",
    "setitimer",
    // Clocks (vDSO fallbacks) and sleeping, which the parent's wall-clock limit bounds.
    "clock_gettime",
    "clock_getres",
    "gettimeofday",
    "time",
    "clock_nanosleep",
    "nanosleep",
    "sched_yield",
    // A sleep (or the zygote's poll) that a stop interrupted (SIGSTOP/SIGCONT, strace, gdb) is
    // resumed by the kernel through this call; it only continues a call the filter already let
    // through, with the rest of its time.
    "restart_syscall",
    // Seeds for hash/random/os.urandom/crypto.getRandomValues.
    "getrandom",
    // glibc locks (uncontended in a single-threaded child, kept as a precaution).
    "futex",
    // The child's self-report of CPU time and peak RSS; SpiderMonkey's GC also reads it.
    "getrusage",
    // Own identity only (os.getpid, threading ids); reveals nothing that kill could use.
    "getpid",
    "gettid",
    // abort()/raise() in user code or a runtime: a crash, reported as such. The child's second
    // filter (self_signal_filter) lets these through only when they name the child itself.
    "kill",
    "tkill",
    "tgkill",
#if WF_ASAN
    // The AddressSanitizer build only (-DWF_SANITIZE=ON, for tests): before every noreturn call
    // (abort(), _exit(), a throw) ASan's runtime asks sigaltstack() whether it runs on a signal
    // stack, and without it abort() would end as SIGSYS instead of SIGABRT. It reads or sets the
    // child's own signal stack only.
    "sigaltstack",
#endif
};

// Path and fd inspection that must fail politely (Python's open/listdir raise PermissionError,
// SpiderMonkey's Date falls back to UTC when /etc/localtime is unreadable).
const std::vector<std::string> kDeniedWithEacces = {
    "open",       "openat",     "openat2",   "creat",     "stat",      "lstat",     "fstat",
    "newfstatat", "statx",      "statfs",    "fstatfs",   "access",    "faccessat", "faccessat2",
    "readlink",   "readlinkat", "getcwd",    "chdir",     "fchdir",    "getdents",  "getdents64",
    "mkdir",      "mkdirat",    "rmdir",     "unlink",    "unlinkat",  "rename",    "renameat",
    "renameat2",  "link",       "linkat",    "symlink",   "symlinkat", "chmod",     "fchmod",
    "fchmodat",   "chown",      "fchown",    "lchown",    "fchownat",  "truncate",  "ftruncate",
    "utime",      "utimes",     "utimensat", "futimesat", "mknod",     "mknodat",   "lseek",
};

// Not in a child's allow-list, but made under the zygote's filter: by the zygote's loop after it
// locked itself down (zygote.cc: Zygote), and by a child between fork and its own filter (glibc's
// fork, run_child's set-up, LanguageRuntime::after_fork). A child's filter takes each back
// (build_child_tail). A name missing here kills the zygote (SIGSYS) the first time it is made.
const std::vector<std::string> kZygoteOnly = {
    // The loop: pool sockets, forking, the children's pidfds, reaping, the service's messages.
    "poll",
    "socketpair",
    "clone",
    "close",
    "pidfd_open",
    "pidfd_send_signal",
    "wait4",
    "sendmsg",
    "recvfrom",
    "recvmsg",
    // A new child, before its own filter: glibc's fork (robust futex list), run_child (prctl:
    // death signal, name, dumpable, no_new_privs, the filter itself; parent check; rlimits; the
    // fds 0-3 by fcntl/dup2 and close_range).
    "set_robust_list",
    "prctl",
    "getppid",
    "prlimit64",
    "fcntl",
    "dup2",
    "close_range",
};

bool contains(const std::vector<std::string>& names, const std::string& name) {
  for (const auto& n : names) {
    if (n == name) return true;
  }
  return false;
}

std::string describe(int rc) {
  return std::strerror(-rc);
}

}  // namespace

const std::vector<std::string>& allowed_syscalls() {
  return kAllowed;
}

const std::vector<std::string>& zygote_syscalls() {
  return kZygoteOnly;
}

std::expected<std::vector<sock_filter>, std::string> build_seccomp_filter(
    const std::vector<std::string>& extra) {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
  if (ctx == nullptr) return std::unexpected("seccomp_init failed (is libseccomp usable here?)");
  struct Releaser {
    scmp_filter_ctx ctx;
    ~Releaser() { seccomp_release(ctx); }
  } releaser{ctx};
  int rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
  if (rc != 0) return std::unexpected("seccomp_attr_set(BADARCH): " + describe(rc));
  // A binary tree over the syscall numbers instead of a linear list. Installing it is what every
  // child pays: the kernel runs the filter once per syscall number to build its action cache, so
  // a linear filter costs O(syscalls x rules). Measured with 80 rules: 88 us -> 33 us per child.
  rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
  if (rc != 0) return std::unexpected("seccomp_attr_set(OPTIMIZE): " + describe(rc));

  auto add = [&](const std::string& name, std::uint32_t action) -> std::string {
    int nr = seccomp_syscall_resolve_name(name.c_str());
    if (nr == __NR_SCMP_ERROR) {
      return fmt::format("unknown syscall name '{}' in the sandbox allow-list", name);
    }
    if (nr < 0) return {};  // pseudo-syscall: does not exist on this architecture
    int r = seccomp_rule_add(ctx, action, nr, 0);
    if (r != 0) return fmt::format("seccomp_rule_add({}): {}", name, describe(r));
    return {};
  };
  for (const auto& name : kAllowed) {
    if (auto err = add(name, SCMP_ACT_ALLOW); !err.empty()) return std::unexpected(err);
  }
  for (const auto& name : extra) {
    bool common = false;
    for (const auto& a : kAllowed) common = common || a == name;
    if (common) continue;
    if (auto err = add(name, SCMP_ACT_ALLOW); !err.empty()) return std::unexpected(err);
  }
  for (const auto& name : kDeniedWithEacces) {
    bool extra_allows = false;
    for (const auto& e : extra) extra_allows = extra_allows || e == name;
    if (extra_allows) continue;
    if (auto err = add(name, SCMP_ACT_ERRNO(EACCES)); !err.empty()) return std::unexpected(err);
  }
  if (auto err = add("ioctl", SCMP_ACT_ERRNO(ENOTTY)); !err.empty()) return std::unexpected(err);

  int fd = memfd_create("wf-seccomp-bpf", MFD_CLOEXEC);
  if (fd < 0) return std::unexpected(fmt::format("memfd_create: {}", std::strerror(errno)));
  rc = seccomp_export_bpf(ctx, fd);
  if (rc != 0) {
    ::close(fd);
    return std::unexpected("seccomp_export_bpf: " + describe(rc));
  }
  off_t size = ::lseek(fd, 0, SEEK_END);
  if (size <= 0 || size % static_cast<off_t>(sizeof(sock_filter)) != 0) {
    ::close(fd);
    return std::unexpected("seccomp_export_bpf produced no program");
  }
  std::vector<sock_filter> program(static_cast<std::size_t>(size) / sizeof(sock_filter));
  ssize_t n = ::pread(fd, program.data(), static_cast<std::size_t>(size), 0);
  ::close(fd);
  if (n != size) return std::unexpected("could not read the exported seccomp program back");
  if (program.size() + kSelfSignalCheckLength > kMaxChildFilterLength) {
    return std::unexpected(fmt::format(
        "the seccomp program has {} instructions, more than a child takes ({}): shorten the "
        "allow-list or raise kMaxChildFilterLength",
        program.size(), kMaxChildFilterLength - kSelfSignalCheckLength));
  }
  return program;
}

std::expected<std::vector<sock_filter>, std::string> build_zygote_filter(
    const std::vector<std::string>& extra) {
  std::vector<std::string> wider = extra;
  for (const auto& name : kZygoteOnly) {
    if (!contains(wider, name)) wider.push_back(name);
  }
  return build_seccomp_filter(wider);
}

std::expected<std::vector<sock_filter>, std::string> build_child_tail(
    const std::vector<std::string>& extra) {
  constexpr std::uint32_t kNr = offsetof(seccomp_data, nr);
  // One comparison per syscall, each jumping to its action's return after the final "allow":
  // [load nr] [jeq nr_i -> ret_i]... [ret allow] [ret kill] [ret EACCES].
  constexpr std::uint32_t kActions[] = {SECCOMP_RET_KILL_PROCESS,
                                        SECCOMP_RET_ERRNO | (EACCES & SECCOMP_RET_DATA)};
  struct Check {
    std::uint32_t nr;
    std::size_t action;  // index into kActions
  };
  std::vector<Check> checks;
  for (const auto& name : kZygoteOnly) {
    if (contains(kAllowed, name) || contains(extra, name)) continue;  // the child may make it
    if (name == "ioctl") return std::unexpected("ioctl cannot be a zygote-only syscall");
    int nr = seccomp_syscall_resolve_name(name.c_str());
    if (nr == __NR_SCMP_ERROR) {
      return std::unexpected(fmt::format("unknown syscall name '{}' in the zygote's list", name));
    }
    if (nr < 0) continue;  // pseudo-syscall: does not exist on this architecture
    // What build_seccomp_filter(extra) does with it: EACCES for the file-system calls, else kill.
    checks.push_back({static_cast<std::uint32_t>(nr), contains(kDeniedWithEacces, name) ? 1u : 0u});
  }
  if (checks.size() > 200) return std::unexpected("too many zygote-only syscalls for one jump");
  std::vector<sock_filter> tail = {BPF_STMT(BPF_LD | BPF_W | BPF_ABS, kNr)};
  for (std::size_t i = 0; i < checks.size(); ++i) {
    // From the instruction after this one: the rest of the checks, the "allow", then the action.
    const auto jump = static_cast<std::uint8_t>(checks.size() - i - 1 + 1 + checks[i].action);
    tail.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, checks[i].nr, jump, 0));
  }
  tail.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  for (std::uint32_t action : kActions) tail.push_back(BPF_STMT(BPF_RET | BPF_K, action));
  return tail;
}

std::size_t compose_child_filter(const std::vector<sock_filter>& program, pid_t self,
                                 sock_filter* out, std::size_t capacity) {
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "args[0] low word comes first");
  constexpr std::uint32_t kNr = offsetof(seccomp_data, nr);
  constexpr std::uint32_t kArg0Low = offsetof(seccomp_data, args[0]);
  constexpr std::uint32_t kArg0High = kArg0Low + 4;
  const auto pid = static_cast<std::uint32_t>(self);
  // kill(pid, sig), tkill(tid, sig) and tgkill(tgid, tid, sig): the first argument must be this
  // process (a single-threaded child: its tid is its pid). kill(0 or -1, ...) reaches others.
  // "On" jumps to `program`, which follows the check; it loads what it needs itself.
  const sock_filter check[kSelfSignalCheckLength] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, kNr),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_kill, 3, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_tkill, 2, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_tgkill, 1, 0),
      BPF_STMT(BPF_JMP | BPF_JA, 6),  // on
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, kArg0Low),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, pid, 0, 3),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, kArg0High),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1),
      BPF_STMT(BPF_JMP | BPF_JA, 1),  // on
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
  };
  const std::size_t length = kSelfSignalCheckLength + program.size();
  if (program.empty() || length > capacity) return 0;
  std::memcpy(out, check, sizeof(check));
  std::memcpy(out + kSelfSignalCheckLength, program.data(), program.size() * sizeof(sock_filter));
  return length;
}

bool install_seccomp_filter(const sock_filter* filter, std::size_t length) {
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return false;
  sock_fprog prog{};
  prog.len = static_cast<unsigned short>(length);
  prog.filter = const_cast<sock_filter*>(filter);
  return ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) == 0;
}

bool install_seccomp_filter(const std::vector<sock_filter>& filter) {
  return install_seccomp_filter(filter.data(), filter.size());
}

}  // namespace wf::evaluator::sandbox_internal
