// The server and the client against each other, in process, on a free loopback port.
#include "wf/http/server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <future>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "loopback.h"
#include "wf/http/client.h"
#include "wf/obs/metrics.h"

namespace {

using namespace wf::http;
using wf::http_test::connect_loopback;
using wf::http_test::read_to_eof;
using wf::http_test::read_until;
using wf::http_test::write_all;

// Polls `condition` every 5 ms for at most 5 s: waits on an event the test cannot be told of.
template <class F>
bool eventually(F condition) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

// wf_http_connections_open, read in process (the registry is process-wide).
double open_connections() {
  const std::string text = wf::obs::render_metrics();
  const std::string key = "\nwf_http_connections_open ";
  const auto p = text.find(key);
  return p == std::string::npos ? 0 : std::stod(text.substr(p + key.size()));
}

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions o;
    o.port = 0;
    o.max_body_bytes = 1024;
    o.worker_threads = 2;
    o.max_pending_work = 2;
    o.header_timeout = std::chrono::milliseconds(500);
    o.body_timeout = std::chrono::milliseconds(1000);
    o.access_log = false;
    o.shutdown_grace = std::chrono::milliseconds(3000);
    server_ = std::make_unique<Server>(o);
    add_standard_routes(*server_, {"test", "1.0", "abc", "a test", R"({"openapi":"3.0.3"})"});
    server_->add_route(
        "POST", "/{domain}/v1/echo", "echo", Dispatch::kWorker, [](const Request& r) {
          return Response::json(
              200,
              nlohmann::json{{"body", r.body}, {"id", r.request_id}, {"trace", r.trace.trace_id}}
                  .dump());
        });
    // Holds its worker until the test opens the gate (bounded, in case a test fails first).
    server_->add_route("GET", "/slow", "slow", Dispatch::kWorker, [this](const Request&) {
      ++slow_started_;
      gate_.wait_for(std::chrono::seconds(10));
      return Response::json(200, R"({"slow":true})");
    });
    server_->add_route("GET", "/throw", "throw", Dispatch::kWorker,
                       [](const Request&) -> Response { throw std::runtime_error("boom"); });
    port_ = server_->start();
    base_ = "http://127.0.0.1:" + std::to_string(port_);
  }
  void open_gate() {
    if (!gate_open_.exchange(true)) release_.set_value();
  }
  void TearDown() override {
    open_gate();
    server_->stop();
    if (runner_.joinable()) runner_.join();
  }
  ClientResponse get(const std::string& path, std::vector<Header> headers = {}) {
    ClientRequest r;
    r.url = base_ + path;
    r.headers = std::move(headers);
    auto res = client_.send(r);
    EXPECT_TRUE(res) << (res ? "" : res.error().message);
    return res ? *res : ClientResponse{};
  }
  ClientResponse post(const std::string& path, std::string body, std::vector<Header> headers = {}) {
    ClientRequest r;
    r.method = "POST";
    r.url = base_ + path;
    r.body = std::move(body);
    r.content_type = "application/json";
    r.headers = std::move(headers);
    auto res = client_.send(r);
    EXPECT_TRUE(res) << (res ? "" : res.error().message);
    return res ? *res : ClientResponse{};
  }
  // Sends raw bytes on a fresh connection and returns everything the server sends back.
  std::string raw(const std::string& bytes) {
    const int fd = connect_loopback(port_);
    write_all(fd, bytes);
    shutdown(fd, SHUT_WR);
    std::string out = read_to_eof(fd);
    close(fd);
    return out;
  }
  static nlohmann::json body_json(const std::string& raw_response) {
    return nlohmann::json::parse(raw_response.substr(raw_response.find("\r\n\r\n") + 4));
  }
  static std::optional<std::string> header(const ClientResponse& r, const std::string& name) {
    for (const auto& h : r.headers) {
      if (h.name == name) return h.value;
    }
    return std::nullopt;
  }

  // Declared before the server, so that they outlive its worker threads.
  std::promise<void> release_;
  std::shared_future<void> gate_ = release_.get_future().share();
  std::atomic<bool> gate_open_{false};
  std::unique_ptr<Server> server_;
  std::thread runner_;
  HttpClient client_;
  std::uint16_t port_ = 0;
  std::string base_;
  std::atomic<int> slow_started_{0};
};

