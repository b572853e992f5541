// wf-loadgen: an open- or closed-loop HTTP load generator for bench/overload. Each stream sends one
// request body to one URL, as one user (X-Wikifunctions-User), over at most CONNECTIONS connections
// (like a client's or a proxy's connection pool):
// - open loop: RATE requests per second are due whatever the answers (offered load does not fall
//   when the service slows down); a due request that finds every connection busy waits in the
//   generator's backlog and is sent when one frees, its latency counted from when it was due
//   (no coordinated omission). --arrivals poisson (the default): each stream's requests are due
//   at exponentially distributed intervals (a Poisson process, what many independent callers
//   make); uniform: every 1/RATE s from a random phase; aligned: every 1/RATE s from the start,
//   so that N streams of one rate send their requests in bursts of N at once (the generator
//   before session 9 did this by accident);
// - closed loop: CONNECTIONS requests in flight, the next sent when one is answered.
// Prints one JSON line per stream, every request accounted for: offered (due), sent, answered
// (ok 2xx, refused 429/503, other: any other status or a transport error), and unanswered (sent or
// due but not answered when the run ended: a failure, not a success); latency percentiles (ms) of
// accepted and refused requests from when they were sent (the service's time), and of accepted
// requests from when they were due (the caller's time); refusals by the limit their body names
// ("limit": {"name": ...}); the generator's own CPU seconds. With several streams, a last line
// (stream "*") gives the percentiles of all streams' requests together.
//
// Its cost is part of what it measures (it shares the cores with the services), so it is one thread
// and one epoll loop for all streams, with an HTTP/1.1 client of its own: each stream's request is
// written once at start (head and body, one send per request), each connection stays registered for
// reading while it lives (no epoll_ctl per request), due times are the loop's wait timeout (no
// timer, no thread that sleeps per stream), and an answer is read into the connection's buffer and
// looked at for its status, its length and a refusal's limit name only. Per request: one send, one
// recv and a share of one epoll_pwait2 (bench/README.md, "A load generator that does not eat the
// CPU it measures", session 15).
//
//   wf-loadgen --url URL --body FILE --seconds S [--arrivals poisson|uniform|aligned] [--seed N]
//              --stream NAME:USER:open:RATE[:CONNECTIONS] | --stream NAME:USER:closed:CONNECTIONS
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
constexpr int kDefaultOpenConnections = 32;
constexpr std::size_t kMaxBacklog = 1 << 20;  // due requests waiting for a connection, at most
constexpr auto kRequestTimeout = std::chrono::seconds(30);  // then the request counts as "other"
constexpr std::size_t kMaxResponseBytes = 16u << 20;        // more: "other", connection closed
constexpr std::size_t kReadChunk = 16u << 10;               // an answer fits in one read

struct Stream;

// One connection of a stream. While it lives its socket stays registered with the loop for
// reading (an idle one whose peer closes it is seen at once and closed).
struct Conn {
  Stream* stream = nullptr;
  int fd = -1;
  enum class State { kClosed, kConnecting, kIdle, kWriting, kReading } state = State::kClosed;
  bool reused = false;     // the request in flight went on a connection that was idle
  bool unwritten = false;  // answered before the request was written whole: closed after it
  int attempts = 0;        // of the request in flight (a stale idle connection: one retry)
  std::size_t written = 0;
  Clock::time_point due, sent;
  std::string in;  // the answer so far
  std::size_t in_len = 0;
};

struct Stream {
  std::string name, user, mode;
  double rate = 0;      // open loop: requests per second
  int connections = 0;  // requests in flight at most
  std::vector<double> ok_ms, refused_ms, ok_due_ms;
  std::map<std::string, long long> refused_by;  // the limit each refusal names
  std::deque<Clock::time_point> backlog;        // open loop: due, not sent yet
  long long offered = 0, sent = 0, other = 0, dropped = 0;
  int in_flight = 0;
  // The loop's state: the request's bytes, the connections, the next due time (open loop).
  std::string request;
  std::vector<std::unique_ptr<Conn>> conns;
  std::vector<Conn*> idle;
  std::mt19937_64 random;
  double at_s = 0;  // the next request's due time, in seconds from the start
  Clock::time_point next_due = Clock::time_point::max();
};

