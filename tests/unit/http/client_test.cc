// HttpClient against a peer written by hand on loopback: how it reads answers (headers in any
// case, only those asked for, no Content-Length, chunked, too large, cut off), which head it
// writes, and its one deadline across an exchange's steps.

#include "wf/http/client.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "loopback.h"

namespace {

using namespace wf::http;
using namespace std::chrono_literals;
using wf::http_test::read_to_eof;
using wf::http_test::read_until;
using wf::http_test::write_all;

// A listening socket on 127.0.0.1 (or ::1) whose connections the test serves by hand.
class Peer {
 public:
  enum class Family { kV4, kV6 };
  explicit Peer(Family family = Family::kV4) : v6_(family == Family::kV6) {
    fd_ = socket(v6_ ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
    sockaddr_storage addr{};
    socklen_t len = 0;
    if (v6_) {
      auto* a6 = reinterpret_cast<sockaddr_in6*>(&addr);
      a6->sin6_family = AF_INET6;
      a6->sin6_addr = in6addr_loopback;
      len = sizeof(sockaddr_in6);
    } else {
      auto* a4 = reinterpret_cast<sockaddr_in*>(&addr);
      a4->sin_family = AF_INET;
      a4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      len = sizeof(sockaddr_in);
    }
    if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        listen(fd_, 16) != 0 || getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      ADD_FAILURE() << "cannot listen on loopback: " << errno;
      return;
    }
    port_ = ntohs(v6_ ? reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port
                      : reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  }
  // Whether this machine has an IPv6 loopback to listen on (a container may have none).
  static bool ipv6_loopback() {
    const int fd = socket(AF_INET6, SOCK_STREAM, 0);
    if (fd < 0) return false;
    sockaddr_in6 addr{};
    addr.sin6_family = AF_INET6;
    addr.sin6_addr = in6addr_loopback;
    const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    close(fd);
    return ok;
  }
  ~Peer() {
    if (fd_ >= 0) close(fd_);
  }
  Peer(const Peer&) = delete;
  Peer& operator=(const Peer&) = delete;

  std::string url(std::string_view path) const {
    return std::string(v6_ ? "http://[::1]:" : "http://127.0.0.1:") + std::to_string(port_) +
           std::string(path);
  }

  // The next connection, or -1 when none comes within 10 s.
  int accept_one() const {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, 10000) != 1) return -1;
    return accept(fd_, nullptr, nullptr);
  }

  // A thread that accepts one connection, gives it to `serve`, then closes it.
  std::thread serve_one(std::function<void(int)> serve) const {
    return std::thread([this, serve = std::move(serve)] {
      const int fd = accept_one();
      if (fd < 0) return;
      serve(fd);
      close(fd);
    });
  }

  // Whether a connection waits to be accepted now.
  bool connection_pending() const {
    pollfd p{fd_, POLLIN, 0};
    return poll(&p, 1, 0) == 1;
  }