TEST_F(ServerTest, HealthReadyInfoOpenapi) {
  EXPECT_EQ(get("/healthz").status, 200u);
  auto ready = get("/readyz");
  EXPECT_EQ(ready.status, 200u);
  auto info = nlohmann::json::parse(get("/_info").body);
  EXPECT_EQ(info["name"], "test");
  EXPECT_EQ(info["commit"], "abc");
  EXPECT_EQ(nlohmann::json::parse(get("/_info/version").body)["version"], "1.0");
  EXPECT_EQ(nlohmann::json::parse(get("/openapi.json").body)["openapi"], "3.0.3");
}

TEST_F(ServerTest, RoutesWithParametersAndTrailingSlash) {
  auto a = post("/wikifunctions.org/v1/echo/", "{}");
  auto b = post("/x/v1/echo", "hello");
  EXPECT_EQ(a.status, 200u);
  EXPECT_EQ(nlohmann::json::parse(b.body)["body"], "hello");
}

TEST_F(ServerTest, JsonErrorsFor404And405) {
  auto nf = get("/nope");
  EXPECT_EQ(nf.status, 404u);
  auto j = nlohmann::json::parse(nf.body);
  EXPECT_EQ(j["status"], 404);
  EXPECT_EQ(j["type"], "not_found");
  auto na = get("/x/v1/echo");
  EXPECT_EQ(na.status, 405u);
  EXPECT_EQ(nlohmann::json::parse(na.body)["status"], 405);
  EXPECT_EQ(header(na, "allow").value_or(""), "POST");
}

TEST_F(ServerTest, BodyTooLargeIs413) {
  auto r = post("/x/v1/echo", std::string(5000, 'a'));
  EXPECT_EQ(r.status, 413u);
  EXPECT_EQ(nlohmann::json::parse(r.body)["type"], "payload_too_large");
}

// Writes `parts` on a fresh connection, 100 ms apart (the server reads each before the next), and
// reads the answer until the server closes (the requests say "Connection: close").
std::string exchange(std::uint16_t port, const std::vector<std::string>& parts) {
  const int fd = connect_loopback(port);
  for (std::size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    write_all(fd, parts[i]);
  }
  std::string out = read_to_eof(fd);
  close(fd);
  return out;
}

TEST_F(ServerTest, ChunkedBodiesInOneSegmentAreReadWholeAndLimited) {
  const std::string head =
      "POST /x/v1/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
      "Transfer-Encoding: chunked\r\n\r\n";
  // Headers and the whole chunked body in one write: parsed without a further read.
  std::string out = exchange(port_, {head + "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"});
  ASSERT_EQ(out.rfind("HTTP/1.1 200", 0), 0u) << out;
  EXPECT_EQ(body_json(out)["body"], "hello world");
  // Over max_body_bytes (1024) in chunks: 413, found in the first segment or in a later one.
  const std::string chunk = "400\r\n" + std::string(1024, 'a') + "\r\n";
  out = exchange(port_, {head + chunk + chunk + "0\r\n\r\n"});
  EXPECT_EQ(out.rfind("HTTP/1.1 413", 0), 0u) << out;
  EXPECT_EQ(body_json(out)["type"], "payload_too_large");
  out = exchange(port_, {head + chunk, chunk + "0\r\n\r\n"});
  EXPECT_EQ(out.rfind("HTTP/1.1 413", 0), 0u) << out;
}

TEST_F(ServerTest, BodyThatArrivesAfterItsHeadersIsWaitedFor) {
  const std::string out =
      exchange(port_, {"POST /x/v1/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                       "Content-Length: 10\r\n\r\n01234",
                       "56789"});
  ASSERT_EQ(out.rfind("HTTP/1.1 200", 0), 0u) << out;
  EXPECT_EQ(body_json(out)["body"], "0123456789");
}