enum class Arrivals { kPoisson, kUniform, kAligned };

double ms_since(Clock::time_point t, Clock::time_point now) {
  return std::chrono::duration<double, std::milli>(now - t).count();
}

// The limit a refusal's JSON body names ({"limit": {"name": "queue_timeout", ...}}), or its
// status when it names none (the event loop's 503 has no "limit").
std::string refusal_name(unsigned status, std::string_view body) {
  const auto limit = body.find("\"limit\"");
  const auto name = limit == std::string_view::npos ? limit : body.find("\"name\":\"", limit);
  if (name != std::string_view::npos) {
    const auto from = name + 8;
    const auto to = body.find('"', from);
    if (to != std::string_view::npos) return std::string(body.substr(from, to - from));
  }
  return std::to_string(status);
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t' || v.back() == '\r'))
    v.remove_suffix(1);
  return v;
}

// An answer's head: the status, how its body ends, whether the connection stays open.
struct Head {
  std::size_t length = 0;  // of the head, with its blank line
  unsigned status = 0;
  long long content_length = -1;
  bool chunked = false;
  bool close = false;
};

// nullopt: the head is not complete yet; a Head with status 0: not an HTTP/1.x answer.
std::optional<Head> parse_head(std::string_view in) {
  const auto end = in.find("\r\n\r\n");
  if (end == std::string_view::npos) return std::nullopt;
  Head h;
  h.length = end + 4;
  std::string_view rest = in.substr(0, end + 2);
  auto line_end = rest.find("\r\n");
  const std::string_view status_line = rest.substr(0, line_end);
  rest.remove_prefix(line_end + 2);
  if (status_line.size() < 12 || status_line.substr(0, 7) != "HTTP/1." || status_line[8] != ' ')
    return h;
  unsigned status = 0;
  for (char c : status_line.substr(9, 3)) {
    if (c < '0' || c > '9') return h;
    status = status * 10 + static_cast<unsigned>(c - '0');
  }
  h.close = status_line[7] == '0';  // HTTP/1.0: closed unless it says keep-alive
  for (; !rest.empty(); rest.remove_prefix(line_end + 2)) {
    line_end = rest.find("\r\n");
    const std::string_view line = rest.substr(0, line_end);
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    const std::string_view name = line.substr(0, colon), value = trim(line.substr(colon + 1));
    if (iequals(name, "content-length")) {
      long long n = 0;
      for (char c : value) {
        if (c < '0' || c > '9' || n > (1ll << 40)) return Head{h.length};
        n = n * 10 + (c - '0');
      }
      h.content_length = value.empty() ? -1 : n;
    } else if (iequals(name, "transfer-encoding")) {
      h.chunked = value.size() >= 7 && iequals(value.substr(value.size() - 7), "chunked");
    } else if (iequals(name, "connection")) {
      if (iequals(value, "close")) h.close = true;
      if (iequals(value, "keep-alive")) h.close = false;
    }
  }
  h.status = status;
  return h;
}

// A chunked body: its length on the wire once it is complete (-1: not yet, -2: malformed), and its
// data appended to `data` when it is given.
long long chunked_length(std::string_view in, std::string* data) {
  std::size_t at = 0;
  for (;;) {
    const auto eol = in.find("\r\n", at);
    if (eol == std::string_view::npos) return -1;
    std::size_t size = 0, digits = 0;
    for (std::size_t i = at; i < eol && in[i] != ';'; ++i, ++digits) {
      const char c = static_cast<char>(std::tolower(static_cast<unsigned char>(in[i])));
      const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
      if (d < 0 || size > kMaxResponseBytes) return -2;
      size = size * 16 + static_cast<std::size_t>(d);
    }
    if (digits == 0) return -2;
    at = eol + 2;
    if (size == 0) {  // trailers, then a blank line
      const auto blank = in.find("\r\n", at);
      if (blank == std::string_view::npos) return -1;
      if (blank == at) return static_cast<long long>(at + 2);
      const auto end = in.find("\r\n\r\n", at);
      return end == std::string_view::npos ? -1 : static_cast<long long>(end + 4);
    }
    if (in.size() < at + size + 2) return -1;
    if (in.substr(at + size, 2) != "\r\n") return -2;
    if (data) data->append(in.substr(at, size));
    at += size + 2;
  }
}