 private:
  bool v6_ = false;
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

ClientRequest get(const Peer& peer, std::string_view path) {
  ClientRequest r;
  r.url = peer.url(path);
  r.deadline = Clock::now() + 10s;
  return r;
}

const Header* find_header(const ClientResponse& res, std::string_view name) {
  for (const Header& h : res.headers) {
    if (h.name == name) return &h;
  }
  return nullptr;
}

constexpr std::string_view kAnswerWithHeaders =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Wikifunctions-POOL-Wait-Ms: 12.5\r\n"
    "x-other: yes\r\nContent-Length: 2\r\n\r\nok";

// By default every header comes with its name lowercased; with keep_all_headers false only those
// asked for, whatever their case on the wire, and no other.
TEST(HttpClientAnswer, HeadersAreLowercasedAndOnlyThoseAskedForAreKept) {
  Peer peer;
  std::thread serve = peer.serve_one([&](int fd) {
    for (int i = 0; i < 2; ++i) {
      read_until(fd, "\r\n\r\n");
      write_all(fd, kAnswerWithHeaders);
    }
    read_to_eof(fd);
  });
  std::optional<HttpClient> client(std::in_place);
  auto all = client->send(get(peer, "/all"));
  ASSERT_TRUE(all) << all.error().message;
  EXPECT_EQ(all->status, 200u);
  EXPECT_EQ(all->body, "ok");
  ASSERT_EQ(all->headers.size(), 4u);
  EXPECT_EQ(all->headers[0].name, "content-type");
  EXPECT_EQ(all->headers[0].value, "text/plain");
  EXPECT_EQ(all->headers[1].name, "x-wikifunctions-pool-wait-ms");
  EXPECT_EQ(all->headers[1].value, "12.5");
  EXPECT_EQ(all->headers[2].name, "x-other");
  EXPECT_EQ(all->headers[3].name, "content-length");

  static constexpr std::string_view kKeep[] = {"x-wikifunctions-pool-wait-ms", "x-absent"};
  ClientRequest some = get(peer, "/some");
  some.keep_all_headers = false;
  some.keep_headers = kKeep;
  auto kept = client->send(some);
  ASSERT_TRUE(kept) << kept.error().message;
  EXPECT_EQ(kept->body, "ok");
  ASSERT_EQ(kept->headers.size(), 1u);
  EXPECT_EQ(kept->headers[0].name, "x-wikifunctions-pool-wait-ms");
  EXPECT_EQ(kept->headers[0].value, "12.5");
  client.reset();  // closes the pooled connection: the peer's read ends
  serve.join();
}

// An answer without a length ends when the peer closes; that connection is not pooled, so the
// next request opens a fresh one and sends nothing on the closed one.
TEST(HttpClientAnswer, AnAnswerThatEndsAtCloseIsReadWholeAndItsConnectionNotReused) {
  Peer peer;
  std::string second_connection;
  std::thread serve([&] {
    int fd = peer.accept_one();
    if (fd < 0) return;
    read_until(fd, "\r\n\r\n");
    write_all(fd, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the peer closes");
    close(fd);
    fd = peer.accept_one();
    if (fd < 0) return;
    second_connection = read_until(fd, "\r\n\r\n");
    write_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nagain");
    read_to_eof(fd);
    close(fd);
  });
  {
    HttpClient client;
    auto first = client.send(get(peer, "/first"));
    ASSERT_TRUE(first) << first.error().message;
    EXPECT_EQ(first->body, "until the peer closes");
    EXPECT_EQ(find_header(*first, "content-length"), nullptr);
    auto second = client.send(get(peer, "/second"));
    ASSERT_TRUE(second) << second.error().message;
    EXPECT_EQ(second->body, "again");
  }
  serve.join();
  EXPECT_NE(second_connection.find("GET /second HTTP/1.1"), std::string::npos) << second_connection;
}

// A chunked answer (with a trailer) is read whole and its connection is reused.
TEST(HttpClientAnswer, AChunkedAnswerIsJoinedAndItsConnectionReused) {
  Peer peer;
  bool third_connection = true;
  std::thread serve = peer.serve_one([&](int fd) {
    for (int i = 0; i < 2; ++i) {
      read_until(fd, "\r\n\r\n");
      write_all(fd,
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                "5\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n");
    }
    third_connection = peer.connection_pending();
    read_to_eof(fd);
  });
  {
    HttpClient client;
    for (int i = 0; i < 2; ++i) {
      auto res = client.send(get(peer, "/chunks"));
      ASSERT_TRUE(res) << res.error().message;
      EXPECT_EQ(res->body, "hello, world");
    }
  }
  serve.join();
  EXPECT_FALSE(third_connection);
}

// A pooled connection closed after part of the answer is an error (Beast's "partial message"),
// not a retry: the request may have run at the peer.
TEST(HttpClientAnswer, AConnectionClosedMidAnswerFailsWithoutARetry) {
  Peer peer;
  bool retried = true;
  std::thread serve = peer.serve_one([&](int fd) {
    read_until(fd, "\r\n\r\n");
    write_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    read_until(fd, "\r\n\r\n");
    write_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b");
  });
  HttpClient client;
  auto first = client.send(get(peer, "/first"));
  ASSERT_TRUE(first) << first.error().message;
  auto cut = client.send(get(peer, "/cut"));
  ASSERT_FALSE(cut);
  EXPECT_EQ(cut.error().kind, ClientError::Kind::kProtocol) << cut.error().message;
  serve.join();
  retried = peer.connection_pending();
  EXPECT_FALSE(retried);
}

// max_response_bytes holds for a declared length and for chunks.
TEST(HttpClientAnswer, AnAnswerOverTheLimitIsTooLarge) {
  Peer peer;
  std::thread serve([&] {
    for (const std::string_view answer :
         {std::string_view("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"),
          std::string_view(
              "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
              "40\r\n0123456789012345678901234567890123456789012345678901234567890123"
              "\r\n40\r\n0123456789012345678901234567890123456789012345678901234567890123"
              "\r\n0\r\n\r\n")}) {
      const int fd = peer.accept_one();
      if (fd < 0) return;
      read_until(fd, "\r\n\r\n");
      write_all(fd, answer);
      read_to_eof(fd);
      close(fd);
    }
  });
  ClientOptions options;
  options.max_response_bytes = 100;
  {
    HttpClient client(options);
    for (int i = 0; i < 2; ++i) {
      auto res = client.send(get(peer, "/big"));
      ASSERT_FALSE(res);
      EXPECT_EQ(res.error().kind, ClientError::Kind::kTooLarge) << res.error().message;
    }
  }
  serve.join();
}

// The request's deadline covers every step and attempt: after a stale pooled connection, the
// retry on a fresh one that gets no answer ends at the deadline, and closes that connection.
TEST(HttpClientDeadline, ARetryOnAFreshConnectionKeepsTheRequestsDeadline) {
  Peer peer;
  bool closed_by_client = false;
  std::thread serve([&] {
    int fd = peer.accept_one();
    if (fd < 0) return;
    read_until(fd, "\r\n\r\n");
    write_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    close(fd);  // idle in the client's pool: stale
    fd = peer.accept_one();
    if (fd < 0) return;
    read_until(fd, "\r\n\r\n");
    // No answer: the client's close ends this read, else 5 s without a byte do.
    const auto since = std::chrono::steady_clock::now();
    const bool nothing = read_to_eof(fd).empty();
    closed_by_client = nothing && std::chrono::steady_clock::now() - since < 4s;
    close(fd);
  });
  HttpClient client;
  auto first = client.send(get(peer, "/first"));
  ASSERT_TRUE(first) << first.error().message;
  ClientRequest late = get(peer, "/late");
  late.deadline = Clock::now() + 300ms;
  auto res = client.send(late);
  serve.join();
  ASSERT_FALSE(res);
  EXPECT_EQ(res.error().kind, ClientError::Kind::kTimeout) << res.error().message;
  EXPECT_TRUE(closed_by_client);
}

// The heads a peer receives of two requests sent one after the other by a client whose User-Agent
// is "client-test" (on one connection, each answered "ok"): the first read up to `first_end`
// (its body's end), the second up to its blank line.
std::array<std::string, 2> heads_of(const Peer& peer, std::string first_end, ClientRequest first,
                                    ClientRequest second) {
  std::array<std::string, 2> heads;
  std::thread serve = peer.serve_one([&](int fd) {
    heads[0] = read_until(fd, first_end);
    write_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    heads[1] = read_until(fd, "\r\n\r\n");
    write_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    read_to_eof(fd);
  });
  ClientOptions options;
  options.user_agent = "client-test";
  {
    HttpClient client(options);
    for (ClientRequest* request : {&first, &second}) {
      auto answer = client.send(*request);
      if (!answer) ADD_FAILURE() << request->url << ": " << answer.error().message;
    }
  }
  serve.join();
  return heads;
}

// What the peer receives: the head written directly for the usual request, and Beast's message
// when a caller's header replaces one of the client's own (Host here).
TEST(HttpClientRequest, TheHeadIsWrittenDirectlyOrByBeastWhenACallerReplacesAField) {
  Peer peer;
  ClientRequest post = get(peer, "/v1/evaluate/?q=1");
  post.method = "POST";
  post.headers = {{"x-request-id", "abc"}, {"traceparent", "00-tp"}};
  post.content_type = "application/octet-stream";
  post.body =
      "\x01"
      "avro";
  ClientRequest own_host = get(peer, "/h");
  own_host.headers = {{"x-a", "1"}, {"Host", "example.org"}};
  const auto [usual, replaced] = heads_of(peer, "avro", post, own_host);
  const std::string port = peer.url("").substr(std::string_view("http://127.0.0.1:").size());
  EXPECT_EQ(usual, "POST /v1/evaluate/?q=1 HTTP/1.1\r\nHost: 127.0.0.1:" + port +
                       "\r\nUser-Agent: client-test\r\nx-request-id: abc\r\ntraceparent: "
                       "00-tp\r\nContent-Type: application/octet-stream\r\nContent-Length: "
                       "5\r\n\r\n\x01"
                       "avro");
  EXPECT_EQ(replaced,
            "GET /h HTTP/1.1\r\nUser-Agent: client-test\r\nx-a: 1\r\nHost: "
            "example.org\r\n\r\n");
}

// An IPv6 literal's Host field keeps its brackets (RFC 7230 §5.4 with RFC 3986's IP-literal):
// "Host: [::1]:port", in the head written directly and in Beast's (a caller's header named twice
// takes that path). It was "::1:port", whose port a server cannot tell from the address.
TEST(HttpClientRequest, AnIpv6LiteralsHostFieldIsBracketed) {
  if (!Peer::ipv6_loopback()) {
    GTEST_SKIP() << "this machine has no IPv6 loopback (::1) to listen on";
  }
  Peer peer(Peer::Family::kV6);
  ClientRequest twice = get(peer, "/b");
  twice.headers = {{"x-a", "1"}, {"X-A", "2"}};
  const auto [direct, by_beast] = heads_of(peer, "\r\n\r\n", get(peer, "/a"), twice);
  const std::string port = peer.url("").substr(std::string_view("http://[::1]:").size());
  EXPECT_EQ(direct,
            "GET /a HTTP/1.1\r\nHost: [::1]:" + port + "\r\nUser-Agent: client-test\r\n\r\n");
  EXPECT_EQ(by_beast.substr(0, by_beast.find("\r\nUser-Agent")),
            "GET /b HTTP/1.1\r\nHost: [::1]:" + port);
}

}  // namespace