TEST_F(ServerTest, MissingLengthIs411) {
  const std::string out = raw("POST /x/v1/echo HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(out.rfind("HTTP/1.1 411", 0), 0u) << out;
  EXPECT_EQ(body_json(out)["status"], 411);
}

TEST_F(ServerTest, MalformedRequestIs400WithJson) {
  const std::string out = raw("THIS IS NOT HTTP\r\n\r\n");
  EXPECT_EQ(out.rfind("HTTP/1.1 400", 0), 0u) << out;
  EXPECT_EQ(body_json(out)["status"], 400);
}

TEST_F(ServerTest, HandlerExceptionIs500AndServerKeepsServing) {
  auto r = get("/throw");
  EXPECT_EQ(r.status, 500u);
  EXPECT_EQ(nlohmann::json::parse(r.body)["type"], "internal_error");
  EXPECT_EQ(get("/healthz").status, 200u);
}

TEST_F(ServerTest, RequestIdEchoedOrGenerated) {
  auto echoed = post("/x/v1/echo", "{}", {{"x-request-id", "my-id-123"}});
  EXPECT_EQ(header(echoed, "x-request-id").value_or(""), "my-id-123");
  EXPECT_EQ(nlohmann::json::parse(echoed.body)["id"], "my-id-123");
  auto generated = get("/healthz");
  EXPECT_EQ(header(generated, "x-request-id").value_or("").size(), 32u);
  auto forged = get("/healthz", {{"x-request-id", "bad id with spaces"}});
  EXPECT_NE(header(forged, "x-request-id").value_or(""), "bad id with spaces");
}

TEST_F(ServerTest, TraceparentIsContinued) {
  auto r = post("/x/v1/echo", "{}",
                {{"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}});
  EXPECT_EQ(nlohmann::json::parse(r.body)["trace"], "0af7651916cd43dd8448eb211c80319c");
  const std::string tp = header(r, "traceparent").value_or("");
  EXPECT_EQ(tp.substr(0, 36), "00-0af7651916cd43dd8448eb211c80319c-");
}

TEST_F(ServerTest, OverloadIs503WithRetryAfter) {
  std::vector<std::thread> threads;
  std::atomic<int> overloaded{0}, ok{0};
  for (int i = 0; i < 5; ++i) {
    threads.emplace_back([&] {
      HttpClient c;
      ClientRequest r;
      r.url = base_ + "/slow";
      auto res = c.send(r);
      if (res && res->status == 503) {
        ++overloaded;
        EXPECT_TRUE(header(*res, "retry-after"));
      }
      if (res && res->status == 200) ++ok;
    });
  }
  // Two requests hold the two workers at the gate; the other three are shed at once.
  EXPECT_TRUE(eventually([&] { return overloaded.load() == 3; }));
  open_gate();
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 2);
  EXPECT_EQ(overloaded.load(), 3);
}

TEST_F(ServerTest, SlowHeadersAreCutOff) {
  // A client that never finishes its headers is disconnected after header_timeout.
  const int fd = connect_loopback(port_);
  ASSERT_GE(fd, 0);
  const std::string partial = "GET /healthz HTTP/1.1\r\nHost: x\r\n";
  ASSERT_EQ(write(fd, partial.data(), partial.size()), static_cast<ssize_t>(partial.size()));
  const auto start = std::chrono::steady_clock::now();
  char buf[256];
  const ssize_t n = read(fd, buf, sizeof buf);  // returns 0 when the server closes
  const auto waited = std::chrono::steady_clock::now() - start;
  close(fd);
  EXPECT_EQ(n, 0);
  EXPECT_LT(waited, std::chrono::seconds(5));
}

TEST_F(ServerTest, MetricsCountRequests) {
  get("/healthz");
  const std::string text = get("/metrics").body;
  EXPECT_NE(text.find(R"(wf_http_requests_total{method="GET",route="healthz",status="200"})"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("wf_http_request_duration_seconds_bucket"), std::string::npos);
  EXPECT_NE(text.find("wf_http_requests_in_flight"), std::string::npos);
}

TEST_F(ServerTest, DrainLetsInFlightRequestFinishAndReportsNotReady) {
  std::optional<ClientResponse> slow;
  std::thread t([&] {
    HttpClient c;
    ClientRequest r;
    r.url = base_ + "/slow";
    auto res = c.send(r);
    if (res) slow = *res;
  });
  ASSERT_TRUE(eventually([&] { return slow_started_.load() > 0; }));
  std::atomic<int> code{-1};
  std::thread runner([&] { code = server_->run_until_signal(); });
  server_->stop();
  ASSERT_TRUE(eventually([&] { return server_->draining(); }));
  std::string why;
  EXPECT_FALSE(server_->ready(why));
  EXPECT_EQ(why, "draining for shutdown");
  open_gate();  // the in-flight request finishes within the grace period
  t.join();
  runner.join();
  ASSERT_TRUE(slow);
  EXPECT_EQ(slow->status, 200u);
  EXPECT_EQ(code.load(), 0);
}

TEST_F(ServerTest, ClientDeadlineEndsASlowCall) {
  ClientRequest r;
  r.url = base_ + "/slow";
  r.deadline = Clock::now() + std::chrono::milliseconds(100);
  const auto start = Clock::now();
  auto res = client_.send(r);
  ASSERT_FALSE(res);
  EXPECT_EQ(res.error().kind, ClientError::Kind::kTimeout);
  // Well before the handler's 10 s gate opens; the margin is for a loaded machine.
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(5));
}

TEST_F(ServerTest, ABodyThatStopsArrivingIsCutOff) {
  // The body's read has body_timeout (1 s here): then the server closes the connection, as it
  // did with Beast's tcp_stream (the socket closed on the timeout; no 200, no handler run).
  const int fd = connect_loopback(port_);
  ASSERT_GE(fd, 0);
  write_all(fd,
            "POST /x/v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
            "only part of it");
  const auto start = std::chrono::steady_clock::now();
  const std::string answer = read_to_eof(fd);  // 5 s without a byte would end it too
  const auto waited = std::chrono::steady_clock::now() - start;
  close(fd);
  EXPECT_EQ(answer.find("200 OK"), std::string::npos) << answer;
  EXPECT_LT(waited, std::chrono::milliseconds(4500));
}

TEST(HttpClientDeadline, AnAnswerThatStopsMidwayEndsAtTheDeadline) {
  // A peer that sends the answer's head and part of its body, then nothing: the client's read
  // ends at the request's deadline with kTimeout and closes the connection.
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(listener, 1), 0);
  socklen_t len = sizeof addr;
  getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  std::atomic<bool> closed_by_client{false};
  std::thread peer([&] {
    const int fd = accept(listener, nullptr, nullptr);
    if (fd < 0) return;
    wf::http_test::read_until(fd, "\r\n\r\n");
    write_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part of it");
    const auto since = std::chrono::steady_clock::now();
    const bool nothing = read_to_eof(fd).empty();  // at the client's close, or after 5 s idle
    closed_by_client =
        nothing && std::chrono::steady_clock::now() - since < std::chrono::seconds(4);
    close(fd);
  });
  HttpClient client;
  ClientRequest r;
  r.url = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/x";
  r.deadline = Clock::now() + std::chrono::milliseconds(300);
  const auto start = Clock::now();
  auto res = client.send(r);
  const auto waited = Clock::now() - start;
  peer.join();
  close(listener);
  ASSERT_FALSE(res);
  EXPECT_EQ(res.error().kind, ClientError::Kind::kTimeout) << res.error().message;
  EXPECT_TRUE(closed_by_client.load());
  EXPECT_LT(waited, std::chrono::seconds(4));
}

TEST_F(ServerTest, ClientReportsRefusedConnectionsAndBadUrls) {
  // A port nobody listens on: bind, read the port, close.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  ClientRequest r;
  r.url = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/x";
  auto refused = client_.send(r);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().kind, ClientError::Kind::kConnect);
  r.url = "https://127.0.0.1/x";
  auto https = client_.send(r);
  ASSERT_FALSE(https);
  EXPECT_EQ(https.error().kind, ClientError::Kind::kInvalidUrl);
  r.url = "http://127.0.0.1:99999999999/x";
  auto port = client_.send(r);
  ASSERT_FALSE(port);
  EXPECT_EQ(port.error().kind, ClientError::Kind::kInvalidUrl);
}

TEST_F(ServerTest, ClientReusesKeepAliveConnections) {
  auto accepted = [this] {
    const std::string text = get("/metrics").body;
    const std::string key = "\nwf_http_connections_accepted_total ";
    return std::stod(text.substr(text.find(key) + key.size()));
  };
  const double before = accepted();
  for (int i = 0; i < 20; ++i) ASSERT_EQ(get("/healthz").status, 200u);
  // The pooled keep-alive connection served all of them: no new connection was accepted.
  EXPECT_EQ(accepted(), before);
}

TEST(ServerLimits, ConnectionLimitAnswers503) {
  ServerOptions o;
  o.port = 0;
  o.max_connections = 2;
  o.access_log = false;
  Server server(o);
  add_standard_routes(server, {"test", "1.0", "abc", "", "{}"});
  const std::uint16_t port = server.start();
  const double before = open_connections();
  const int a = connect_loopback(port);
  const int b = connect_loopback(port);
  ASSERT_TRUE(eventually([&] { return open_connections() == before + 2; }));
  HttpClient client;
  ClientRequest r;
  r.url = "http://127.0.0.1:" + std::to_string(port) + "/healthz";
  auto res = client.send(r);
  ASSERT_TRUE(res) << res.error().message;
  EXPECT_EQ(res->status, 503u);
  EXPECT_NE(res->body.find("connection limit"), std::string::npos);
  close(a);
  close(b);
  ASSERT_TRUE(eventually([&] { return open_connections() == before; }));
  HttpClient fresh;
  auto ok = fresh.send(r);
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200u);
  server.stop();
  server.run_until_signal();
}

}  // namespace

