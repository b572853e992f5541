#pragma once
// Wire formats inside the sandbox (private to evaluator/sandbox):
//  * supervisor -> service: a SOCK_SEQPACKET socket; one SupervisorMessage per zygote it forks,
//    carrying the service's ends of that zygote's control and handoff sockets and its pidfd.
//  * service <-> zygote: a SOCK_SEQPACKET "control" socket, one fixed-size message each way per
//    exchange (kTaken has no reply).
//  * zygote -> service: a SOCK_SEQPACKET "handoff" socket; one HandoffMessage per ready child,
//    with two fds (its channel, its pidfd) via SCM_RIGHTS. The socket's queue is the pool.
//  * service <-> child: a SOCK_STREAM "channel" (fd 3 in the child). The child writes one ready
//    byte once it is locked down and warm, then reads one request and writes one response.
//  * service -> supervisor: one SupervisorConfig first (the supervisor is a fresh image).
// All processes are the same binary on the same machine: native byte order and layout.

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace wf::evaluator::sandbox_internal {

inline constexpr char kReadyByte = 'R';
inline constexpr std::uint32_t kRequestMagic = 0x51524657;   // "WFRQ"
inline constexpr std::uint32_t kResponseMagic = 0x53524657;  // "WFRS"
inline constexpr int kChildChannelFd = 3;

struct RequestHeader {
  std::uint32_t magic = kRequestMagic;
  std::uint32_t wall_ms = 0;  // the child arms SIGALRM (runtime interrupt) after this long
  // Random per call; echoed in the response. User code cannot read it (it lives in C++ memory
  // only), so a frame it forges on fd 3 is recognised as a protocol violation.
  std::uint64_t token = 0;
  std::uint64_t captured_limit = 0;
  std::uint64_t output_limit = 0;
  std::uint64_t code_len = 0;
  std::uint64_t name_len = 0;
  std::uint64_t args_len = 0;
  std::uint64_t converters_len = 0;  // CallInput::converters_json, after the arguments
};

enum ResponseFlag : std::uint32_t {
  kFlagOk = 1,           // CallOutput::ok
  kFlagOutOfMemory = 2,  // CallOutput::out_of_memory
  kFlagInterrupted = 4,  // the wall-clock SIGALRM fired during the call
  kFlagTooLarge = 8,     // z22 bigger than output_limit: payload dropped, size in z22_size
};

struct ResponseHeader {
  std::uint32_t magic = kResponseMagic;
  std::uint32_t flags = 0;
  std::uint64_t token = 0;
  std::uint64_t cpu_us = 0;     // getrusage(RUSAGE_SELF) after the call: user + system
  std::uint64_t maxrss_kb = 0;  // ru_maxrss
  std::uint64_t z22_size = 0;   // true size of the result, even when dropped
  std::uint64_t z22_len = 0;    // bytes that follow: z22 text, then captured output, then error
  std::uint64_t captured_len = 0;
  std::uint64_t error_len = 0;
};

enum class ZygoteOp : std::uint32_t {
  kHello = 1,     // zygote -> service once, after its first child is ready (ok or error text)
  kGetChild = 2,  // unused since children are pushed on the handoff socket
  kStatus = 3,    // wait status and rusage of an exited child (by pid)
  kStats = 4,
  kTaken = 5,  // service -> zygote, no reply: one child was taken off the handoff socket
};

struct ZygoteRequest {
  ZygoteOp op = ZygoteOp::kStats;
  std::int32_t pid = 0;
};

struct ZygoteReply {
  ZygoteOp op = ZygoteOp::kStats;
  std::int32_t ok = 0;
  std::int32_t pid = 0;
  std::int32_t exit_kind = 0;   // CLD_EXITED / CLD_KILLED / CLD_DUMPED
  std::int32_t exit_value = 0;  // exit code or signal number
  std::int32_t ready = 0;
  std::int32_t starting = 0;
  std::uint64_t cpu_us = 0;
  std::uint64_t maxrss_kb = 0;
  std::uint64_t forked = 0;
  std::uint64_t setup_failures = 0;
  std::uint64_t ready_count = 0;
  std::uint64_t fork_to_ready_ns = 0;  // sum over ready_count children
  char text[512] = {};                 // error text (kHello, kGetChild)
};

// zygote -> service on the handoff socket, with [channel fd, pidfd]: a locked-down, warm child.
struct HandoffMessage {
  std::int32_t pid = 0;
  std::uint32_t warm = 0;  // 1: warmed up before it reported ready (SandboxLimits::warm_idle)
  std::uint64_t fork_to_ready_ns = 0;
};

// supervisor -> service, with [control, handoff, zygote pidfd] when ok.
struct SupervisorMessage {
  std::int32_t ok = 0;
  std::int32_t zygote_pid = 0;
  std::uint64_t generation = 0;  // 1 for the first zygote, +1 per restart
  char text[512] = {};           // error text, or how the previous zygote ended
};

// service -> supervisor, once, first thing on its socket (fd 3 of the fresh image): everything the
// supervisor needs, so that it takes nothing from the service's memory or environment.
inline constexpr std::uint32_t kSupervisorConfigMagic = 0x43534657;  // "WFSC"
struct SupervisorConfig {
  std::uint32_t magic = kSupervisorConfigMagic;
  std::int32_t service_pid = 0;
  char runtime[64] = {};  // LanguageRuntime name, looked up in the image's RuntimeEntry table
  std::int64_t wall_ms = 0;
  std::int64_t cpu_seconds = 0;
  std::uint64_t memory_bytes = 0;
  std::uint64_t output_bytes = 0;
  std::uint64_t captured_output_bytes = 0;
  std::uint64_t zygote_memory_bytes = 0;
  std::int32_t pool_size = 0;
  std::int32_t group_nice = 0;  // SandboxLimits::group_nice
  std::int64_t warm_idle_ms = 0;
};

inline constexpr int kMaxMessageFds = 3;

// sendmsg/recvmsg of one message with up to kMaxMessageFds fds. Return false on error/EOF (errno
// set; EOF sets errno to ECONNRESET). Received fds are close-on-exec; *nfds tells how many came.
bool send_message(int socket, const void* data, std::size_t size, const int* fds, int nfds);
bool recv_message(int socket, void* data, std::size_t size, int* fds, int max_fds, int* nfds,
                  int flags = 0);

// Writes/reads exactly `size` bytes on a blocking fd, retrying on EINTR.
bool write_all(int fd, const void* data, std::size_t size);
bool read_all(int fd, void* data, std::size_t size);

// Closes every fd of this process except those in keep[0..n) (n <= 16; no allocation).
void close_all_fds_except(const int* keep, int n);

// Copies src into a fixed buffer, NUL-terminated, truncated.
void copy_text(char* dst, std::size_t dst_size, const std::string& src);

// pidfd syscalls (glibc 2.36 headers lack extern "C"; use the raw syscalls).
int pidfd_open_process(pid_t pid);
int pidfd_signal(int pidfd, int signal);
// True when the process of `pidfd` has exited (its pidfd polls readable now). An event loop's
// wake-up for a pidfd is a hint to check, not proof ("Stray wake-ups" in sandbox.cc).
bool pidfd_exited(int pidfd);

}  // namespace wf::evaluator::sandbox_internal
