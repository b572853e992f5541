#include "evaluator/sandbox/protocol.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace wf::evaluator::sandbox_internal {

bool send_message(int socket, const void* data, std::size_t size, const int* fds, int nfds) {
  iovec iov{const_cast<void*>(data), size};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(kMaxMessageFds * sizeof(int))] = {};
  if (nfds > 0) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(static_cast<std::size_t>(nfds) * sizeof(int));
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(static_cast<std::size_t>(nfds) * sizeof(int));
    std::memcpy(CMSG_DATA(cmsg), fds, static_cast<std::size_t>(nfds) * sizeof(int));
  }
  for (;;) {
    ssize_t n = ::sendmsg(socket, &msg, MSG_NOSIGNAL);
    if (n >= 0) return static_cast<std::size_t>(n) == size;
    if (errno != EINTR) return false;
  }
}

bool recv_message(int socket, void* data, std::size_t size, int* fds, int max_fds, int* nfds,
                  int flags) {
  *nfds = 0;
  iovec iov{data, size};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(kMaxMessageFds * sizeof(int))] = {};
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = ::recvmsg(socket, &msg, MSG_CMSG_CLOEXEC | flags);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) {
    if (n == 0) errno = ECONNRESET;
    return false;
  }
  for (cmsghdr* cmsg = CMSG_FIRSTHDR(&msg); cmsg != nullptr; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
    if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) continue;
    int count = static_cast<int>((cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int));
    int received[kMaxMessageFds];
    std::memcpy(received, CMSG_DATA(cmsg),
                static_cast<std::size_t>(std::min(count, kMaxMessageFds)) * sizeof(int));
    for (int i = 0; i < count && i < kMaxMessageFds; ++i) {
      if (*nfds < max_fds) {
        fds[(*nfds)++] = received[i];
      } else {
        ::close(received[i]);
      }
    }
  }
  if (static_cast<std::size_t>(n) != size || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0) {
    for (int i = 0; i < *nfds; ++i) ::close(fds[i]);
    *nfds = 0;
    errno = EPROTO;
    return false;
  }
  return true;
}

bool write_all(int fd, const void* data, std::size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

bool read_all(int fd, void* data, std::size_t size) {
  char* p = static_cast<char*>(data);
  while (size > 0) {
    ssize_t n = ::read(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (n == 0) {
      errno = ECONNRESET;
      return false;
    }
    p += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

void close_all_fds_except(const int* keep, int n) {
  // On the stack: a sandbox child calls this right after fork, where a malloc is a copy-on-write
  // fault on a page of the zygote's heap.
  constexpr int kMostKept = 16;
  unsigned sorted[kMostKept];
  int count = 0;
  for (int i = 0; i < n && count < kMostKept; ++i) {
    if (keep[i] >= 0) sorted[count++] = static_cast<unsigned>(keep[i]);
  }
  std::sort(sorted, sorted + count);
  unsigned next = 0;
  for (int i = 0; i < count; ++i) {
    const unsigned fd = sorted[i];
    if (fd > next) ::syscall(SYS_close_range, next, fd - 1, 0u);
    next = std::max(next, fd + 1);
  }
  ::syscall(SYS_close_range, next, ~0u, 0u);
}

void copy_text(char* dst, std::size_t dst_size, const std::string& src) {
  std::size_t n = std::min(src.size(), dst_size - 1);
  std::memcpy(dst, src.data(), n);
  dst[n] = '\0';
}

int pidfd_open_process(pid_t pid) {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0u));
}

int pidfd_signal(int pidfd, int signal) {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, signal, nullptr, 0u));
}

bool pidfd_exited(int pidfd) {
  pollfd p{pidfd, POLLIN, 0};
  int n;
  do {
    n = ::poll(&p, 1, 0);
  } while (n < 0 && errno == EINTR);
  return n == 1 && (p.revents & POLLIN) != 0;
}

}  // namespace wf::evaluator::sandbox_internal
