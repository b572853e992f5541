#include "evaluator/sandbox/child.h"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

#include "evaluator/sandbox/protocol.h"
#include "evaluator/sandbox/seccomp_filter.h"

namespace wf::evaluator::sandbox_internal {
namespace {

LanguageRuntime* g_runtime = nullptr;
volatile std::sig_atomic_t g_interrupted = 0;

void on_alarm(int) {
  g_interrupted = 1;
  if (g_runtime != nullptr) g_runtime->request_interrupt();
}

[[noreturn]] void fail_setup(int channel, const char* step) {
  std::string message =
      std::string(1, kSetupFailedByte) + "sandbox child: " + step + ": " + std::strerror(errno);
  write_all(channel, message.data(), message.size());
  ::_exit(70);
}

bool set_limit(int resource, rlim_t soft, rlim_t hard) {
  rlimit limit{soft, hard};
  return ::setrlimit(resource, &limit) == 0;
}

// Longest prefix of `text` of at most `limit` bytes that does not end inside a UTF-8 sequence.
std::size_t utf8_prefix(const std::string& text, std::size_t limit) {
  if (text.size() <= limit) return text.size();
  std::size_t n = limit;
  while (n > 0 && (static_cast<unsigned char>(text[n]) & 0xC0) == 0x80) --n;
  return n;
}

// writev until everything is written (a large response needs several rounds).
bool write_all_vector(int fd, iovec* parts, int count) {
  while (count > 0) {
    ssize_t n = ::writev(fd, parts, count);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    std::size_t done = static_cast<std::size_t>(n);
    while (count > 0 && done >= parts->iov_len) {
      done -= parts->iov_len;
      ++parts;
      --count;
    }
    if (count > 0) {
      parts->iov_base = static_cast<char*>(parts->iov_base) + done;
      parts->iov_len -= done;
    }
  }
  return true;
}

}  // namespace

void run_child(LanguageRuntime& runtime, int channel, const ChildConfig& config) {
  // Die with the zygote; and if it already died between fork and prctl, go now.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != config.zygote_pid) ::_exit(71);
  ::prctl(PR_SET_NAME, config.process_name);
  // Not dumpable: no core, and /proc/<pid> and ptrace are closed to other same-uid processes.
  ::prctl(PR_SET_DUMPABLE, 0);

  runtime.after_fork();

  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int sig : {SIGPIPE, SIGXCPU, SIGXFSZ, SIGTERM, SIGINT, SIGHUP}) std::signal(sig, SIG_DFL);
  g_runtime = &runtime;
  struct sigaction alarm {};
  alarm.sa_handler = on_alarm;
  sigemptyset(&alarm.sa_mask);
  if (::sigaction(SIGALRM, &alarm, nullptr) != 0) fail_setup(channel, "sigaction(SIGALRM)");

  // Resource limits. RLIMIT_NPROC 0 does not bind root; seccomp blocks fork/clone anyway.
  rlim_t cpu = static_cast<rlim_t>(config.cpu_seconds);
  if (!set_limit(RLIMIT_CPU, cpu, cpu + 1)) fail_setup(channel, "setrlimit(RLIMIT_CPU)");
  if (config.address_space_bytes != 0 &&
      !set_limit(RLIMIT_AS, config.address_space_bytes, config.address_space_bytes)) {
    fail_setup(channel, "setrlimit(RLIMIT_AS)");
  }
  if (config.data_bytes != 0 && !set_limit(RLIMIT_DATA, config.data_bytes, config.data_bytes)) {
    fail_setup(channel, "setrlimit(RLIMIT_DATA)");
  }
  if (!set_limit(RLIMIT_FSIZE, 0, 0)) fail_setup(channel, "setrlimit(RLIMIT_FSIZE)");
  if (!set_limit(RLIMIT_CORE, 0, 0)) fail_setup(channel, "setrlimit(RLIMIT_CORE)");
  if (!set_limit(RLIMIT_NPROC, 0, 0)) fail_setup(channel, "setrlimit(RLIMIT_NPROC)");
  if (!set_limit(RLIMIT_MEMLOCK, 0, 0)) fail_setup(channel, "setrlimit(RLIMIT_MEMLOCK)");
  if (!set_limit(RLIMIT_MSGQUEUE, 0, 0)) fail_setup(channel, "setrlimit(RLIMIT_MSGQUEUE)");

