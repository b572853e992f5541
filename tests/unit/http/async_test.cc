// Asynchronous routes, cancellation (hang-up, deadline, drain) and HttpClient::async_send, in
// process on loopback. Waits are on events (futures with a bound), never on sleeps.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <future>
#include <mutex>
#include <optional>
#include <thread>

#include "loopback.h"
#include "wf/http/io.h"

namespace {

using namespace wf::http;
using namespace std::chrono_literals;
using Reason = Cancellation::Reason;
using wf::http_test::connect_loopback;
using wf::http_test::read_to_eof;
using wf::http_test::read_until;
using wf::http_test::write_all;

int count_of(const std::string& text, const std::string& needle) {
  int n = 0;
  for (auto p = text.find(needle); p != std::string::npos; p = text.find(needle, p + 1)) ++n;
  return n;
}

// The value of one sample line in the Prometheus text, 0 if absent.
double metric(const std::string& text, const std::string& sample) {
  const auto p = text.find("\n" + sample + " ");
  return p == std::string::npos ? 0 : std::stod(text.substr(p + sample.size() + 2));
}

// A request the handler has not answered yet, and what happened to it.
struct Held {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::shared_ptr<AsyncRequest>> requests;
  std::vector<Cancellation::Registration> registrations;
  std::vector<std::pair<Reason, Clock::time_point>> cancels;

  void hold(std::shared_ptr<AsyncRequest> r) {
    auto reg = r->cancel->on_cancel([this](Reason why) {
      std::lock_guard lock(mu);
      cancels.emplace_back(why, Clock::now());
      cv.notify_all();
    });
    std::lock_guard lock(mu);
    requests.push_back(std::move(r));
    registrations.push_back(std::move(reg));
    cv.notify_all();
  }
  bool wait_requests(std::size_t n) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, 5s, [&] { return requests.size() >= n; });
  }
  bool wait_cancels(std::size_t n) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, 5s, [&] { return cancels.size() >= n; });
  }
  // Registrations are dropped outside `mu`: dropping one waits for its running callback, which
  // takes `mu` (dropping them under the lock deadlocked when a hang-up raced the teardown).
  void clear() {
    std::vector<std::shared_ptr<AsyncRequest>> answered;  // destroyed after the registrations
    std::vector<Cancellation::Registration> dropped;
    {
      std::lock_guard lock(mu);
      dropped.swap(registrations);
      answered.swap(requests);
    }
  }
};

class AsyncTest : public ::testing::Test {
 protected:
  void start(ServerOptions o = {}) {
    o.port = 0;
    o.access_log = false;
    server_ = std::make_unique<Server>(o);
    add_standard_routes(*server_, {"test", "1.0", "abc", "", "{}"});
    server_->add_async_route("GET", "/later", "later", [this](std::shared_ptr<AsyncRequest> r) {
      threads_.emplace_back([r] {
        std::this_thread::sleep_for(50ms);  // the "work" of this handler, on another thread
        r->respond(Response::json(200, R"({"later":true,"id":")" + r->request.request_id + "\"}"));
      });
    });
    server_->add_async_route(
        "GET", "/held-refusal", "held_refusal", [](std::shared_ptr<AsyncRequest> r) {
          r->respond_after(1500ms, Response::refusal(429, "limit_exceeded", "slow down", 2500ms));
          EXPECT_FALSE(r->respond(Response::json(200, "{}")));
        });
    server_->add_route("GET", "/block", "block", Dispatch::kInline, [this](const Request&) {
      block_started_.set_value();
      std::this_thread::sleep_for(400ms);  // the event loop is busy: everything else waits
      return Response::json(200, "{}");
    });
    server_->add_async_route("GET", "/at-once", "at_once", [](std::shared_ptr<AsyncRequest> r) {
      r->respond(Response::json(200, R"({"at_once":true})"));  // before the handler returns
    });
    server_->add_async_route("GET", "/hold", "hold",
                             [this](std::shared_ptr<AsyncRequest> r) { held_.hold(std::move(r)); });
    // Holds its request until it is cancelled, then lets go of it (as work that aborts its own
    // outbound requests does).
    server_->add_async_route("GET", "/until-cancelled", "until_cancelled",
                             [this](std::shared_ptr<AsyncRequest> r) {
                               auto slot = std::make_shared<std::shared_ptr<AsyncRequest>>(r);
                               auto reg = r->cancel->on_cancel([slot](Reason) { slot->reset(); });
                               std::lock_guard lock(held_.mu);
                               let_go_.push_back(std::move(reg));
                               held_.cv.notify_all();
                             });
    // Answers 200 from its cancellation callback: the answer of work that reports its own
    // cancellation (e.g. as a timeout) as soon as it is cancelled.
    server_->add_async_route("GET", "/answers-when-cancelled", "answers_when_cancelled",
                             [this](std::shared_ptr<AsyncRequest> r) {
                               auto reg = r->cancel->on_cancel([r](Reason) {
                                 r->respond(Response::json(200, R"({"late":true})"));
                               });
                               std::lock_guard lock(held_.mu);
                               let_go_.push_back(std::move(reg));
                               held_.cv.notify_all();
                             });
    server_->add_route("POST", "/size", "size", Dispatch::kInline, [](const Request& r) {
      return Response::json(200, R"({"bytes":)" + std::to_string(r.body.size()) + "}");
    });
    server_->add_route("GET", "/worker-hold", "worker_hold", Dispatch::kWorker,
                       [this](const Request& r) {
                         worker_started_.set_value();
                         std::promise<Reason> p;
                         auto reg = r.cancel->on_cancel([&p](Reason why) { p.set_value(why); });
                         worker_saw_ = p.get_future().wait_for(5s) == std::future_status::ready
                                           ? r.cancel->reason()
                                           : Reason::kNone;
                         worker_done_.set_value();
                         return Response::json(200, "{}");
                       });
    port_ = server_->start();
    base_ = "http://127.0.0.1:" + std::to_string(port_);
  }
  void TearDown() override {
    held_.clear();
    if (server_) {
      server_->stop();
      server_->run_until_signal();
    }
    for (auto& t : threads_) t.join();
  }
  std::string metrics_text() {
    ClientRequest r;
    r.url = base_ + "/metrics";
    auto res = client_.send(r);
    return res ? res->body : "";
  }
  // Starts the server with a drain grace of 300 ms and sends `path` (a route that keeps its
  // request until the drain cancels it); false when its handler has not registered in let_go_
  // within 5 s.
  bool start_draining_test(const std::string& path, std::future<ClientResult>& pending) {
    ServerOptions o;
    o.shutdown_grace = 300ms;
    start(o);
    pending = send_async(client_, path);
    std::unique_lock lock(held_.mu);
    return held_.cv.wait_for(lock, 5s, [&] { return !let_go_.empty(); });
  }
  // The answer of a request that the drain cancelled: 503, naming the shutdown.
  static void expect_shutdown_answer(std::future<ClientResult>& pending) {
    ASSERT_EQ(pending.wait_for(5s), std::future_status::ready);
    auto res = pending.get();
    ASSERT_TRUE(res) << res.error().message;
    EXPECT_EQ(res->status, 503u) << res->body;
    EXPECT_NE(res->body.find("shutting_down"), std::string::npos) << res->body;
  }
  // async_send, then the result through a future.
  std::future<ClientResult> send_async(HttpClient& c, std::string path,
                                       std::shared_ptr<Cancellation> cancel = nullptr,
                                       Clock::time_point deadline = Clock::time_point::max()) {
    auto p = std::make_shared<std::promise<ClientResult>>();
    auto f = p->get_future();
    ClientRequest r;
    r.url = base_ + path;
    r.deadline = deadline;
    c.async_send(std::move(r), std::move(cancel), [p](ClientResult res) { p->set_value(res); });
    return f;
  }

  std::unique_ptr<Server> server_;
  std::vector<std::thread> threads_;
  Held held_;
  std::vector<Cancellation::Registration> let_go_;  // under held_.mu
  HttpClient client_;
  std::uint16_t port_ = 0;
  std::string base_;
  Reason worker_saw_ = Reason::kNone;
  std::promise<void> worker_started_;
  std::promise<void> block_started_;
  std::promise<void> worker_done_;
};