namespace {

// A server with an admin listener, and optionally CORS or an admin token.
struct AdminFixture {
  explicit AdminFixture(ServerOptions o) : server(prepare(std::move(o))) {
    add_standard_routes(server, {"test", "1.0", "abc", "", "{}"});
    server.add_route("POST", "/{domain}/v1/evaluate", "evaluate", Dispatch::kInline,
                     [](const Request&) { return Response::json(200, "{}"); });
    port = server.start();
  }
  ~AdminFixture() {
    server.stop();
    server.run_until_signal();
  }
  static ServerOptions prepare(ServerOptions o) {
    o.port = 0;
    o.access_log = false;
    return o;
  }
  ClientResponse call(std::uint16_t p, std::string method, std::string path, std::string body = "",
                      std::vector<Header> headers = {}) {
    ClientRequest r;
    r.method = std::move(method);
    r.url = "http://127.0.0.1:" + std::to_string(p) + path;
    r.body = std::move(body);
    r.content_type = "application/json";
    r.headers = std::move(headers);
    auto res = client.send(r);
    EXPECT_TRUE(res) << (res ? "" : res.error().message);
    return res ? *res : ClientResponse{};
  }
  static std::optional<std::string> header(const ClientResponse& r, const std::string& name) {
    for (const auto& h : r.headers) {
      if (h.name == name) return h.value;
    }
    return std::nullopt;
  }
  Server server;
  HttpClient client;
  std::uint16_t port = 0;
};

TEST(AdminListener, AdminRoutesAre404OnTheMainPortAndServedOnTheAdminListener) {
  AdminFixture f(ServerOptions{});
  ASSERT_NE(f.server.admin_port(), 0);
  ASSERT_NE(f.server.admin_port(), f.port);
  EXPECT_EQ(f.call(f.port, "GET", "/_admin/log-level").status, 404u);
  EXPECT_EQ(f.call(f.port, "PUT", "/_admin/log-level", R"({"level":"debug"})").status, 404u);
  const auto got = f.call(f.server.admin_port(), "GET", "/_admin/log-level");
  EXPECT_EQ(got.status, 200u);
  EXPECT_NE(got.body.find("level"), std::string::npos);
  const auto set = f.call(f.server.admin_port(), "PUT", "/_admin/log-level", R"({"level":"warn"})");
  EXPECT_EQ(set.status, 200u);
  EXPECT_EQ(f.call(f.server.admin_port(), "PUT", "/_admin/log-level", R"({"level":"info"})").status,
            200u);
  // The admin listener serves admin routes only.
  EXPECT_EQ(f.call(f.server.admin_port(), "GET", "/healthz").status, 404u);
}

TEST(AdminListener, TokenIsRequiredWhenConfigured) {
  ServerOptions o;
  o.admin_token = "s3cret-token";
  AdminFixture f(o);
  const auto admin = f.server.admin_port();
  const auto none = f.call(admin, "GET", "/_admin/log-level");
  EXPECT_EQ(none.status, 401u);
  EXPECT_EQ(AdminFixture::header(none, "www-authenticate").value_or(""), "Bearer");
  EXPECT_EQ(
      f.call(admin, "GET", "/_admin/log-level", "", {{"authorization", "Bearer wrong"}}).status,
      401u);
  EXPECT_EQ(
      f.call(admin, "GET", "/_admin/log-level", "", {{"authorization", "Bearer s3cret-token"}})
          .status,
      200u);
}

TEST(AdminListener, NonLoopbackAdminListenerWithoutATokenIsRefused) {
  ServerOptions o;
  o.port = 0;
  o.access_log = false;
  o.admin_address = "0.0.0.0";
  Server server(o);
  try {
    server.start();
    FAIL() << "started an unauthenticated admin listener on 0.0.0.0";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("--admin-token-file"), std::string::npos) << e.what();
  }
}

