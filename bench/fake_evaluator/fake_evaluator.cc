// wf-fake-evaluator: the fake evaluator of bench/slow_calls (--fake cpp, the default). It answers
// what the bench's asyncio fake (`serve_fake_evaluator`, --fake python) answers, byte for byte:
// - POST (any method) to a path under /slow/: the Z22 below after HOLD × U(1 - JITTER, 1 + JITTER)
//   seconds, or never when the peer closes the connection (or sends anything) while the call is
//   held: the orchestrator cancelled it because its client hung up; the connection is then closed;
// - GET /stats: {"held": <slow calls waiting now>, "answered": <slow calls answered>, "closed":
//   <slow calls whose connection the peer closed first>};
// - any other path: the Z22 at once.
// With --answer-file, the Z22 answered (at once and after a hold) is that file's content instead
// (bench/orchestrator_cpu: a real wf-evaluator's answer, its metadata included).
// HTTP/1.1 keep-alive (the connection stays open until the peer closes it), request bodies by
// Content-Length. The listening port is written to PORT_FILE (to PORT_FILE.tmp, then renamed, so
// that a reader never sees a partial number).
//
// Why not the asyncio fake: it ran on the two cores the fast call is measured on and took 15-25% of
// them (190-230 us per slow cycle, bench/README.md "What a fast call pays beside 2,000 parked
// ones"); in a deployment the evaluator holding the slow calls is elsewhere. So this one is one
// thread and one epoll loop: a connection stays registered for reading while it lives (no
// epoll_ctl per request), the held calls' deadlines are one binary heap whose earliest entry is the
// loop's wait timeout (no timer per call, no timerfd), and an answer is one send.
//
//   wf-fake-evaluator --port-file PATH [--hold 3] [--jitter 0.2] [--seed N] [--answer-file PATH]
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <queue>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::size_t kReadChunk = 16u << 10;     // a request fits in one read
constexpr std::size_t kMaxHeadBytes = 64u << 10;  // a longer head: 431, closed
constexpr std::size_t kMaxBodyBytes = 16u << 20;  // a longer body: 413, closed
constexpr int kMaxEvents = 256;

// What the asyncio fake answers (Python's json.dumps of the same dict: ", " and ": ").
constexpr std::string_view kZ22 =
    R"({"Z1K1": {"Z1K1": "Z9", "Z9K1": "Z22"}, "Z22K1": {"Z1K1": "Z6", "Z6K1": "done"}, )"
    R"("Z22K2": {"Z1K1": "Z9", "Z9K1": "Z24"}})";

std::string response(std::string_view status, std::string_view type, std::string_view body,
                     bool close) {
  std::string out;
  out.reserve(128 + body.size());
  out.append("HTTP/1.1 ").append(status).append("\r\nContent-Type: ").append(type);
  out.append("\r\nContent-Length: ").append(std::to_string(body.size()));
  if (close) out.append("\r\nConnection: close");
  out.append("\r\n\r\n").append(body);
  return out;
}

// A header's name is `name` (ASCII, any case).
bool header_is(std::string_view header, std::string_view name) {
  return header.size() == name.size() && strncasecmp(header.data(), name.data(), name.size()) == 0;
}

// A header's value without the blanks around it.
std::string_view header_value(std::string_view raw) {
  const auto from = raw.find_first_not_of(" \t");
  if (from == std::string_view::npos) return {};
  return raw.substr(from, raw.find_last_not_of(" \t") + 1 - from);
}

// A request's head as far as this fake needs it; `error` is the answer for a bad one.
struct Request {
  std::size_t head_length = 0;  // with its blank line
  std::size_t body_length = 0;
  std::string_view path;
  std::string_view error;  // "400 Bad Request", ...: answered, then the connection is closed
  std::string_view why;
};