TEST(CancellationTest, CallbacksRunOnceAndRegistrationsUnregister) {
  auto c = Cancellation::make();
  int a = 0, b = 0;
  auto ra = c->on_cancel([&](Reason why) { a += why == Reason::kDeadline ? 1 : 100; });
  {
    auto rb = c->on_cancel([&](Reason) { ++b; });
  }  // dropped: never runs
  EXPECT_FALSE(c->cancelled());
  EXPECT_TRUE(c->cancel(Reason::kDeadline));
  EXPECT_FALSE(c->cancel(Reason::kClientGone));  // the first reason wins
  EXPECT_EQ(c->reason(), Reason::kDeadline);
  EXPECT_EQ(a, 1);
  EXPECT_EQ(b, 0);
  int late = 0;
  auto rl = c->on_cancel([&](Reason why) { late = why == Reason::kDeadline ? 1 : 2; });
  EXPECT_EQ(late, 1);  // already cancelled: at once
  EXPECT_FALSE(Cancellation::make()->cancel(Reason::kNone));
  EXPECT_EQ(to_string(Reason::kClientGone), "client_gone");
}

TEST(CancellationTest, DroppingARegistrationWaitsForItsRunningCallback) {
  auto c = Cancellation::make();
  std::promise<void> entered;
  std::atomic<bool> finished{false};
  auto reg = c->on_cancel([&](Reason) {
    entered.set_value();
    std::this_thread::sleep_for(50ms);
    finished = true;
  });
  std::thread t([&] { c->cancel(Reason::kShutdown); });
  entered.get_future().wait();
  reg.reset();  // must not return while the callback still runs
  EXPECT_TRUE(finished.load());
  t.join();
}

TEST_F(AsyncTest, AsyncRouteAnswersLaterFromAnotherThread) {
  start();
  ClientRequest r;
  r.url = base_ + "/later";
  r.headers = {{"x-request-id", "later-1"}};
  auto res = client_.send(r);
  ASSERT_TRUE(res) << res.error().message;
  EXPECT_EQ(res->status, 200u);
  EXPECT_EQ(res->body, R"({"later":true,"id":"later-1"})");
  // The connection is kept alive and serves the next request.
  auto again = client_.send(r);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 200u);
}

TEST_F(AsyncTest, AHeldAnswerGoesLaterWithoutHoldingTheEventLoop) {
  start();  // one event-loop thread
  const auto t0 = Clock::now();
  auto held = send_async(client_, "/held-refusal");
  // The loop serves other requests while the answer waits on its 1.5 s timer: the health check
  // is answered first (a loop held for the wait would answer it after the refusal). Its order,
  // not its time: on a loaded machine a round trip can take a few hundred ms.
  HttpClient other;
  ClientRequest health;
  health.url = base_ + "/healthz";
  auto res = other.send(health);
  ASSERT_TRUE(res) << res.error().message;
  EXPECT_EQ(res->status, 200u);
  EXPECT_NE(held.wait_for(0s), std::future_status::ready) << "the held answer came first";
  ASSERT_EQ(held.wait_for(10s), std::future_status::ready);
  const ClientResult refused = held.get();
  ASSERT_TRUE(refused) << refused.error().message;
  EXPECT_GE(Clock::now() - t0, 1500ms);
  EXPECT_EQ(refused->status, 429u);
  EXPECT_NE(refused->body.find("slow down"), std::string::npos);
  bool retry_after = false;
  for (const Header& h : refused->headers) retry_after |= h.name == "retry-after" && h.value == "3";
  EXPECT_TRUE(retry_after) << "Retry-After is the delay rounded up to whole seconds";
}