TEST(AdminListener, NoAdminListenerWhenTurnedOff) {
  ServerOptions o;
  o.admin_port = -1;
  AdminFixture f(o);
  EXPECT_EQ(f.server.admin_port(), 0);
}

TEST(Cors, NoCorsHeadersByDefault) {
  AdminFixture f(ServerOptions{});
  for (const auto& r :
       {f.call(f.port, "GET", "/healthz"), f.call(f.port, "POST", "/x/v1/evaluate", "{}")}) {
    EXPECT_FALSE(AdminFixture::header(r, "access-control-allow-origin"));
    EXPECT_FALSE(AdminFixture::header(r, "access-control-allow-headers"));
  }
  EXPECT_EQ(f.call(f.port, "OPTIONS", "/x/v1/evaluate").status, 405u);
}

TEST(Cors, ConfiguredOriginOnlyOnTheEvaluateRoute) {
  ServerOptions o;
  o.cors_origin = "https://www.wikifunctions.org";
  AdminFixture f(o);
  const auto evaluate = f.call(f.port, "POST", "/x/v1/evaluate", "{}");
  EXPECT_EQ(AdminFixture::header(evaluate, "access-control-allow-origin").value_or(""),
            "https://www.wikifunctions.org");
  EXPECT_FALSE(
      AdminFixture::header(f.call(f.port, "GET", "/healthz"), "access-control-allow-origin"));
  EXPECT_FALSE(
      AdminFixture::header(f.call(f.port, "GET", "/metrics"), "access-control-allow-origin"));
  const auto preflight = f.call(f.port, "OPTIONS", "/x/v1/evaluate");
  EXPECT_EQ(preflight.status, 204u);
  EXPECT_EQ(AdminFixture::header(preflight, "access-control-allow-methods").value_or(""), "POST");
  EXPECT_EQ(AdminFixture::header(preflight, "access-control-allow-origin").value_or(""),
            "https://www.wikifunctions.org");
}