  // fds: 0-2 on /dev/null, the channel on 3, nothing else.
  int high_channel = ::fcntl(channel, F_DUPFD_CLOEXEC, 10);
  int high_null = ::fcntl(config.devnull_fd, F_DUPFD_CLOEXEC, 10);
  if (high_channel < 0 || high_null < 0) fail_setup(channel, "fcntl(F_DUPFD)");
  for (int fd = 0; fd <= 2; ++fd) {
    if (::dup2(high_null, fd) != fd) fail_setup(high_channel, "dup2(/dev/null)");
  }
  if (::dup2(high_channel, kChildChannelFd) != kChildChannelFd) {
    fail_setup(high_channel, "dup2(channel)");
  }
  const int keep[] = {0, 1, 2, kChildChannelFd};
  close_all_fds_except(keep, 4);
  channel = kChildChannelFd;
  if (!set_limit(RLIMIT_NOFILE, 4, 4)) fail_setup(channel, "setrlimit(RLIMIT_NOFILE)");

  // An empty environment. Not clearenv(): this program binds that name to libmozjs-102's own
  // clearenv, which looks the C library's up with dlsym(RTLD_NEXT) on every call, a symbol search
  // through the hash tables of every loaded library (~300 page faults per 70 children, most of
  // the child's faults on libraries' read-only data). The zygote emptied its environment already
  // (zygote_main), so this normally writes nothing.
  if (environ != nullptr) environ = nullptr;

  sock_filter filter[kMaxChildFilterLength];
  const std::size_t length =
      compose_child_filter(*config.seccomp_program, ::getpid(), filter, kMaxChildFilterLength);
  if (length == 0) {
    errno = E2BIG;
    fail_setup(channel, "seccomp (the allow-list program is too long)");
  }
  if (!install_seccomp_filter(filter, length)) fail_setup(channel, "seccomp");

  if (config.warm_up) runtime.warm_up();

  if (!write_all(channel, &kReadyByte, 1)) ::_exit(72);

  RequestHeader request;
  if (!read_all(channel, &request, sizeof(request)) || request.magic != kRequestMagic) ::_exit(73);
  CallInput input;
  input.code.resize(request.code_len);
  input.function_name.resize(request.name_len);
  input.arguments_json.resize(request.args_len);
  input.converters_json.resize(request.converters_len);
  input.captured_output_limit = request.captured_limit;
  if (!read_all(channel, input.code.data(), input.code.size()) ||
      !read_all(channel, input.function_name.data(), input.function_name.size()) ||
      !read_all(channel, input.arguments_json.data(), input.arguments_json.size()) ||
      !read_all(channel, input.converters_json.data(), input.converters_json.size())) {
    ::_exit(74);
  }

  itimerval timer{};
  timer.it_value.tv_sec = request.wall_ms / 1000;
  timer.it_value.tv_usec = static_cast<suseconds_t>((request.wall_ms % 1000) * 1000);
  if (request.wall_ms > 0) ::setitimer(ITIMER_REAL, &timer, nullptr);

  CallOutput output;
  try {
    output = runtime.call(input);
  } catch (const std::exception& e) {
    output = CallOutput{};
    output.error_message = std::string("runtime threw: ") + e.what();
  } catch (...) {
    output = CallOutput{};
    output.error_message = "runtime threw a non-standard exception";
  }
  itimerval off{};
  ::setitimer(ITIMER_REAL, &off, nullptr);

  ResponseHeader response;
  response.token = request.token;
  if (output.ok) response.flags |= kFlagOk;
  if (output.out_of_memory) response.flags |= kFlagOutOfMemory;
  if (g_interrupted) response.flags |= kFlagInterrupted;
  response.z22_size = output.z22_json.size();
  if (output.z22_json.size() > request.output_limit) {
    response.flags |= kFlagTooLarge;
    output.z22_json.clear();
  }
  response.z22_len = output.z22_json.size();
  response.captured_len = utf8_prefix(output.captured_output, request.captured_limit);
  response.error_len = utf8_prefix(output.error_message, 4096);

  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  response.cpu_us =
      static_cast<std::uint64_t>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1000000u +
      static_cast<std::uint64_t>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
  response.maxrss_kb = static_cast<std::uint64_t>(usage.ru_maxrss);

  // One writev for the whole response (it fits the socket buffer unless it is large), then
  // _exit at once: no interpreter teardown, no atexit handlers.
  iovec parts[4] = {
      {&response, sizeof(response)},
      {output.z22_json.data(), static_cast<std::size_t>(response.z22_len)},
      {output.captured_output.data(), static_cast<std::size_t>(response.captured_len)},
      {output.error_message.data(), static_cast<std::size_t>(response.error_len)}};
  write_all_vector(channel, parts, 4);
  ::_exit(0);
}

}  // namespace wf::evaluator::sandbox_internal