TEST_F(AsyncTest, RequestsQueuedBehindABusyEventLoopAreRefusedAtOnce) {
  ServerOptions o;
  o.max_loop_lag = 50ms;
  start(o);  // one event-loop thread
  const std::string lagged = R"(wf_http_rejected_total{reason="event_loop_lag"})";
  const std::string refusal_time = "wf_http_refusal_duration_seconds_count";
  const double before = metric(metrics_text(), lagged);
  const double refusals_timed = metric(metrics_text(), refusal_time);
  // Connections open and served before the loop gets busy.
  const int call = connect_loopback(port_);
  const int health = connect_loopback(port_);
  write_all(call, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  write_all(health, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_NE(read_until(call, R"({"status":"ok"})").find("200 OK"), std::string::npos);
  ASSERT_NE(read_until(health, R"({"status":"ok"})").find("200 OK"), std::string::npos);
  const int blocker = connect_loopback(port_);
  write_all(blocker, "GET /block HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  ASSERT_EQ(block_started_.get_future().wait_for(5s), std::future_status::ready);
  // Both wait 400 ms behind the blocked loop: the call is refused, the health check served.
  write_all(call, "GET /later HTTP/1.1\r\nHost: x\r\n\r\n");
  write_all(health, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  const std::string refused = read_until(call, "retry shortly");
  EXPECT_NE(refused.find("HTTP/1.1 503"), std::string::npos) << refused;
  EXPECT_NE(refused.find("event loop is"), std::string::npos) << refused;
  std::string lower = refused;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  EXPECT_NE(lower.find("retry-after: 1\r\n"), std::string::npos) << refused;
  EXPECT_NE(read_to_eof(health).find("200 OK"), std::string::npos);
  EXPECT_NE(read_to_eof(blocker).find("200 OK"), std::string::npos);
  EXPECT_EQ(metric(metrics_text(), lagged), before + 1);
  EXPECT_EQ(metric(metrics_text(), refusal_time), refusals_timed + 1);
  // Once the backlog is served, calls run again (the same connection). On a loaded machine the
  // lag probe itself runs over 50 ms late now and then, and sheds a call for the same reason: such
  // a refusal is tried again on a new connection, for up to 10 s (a loop that never recovers
  // still fails).
  std::this_thread::sleep_for(500ms);
  write_all(call, "GET /later HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  std::string served = read_to_eof(call);
  for (int retry = 0; retry < 100 && served.find("event loop is") != std::string::npos; ++retry) {
    std::this_thread::sleep_for(100ms);
    const int again = connect_loopback(port_);
    write_all(again, "GET /later HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    served = read_to_eof(again);
    close(again);
  }
  EXPECT_NE(served.find("200 OK"), std::string::npos) << served;
  EXPECT_NE(served.find(R"("later":true)"), std::string::npos) << served;
  EXPECT_GT(metric(metrics_text(), "wf_http_event_loop_lag_seconds_count"), 0);
  close(call);
  close(health);
  close(blocker);
}

TEST(AsyncRequestTest, RespondAfterWithoutATimerAnswersAtOnce) {
  std::optional<Response> got;
  AsyncRequest ar(Request{}, nullptr, [&](Response r) { got = std::move(r); });
  EXPECT_TRUE(ar.respond_after(200ms, Response::refusal(503, "overloaded", "busy")));
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, 503u);
  EXPECT_FALSE(ar.respond(Response::json(200, "{}")));
}

// An answer held with respond_after() goes through the wrapper a handler's wrapper installed (as
// admission's, which charges the call), with its delay, as an answer given at once does.
TEST(AsyncRequestTest, BeforeAnswerSeesHeldAnswersToo) {
  std::vector<std::pair<std::string, std::chrono::milliseconds>> later;
  std::vector<std::string> now;
  AsyncRequest held(
      Request{}, nullptr, [&](Response r) { now.push_back(r.body); },
      [&](Response r, std::chrono::milliseconds delay) { later.emplace_back(r.body, delay); });
  held.before_answer([](Response& r) { r.body += " seen"; });
  EXPECT_TRUE(held.respond_after(200ms, Response::json(429, "held")));
  ASSERT_EQ(later.size(), 1u);
  EXPECT_EQ(later[0].first, "held seen");
  EXPECT_EQ(later[0].second, 200ms);
  EXPECT_TRUE(now.empty());

  AsyncRequest at_once(
      Request{}, nullptr, [&](Response r) { now.push_back(r.body); },
      [&](Response r, std::chrono::milliseconds delay) { later.emplace_back(r.body, delay); });
  at_once.before_answer([](Response& r) { r.body += " seen"; });
  EXPECT_TRUE(at_once.respond(Response::json(200, "now")));
  EXPECT_FALSE(at_once.respond_after(200ms, Response::json(429, "again")));
  ASSERT_EQ(now.size(), 1u);
  EXPECT_EQ(now[0], "now seen");
  EXPECT_EQ(later.size(), 1u);
}

// The server's form: one function gets every answer with its delay (0: at once; a negative
// delay is 0), and only the first answer counts.
TEST(AsyncRequestTest, OneDeliverFunctionGetsEachAnswerWithItsDelay) {
  std::vector<std::pair<unsigned, std::chrono::milliseconds>> got;
  auto make = [&] {
    return std::make_shared<AsyncRequest>(
        Request{}, nullptr,
        AsyncRequest::DeliverLater([&](Response r, std::chrono::milliseconds delay) {
          got.emplace_back(r.status, delay);
        }));
  };
  auto a = make();
  EXPECT_TRUE(a->respond(Response::json(200, "{}")));
  EXPECT_FALSE(a->respond_after(50ms, Response::json(503, "{}")));
  auto b = make();
  EXPECT_TRUE(b->respond_after(50ms, Response::json(503, "{}")));
  auto c = make();
  EXPECT_TRUE(c->respond_after(-5ms, Response::json(429, "{}")));
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0], std::make_pair(200u, std::chrono::milliseconds(0)));
  EXPECT_EQ(got[1], std::make_pair(503u, std::chrono::milliseconds(50)));
  EXPECT_EQ(got[2], std::make_pair(429u, std::chrono::milliseconds(0)));
  // Unanswered and not cancelled: the destructor answers 500 through the same function.
  make().reset();
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[3].first, 500u);
}

TEST_F(AsyncTest, ClientHangUpCancelsWithClientGone) {
  start();
  const double before = metric(
      metrics_text(), R"(wf_http_requests_cancelled_total{reason="client_gone",route="hold"})");
  const int fd = connect_loopback(port_);
  write_all(fd, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(held_.wait_requests(1));
  const auto closed_at = Clock::now();
  close(fd);
  ASSERT_TRUE(held_.wait_cancels(1));
  EXPECT_EQ(held_.cancels[0].first, Reason::kClientGone);
  // ~ms in practice (the watch reads the socket, no polling); the bound leaves room for a loaded
  // machine and still fails a watch that polls every few seconds (no watch: wait_cancels fails).
  EXPECT_LT(held_.cancels[0].second - closed_at, 2s);
  EXPECT_EQ(metric(metrics_text(),
                   R"(wf_http_requests_cancelled_total{reason="client_gone",route="hold"})"),
            before + 1);
  // Answering after the client left is harmless.
  EXPECT_TRUE(held_.requests[0]->respond(Response::json(200, "{}")));
  EXPECT_FALSE(held_.requests[0]->respond(Response::json(200, "{}")));
}

// While a handler works off the loop, its connection keeps no coroutine: the session's coroutine
// ends and the answer starts a new one, which writes it and reads on. One connection goes on after
// an answer from another thread, one given before the handler returned, one given later by the
// test and an inline one; a hang-up during the next request still cancels it, and the
// connection and in-flight gauges come back to where they were.
TEST_F(AsyncTest, AConnectionGoesOnAfterEveryKindOfAnswerAndItsHangUpStillCancels) {
  start();
  const std::string open_gauge = "wf_http_connections_open";
  const std::string flight_gauge = "wf_http_requests_in_flight";
  const std::string before_text = metrics_text();  // this client's connection is open from here
  const double open_before = metric(before_text, open_gauge);
  const double flight_before = metric(before_text, flight_gauge);
  const int fd = connect_loopback(port_);
  write_all(fd,
            "GET /later HTTP/1.1\r\nHost: x\r\nX-Request-Id: one\r\n\r\n"
            "GET /at-once HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string out = read_until(fd, R"({"at_once":true})");
  EXPECT_EQ(count_of(out, "HTTP/1.1 200"), 2) << out;
  EXPECT_LT(out.find(R"("id":"one")"), out.find(R"({"at_once":true})")) << out;
  write_all(fd, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(held_.wait_requests(1));
  held_.requests[0]->respond(Response::json(200, R"({"held":true})"));
  out = read_until(fd, R"({"held":true})");
  EXPECT_EQ(count_of(out, "HTTP/1.1 200"), 1) << out;
  write_all(fd, "GET /_info/version HTTP/1.1\r\nHost: x\r\n\r\n");
  out = read_until(fd, R"({"version":"1.0"})");
  EXPECT_EQ(count_of(out, "HTTP/1.1 200"), 1) << out;
  write_all(fd, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(held_.wait_requests(2));
  close(fd);
  ASSERT_TRUE(held_.wait_cancels(1));
  EXPECT_EQ(held_.cancels[0].first, Reason::kClientGone);
  // The session records the 499 and closes after the cancellation: wait (bounded) for it.
  std::string text;
  for (int i = 0; i < 500; ++i) {
    text = metrics_text();
    if (metric(text, open_gauge) == open_before) break;
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(metric(text, open_gauge), open_before) << text;
  EXPECT_EQ(metric(text, flight_gauge), flight_before) << text;
}

TEST_F(AsyncTest, WorkerRoutesSeeTheHangUpToo) {
  ServerOptions o;
  o.worker_threads = 1;
  start(o);
  const int fd = connect_loopback(port_);
  write_all(fd, "GET /worker-hold HTTP/1.1\r\nHost: x\r\n\r\n");
  // The worker waits on the cancellation; closing the connection raises it.
  ASSERT_EQ(worker_started_.get_future().wait_for(5s), std::future_status::ready);
  close(fd);
  ASSERT_EQ(worker_done_.get_future().wait_for(5s), std::future_status::ready);
  EXPECT_EQ(worker_saw_, Reason::kClientGone);
}

TEST_F(AsyncTest, DeadlineCancelsAndTheServerAnswers504AfterTheGrace) {
  ServerOptions o;
  o.request_timeout = 100ms;
  o.deadline_grace = 100ms;
  start(o);
  const auto t0 = Clock::now();
  ClientRequest r;
  r.url = base_ + "/hold";
  auto res = client_.send(r);
  ASSERT_TRUE(res) << res.error().message;
  EXPECT_EQ(res->status, 504u);
  EXPECT_NE(res->body.find("deadline_exceeded"), std::string::npos);
  EXPECT_GE(Clock::now() - t0, 200ms);
  ASSERT_TRUE(held_.wait_cancels(1));
  EXPECT_EQ(held_.cancels[0].first, Reason::kDeadline);
}

TEST_F(AsyncTest, AHandlerMayAnswerItsOwnDeadline) {
  ServerOptions o;
  o.request_timeout = 100ms;
  o.deadline_grace = 10s;  // the server's own 504 would come at 10.1 s
  start(o);
  ClientRequest r;
  r.url = base_ + "/hold";
  std::thread answer([this] {
    ASSERT_TRUE(held_.wait_cancels(1));
    held_.requests[0]->respond(Response::json(200, R"({"timed_out":true})"));
  });
  const auto t0 = Clock::now();
  auto res = client_.send(r);
  answer.join();
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200u);
  EXPECT_EQ(res->body, R"({"timed_out":true})");  // the handler's answer, not the server's 504
  EXPECT_LT(Clock::now() - t0, 10s);
}

TEST_F(AsyncTest, PipelinedRequestAfterTheHangUpWatchIsStillServed) {
  start();
  const int fd = connect_loopback(port_);
  // Both requests in one write: the second arrives while the first is in progress, so the
  // hang-up watch reads it; it must be parsed and answered after the first.
  write_all(fd,
            "GET /later HTTP/1.1\r\nHost: x\r\nX-Request-Id: first\r\n\r\n"
            "GET /_info/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  const std::string out = read_to_eof(fd);
  close(fd);
  EXPECT_EQ(count_of(out, "HTTP/1.1 200"), 2) << out;
  const auto first = out.find(R"("id":"first")");
  const auto second = out.find(R"({"version":"1.0"})");
  ASSERT_NE(first, std::string::npos) << out;
  ASSERT_NE(second, std::string::npos) << out;
  EXPECT_LT(first, second);
}

TEST_F(AsyncTest, RequestSentWhileAnotherIsInProgressIsServedNext) {
  start();
  const int fd = connect_loopback(port_);
  write_all(fd, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(held_.wait_requests(1));
  // Arrives while /hold is in progress: read by the hang-up watch, kept for the parser.
  write_all(fd, "GET /_info/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  held_.requests[0]->respond(Response::json(200, R"({"held":true})"));
  const std::string out = read_to_eof(fd);
  close(fd);
  EXPECT_EQ(count_of(out, "HTTP/1.1 200"), 2) << out;
  const auto first = out.find(R"({"held":true})");
  const auto second = out.find(R"({"version":"1.0"})");
  ASSERT_NE(first, std::string::npos) << out;
  ASSERT_NE(second, std::string::npos) << out;
  EXPECT_LT(first, second);
  EXPECT_TRUE(held_.cancels.empty());  // not mistaken for a hang-up
}

// While a request is in progress its connection keeps a small read buffer (the watch reads 512
// bytes at a time, up to 64 KiB): a pipelined request with a larger body must still arrive whole,
// whether the watch read all of it or stopped at its cap and left the rest to the parser.
TEST_F(AsyncTest, PipelinedBodiesLargerThanTheWatchBufferAreServedWhole) {
  start();
  for (const std::size_t bytes : {700u, 5000u, 100000u}) {
    held_.clear();
    const int fd = connect_loopback(port_);
    write_all(fd, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
    ASSERT_TRUE(held_.wait_requests(1));
    std::string body(bytes, 'a');
    for (std::size_t i = 0; i < bytes; i += 97) body[i] = static_cast<char>('b' + i % 20);
    write_all(fd, "POST /size HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(bytes) +
                      "\r\n\r\n" + body +
                      "GET /_info/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    std::this_thread::sleep_for(100ms);  // let the watch read what it will
    held_.requests[0]->respond(Response::json(200, R"({"held":true})"));
    const std::string out = read_to_eof(fd);
    close(fd);
    EXPECT_EQ(count_of(out, "HTTP/1.1 200"), 3) << bytes << ": " << out.substr(0, 2000);
    const auto held = out.find(R"({"held":true})");
    const auto size = out.find(R"({"bytes":)" + std::to_string(bytes) + "}");
    const auto version = out.find(R"({"version":"1.0"})");
    ASSERT_NE(held, std::string::npos) << bytes << ": " << out.substr(0, 2000);
    ASSERT_NE(size, std::string::npos) << bytes << ": " << out.substr(0, 2000);
    ASSERT_NE(version, std::string::npos) << bytes << ": " << out.substr(0, 2000);
    EXPECT_LT(held, size);
    EXPECT_LT(size, version);
    EXPECT_TRUE(held_.cancels.empty()) << bytes;  // not mistaken for a hang-up
  }
}

// A large request body is read whole, and the next request on the same connection after it is
// served too (the buffer that held the large body is given back while the handler works).
TEST_F(AsyncTest, LargeBodyThenAnotherRequestOnTheSameConnection) {
  start();
  const int fd = connect_loopback(port_);
  const std::string body(300000, 'z');
  write_all(fd, "POST /size HTTP/1.1\r\nHost: x\r\nContent-Length: 300000\r\n\r\n" + body +
                    "GET /later HTTP/1.1\r\nHost: x\r\nX-Request-Id: after\r\n\r\n"
                    "GET /_info/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  const std::string out = read_to_eof(fd);
  close(fd);
  EXPECT_EQ(count_of(out, "HTTP/1.1 200"), 3) << out;
  const auto size = out.find(R"({"bytes":300000})");
  const auto later = out.find(R"("id":"after")");
  const auto version = out.find(R"({"version":"1.0"})");
  ASSERT_NE(size, std::string::npos) << out;
  ASSERT_NE(later, std::string::npos) << out;
  ASSERT_NE(version, std::string::npos) << out;
  EXPECT_LT(size, later);
  EXPECT_LT(later, version);
}

TEST_F(AsyncTest, DrainWithAHandlerThatNeverAnswersEndsWithinTheGrace) {
  ServerOptions o;
  o.shutdown_grace = 300ms;
  start(o);
  auto pending = send_async(client_, "/hold");
  ASSERT_TRUE(held_.wait_requests(1));
  const auto t0 = Clock::now();
  server_->stop();
  const int code = server_->run_until_signal();
  const auto took = Clock::now() - t0;
  held_.clear();  // (answers go to the server's event loop: before it is destroyed)
  server_.reset();
  EXPECT_EQ(code, 1);  // its handler never let go of the request it was cancelled for
  // The grace, two 1 s waits for cancelled requests (their answers, their handlers), and a
  // margin for a loaded machine: bounded, where a drain that waited for the handler never ends.
  EXPECT_LT(took, 300ms + 2000ms + 5000ms);
  ASSERT_NO_FATAL_FAILURE(expect_shutdown_answer(pending));
  ASSERT_TRUE(held_.wait_cancels(1));
  EXPECT_EQ(held_.cancels[0].first, Reason::kShutdown);
}

// Work that outlives the grace is cancelled and answered 503 naming the shutdown; once its
// handler has let go of it, the drain is clean: exit code 0.
TEST_F(AsyncTest, DrainCancelsWorkPastTheGraceAndExitsZeroOnceItsHandlersLetGo) {
  std::future<ClientResult> pending;
  ASSERT_TRUE(start_draining_test("/until-cancelled", pending));
  const auto t0 = Clock::now();
  server_->stop();
  const int code = server_->run_until_signal();
  const auto took = Clock::now() - t0;
  server_.reset();
  EXPECT_EQ(code, 0);  // 1 if it had given up waiting for the handler to let go
  EXPECT_LT(took, 300ms + 2000ms + 5000ms);  // bounded, as above
  expect_shutdown_answer(pending);
  std::lock_guard lock(held_.mu);
  let_go_.clear();
}

// A handler that answers the moment the drain cancels its request (its answer is queued on the
// connection before the session wakes up) does not replace the 503 that names the shutdown.
TEST_F(AsyncTest, DrainAnswers503EvenWhenTheHandlerAnswersAsItIsCancelled) {
  std::future<ClientResult> pending;
  ASSERT_TRUE(start_draining_test("/answers-when-cancelled", pending));
  server_->stop();
  const int code = server_->run_until_signal();
  {
    std::lock_guard lock(held_.mu);
    let_go_.clear();  // lets go of the request (its callback holds it): before the server goes
  }
  server_.reset();
  EXPECT_EQ(code, 0);
  expect_shutdown_answer(pending);
}

TEST_F(AsyncTest, AsyncSendSucceedsAndReusesThePool) {
  start();
  const std::string accepted = "wf_http_connections_accepted_total";
  auto first = send_async(client_, "/healthz").get();
  ASSERT_TRUE(first);
  const double before = metric(metrics_text(), accepted);
  for (int i = 0; i < 10; ++i) {
    auto res = send_async(client_, "/later").get();
    ASSERT_TRUE(res) << res.error().message;
    EXPECT_EQ(res->status, 200u);
  }
  EXPECT_EQ(metric(metrics_text(), accepted), before);  // all on the pooled connection
}

TEST_F(AsyncTest, AsyncSendTimesOut) {
  start();
  const auto t0 = Clock::now();
  auto pending = send_async(client_, "/hold", nullptr, Clock::now() + 100ms);
  ASSERT_EQ(pending.wait_for(10s), std::future_status::ready) << "the deadline did not end it";
  auto res = pending.get();
  ASSERT_FALSE(res);
  EXPECT_EQ(res.error().kind, ClientError::Kind::kTimeout);
  EXPECT_LT(Clock::now() - t0, 5s);
}

TEST_F(AsyncTest, CancellingAsyncSendClosesItsConnection) {
  start();
  const std::string accepted = "wf_http_connections_accepted_total";
  const std::string gone = R"(wf_http_requests_cancelled_total{reason="client_gone",route="hold"})";
  ASSERT_TRUE(send_async(client_, "/healthz").get());  // one pooled connection
  const std::string m0 = metrics_text();
  auto cancel = Cancellation::make();
  auto pending = send_async(client_, "/hold", cancel);
  ASSERT_TRUE(held_.wait_requests(1));
  cancel->cancel(Reason::kAbandoned);
  ASSERT_EQ(pending.wait_for(2s), std::future_status::ready);
  auto res = pending.get();
  ASSERT_FALSE(res);
  EXPECT_EQ(res.error().kind, ClientError::Kind::kCancelled);
  // The server saw the connection close (its request was cancelled as client_gone)...
  ASSERT_TRUE(held_.wait_cancels(1));
  EXPECT_EQ(held_.cancels[0].first, Reason::kClientGone);
  // ...and it was not returned to the pool: the next request needs a new connection.
  const std::string m1 = metrics_text();
  EXPECT_EQ(metric(m1, gone), metric(m0, gone) + 1);
  EXPECT_EQ(metric(m1, accepted), metric(m0, accepted) + 1);
  // Cancelled before it starts: completes at once with kCancelled.
  auto early = Cancellation::make();
  early->cancel(Reason::kAbandoned);
  auto res2 = send_async(client_, "/later", early).get();
  ASSERT_FALSE(res2);
  EXPECT_EQ(res2.error().kind, ClientError::Kind::kCancelled);
}

// An exchange started from a handler of the client's event loop (as an evaluation on the loop sends
// its code) starts after that handler, on that thread: `done` never runs inside async_send, even
// when the request fails in its first step (no time left), and on a loop of one thread the
// request, its answer and `done` stay on that thread.
TEST_F(AsyncTest, AsyncSendFromTheLoopStartsAfterTheHandlerOnItsThread) {
  start();
  boost::asio::io_context ioc(1);
  ClientOptions co;
  co.io_context = &ioc;
  auto client = std::make_unique<HttpClient>(co);
  struct Seen {
    std::atomic<bool> returned{false};
    bool inside = false;
    std::thread::id thread;
    std::optional<ClientResult> result;
  };
  Seen answered, expired;
  std::thread::id loop_thread;
  std::promise<void> both;
  std::atomic<int> count{0};
  auto on_done = [&](Seen& seen) {
    return [&](ClientResult r) {
      seen.inside = !seen.returned.load();
      seen.thread = std::this_thread::get_id();
      seen.result = std::move(r);
      if (++count == 2) both.set_value();
    };
  };
  boost::asio::post(ioc, [&] {
    loop_thread = std::this_thread::get_id();
    ClientRequest ok;
    ok.url = base_ + "/healthz";
    client->async_send(std::move(ok), nullptr, on_done(answered));
    answered.returned = true;
    ClientRequest late;
    late.url = base_ + "/healthz";
    late.deadline = Clock::now() - 1ms;
    client->async_send(std::move(late), nullptr, on_done(expired));
    expired.returned = true;
  });
  auto guard = boost::asio::make_work_guard(ioc);
  std::thread loop([&] { ioc.run(); });
  const bool finished = both.get_future().wait_for(10s) == std::future_status::ready;
  guard.reset();
  ioc.stop();
  loop.join();
  client.reset();
  ASSERT_TRUE(finished);
  EXPECT_FALSE(answered.inside);
  EXPECT_FALSE(expired.inside);
  EXPECT_EQ(answered.thread, loop_thread);
  EXPECT_EQ(expired.thread, loop_thread);
  ASSERT_TRUE(answered.result.has_value());
  ASSERT_TRUE(answered.result->has_value()) << answered.result->error().message;
  EXPECT_EQ((*answered.result)->status, 200u);
  ASSERT_TRUE(expired.result.has_value());
  ASSERT_FALSE(expired.result->has_value());
  EXPECT_EQ(expired.result->error().kind, ClientError::Kind::kTimeout);
}

// wf::http::async_send with use_awaitable, from a coroutine on the server's own event loop.
TEST_F(AsyncTest, AwaitableAsyncSendFromACoroutineOnTheServerLoop) {
  start();
  ClientOptions co;
  co.io_context = &server_->io_context();
  HttpClient client(co);
  std::promise<std::pair<ClientResult, ClientResult>> results;
  auto cancel = Cancellation::make();
  auto work = [&]() -> boost::asio::awaitable<void> {
    ClientRequest ok;
    ok.url = base_ + "/later";
    ClientResult first =
        co_await async_send(client, std::move(ok), nullptr, boost::asio::use_awaitable);
    ClientRequest held;
    held.url = base_ + "/hold";
    ClientResult second =
        co_await async_send(client, std::move(held), cancel, boost::asio::use_awaitable);
    results.set_value({std::move(first), std::move(second)});
  };
  boost::asio::co_spawn(server_->io_context(), work(), boost::asio::detached);
  ASSERT_TRUE(held_.wait_requests(1));
  cancel->cancel(Reason::kAbandoned);
  auto f = results.get_future();
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
  auto [first, second] = f.get();
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_EQ(first->status, 200u);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().kind, ClientError::Kind::kCancelled);
}

int thread_count() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Threads:", 0) == 0) return std::stoi(line.substr(8));
  }
  return -1;
}

// A server on any free port with two event loops and no worker threads, without an access log.
ServerOptions two_loops_no_workers() {
  ServerOptions o;
  o.port = 0;
  o.access_log = false;
  o.io_threads = 2;
  o.worker_threads = 0;
  return o;
}

// 1000 requests in flight at once to a peer that answers each after 300 ms, everything on one
// event loop of 2 threads (server and client alike), no worker threads.
TEST(AsyncLoad, ThousandConcurrentRequestsOnTwoIoThreads) {
  ServerOptions o = two_loops_no_workers();
  o.max_connections = 2000;
  Server server(o);
  server.add_async_route("GET", "/slow", "slow", [&server](std::shared_ptr<AsyncRequest> r) {
    auto timer = std::make_shared<boost::asio::steady_timer>(server.io_context(), 300ms);
    timer->async_wait([timer, r](boost::system::error_code) {
      r->respond(Response::json(200, R"({"slow":true})"));
    });
  });
  const int threads_before = thread_count();
  const std::uint16_t port = server.start();
  {
    ClientOptions co;
    co.io_context = &server.io_context();
    HttpClient client(co);
    std::mutex mu;
    std::condition_variable cv;
    int done = 0, ok = 0;
    int peak_threads = 0;
    const auto t0 = Clock::now();
    for (int i = 0; i < 1000; ++i) {
      ClientRequest r;
      r.url = "http://127.0.0.1:" + std::to_string(port) + "/slow";
      client.async_send(std::move(r), nullptr, [&](ClientResult res) {
        std::lock_guard lock(mu);
        ++done;
        if (res && res->status == 200) ++ok;
        peak_threads = std::max(peak_threads, thread_count());
        cv.notify_all();
      });
    }
    {
      std::unique_lock lock(mu);
      ASSERT_TRUE(cv.wait_for(lock, 60s, [&] { return done == 1000; })) << done << " done";
    }
    const auto took = Clock::now() - t0;
    EXPECT_EQ(ok, 1000);
    // Concurrent, not one at a time (that would take 300 s, or 150 s on two threads).
    EXPECT_LT(took, 30s);
    EXPECT_LE(peak_threads, threads_before + 2);  // the two io threads, nothing per request
    std::printf("1000 concurrent 300 ms requests: %.2f s, peak threads %d (before %d)\n",
                std::chrono::duration<double>(took).count(), peak_threads, threads_before);
  }
  server.stop();
  EXPECT_EQ(server.run_until_signal(), 0);
}

// With io_threads 2 the server runs two event loops, one thread each: connections go to each in
// turn, and a request's handler runs on its connection's loop. An HttpClient on the server's loops
// (as the orchestrator's) does the I/O of a request sent from a loop's thread on that loop: its
// answer comes back on the thread that sent it, not on the other loop's.
TEST(AsyncLoad, ConnectionsSpreadOverTheLoopsAndOutboundRequestsStayOnTheirs) {
  ServerOptions o = two_loops_no_workers();
  Server server(o);
  // The outbound requests go to another server (their connections would take turns on this one's
  // loops too).
  ServerOptions po;
  po.port = 0;
  po.access_log = false;
  Server peer(po);
  peer.add_route("GET", "/ok", "ok", Dispatch::kInline,
                 [](const Request&) { return Response::json(200, "{}"); });
  const std::uint16_t peer_port = peer.start();
  ASSERT_EQ(server.io_contexts().size(), 2u);
  EXPECT_EQ(server.io_contexts().front(), &server.io_context());
  std::uint16_t port = 0;
  ClientOptions inner_options;
  inner_options.io_contexts = server.io_contexts();
  auto inner = std::make_shared<HttpClient>(inner_options);
  auto id_of = [] {
    return std::to_string(std::hash<std::thread::id>()(std::this_thread::get_id()));
  };
  // Answers "<handler's thread> <thread the inner request's answer came back on>".
  server.add_async_route("GET", "/where", "where", [&](std::shared_ptr<AsyncRequest> r) {
    ClientRequest q;
    q.url = "http://127.0.0.1:" + std::to_string(peer_port) + "/ok";
    inner->async_send(std::move(q), nullptr, [r, here = id_of(), id_of](ClientResult res) {
      if (!res) {
        r->respond(Response::json(500, R"({"inner":"failed"})"));
        return;
      }
      r->respond(Response::json(200, "\"" + here + " " + id_of() + "\""));
    });
  });
  port = server.start();
  std::vector<std::string> answers;
  {
    // Two clients: two connections, accepted one after the other.
    HttpClient first, second;
    for (HttpClient* c : {&first, &second}) {
      ClientRequest q;
      q.url = "http://127.0.0.1:" + std::to_string(port) + "/where";
      auto res = c->send(q);
      ASSERT_TRUE(res) << res.error().message;
      ASSERT_EQ(res->status, 200u) << res->body;
      ASSERT_GE(res->body.size(), 2u);
      answers.push_back(res->body.substr(1, res->body.size() - 2));  // the JSON string's text
    }
  }
  server.stop();
  EXPECT_EQ(server.run_until_signal(), 0);
  inner.reset();
  peer.stop();
  EXPECT_EQ(peer.run_until_signal(), 0);
  ASSERT_EQ(answers.size(), 2u);
  std::vector<std::pair<std::string, std::string>> seen;
  for (const std::string& a : answers) {
    const auto space = a.find(' ');
    ASSERT_NE(space, std::string::npos) << a;
    seen.emplace_back(a.substr(0, space), a.substr(space + 1));
  }
  // Each request's outbound answer came back on its handler's thread...
  EXPECT_EQ(seen[0].first, seen[0].second);
  EXPECT_EQ(seen[1].first, seen[1].second);
  // ...and the two connections were served by the two loop threads.
  EXPECT_NE(seen[0].first, seen[1].first);
}

}  // namespace

namespace {

// A listening socket on 127.0.0.1 that a test serves by hand; -1 on failure (the test fails).
int listen_loopback(std::uint16_t& port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(fd, 4) != 0 || getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ADD_FAILURE() << "cannot listen on loopback: " << errno;
    if (fd >= 0) close(fd);
    return -1;
  }
  port = ntohs(addr.sin_port);
  timeval bound{5, 0};  // accept() gives up after 5 s: a test that waits in vain fails
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &bound, sizeof(bound));
  return fd;
}

}  // namespace

// A pooled connection that its peer closed while it was idle fails at once; the request goes
// again, body and all, on a fresh connection, and the caller sees only the answer.
TEST(HttpClientTest, AStalePooledConnectionIsRetriedOnAFreshOneWithTheBody) {
  std::uint16_t port = 0;
  const int listener = listen_loopback(port);
  ASSERT_GE(listener, 0);
  std::promise<std::string> second_request;
  std::thread peer([&] {
    // The first connection answers one request as keep-alive, then closes.
    int fd = accept(listener, nullptr, nullptr);
    if (fd < 0) return second_request.set_value("no first connection");
    read_until(fd, "\r\n\r\n");
    write_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none");
    close(fd);
    // The second connection gets the request again.
    fd = accept(listener, nullptr, nullptr);
    if (fd < 0) return second_request.set_value("no second connection");
    second_request.set_value(read_until(fd, "payload"));
    write_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\ntwo");
    close(fd);
  });
  HttpClient client;
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  ClientRequest first;
  first.url = base + "/first";
  auto one = client.send(first);
  ASSERT_TRUE(one) << one.error().message;
  EXPECT_EQ(one->body, "one");
  ClientRequest again;
  again.method = "POST";
  again.url = base + "/second";
  again.content_type = "text/plain";
  again.body = "payload";
  auto two = client.send(again);
  peer.join();
  close(listener);
  ASSERT_TRUE(two) << two.error().message;
  EXPECT_EQ(two->body, "two");
  const std::string seen = second_request.get_future().get();
  EXPECT_NE(seen.find("POST /second"), std::string::npos) << seen;
  EXPECT_NE(seen.find("payload"), std::string::npos) << seen;
}