// The connection's deadlines (session 17): one timer wait per connection, moved by a field rather
// than re-armed per read and write, and an answer sent at once when the socket takes it.
class ConnectionDeadline : public ::testing::Test {
 protected:
  static constexpr std::size_t kBig = 16u << 20;  // more than loopback's socket buffers hold

  void start(ServerOptions o) {
    o.port = 0;
    o.access_log = false;
    server_ = std::make_unique<Server>(o);
    server_->add_route("GET", "/ok", "ok", Dispatch::kInline,
                       [](const Request&) { return Response::json(200, R"({"ok":"yes"})"); });
    server_->add_route("GET", "/big", "big", Dispatch::kInline, [](const Request&) {
      std::string body(kBig, 'x');
      for (std::size_t i = 0; i < body.size(); i += 4096) body[i] = static_cast<char>('a' + i % 26);
      return Response::json(200, std::move(body));
    });
    port_ = server_->start();
  }
  void TearDown() override {
    if (server_) server_->stop();
  }
  // Reads until `bytes` have arrived, the peer closes or fails, or 60 s pass without a byte.
  static std::string read_bytes(int fd, std::size_t bytes) {
    timeval tv{60, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string out;
    std::vector<char> buf(1u << 16);
    ssize_t n;
    while (out.size() < bytes && (n = read(fd, buf.data(), buf.size())) > 0) {
      out.append(buf.data(), static_cast<std::size_t>(n));
    }
    return out;
  }
  // Whether the server closed `fd`: a read that waits (60 s at most) gets its EOF or reset.
  static bool closed_by_server(int fd) {
    timeval tv{60, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char c;
    const ssize_t n = read(fd, &c, 1);
    return n == 0 || (n < 0 && errno == ECONNRESET);
  }

  std::unique_ptr<Server> server_;
  std::uint16_t port_ = 0;
};

// The first request's header deadline is the connection's timer wait; the answer and the idle
// read after it move the deadline later. When the wait wakes at the header deadline it must wait
// on, not close the connection, and it must still close it at the idle deadline.
TEST_F(ConnectionDeadline, AKeepAliveConnectionOutlivesItsFirstHeaderDeadlineThenClosesWhenIdle) {
  ServerOptions o;
  o.header_timeout = std::chrono::milliseconds(200);
  o.idle_timeout = std::chrono::milliseconds(3000);
  start(o);
  const int fd = connect_loopback(port_);
  ASSERT_GE(fd, 0);
  const std::string request = "GET /ok HTTP/1.1\r\nHost: x\r\n\r\n";
  write_all(fd, request);
  EXPECT_NE(read_until(fd, R"("yes"})").find("200 OK"), std::string::npos);
  // Past the first header deadline (the wait wakes there and finds the idle deadline later).
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  write_all(fd, request);
  EXPECT_NE(read_until(fd, R"("yes"})").find("200 OK"), std::string::npos)
      << "the connection was closed at its first request's header deadline";
  EXPECT_TRUE(closed_by_server(fd)) << "an idle keep-alive connection was never closed";
  close(fd);
}

// An answer larger than the socket takes at once: the first send takes part of it, the rest is
// written asynchronously; all of it arrives, in order, and the connection goes on.
TEST_F(ConnectionDeadline, AnAnswerTheSocketCannotTakeAtOnceArrivesWholeAndTheConnectionGoesOn) {
  start(ServerOptions{});
  const int fd = connect_loopback(port_);
  ASSERT_GE(fd, 0);
  write_all(fd, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string got = read_bytes(fd, 1);
  while (got.find("\r\n\r\n") == std::string::npos) {
    const std::string more = read_bytes(fd, 1);
    ASSERT_FALSE(more.empty()) << "no head";
    got += more;
  }
  const std::size_t head_end = got.find("\r\n\r\n") + 4;
  ASSERT_NE(got.find("Content-Length: " + std::to_string(kBig)), std::string::npos)
      << got.substr(0, head_end);
  got += read_bytes(fd, head_end + kBig - got.size());
  ASSERT_EQ(got.size(), head_end + kBig);
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < kBig; ++i) {
    const char want = i % 4096 == 0 ? static_cast<char>('a' + i % 26) : 'x';
    wrong += got[head_end + i] != want;
  }
  EXPECT_EQ(wrong, 0u);
  write_all(fd, "GET /ok HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_NE(read_until(fd, R"("yes"})").find("200 OK"), std::string::npos);
  close(fd);
}

// A client that does not read its large answer: the write is cut off at body_timeout (the
// connection closed), not held open.
TEST_F(ConnectionDeadline, AnAnswerTheClientDoesNotReadIsCutOffAtTheWriteDeadline) {
  ServerOptions o;
  o.body_timeout = std::chrono::milliseconds(300);
  // Later than the bound below: the connection's wait, armed for the request's headers, must be
  // moved earlier for the write.
  o.header_timeout = std::chrono::seconds(600);
  o.idle_timeout = std::chrono::seconds(600);
  start(o);
  const double before = open_connections();
  const int fd = connect_loopback(port_);
  ASSERT_GE(fd, 0);
  write_all(fd, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(eventually([&] { return open_connections() > before; }));
  // The server gives up on the write and closes (bounded generously for a loaded machine).
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (open_connections() > before && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(open_connections(), before) << "the unread answer's write never timed out";
  const std::string got = read_bytes(fd, kBig + 4096);
  EXPECT_LT(got.size(), kBig) << "the whole answer fit the socket buffers: nothing was cut off";
  close(fd);
}

}  // namespace