// nullopt: the head is not complete yet.
std::optional<Request> parse_head(std::string_view in) {
  Request r;
  const auto end = in.find("\r\n\r\n");
  if (end == std::string_view::npos) {
    if (in.size() <= kMaxHeadBytes) return std::nullopt;
    r.error = "431 Request Header Fields Too Large";
    r.why = "a request head over 64 KiB";
    return r;
  }
  r.head_length = end + 4;
  std::string_view rest = in.substr(0, end + 2);
  auto eol = rest.find("\r\n");
  const std::string_view line = rest.substr(0, eol);
  const auto sp1 = line.find(' ');
  const auto sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp1 == 0 || sp2 == std::string_view::npos || sp2 == sp1 + 1 ||
      line.substr(sp2 + 1, 5) != "HTTP/") {
    r.error = "400 Bad Request";
    r.why = "not an HTTP/1.x request line (METHOD SP PATH SP HTTP/1.x)";
    return r;
  }
  r.path = line.substr(sp1 + 1, sp2 - sp1 - 1);
  for (rest.remove_prefix(eol + 2); !rest.empty(); rest.remove_prefix(eol + 2)) {
    eol = rest.find("\r\n");
    const std::string_view header = rest.substr(0, eol);
    const auto colon = header.find(':');
    if (colon == std::string_view::npos) continue;
    const std::string_view name = header.substr(0, colon);
    const std::string_view value = header_value(header.substr(colon + 1));
    if (header_is(name, "content-length")) {
      std::size_t n = 0;
      for (char c : value) {
        if (c < '0' || c > '9' || n > kMaxBodyBytes) {
          r.error = c < '0' || c > '9' ? "400 Bad Request" : "413 Content Too Large";
          r.why = c < '0' || c > '9' ? "Content-Length is not a number" : "a body over 16 MiB";
          return r;
        }
        n = n * 10 + static_cast<std::size_t>(c - '0');
      }
      if (value.empty() || n > kMaxBodyBytes) {
        r.error = value.empty() ? "400 Bad Request" : "413 Content Too Large";
        r.why = value.empty() ? "Content-Length is empty" : "a body over 16 MiB";
        return r;
      }
      r.body_length = n;
    } else if (header_is(name, "transfer-encoding")) {
      r.error = "501 Not Implemented";
      r.why = "Transfer-Encoding: send the body with a Content-Length";
      return r;
    }
  }
  return r;
}

// One accepted connection. Its socket stays registered for reading while it lives; EPOLLOUT is
// added only while an answer waits for room in the socket's buffer.
struct Conn {
  int fd = -1;
  std::uint64_t generation = 0;  // bumped when a hold ends or the connection closes
  bool held = false;             // a slow call waits on its timer
  bool closing = false;          // an error was answered: the connection ends
  bool writing = false;          // registered for EPOLLOUT
  std::string in;
  std::size_t in_len = 0;
  std::string out;  // answer bytes the socket did not take yet
};

// A held call's deadline: its connection (by fd) and that connection's generation then, so that an
// entry whose call ended earlier (the peer closed) is recognised and dropped when it comes up.
struct Deadline {
  Clock::time_point at;
  int fd;
  std::uint64_t generation;
  bool operator>(const Deadline& o) const { return at > o.at; }
};

class Server {
 public:
  Server(int listener, double hold_s, double jitter, std::uint64_t seed, std::string_view z22)
      : listener_(listener),
        epoll_(epoll_create1(EPOLL_CLOEXEC)),
        hold_s_(hold_s),
        spread_(1 - jitter, 1 + jitter),
        random_(seed),
        z22_(response("200 OK", "application/json", z22, false)) {}

  bool start() {
    if (epoll_ < 0) return false;
    return watch(listener_, EPOLL_CTL_ADD, EPOLLIN);
  }