// The event loop of all streams: one thread, one epoll instance.
class Loop {
 public:
  Loop(sockaddr_storage peer, socklen_t peer_len, Clock::time_point end)
      : peer_(peer), peer_len_(peer_len), end_(end), epoll_(epoll_create1(EPOLL_CLOEXEC)) {}

  bool ok() const { return epoll_ >= 0; }

  // Sends a request that is counted in s.sent and s.in_flight already, on an idle connection or
  // a new one.
  void start(Stream& s, Clock::time_point due) {
    Conn* c = nullptr;
    if (!s.idle.empty()) {
      c = s.idle.back();
      s.idle.pop_back();
      c->reused = true;
    } else {
      c = new_conn(s);
      c->reused = false;
    }
    c->due = due;
    c->sent = Clock::now();
    c->attempts = 1;
    c->unwritten = false;
    if (c->state == Conn::State::kIdle) return write(*c);
    connect(*c);
  }

  // A due request of an open-loop stream: sent at once on a free connection, else queued.
  void arrive(Stream& s, Clock::time_point due) {
    ++s.offered;
    if (s.in_flight < s.connections) {
      ++s.in_flight;
      ++s.sent;
      start(s, due);
    } else if (s.backlog.size() < kMaxBacklog) {
      s.backlog.push_back(due);
    } else {
      ++s.dropped;
    }
  }