  // Runs until the process is killed (the bench stops it with SIGTERM).
  [[noreturn]] void run() {
    epoll_event events[kMaxEvents];
    for (;;) {
      const int n = wait(events);
      for (int i = 0; i < n; ++i) {
        const int fd = events[i].data.fd;
        if (fd == listener_) {
          accept_all();
          continue;
        }
        Conn& c = *conns_[static_cast<std::size_t>(fd)];
        if ((events[i].events & EPOLLOUT) && c.fd >= 0) flush(c);
        if ((events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && c.fd >= 0) read(c);
      }
      answer_due(Clock::now());
    }
  }

 private:
  // Waits for events until the earliest held call is due (forever when none is held).
  int wait(epoll_event* events) {
    timespec ts{0, 0};
    const timespec* timeout = nullptr;
    if (!deadlines_.empty()) {
      const auto left = std::max(deadlines_.top().at - Clock::now(), Clock::duration::zero());
      const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
      ts = {static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
      timeout = &ts;
    }
    int n = epoll_pwait2(epoll_, events, kMaxEvents, timeout, nullptr);
    if (n < 0 && errno == ENOSYS) {  // kernels before 5.11: milliseconds, rounded up
      const long long ms =
          timeout ? (ts.tv_sec * 1'000'000'000ll + ts.tv_nsec + 999'999) / 1'000'000 : -1;
      n = epoll_wait(epoll_, events, kMaxEvents, static_cast<int>(ms));
    }
    return n < 0 ? 0 : n;  // EINTR: look at the deadlines and wait again
  }

  bool watch(int fd, int op, std::uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    return epoll_ctl(epoll_, op, fd, &ev) == 0;
  }

  void accept_all() {
    for (;;) {
      const int fd = accept4(listener_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE) {
          // Out of descriptors: stop listening (a level-triggered listener would spin) until a
          // connection closes.
          std::fprintf(stderr, "wf-fake-evaluator: accept: %s; raise ulimit -n\n",
                       std::strerror(errno));
          epoll_ctl(epoll_, EPOLL_CTL_DEL, listener_, nullptr);
          listening_ = false;
        }
        return;  // EAGAIN: all taken; ECONNABORTED and the like: the peer gave up
      }
      const int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      const auto slot = static_cast<std::size_t>(fd);
      if (conns_.size() <= slot) conns_.resize(slot + 1);
      if (!conns_[slot]) conns_[slot] = std::make_unique<Conn>();
      Conn& c = *conns_[slot];
      c.fd = fd;
      c.in_len = 0;
      c.out.clear();
      c.held = c.closing = c.writing = false;
      if (!watch(fd, EPOLL_CTL_ADD, EPOLLIN)) close_conn(c);
    }
  }

  void read(Conn& c) {
    if (c.in.size() < c.in_len + kReadChunk) c.in.resize(c.in_len + kReadChunk);
    const auto n = recv(c.fd, c.in.data() + c.in_len, c.in.size() - c.in_len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    if (c.held) {
      // Anything while a call is held (the end of the connection, as a rule): the orchestrator
      // gave the call up. As the asyncio fake, counted as closed and the connection closed.
      end_hold(c, false);
      return close_conn(c);
    }
    if (n <= 0) return close_conn(c);
    if (c.closing) return;  // after an error answer: read and dropped until the peer closes
    c.in_len += static_cast<std::size_t>(n);
    serve(c);
  }

  // Answers the complete requests in `in`, in order, until one is held or more bytes are needed.
  void serve(Conn& c) {
    std::size_t at = 0;
    while (c.fd >= 0 && !c.held && !c.closing) {
      const std::string_view in(c.in.data() + at, c.in_len - at);
      const auto request = parse_head(in);
      if (!request) break;
      if (!request->error.empty()) {
        send_answer(c, response(request->error, "text/plain", request->why, true));
        c.closing = true;
        break;
      }
      const std::size_t length = request->head_length + request->body_length;
      if (in.size() < length) break;
      at += length;
      if (request->path == "/stats") {
        send_answer(c, response("200 OK", "application/json", stats(), false));
      } else if (request->path.substr(0, 6) == "/slow/") {
        start_hold(c);
      } else {
        send_answer(c, z22_);
      }
    }
    if (c.fd < 0) return;
    std::memmove(c.in.data(), c.in.data() + at, c.in_len - at);
    c.in_len -= at;
    if (c.held && c.in_len > 0) {  // sent on before its answer: as the asyncio fake, closed
      end_hold(c, false);
      close_conn(c);
    } else if (c.closing) {
      c.in_len = 0;
      end_after_answer(c);
    }
  }

  // After an error answer: the write side is shut once the answer is sent, and what the peer still
  // sends is read and dropped until it closes; closing at once with its bytes unread would reset
  // the connection, which can destroy the answer before the peer reads it.
  void end_after_answer(Conn& c) {
    if (c.out.empty() && shutdown(c.fd, SHUT_WR) != 0) close_conn(c);
  }

  std::string stats() const {
    return "{\"held\": " + std::to_string(held_) + ", \"answered\": " + std::to_string(answered_) +
           ", \"closed\": " + std::to_string(closed_) + "}";
  }

  void start_hold(Conn& c) {
    c.held = true;
    ++held_;
    const std::chrono::duration<double> hold(hold_s_ * spread_(random_));
    deadlines_.push(Deadline{Clock::now() + std::chrono::duration_cast<Clock::duration>(hold), c.fd,
                             c.generation});
  }

  // A hold ends: answered (its time is up) or closed (the peer went first).
  void end_hold(Conn& c, bool answered) {
    c.held = false;
    ++c.generation;
    --held_;
    ++(answered ? answered_ : closed_);
  }

  void answer_due(Clock::time_point now) {
    while (!deadlines_.empty() && deadlines_.top().at <= now) {
      const Deadline d = deadlines_.top();
      deadlines_.pop();
      Conn& c = *conns_[static_cast<std::size_t>(d.fd)];
      if (c.fd < 0 || !c.held || c.generation != d.generation) continue;
      end_hold(c, true);
      send_answer(c, z22_);
      if (c.fd >= 0) serve(c);  // nothing is buffered (that closes a held call), but keep the rule
    }
  }

  void send_answer(Conn& c, std::string_view bytes) {
    if (!c.out.empty()) {  // an earlier answer waits for room: after it
      c.out.append(bytes);
      return;
    }
    std::size_t sent = 0;
    while (sent < bytes.size()) {
      const auto n = send(c.fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n > 0) {
        sent += static_cast<std::size_t>(n);
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        c.out.assign(bytes.substr(sent));
        c.writing = watch(c.fd, EPOLL_CTL_MOD, EPOLLIN | EPOLLOUT);
        if (!c.writing) close_conn(c);
        return;
      } else {
        return close_conn(c);
      }
    }
  }

  void flush(Conn& c) {
    std::string pending;
    pending.swap(c.out);
    if (c.writing && watch(c.fd, EPOLL_CTL_MOD, EPOLLIN)) c.writing = false;
    send_answer(c, pending);
    if (c.fd >= 0 && c.closing) end_after_answer(c);
  }

  void close_conn(Conn& c) {
    if (c.held) end_hold(c, false);
    ::close(c.fd);  // also leaves the epoll set
    c.fd = -1;
    ++c.generation;
    c.in_len = 0;
    c.out.clear();
    if (!listening_ && watch(listener_, EPOLL_CTL_ADD, EPOLLIN)) listening_ = true;
  }

  int listener_;
  int epoll_;
  bool listening_ = true;
  double hold_s_;
  std::uniform_real_distribution<double> spread_;
  std::mt19937_64 random_;
  std::vector<std::unique_ptr<Conn>> conns_;  // by fd
  std::priority_queue<Deadline, std::vector<Deadline>, std::greater<>> deadlines_;
  const std::string z22_;
  long long held_ = 0, answered_ = 0, closed_ = 0;
};

// 127.0.0.1 on a free port, with a backlog for the bench's thousands of connections.
int listen_loopback(int& port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 ||
      listen(fd, 4096) != 0 || getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    return -1;
  }
  port = ntohs(addr.sin_port);
  return fd;
}

bool write_port_file(const std::string& path, int port) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp);
    f << port;
    if (!f.flush()) return false;
  }
  return std::rename(tmp.c_str(), path.c_str()) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string port_file;
  double hold_s = 3, jitter = 0.2;
  std::uint64_t seed = std::random_device{}();
  std::string answer_file;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--port-file") {
      port_file = value;
    } else if (flag == "--hold") {
      hold_s = std::atof(value.c_str());
    } else if (flag == "--jitter") {
      jitter = std::atof(value.c_str());
    } else if (flag == "--seed") {
      seed = std::strtoull(value.c_str(), nullptr, 10);
    } else if (flag == "--answer-file") {
      answer_file = value;
    } else {
      std::fprintf(stderr, "wf-fake-evaluator: unknown flag '%s'\n", flag.c_str());
      return 2;
    }
  }
  if (port_file.empty() || !std::isfinite(hold_s) || hold_s < 0 || hold_s > 86400 ||
      !(jitter >= 0 && jitter < 1)) {
    std::fprintf(stderr,
                 "usage: wf-fake-evaluator --port-file PATH [--hold SECONDS (0..86400, default 3)] "
                 "[--jitter J (0 <= J < 1, default 0.2)] [--seed N] [--answer-file PATH]\n");
    return 2;
  }
  std::string z22(kZ22);
  if (!answer_file.empty()) {
    std::ifstream in(answer_file, std::ios::binary);
    z22.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    if (!in.good() && !in.eof()) z22.clear();
    if (z22.empty()) {
      std::fprintf(stderr, "wf-fake-evaluator: cannot read an answer from %s (missing or empty)\n",
                   answer_file.c_str());
      return 2;
    }
  }
  // One descriptor per held call: the bench keeps thousands.
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }
  int port = 0;
  const int listener = listen_loopback(port);
  if (listener < 0) {
    std::perror("wf-fake-evaluator: listen on 127.0.0.1");
    return 1;
  }
  Server server(listener, hold_s, jitter, seed, z22);
  if (!server.start()) {
    std::perror("wf-fake-evaluator: epoll");
    return 1;
  }
  if (!write_port_file(port_file, port)) {
    std::fprintf(stderr, "wf-fake-evaluator: cannot write the port to %s\n", port_file.c_str());
    return 1;
  }
  server.run();
}