  // Waits until `until` at most, then handles what is ready.
  void poll(Clock::time_point until) {
    const auto wait = std::max(until - Clock::now(), Clock::duration::zero());
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(wait).count();
    const timespec ts{static_cast<time_t>(ns / 1'000'000'000),
                      static_cast<long>(ns % 1'000'000'000)};
    const timespec now_ts{0, 0};
    epoll_event events[256];
    int n = epoll_pwait2(epoll_, events, 256, failed_.empty() ? &ts : &now_ts, nullptr);
    if (n < 0 && errno == ENOSYS) {  // kernels before 5.11: milliseconds, rounded up
      n = epoll_wait(epoll_, events, 256,
                     failed_.empty() ? static_cast<int>((ns + 999'999) / 1'000'000) : 0);
    }
    for (int i = 0; i < n; ++i) {
      Conn& c = *static_cast<Conn*>(events[i].data.ptr);
      const auto ev = events[i].events;
      switch (c.state) {
        case Conn::State::kConnecting:
          connected(c);
          break;
        case Conn::State::kWriting:
          if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
            write(c);
          } else if (watch(c, EPOLL_CTL_MOD, EPOLLIN)) {  // an answer before the whole request
            c.unwritten = true;
            c.state = Conn::State::kReading;
            c.in_len = 0;
            read(c);
          } else {
            fail(c);
          }
          break;
        case Conn::State::kReading:
          read(c);
          break;
        case Conn::State::kIdle:  // closed by the peer (or it sent what nobody asked for)
          close_conn(c);
          break;
        case Conn::State::kClosed:
          break;
      }
    }
    const auto now = Clock::now();
    if (now >= next_timeout_check_) {
      next_timeout_check_ = now + std::chrono::milliseconds(100);
      expire(now);
    }
    // The streams of the requests that failed since the last time: their next requests (one round
    // per wait, so that a peer that refuses every connection does not recurse or spin here).
    std::vector<Stream*> failed;
    failed.swap(failed_);
    for (Stream* s : failed) next(*s, now);
  }

 private:
  Conn* new_conn(Stream& s) {
    for (auto& c : s.conns) {
      if (c->state == Conn::State::kClosed) return c.get();
    }
    s.conns.push_back(std::make_unique<Conn>());
    s.conns.back()->stream = &s;
    return s.conns.back().get();
  }

  void connect(Conn& c) {
    c.fd = socket(peer_.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c.fd < 0) return fail(c);
    const int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c.state = Conn::State::kConnecting;
    c.in_len = 0;
    if (::connect(c.fd, reinterpret_cast<const sockaddr*>(&peer_), peer_len_) == 0) {
      if (!watch(c, EPOLL_CTL_ADD, EPOLLIN)) return fail(c);
      return write(c);
    }
    if (errno != EINPROGRESS || !watch(c, EPOLL_CTL_ADD, EPOLLOUT)) return fail(c);
  }

  void connected(Conn& c) {
    int error = 0;
    socklen_t len = sizeof error;
    if (getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &error, &len) != 0 || error != 0) return fail(c);
    if (!watch(c, EPOLL_CTL_MOD, EPOLLIN)) return fail(c);
    write(c);
  }

  bool watch(Conn& c, int op, std::uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.ptr = &c;
    return epoll_ctl(epoll_, op, c.fd, &ev) == 0;
  }

  // Writes the stream's request (from `written` on when a write was partial).
  void write(Conn& c) {
    const std::string& r = c.stream->request;
    if (c.state != Conn::State::kWriting) c.written = 0;
    while (c.written < r.size()) {
      const auto n = send(c.fd, r.data() + c.written, r.size() - c.written, MSG_NOSIGNAL);
      if (n > 0) {
        c.written += static_cast<std::size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (c.state != Conn::State::kWriting && !watch(c, EPOLL_CTL_MOD, EPOLLIN | EPOLLOUT)) {
          return fail(c);
        }
        c.state = Conn::State::kWriting;
        return;
      }
      return stale_or_fail(c);
    }
    if (c.state == Conn::State::kWriting && !watch(c, EPOLL_CTL_MOD, EPOLLIN)) return fail(c);
    c.state = Conn::State::kReading;
    c.in_len = 0;
  }

  void read(Conn& c) {
    if (c.in.size() < c.in_len + kReadChunk) c.in.resize(c.in_len + kReadChunk);
    const auto n = recv(c.fd, c.in.data() + c.in_len, c.in.size() - c.in_len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    if (n <= 0) {
      // The end of the connection: the end of an answer that runs until it, or a failure.
      if (n == 0 && c.in_len > 0) {
        const std::string_view in(c.in.data(), c.in_len);
        const auto head = parse_head(in);
        if (head && head->status != 0 && !head->chunked && head->content_length < 0) {
          return answered(c, *head, in.substr(head->length), true);
        }
      }
      return c.in_len == 0 ? stale_or_fail(c) : fail(c);
    }
    c.in_len += static_cast<std::size_t>(n);
    if (c.in_len > kMaxResponseBytes) return fail(c);
    const std::string_view in(c.in.data(), c.in_len);
    const auto head = parse_head(in);
    if (!head) return;
    if (head->status == 0) return fail(c);
    const std::string_view body = in.substr(head->length);
    if (head->chunked) {
      const long long len = chunked_length(body, nullptr);
      if (len == -2) return fail(c);
      if (len == -1) return;
      std::string data;
      if (head->status == 429 || head->status == 503) chunked_length(body, &data);
      return answered(c, *head, data, head->close || body.size() > static_cast<std::size_t>(len));
    }
    if (head->content_length < 0) return;  // until the peer closes
    if (body.size() < static_cast<std::size_t>(head->content_length)) return;
    answered(c, *head, body.substr(0, static_cast<std::size_t>(head->content_length)),
             head->close || body.size() > static_cast<std::size_t>(head->content_length));
  }

  // One answer: counted, then the connection is given its next request (closed loop: a new one
  // while the run lasts; open loop: the oldest due request of the backlog), or kept idle.
  void answered(Conn& c, const Head& head, std::string_view body, bool close) {
    Stream& s = *c.stream;
    const auto now = Clock::now();
    if (head.status >= 200 && head.status < 300) {
      s.ok_ms.push_back(ms_since(c.sent, now));
      s.ok_due_ms.push_back(ms_since(c.due, now));
    } else if (head.status == 429 || head.status == 503) {
      s.refused_ms.push_back(ms_since(c.sent, now));
      ++s.refused_by[refusal_name(head.status, body)];
    } else {
      ++s.other;
    }
    c.in_len = 0;
    if (close || c.unwritten) {
      close_conn(c);
    } else {
      c.state = Conn::State::kIdle;
      s.idle.push_back(&c);
    }
    next(s, now);
  }

  // A request ended: the stream's next one, or one fewer in flight.
  void next(Stream& s, Clock::time_point now) {
    if (s.mode == "closed" && now < end_) {
      ++s.sent;
      return start(s, now);
    }
    if (s.mode != "closed" && !s.backlog.empty() && now < end_) {
      const auto due = s.backlog.front();
      s.backlog.pop_front();
      ++s.sent;
      return start(s, due);
    }
    --s.in_flight;
  }

  // A pooled connection the peer closed while idle fails at once, before any answer: the request
  // goes again on a fresh one (once).
  void stale_or_fail(Conn& c) {
    if (!c.reused || c.attempts >= 2) return fail(c);
    close_conn(c);
    c.reused = false;
    c.attempts = 2;
    connect(c);
  }

  // The request failed (connect, transport, protocol, too large, timeout): "other"; the stream's
  // next request starts after this round of events.
  void fail(Conn& c) {
    close_conn(c);
    ++c.stream->other;
    failed_.push_back(c.stream);
  }

  void close_conn(Conn& c) {
    if (c.state == Conn::State::kIdle) {  // taken from the idle list already if a request is on it
      auto& idle = c.stream->idle;
      const auto it = std::find(idle.begin(), idle.end(), &c);
      if (it != idle.end()) idle.erase(it);
    }
    if (c.fd >= 0) ::close(c.fd);  // also leaves the epoll set
    c.fd = -1;
    c.state = Conn::State::kClosed;
    c.in_len = 0;
  }

  // Requests sent more than kRequestTimeout ago fail.
  void expire(Clock::time_point now) {
    for (Stream* s : streams_) {
      for (auto& conn : s->conns) {
        Conn& c = *conn;
        const bool busy = c.state == Conn::State::kConnecting || c.state == Conn::State::kWriting ||
                          c.state == Conn::State::kReading;
        if (busy && now - c.sent > kRequestTimeout) fail(c);
      }
    }
  }

 public:
  std::vector<Stream*> streams_;

 private:
  sockaddr_storage peer_;
  socklen_t peer_len_;
  Clock::time_point end_;
  int epoll_;
  Clock::time_point next_timeout_check_{};
  std::vector<Stream*> failed_;  // one entry per failed request, its stream's next to start
};

// http://host[:port]/path: the peer's address (resolved once) and the request's target and Host.
bool parse_url(const std::string& url, sockaddr_storage& peer, socklen_t& len, std::string& host,
               std::string& target) {
  const std::string_view scheme = "http://";
  if (url.compare(0, scheme.size(), scheme) != 0) return false;
  const auto slash = url.find('/', scheme.size());
  host = url.substr(scheme.size(),
                    slash == std::string::npos ? std::string::npos : slash - scheme.size());
  target = slash == std::string::npos ? "/" : url.substr(slash);
  std::string name = host, port = "80";
  const auto bracket = host.rfind(']');
  const auto colon = host.rfind(':');
  if (colon != std::string::npos && (bracket == std::string::npos || colon > bracket)) {
    name = host.substr(0, colon);
    port = host.substr(colon + 1);
  }
  if (name.size() > 2 && name.front() == '[' && name.back() == ']') {
    name = name.substr(1, name.size() - 2);
  }
  if (name.empty()) return false;
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(name.c_str(), port.c_str(), &hints, &found) != 0 || found == nullptr)
    return false;
  std::memcpy(&peer, found->ai_addr, found->ai_addrlen);
  len = found->ai_addrlen;
  freeaddrinfo(found);
  return true;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto i = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1));
  return v[i];
}

std::string report(const Stream& s, double seconds, double cpu_s) {
  const auto answered = static_cast<long long>(s.ok_ms.size() + s.refused_ms.size()) + s.other;
  std::ostringstream o;
  o << "{\"stream\":\"" << s.name << "\",\"mode\":\"" << s.mode
    << "\",\"connections\":" << s.connections << ",\"offered\":" << s.offered
    << ",\"sent\":" << s.sent << ",\"ok\":" << s.ok_ms.size()
    << ",\"refused\":" << s.refused_ms.size() << ",\"other\":" << s.other
    << ",\"unanswered\":" << s.offered - answered << ",\"dropped\":" << s.dropped
    << ",\"ok_per_s\":" << static_cast<double>(s.ok_ms.size()) / seconds
    << ",\"ok_p50_ms\":" << percentile(s.ok_ms, 0.50)
    << ",\"ok_p99_ms\":" << percentile(s.ok_ms, 0.99)
    << ",\"ok_due_p50_ms\":" << percentile(s.ok_due_ms, 0.50)
    << ",\"ok_due_p99_ms\":" << percentile(s.ok_due_ms, 0.99)
    << ",\"refused_p50_ms\":" << percentile(s.refused_ms, 0.50)
    << ",\"refused_p99_ms\":" << percentile(s.refused_ms, 0.99) << ",\"refused_by\":{";
  const char* comma = "";
  for (const auto& [name, count] : s.refused_by) {
    o << comma << "\"" << name << "\":" << count;
    comma = ",";
  }
  o << "},\"generator_cpu_s\":" << cpu_s << "}";
  return o.str();
}

// All streams' requests together (stream "*"): their sums, and percentiles over all of them.
void pool(const std::vector<std::unique_ptr<Stream>>& streams, Stream& all) {
  all.name = "*";
  all.mode = "all";
  for (const auto& s : streams) {
    all.connections += s->connections;
    all.offered += s->offered;
    all.sent += s->sent;
    all.other += s->other;
    all.dropped += s->dropped;
    all.ok_ms.insert(all.ok_ms.end(), s->ok_ms.begin(), s->ok_ms.end());
    all.ok_due_ms.insert(all.ok_due_ms.end(), s->ok_due_ms.begin(), s->ok_due_ms.end());
    all.refused_ms.insert(all.refused_ms.end(), s->refused_ms.begin(), s->refused_ms.end());
    for (const auto& [name, count] : s->refused_by) all.refused_by[name] += count;
  }
}

double process_cpu_s() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

bool parse_stream(const std::string& spec, Stream& s) {
  std::vector<std::string> parts;
  std::stringstream in(spec);
  for (std::string p; std::getline(in, p, ':');) parts.push_back(p);
  if (parts.size() < 4 || parts.size() > 5) return false;
  s.name = parts[0];
  s.user = parts[1];
  s.mode = parts[2];
  const double value = std::atof(parts[3].c_str());
  if (s.mode == "open" && value > 0) {
    s.rate = value;
    s.connections = parts.size() == 5 ? std::atoi(parts[4].c_str()) : kDefaultOpenConnections;
  } else if (s.mode == "closed" && parts.size() == 4 && value >= 1) {
    s.connections = static_cast<int>(value);
  } else {
    return false;
  }
  return s.connections >= 1 && s.connections <= 4096;
}

}  // namespace

int main(int argc, char** argv) {
  std::string url, body_file;
  double seconds = 5;
  Arrivals arrivals = Arrivals::kPoisson;
  unsigned seed = static_cast<unsigned>(std::random_device{}());
  std::vector<std::unique_ptr<Stream>> streams;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--url") {
      url = value;
    } else if (flag == "--body") {
      body_file = value;
    } else if (flag == "--seconds") {
      seconds = std::atof(value.c_str());
    } else if (flag == "--seed") {
      seed = static_cast<unsigned>(std::strtoul(value.c_str(), nullptr, 10));
    } else if (flag == "--arrivals") {
      if (value == "poisson") {
        arrivals = Arrivals::kPoisson;
      } else if (value == "uniform") {
        arrivals = Arrivals::kUniform;
      } else if (value == "aligned") {
        arrivals = Arrivals::kAligned;
      } else {
        std::fprintf(stderr, "bad --arrivals '%s': poisson, uniform or aligned\n", value.c_str());
        return 2;
      }
    } else if (flag == "--stream") {
      auto s = std::make_unique<Stream>();
      if (!parse_stream(value, *s)) {
        std::fprintf(
            stderr,
            "bad --stream '%s': NAME:USER:open:RATE[:CONNECTIONS] or NAME:USER:closed:CONNECTIONS "
            "(connections 1..4096)\n",
            value.c_str());
        return 2;
      }
      streams.push_back(std::move(s));
    }
  }
  std::ifstream f(body_file);
  std::stringstream body;
  body << f.rdbuf();
  if (url.empty() || body.str().empty() || streams.empty() || !(seconds > 0) || seconds > 120) {
    std::fprintf(stderr,
                 "usage: wf-loadgen --url URL --body FILE --seconds S (<= 120) "
                 "[--arrivals poisson|uniform|aligned] [--seed N] --stream ...\n");
    return 2;
  }
  sockaddr_storage peer{};
  socklen_t peer_len = 0;
  std::string host, target;
  if (!parse_url(url, peer, peer_len, host, target)) {
    std::fprintf(stderr, "bad --url '%s': http://HOST[:PORT]/PATH, HOST resolvable\n", url.c_str());
    return 2;
  }
  const auto end = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                      std::chrono::duration<double>(seconds));
  Loop loop(peer, peer_len, end);
  if (!loop.ok()) {
    std::perror("epoll_create1");
    return 1;
  }
  const std::string payload = body.str();
  const auto start = Clock::now();
  // The due time of a stream's next request (none when it falls at or after the end).
  auto advance = [&](Stream& s, bool first) {
    const double interval_s = 1.0 / s.rate;
    if (first) {
      s.at_s = arrivals == Arrivals::kAligned
                   ? 0
                   : std::uniform_real_distribution<double>(0, interval_s)(s.random);
    } else {
      s.at_s += arrivals == Arrivals::kPoisson
                    ? std::exponential_distribution<double>(s.rate)(s.random)
                    : interval_s;
    }
    const auto due =
        start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s.at_s));
    s.next_due = due < end ? due : Clock::time_point::max();
  };
  unsigned stream_seed = seed;
  for (auto& s : streams) {
    s->request =
        "POST " + target + " HTTP/1.1\r\nHost: " + host +
        "\r\nUser-Agent: wikifunctions-cpp\r\nx-wikifunctions-user: " + s->user +
        "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(payload.size()) +
        "\r\n\r\n" + payload;
    loop.streams_.push_back(s.get());
    if (s->mode == "open") {
      s->random.seed(stream_seed);
      stream_seed = stream_seed * 2654435761u + 1;  // another sequence for each stream
      advance(*s, true);
    }
  }
  for (auto& s : streams) {
    if (s->mode != "closed") continue;
    s->in_flight = s->connections;
    s->sent = s->connections;
    for (int c = 0; c < s->connections; ++c) loop.start(*s, start);
  }
  // Requests fall due until the end; then the answers in flight may arrive (bounded: what is
  // still out after 3 s counts as unanswered).
  const auto drained = end + std::chrono::seconds(3);
  for (;;) {
    const auto now = Clock::now();
    auto wake = std::min(now >= end ? drained : end, now + std::chrono::milliseconds(100));
    for (auto& s : streams) {
      while (s->next_due <= now) {
        loop.arrive(*s, s->next_due);
        advance(*s, false);
      }
      wake = std::min(wake, s->next_due);
    }
    if (now >= end) {
      const bool idle = std::all_of(streams.begin(), streams.end(),
                                    [](const auto& s) { return s->in_flight == 0; });
      if (idle || now >= drained) break;
    }
    loop.poll(wake);
  }
  const double cpu_s = process_cpu_s();
  for (auto& s : streams) {
    if (s->mode == "closed") s->offered = s->sent;
    std::printf("%s\n", report(*s, seconds, cpu_s).c_str());
  }
  if (streams.size() > 1) {
    Stream all;
    pool(streams, all);
    std::printf("%s\n", report(all, seconds, cpu_s).c_str());
  }
  std::fflush(stdout);
  // Connections still open go with the process.
  std::_Exit(0);
}
