#include "wf/http/server.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <csignal>
#include <limits>
#include <list>
#include <mutex>
#include <span>
#include <stdexcept>
#include <thread>
#include <unordered_set>

#include "request_limits.h"
#include "wf/obs/log.h"
#include "wf/obs/metrics.h"
#include "wf/obs/process_stats.h"
#include "wf/obs/trace.h"
#include "wire.h"

namespace wf::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using asio::awaitable;
using asio::use_awaitable;
using tcp = asio::ip::tcp;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

namespace {

struct RouteEntry {
  std::string method;
  std::vector<std::string> segments;  // "{x}" matches any one segment
  std::string name;
  Dispatch dispatch;
  Handler handler;
  std::function<bool(const Request&)> run_inline;
  AsyncHandler async_handler;  // set for async routes (then `handler` is empty)
  bool cors = false;  // named in ServerOptions::cors_routes (headers only with cors_origin)
  // Metrics children cached per route (prometheus-cpp's Add() takes a lock).
  prometheus::Histogram* duration = nullptr;
  prometheus::Histogram* request_size = nullptr;
  prometheus::Histogram* response_size = nullptr;
  // wf_http_requests_total{route, method, status} of this route by status (100-599), looked up
  // once each (a lookup builds a label map and takes the family's lock: ~2 k instructions).
  std::shared_ptr<std::array<std::atomic<prometheus::Counter*>, 500>> requests_by_status =
      std::make_shared<std::array<std::atomic<prometheus::Counter*>, 500>>();
};

std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < path.size()) {
    if (path[i] == '/') {
      ++i;
      continue;
    }
    const std::size_t j = path.find('/', i);
    out.emplace_back(path.substr(i, j == std::string_view::npos ? std::string_view::npos : j - i));
    if (j == std::string_view::npos) break;
    i = j;
  }
  return out;
}

bool segments_match(const std::vector<std::string>& pattern, const std::vector<std::string>& path) {
  if (pattern.size() != path.size()) return false;
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    const std::string& p = pattern[i];
    if (p.size() >= 2 && p.front() == '{' && p.back() == '}') continue;
    if (p != path[i]) return false;
  }
  return true;
}

std::string_view method_label(std::string_view m) {
  static constexpr std::string_view known[] = {"GET",  "POST",    "PUT",  "DELETE",
                                               "HEAD", "OPTIONS", "PATCH"};
  for (auto k : known) {
    if (k == m) return k;
  }
  return "OTHER";
}

// Request ids are echoed only when they are short and printable, so they cannot forge log lines.
bool acceptable_request_id(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    if (c < 0x21 || c > 0x7E) return false;
  }
  return true;
}

struct Metrics {
  prometheus::Family<prometheus::Counter>& requests;
  prometheus::Family<prometheus::Histogram>& duration;
  prometheus::Family<prometheus::Histogram>& request_size;
  prometheus::Family<prometheus::Histogram>& response_size;
  prometheus::Gauge& in_flight;
  prometheus::Gauge& connections;
  prometheus::Counter& accepted;
  prometheus::Family<prometheus::Counter>& rejected;
  prometheus::Gauge& draining;
  prometheus::Family<prometheus::Counter>& cancelled;
  prometheus::Histogram& loop_lag;
  prometheus::Histogram& refusal_duration;

  static const prometheus::Histogram::BucketBoundaries& fine_buckets() {
    static const prometheus::Histogram::BucketBoundaries b{
        0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1};
    return b;
  }

  static Metrics& get() {
    static Metrics m{
        prometheus::BuildCounter()
            .Name("wf_http_requests_total")
            .Help("HTTP requests served, by route, method and status code.")
            .Register(obs::registry()),
        prometheus::BuildHistogram()
            .Name("wf_http_request_duration_seconds")
            .Help("Time from a request's headers to its response, by route and method.")
            .Register(obs::registry()),
        prometheus::BuildHistogram()
            .Name("wf_http_request_size_bytes")
            .Help("Size of request bodies, by route.")
            .Register(obs::registry()),
        prometheus::BuildHistogram()
            .Name("wf_http_response_size_bytes")
            .Help("Size of response bodies, by route.")
            .Register(obs::registry()),
        prometheus::BuildGauge()
            .Name("wf_http_requests_in_flight")
            .Help("Requests being handled now.")
            .Register(obs::registry())
            .Add({}),
        prometheus::BuildGauge()
            .Name("wf_http_connections_open")
            .Help("Client connections open now.")
            .Register(obs::registry())
            .Add({}),
        prometheus::BuildCounter()
            .Name("wf_http_connections_accepted_total")
            .Help("Client connections accepted.")
            .Register(obs::registry())
            .Add({}),
        prometheus::BuildCounter()
            .Name("wf_http_rejected_total")
            .Help("Requests or connections refused before a handler ran, by reason.")
            .Register(obs::registry()),
        prometheus::BuildGauge()
            .Name("wf_http_draining")
            .Help("1 while the server drains for shutdown, else 0.")
            .Register(obs::registry())
            .Add({}),
        prometheus::BuildCounter()
            .Name("wf_http_requests_cancelled_total")
            .Help("Requests cancelled while their handler ran, by route and reason.")
            .Register(obs::registry()),
        prometheus::BuildHistogram()
            .Name("wf_http_event_loop_lag_seconds")
            .Help("How late a timer due on the event loop ran: the time a request that becomes "
                  "readable waits behind the loop's other work.")
            .Register(obs::registry())
            .Add({}, fine_buckets()),
        prometheus::BuildHistogram()
            .Name("wf_http_refusal_duration_seconds")
            .Help("Time from a 503 refusal's request headers to its answer's write.")
            .Register(obs::registry())
            .Add({}, fine_buckets()),
    };
    return m;
  }
};

// One request whose handler runs off the session (async and kWorker routes). await_flight waits
// on `wake` for the first of: the response, the client's hang-up, the deadline, the drain.
// Touched only on `strand`.
struct Flight {
  using Strand = asio::strand<asio::io_context::executor_type>;
  // Typed on the strand, whose executor it keeps (no copy of it beside): with the control block,
  // a flight fits jemalloc's 256-byte class (one is held per parked call).
  using Timer = asio::basic_waitable_timer<std::chrono::steady_clock,
                                           asio::wait_traits<std::chrono::steady_clock>, Strand>;
  Flight(const Strand& s, const RouteEntry& r, const Request& q)
      : wake(s), route(&r), request(&q) {}
  Strand strand() { return wake.get_executor(); }
  Timer wake;
  const RouteEntry* route;
  const Request* request;  // the session's copy (ids and trace for the log), valid while waited on
  std::shared_ptr<Cancellation> cancel = Cancellation::make();
  std::optional<Response> response;
  bool client_gone = false;
  bool shutdown = false;
  bool watching = false;  // a read that notices the client's hang-up is outstanding
  bool stop_watching = false;
  // Answered with a delay (respond_after) before the handler returned: decided, only its write
  // waits, so the client's connection is not watched (start_flight).
  bool held = false;
  bool settled() const { return response || client_gone || shutdown; }
};

// A connection's state that the drain logic may touch from another thread.
struct SessionHandle {
  asio::strand<asio::io_context::executor_type> strand;
  bool admin = false;              // accepted on the admin listener: serves the admin routes only
  tcp::socket* socket = nullptr;   // valid while the session runs; touched only on `strand`
  std::shared_ptr<Flight> flight;  // the request in progress off the coroutine; only on `strand`
  std::atomic<bool> idle{true};
  explicit SessionHandle(asio::strand<asio::io_context::executor_type> s) : strand(std::move(s)) {}
};

// The outcome of matching a request against a route table.
struct Match {
  const RouteEntry* route = nullptr;       // method and path match
  const RouteEntry* cors_route = nullptr;  // a route on this path that carries CORS headers
  bool path_known = false;                 // some route has this path (405 rather than 404)
  std::string allowed;                     // the methods on this path, for Allow
};

// Constant-time comparison, for the admin token.
bool same_secret(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
  }
  return diff == 0;
}

// A request whose headers (and body) have been read: what the session needs to answer it.
struct Incoming {
  Request req;
  bool keep_alive = false;
  unsigned version = 11;
};

// One connection: its stream, its read buffer and the request being answered. The coroutine that
// reads requests and writes answers (run_session) owns it; while a request's handler works off
// the loop, the flight's wait (await_flight, a completion handler) owns it instead, so a request
// in flight keeps no coroutine frame (bench/slow_calls: memory per parked call). Touched only on
// the session's strand.
//
// The connection is a plain socket with one timer for the deadline of the read or write in
// progress (arm_deadline), where Beast's `tcp_stream` kept a shared state with three timers of its
// own (~0.7 KiB per connection, kept while a call is parked). The timeouts are the same: a read or
// write not done by its deadline ends with beast::error::timeout and the socket closed.
//
// The deadline is a field that each read or write moves; the timer is not re-armed per operation.
// Its one wait, due at or before the deadline of the operation in progress, looks at the field
// when it wakes: past, the socket is closed; later, it waits again until then; none armed, it
// stops. A request answered at once used to cancel and re-arm it twice (each cancel a handler
// through the strand, each arm a timer-queue insert and sometimes a timerfd_settime): with
// timeouts of seconds, the wait now wakes about once per timeout per connection
// (bench/README.md, "A refusal that costs the loop less", session 17).
//
// Its layout is kept within jemalloc's 896-byte size class with its shared_ptr's control block
// (bench/slow_calls: one is held per parked call): the early answer goes straight to `res`, the
// timer is typed on the strand's executor (88 bytes, not 120), the flags share a word.
struct Connection {
  using Timer = asio::basic_waitable_timer<std::chrono::steady_clock,
                                           asio::wait_traits<std::chrono::steady_clock>,
                                           asio::strand<asio::io_context::executor_type>>;
  using TimePoint = std::chrono::steady_clock::time_point;
  Connection(tcp::socket s, std::shared_ptr<SessionHandle> h)
      : socket(std::move(s)), timer(h->strand), handle(std::move(h)) {}
  tcp::socket socket;
  Timer timer;  // its wait is due at or before `deadline` while an operation is armed
  // The deadline of the read or write in progress; max(): none armed.
  TimePoint deadline = TimePoint::max();
  bool waiting = false;    // the timer has a wait outstanding
  bool timed_out = false;  // the deadline of the operation armed last closed the socket
  bool first = true;       // no request read yet
  bool deadline_passed = false;
  beast::flat_buffer buffer;
  std::shared_ptr<SessionHandle> handle;
  std::string client_address;
  // The request being answered, from its read to its answer's write.
  std::optional<Incoming> in;
  const RouteEntry* route = nullptr;
  std::size_t request_bytes = 0;
  std::shared_ptr<Flight> flight;  // while its handler works off the session
  // The answer: set by the read (411, 413, 408: answered without a handler), the route or the
  // flight; nullopt after the client went away.
  std::optional<Response> res;

  // Before a read or write on `self`'s socket: at `timeout` from now the socket is closed
  // (which ends the operation). Call operation_ended() with the operation's error when it
  // completes.
  static void arm_deadline(const std::shared_ptr<Connection>& self,
                           std::chrono::steady_clock::duration timeout) {
    Connection& c = *self;
    c.timed_out = false;
    c.deadline = std::chrono::steady_clock::now() + timeout;
    // A wait due no later wakes in time, sees the new deadline and waits on until it.
    if (c.waiting && c.timer.expiry() <= c.deadline) return;
    c.timer.expires_at(c.deadline);  // a later wait ends with operation_aborted
    wait_for_deadline(self);
  }

  static void wait_for_deadline(const std::shared_ptr<Connection>& self) {
    self->waiting = true;
    self->timer.async_wait([weak = std::weak_ptr<Connection>(self)](beast::error_code ec) {
      if (ec) return;  // moved earlier (another wait is outstanding), or the connection is gone
      auto c = weak.lock();
      if (!c) return;
      c->waiting = false;
      if (c->deadline == TimePoint::max()) return;  // no operation armed: the next arm waits
      if (std::chrono::steady_clock::now() < c->deadline) {
        c->timer.expires_at(c->deadline);
        wait_for_deadline(c);
        return;
      }
      c->deadline = TimePoint::max();
      c->timed_out = true;
      beast::error_code ignored;
      c->socket.close(ignored);
    });
  }

  // The armed operation completed: its deadline is off, and `ec` is beast::error::timeout if the
  // deadline ended it.
  void operation_ended(beast::error_code& ec) {
    deadline = TimePoint::max();
    if (timed_out) ec = beast::error::timeout;
    timed_out = false;
  }
};

// One of each is held per parked call: within jemalloc's size classes with the shared_ptr's control
// block (16 bytes), as their comments say.
static_assert(sizeof(Connection) + 16 <= 896, "Connection grew past its size class");
static_assert(sizeof(Flight) + 16 <= 256, "Flight grew past its size class");

// The watch read stops when this much of a pipelined next request is buffered (backpressure).
constexpr std::size_t kWatchBufferCap = 64u << 10;
// After a drain's grace period: how long cancelled requests have to be answered (503 at once) and
// their handlers to let go of them (outbound requests aborted) before the process exits 1.
constexpr std::chrono::milliseconds kCancelledAnswerTime{1000};

// Bytes the watch read asks for at a time. A request in progress usually has nothing more to
// read, so its connection keeps only this much buffer while it waits (bench/slow_calls: memory
// per in-flight call); a pipelined request that arrives meanwhile is read in steps of this size.
constexpr std::size_t kWatchReadBytes = 512;
// The lag probe's period while max_loop_lag is off (it only measures then).
constexpr std::chrono::milliseconds kLagSamplePeriod{100};

// Answers held by respond_after() at once, at most; beyond, they are sent at once.
constexpr int kMaxHeldReplies = 4096;

// The answer to a request that a drain cancelled (kShutdown), from the session or the handler.
Response shutting_down_response() {
  return Response::refusal(503, "shutting_down",
                           "the server is shutting down and cancelled this request");
}

std::string remote_address(tcp::socket& socket) {
  beast::error_code ec;
  const auto ep = socket.remote_endpoint(ec);
  return ec ? std::string() : ep.address().to_string();
}

}  // namespace

// A request in flight is held by make_shared (a 16-byte control block before it): 496 bytes keep
// the two in jemalloc's 512-byte class, where 520 took 640 (bench/slow_calls: memory per parked
// call, issue 7's 10 KiB target).
static_assert(sizeof(AsyncRequest) <= 496, "AsyncRequest must stay in the 512-byte class");

AsyncRequest::AsyncRequest(Request&& r, std::shared_ptr<Cancellation> c, DeliverLater deliver)
    : request(std::move(r)), cancel(std::move(c)), deliver_(std::move(deliver)) {
  if (!cancel) cancel = Cancellation::make();
}

AsyncRequest::AsyncRequest(Request&& r, std::shared_ptr<Cancellation> c,
                           std::function<void(Response)> deliver, DeliverLater deliver_later)
    : AsyncRequest(std::move(r), std::move(c),
                   [deliver = std::move(deliver), later = std::move(deliver_later)](
                       Response response, std::chrono::milliseconds delay) {
                     if (delay.count() > 0 && later) {
                       later(std::move(response), delay);
                     } else if (deliver) {
                       deliver(std::move(response));
                     }
                   }) {}

AsyncRequest::~AsyncRequest() {
  if (responded_) return;
  using R = Cancellation::Reason;
  const R reason = cancel->reason();
  if (reason == R::kNone) {
    obs::count_bug("http.async_handler", "a handler dropped its request without answering");
    respond(Response::error(500, "internal_error",
                            fmt::format("the handler did not answer; this is a bug, please report "
                                        "it with request id {}",
                                        request.request_id)));
  } else if (reason == R::kDeadline) {
    respond(Response::error(504, "deadline_exceeded",
                            "the request did not finish within its deadline"));
  } else if (reason == R::kShutdown) {
    respond(shutting_down_response());
  } else {
    respond(Response::refusal(503, "cancelled",
                              fmt::format("the request was cancelled ({})", to_string(reason))));
  }
}

bool AsyncRequest::respond(Response response) {
  return respond_after(std::chrono::milliseconds(0), std::move(response));
}

bool AsyncRequest::respond_after(std::chrono::milliseconds delay, Response response) {
  if (responded_.exchange(true)) return false;
  if (deliver_) deliver_(std::move(response), std::max(delay, std::chrono::milliseconds(0)));
  return true;
}

bool AsyncRequest::responded() const {
  return responded_.load();
}

void AsyncRequest::before_answer(std::function<void(Response&)> before) {
  deliver_ = [before = std::move(before), deliver = std::move(deliver_)](
                 Response r, std::chrono::milliseconds delay) {
    before(r);
    if (deliver) deliver(std::move(r), delay);
  };
}

struct Server::Impl {
  // One event loop: an io_context that one thread runs. A connection lives on one loop (the
  // acceptor hands them out in turn), with the handlers of its requests, the evaluations that run
  // there and the outbound requests they start (HttpClient picks the loop of the calling thread):
  // nothing of one call crosses to another loop thread, so no wake-up (futex, eventfd) is paid
  // for a hand-off, and every loop thread serves calls (bench/README.md, session 13).
  struct Loop {
    explicit Loop(const Impl* o) : owner(o) {}
    const Impl* owner;
    // Concurrency hint 1: one thread runs it, so the scheduler never wakes another for the work
    // its handlers queue (other threads still post to it, under its lock).
    asio::io_context ioc{1};
    // The lag probe of this loop (probe_loop_lag): when its timer is due (steady clock ticks; max
    // until it runs), and after a late probe, until when requests still come from the backlog it
    // waited behind.
    std::atomic<Clock::rep> probe_due{std::numeric_limits<Clock::rep>::max()};
    std::atomic<Clock::rep> shed_until{0};
    std::thread thread;
  };
  // The loop run by this thread (null on threads that run none).
  static thread_local const Loop* t_loop;

  ServerOptions options;
  std::vector<std::unique_ptr<Loop>> loops;  // io_threads of them; loop 0 runs the listeners
  std::atomic<unsigned> next_loop{0};        // where the next accepted connection goes
  std::unique_ptr<asio::thread_pool> workers;
  std::optional<tcp::acceptor> acceptor;
  std::optional<tcp::acceptor> admin_acceptor;
  std::uint16_t admin_port = 0;
  bool running = false;  // the loop threads were started
  std::vector<RouteEntry> routes;
  std::vector<RouteEntry> admin_routes;  // served only on the admin listener
  std::function<bool(std::string&)> readiness;
  std::atomic<bool> draining{false};
  std::atomic<int> active_requests{0};
  std::atomic<int> pending_work{0};
  // AsyncRequests the server made that a handler still holds (answered or not): a drain waits for
  // them, so that cancelled work has ended (its outbound requests aborted) before the loop stops.
  std::shared_ptr<std::atomic<int>> held_counter = std::make_shared<std::atomic<int>>(0);
  std::atomic<int>& held_requests = *held_counter;
  std::atomic<int> connections{0};
  std::atomic<int> held_replies{0};  // answers waiting on a respond_after() timer
  std::mutex sessions_mu;
  std::unordered_set<std::shared_ptr<SessionHandle>> sessions;
  std::mutex stop_mu;
  std::condition_variable stop_cv;
  bool stop_requested = false;
  Metrics& metrics = Metrics::get();
  // False once the event loop is stopped for good: answers that arrive later (e.g. from handlers
  // destroyed with the io_context) are dropped instead of posted to a dying loop.
  std::shared_ptr<std::atomic<bool>> loop_alive = std::make_shared<std::atomic<bool>>(true);

  explicit Impl(ServerOptions o) : options(std::move(o)) {
    const int n = std::max(1, options.io_threads);
    for (int i = 0; i < n; ++i) loops.push_back(std::make_unique<Loop>(this));
  }

  asio::io_context& main_loop() { return loops.front()->ioc; }

  // The loop of the next connection: each in turn.
  asio::io_context& loop_for_connection() {
    if (loops.size() == 1) return main_loop();
    return loops[next_loop.fetch_add(1, std::memory_order_relaxed) % loops.size()]->ioc;
  }

  // Stops the loops and joins their threads (once).
  void stop_loops() {
    for (auto& l : loops) l->ioc.stop();
    for (auto& l : loops) {
      if (l->thread.joinable()) l->thread.join();
    }
  }
  RouteEntry& add(RouteEntry r, bool admin);

  static Match match(const std::vector<RouteEntry>& table, std::string_view method,
                     std::string_view path) {
    const auto segs = split_path(path);
    Match m;
    for (const RouteEntry& r : table) {
      if (!segments_match(r.segments, segs)) continue;
      m.path_known = true;
      if (r.cors && m.cors_route == nullptr) m.cors_route = &r;
      if (m.allowed.find(r.method) == std::string::npos)
        m.allowed += (m.allowed.empty() ? "" : ", ") + r.method;
      if (r.method == method && m.route == nullptr) m.route = &r;
    }
    return m;
  }

  awaitable<void> accept_loop(tcp::acceptor& listener, bool admin) {
    for (;;) {
      // The admin listener's connections stay on loop 0; the others go to each loop in turn.
      auto [ec, socket] = co_await listener.async_accept(
          asio::make_strand(admin ? main_loop() : loop_for_connection()), kTuple);
      if (ec) {
        if (ec == asio::error::operation_aborted || draining) co_return;
        spdlog::warn("accept failed: {}", ec.message());
        continue;
      }
      if (connections.load() >= options.max_connections) {
        metrics.rejected.Add({{"reason", "connections"}}).Increment();
        auto ex = socket.get_executor();
        asio::co_spawn(ex, refuse_connection(std::move(socket)), asio::detached);
        continue;
      }
      auto handle = std::make_shared<SessionHandle>(
          asio::strand<asio::io_context::executor_type>(socket.get_executor()));
      handle->admin = admin;
      {
        std::lock_guard lock(sessions_mu);
        sessions.insert(handle);
      }
      auto ex = handle->strand;
      auto conn = std::make_shared<Connection>(std::move(socket), std::move(handle));
      asio::co_spawn(ex, run_session(std::move(conn), false), asio::detached);
    }
  }

  // An event loop's lag: a timer due every period runs late by as long as the loop's backlog of
  // ready handlers takes to run, which is also how long a request that becomes readable on it
  // waits before its handler starts. Observed when it runs; while it is overdue, loop_lag() sees
  // how far (so that a loop too busy to run the probe still knows it is behind). One per loop.
  // Due every max_loop_lag / 2 (1-10 ms) when requests are refused on the lag; with that off it
  // only feeds the histogram, and every kLagSamplePeriod is enough: each probe wakes a loop that
  // sleeps (an idle process woke 200 times a second with two loops at 10 ms, and a loop serving
  // 300 code calls a second slept 0.35 times more per call: bench/README.md, session 14).
  awaitable<void> probe_loop_lag(Loop& loop) {
    const auto period = options.max_loop_lag.count() > 0
                            ? std::clamp<std::chrono::milliseconds>(options.max_loop_lag / 2,
                                                                    std::chrono::milliseconds(1),
                                                                    std::chrono::milliseconds(10))
                            : kLagSamplePeriod;
    std::atomic<Clock::rep>& probe_due = loop.probe_due;
    std::atomic<Clock::rep>& shed_until = loop.shed_until;
    asio::steady_timer timer(loop.ioc);
    for (;;) {
      const Clock::time_point due = Clock::now() + period;
      probe_due.store(due.time_since_epoch().count(), std::memory_order_relaxed);
      timer.expires_at(due);
      auto [ec] = co_await timer.async_wait(kTuple);
      if (ec) co_return;
      const Clock::time_point now = Clock::now();
      const Clock::duration late = now - due;
      metrics.loop_lag.Observe(std::chrono::duration<double>(late).count());
      // The probe waited `late` behind a backlog of ready work; what is still queued of it
      // becomes readable requests and answers over the next `late` - max_loop_lag, and each of
      // them has waited longer than max_loop_lag by then.
      if (options.max_loop_lag.count() > 0 && late > options.max_loop_lag) {
        shed_until.store((now + late - options.max_loop_lag).time_since_epoch().count(),
                         std::memory_order_relaxed);
      }
    }
  }

  // How far behind `loop` is now: how overdue its probe is, or while the backlog a late probe
  // waited behind is still being served, how late it was (0: not behind).
  Clock::duration loop_lag(const Loop& loop) const {
    const Clock::rep now = Clock::now().time_since_epoch().count();
    const Clock::rep due = loop.probe_due.load(std::memory_order_relaxed);
    if (now > due) return Clock::duration(now - due);
    const Clock::rep until = loop.shed_until.load(std::memory_order_relaxed);
    return now < until ? options.max_loop_lag + Clock::duration(until - now) : Clock::duration(0);
  }

  // The lag a request read on this thread waits behind: its own loop's (a connection and its
  // requests stay on one loop, and a backlog on another loop does not delay them); off the
  // loops, the worst loop's.
  Clock::duration loop_lag() const {
    if (t_loop != nullptr && t_loop->owner == this) return loop_lag(*t_loop);
    Clock::duration worst{0};
    for (const auto& l : loops) worst = std::max(worst, loop_lag(*l));
    return worst;
  }

  // 503 for a request that would queue behind a loop already over max_loop_lag.
  std::optional<Response> refuse_if_lagging() {
    if (options.max_loop_lag.count() <= 0) return std::nullopt;
    const auto lag = loop_lag();
    if (lag <= options.max_loop_lag) return std::nullopt;
    metrics.rejected.Add({{"reason", "event_loop_lag"}}).Increment();
    return Response::refusal(
        503, "overloaded",
        fmt::format("the server is busy: its event loop is {} ms behind (max_loop_lag_ms {}); "
                    "retry shortly",
                    std::chrono::duration_cast<std::chrono::milliseconds>(lag).count(),
                    options.max_loop_lag.count()));
  }

  awaitable<void> refuse_connection(tcp::socket socket) {
    beast::tcp_stream stream(std::move(socket));
    stream.expires_after(std::chrono::seconds(1));
    auto res = to_beast(Response::refusal(503, "too_many_connections",
                                          "the server has reached its connection limit; retry "
                                          "shortly"),
                        Request{}, nullptr, 11, false);
    co_await bhttp::async_write(stream, res, kTuple);
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  }

  // Builds the Beast response for `r`, with the headers every response carries.
  bhttp::response<bhttp::string_body> to_beast(Response&& r, const Request& req,
                                               const RouteEntry* route, unsigned version,
                                               bool keep_alive) {
    bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(r.status), version};
    res.set(bhttp::field::server, options.service_name);
    res.set(bhttp::field::content_type, r.content_type);
    if (!req.request_id.empty()) res.set("x-request-id", req.request_id);
    if (!req.trace.trace_id.empty()) res.set("traceparent", req.trace.traceparent());
    if (route != nullptr && route->cors) {
      for (Header& h : cors_headers()) res.set(h.name, h.value);
    }
    res.set("x-content-type-options", "nosniff");
    res.set("x-frame-options", "SAMEORIGIN");
    for (Header& h : r.headers) res.set(h.name, h.value);
    res.body() = std::move(r.body);
    res.keep_alive(keep_alive);
    res.prepare_payload();
    return res;
  }

  // Reads requests and answers them until the connection closes. A request whose handler runs off
  // the session (start_request) ends this coroutine: the flight's wait owns the connection and
  // starts it again (`resume`) to write the answer and go on reading.
  awaitable<void> run_session(std::shared_ptr<Connection> c, bool resume) {
    SessionHandle& handle = *c->handle;
    bool keep = true;
    if (resume) {
      keep = co_await finish_request(c);
    } else {
      ++connections;
      metrics.connections.Increment();
      metrics.accepted.Increment();
      // Register the socket so that a drain can close idle connections.
      co_await asio::post(handle.strand, use_awaitable);
      handle.socket = &c->socket;
      c->client_address = remote_address(c->socket);
      // Non-blocking for the session's life: the answer's first send (send_all) and the watch's
      // read (read_ready) must never block the loop. (The first asynchronous operation would set
      // it anyway; read_ready no longer sets and clears it around each read: two ioctls.)
      beast::error_code nec;
      c->socket.non_blocking(true, nec);
      if (nec) keep = false;
    }
    while (keep) {
      if (draining && !c->first) break;  // a new connection still gets its first request served
      handle.idle = true;
      std::optional<Incoming> in = co_await read_request(c);
      c->first = false;
      if (!in) break;
      handle.idle = false;
      c->in = std::move(in);
      if (start_request(c)) co_return;  // await_flight goes on with the connection
      keep = co_await finish_request(c);
    }
    close_session(*c);
  }

  void close_session(Connection& c) {
    beast::error_code ignored;
    c.socket.shutdown(tcp::socket::shutdown_send, ignored);
    c.handle->socket = nullptr;
    {
      std::lock_guard lock(sessions_mu);
      sessions.erase(c.handle);
    }
    --connections;
    metrics.connections.Decrement();
  }

  // Reads one request with the limits and timeouts; nullopt when the connection should close
  // (the client left, timed out, or sent something unparseable, which is answered here).
  // An answer given here without a handler (411, 413, 408) is left in `c.res`.
  awaitable<std::optional<Incoming>> read_request(const std::shared_ptr<Connection>& self) {
    Connection& c = *self;
    beast::flat_buffer& buffer = c.buffer;
    c.res.reset();
    RequestParser parser;
    apply_request_limits(parser, options);
    Connection::arm_deadline(
        self, c.first && buffer.size() == 0 ? options.header_timeout : options.idle_timeout);
    auto [hec, hn] = co_await bhttp::async_read_header(c.socket, buffer, parser, kTuple);
    c.operation_ended(hec);
    if (hec) {
      if (hec == bhttp::error::end_of_stream || hec == beast::error::timeout ||
          hec == asio::error::operation_aborted || hec == asio::error::connection_reset ||
          hec == asio::error::eof || draining) {
        co_return std::nullopt;
      }
      co_await answer_malformed(self, hec);
      co_return std::nullopt;
    }
    Incoming in;
    auto& hreq = parser.get();
    in.req = to_request(hreq, c.client_address);
    const bool has_body_method =
        in.req.method == "POST" || in.req.method == "PUT" || in.req.method == "PATCH";
    // The parser's own record of the framing fields (Content-Length, chunked, keep-alive):
    // asking the message looks each field up in its list again (~1.4 k instructions).
    if (has_body_method && !parser.content_length() && !parser.chunked()) {
      c.res = Response::error(411, "length_required",
                              "a request body needs a Content-Length header (or chunked encoding)");
    } else if (parser.content_length() && hreq.payload_size() &&
               *hreq.payload_size() > options.max_body_bytes) {
      c.res = Response::error(413, "payload_too_large",
                              fmt::format("request body of {} bytes exceeds the limit of {} bytes",
                                          *hreq.payload_size(), options.max_body_bytes));
    } else if (!parser.is_done()) {
      beast::error_code bec = parse_buffered_body(parser, buffer);
      if (!bec && !parser.is_done()) {
        Connection::arm_deadline(self, options.body_timeout);
        auto [rec, bn] = co_await bhttp::async_read(c.socket, buffer, parser, kTuple);
        c.operation_ended(rec);
        bec = rec;
      }
      if (bec == bhttp::error::body_limit) {
        c.res = Response::error(
            413, "payload_too_large",
            fmt::format("request body exceeds the limit of {} bytes", options.max_body_bytes));
      } else if (bec == beast::error::timeout) {
        c.res = Response::error(408, "request_timeout", "the request body did not arrive in time");
      } else if (bec) {
        co_return std::nullopt;  // the client went away mid-body
      }
    }
    if (!c.res) in.req.body = std::move(hreq.body());
    in.keep_alive = parser.keep_alive() && !c.res;
    in.version = hreq.version();
    co_return in;
  }

  // Parses the body bytes that arrived with the headers (a small request comes in one segment),
  // so that a complete request is served without another trip through the event loop's queue
  // (async_read completes through it even when it has nothing left to read). An error (e.g.
  // body_limit) is returned; when more is to come, async_read goes on from where this stopped.
  static beast::error_code parse_buffered_body(RequestParser& parser, beast::flat_buffer& buffer) {
    for (int guard = 0; guard < 64 && buffer.size() > 0 && !parser.is_done(); ++guard) {
      beast::error_code ec;
      const std::size_t n = parser.put(buffer.data(), ec);
      buffer.consume(n);
      if (ec == bhttp::error::need_more || (!ec && n == 0)) return {};
      if (ec) return ec;
    }
    return {};
  }

  awaitable<void> answer_malformed(const std::shared_ptr<Connection>& c, beast::error_code hec) {
    Request req;
    req.request_id = obs::random_hex_id(16);
    unsigned status = 400;
    std::string_view type = "bad_request";
    std::string message = fmt::format("malformed HTTP request: {}", hec.message());
    if (hec == bhttp::error::header_limit) {
      status = 431, type = "headers_too_large";
      message = fmt::format("request headers exceed {} bytes", options.max_header_bytes);
    } else if (hec == bhttp::error::body_limit) {
      status = 413, type = "payload_too_large";
      message = fmt::format("request body exceeds the limit of {} bytes", options.max_body_bytes);
    }
    metrics.rejected.Add({{"reason", "malformed"}}).Increment();
    auto res = to_beast(Response::error(status, type, message), req, nullptr, 11, false);
    Connection::arm_deadline(c, options.body_timeout);
    auto [wec, wn] = co_await bhttp::async_write(c->socket, res, kTuple);
    c->operation_ended(wec);
  }

  Request to_request(const bhttp::request<bhttp::string_body>& hreq,
                     const std::string& client_address) const {
    Request req;
    req.received_at = Clock::now();
    req.deadline = req.received_at + options.request_timeout;
    req.method = std::string(hreq.method_string());
    req.target = std::string(hreq.target());
    const auto q = req.target.find('?');
    req.path = req.target.substr(0, q);
    if (q != std::string::npos) req.query = req.target.substr(q + 1);
    req.client_address = client_address;
    req.headers.reserve(8);
    for (const auto& f : hreq) {
      std::string name(f.name_string());
      // ASCII lowercase inline (std::tolower is a call into the C locale per character).
      for (char& c : name) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + ('a' - 'A'));
      }
      req.headers.push_back({std::move(name), std::string(f.value())});
    }
    const auto rid = req.header("x-request-id");
    req.request_id =
        rid && acceptable_request_id(*rid) ? std::string(*rid) : obs::random_hex_id(16);
    req.trace = obs::make_trace_context(req.header("traceparent"));
    return req;
  }

  // Answers the request read into `c.in` here (early answers, refusals, inline handlers) or
  // starts its handler off the session: then true, and await_flight owns the connection until
  // the answer is in. Not a coroutine.
  bool start_request(const std::shared_ptr<Connection>& c) {
    ++active_requests;
    metrics.in_flight.Increment();
    Incoming& in = *c->in;
    Request& req = in.req;
    c->request_bytes = req.body.size();
    c->route = nullptr;
    c->deadline_passed = false;
    if (!c->res) c->res = answer_here(*c->handle, req, c->route);  // else answered by the read
    if (c->res || c->route == nullptr) return false;
    c->flight = start_flight(c->socket, c->buffer, *c->handle, req, *c->route);
    if (!c->flight->watching && answer_ready(*c->flight, c->res)) {
      // Answered before the handler returned (a refusal, built-ins run on the loop): written now,
      // without a trip through the event loop's queue.
      c->handle->flight.reset();
      c->flight.reset();
      return false;
    }
    await_flight(c);
    return true;
  }

  // Waits, holding no thread and no coroutine frame, for the first of: the handler's answer, the
  // client's hang-up, the deadline (then the grace), the drain. Runs on the session's strand.
  void await_flight(std::shared_ptr<Connection> c) {
    Flight& f = *c->flight;
    if (answer_ready(f, c->res)) {
      end_flight(std::move(c));
      return;
    }
    f.wake.async_wait([this, c = std::move(c)](beast::error_code ec) mutable {
      Flight& f = *c->flight;
      // Woken early by the responder, the watch or the drain: answer_ready() tells.
      if (!ec && !f.settled() && deadline_over(f, c->deadline_passed, c->res)) {
        end_flight(std::move(c));
        return;
      }
      await_flight(std::move(c));
    });
  }

  // The flight is over: stops the watch of the client's connection (its handler holds the socket
  // and the buffer), then resumes the session to write the answer.
  void end_flight(std::shared_ptr<Connection> c) {
    Flight& f = *c->flight;
    if (!f.stop_watching) {
      f.stop_watching = true;
      if (f.watching) {
        beast::error_code ignored;
        c->socket.cancel(ignored);
      }
    }
    if (f.watching) {  // the read's handler wakes us
      f.wake.expires_at(asio::steady_timer::time_point::max());
      f.wake.async_wait(
          [this, c = std::move(c)](beast::error_code) mutable { end_flight(std::move(c)); });
      return;
    }
    c->handle->flight.reset();
    c->flight.reset();
    auto ex = c->handle->strand;
    asio::co_spawn(ex, run_session(std::move(c), true), asio::detached);
  }

  // Records the request and writes its answer (`c.res`); false when the connection must close.
  awaitable<bool> finish_request(const std::shared_ptr<Connection>& self) {
    Connection& c = *self;
    metrics.in_flight.Decrement();
    const Request& req = c.in->req;
    const RouteEntry* route = c.route;
    const std::string_view route_name = route ? std::string_view(route->name) : "unmatched";
    const double seconds = std::chrono::duration<double>(Clock::now() - req.received_at).count();
    if (!c.res) {  // the client went away: nobody to answer (499, as nginx logs it)
      record(route, route_name, req, 499, seconds, c.request_bytes, 0);
      c.in.reset();
      --active_requests;
      co_return false;
    }
    const bool keep = c.in->keep_alive && !draining;
    // Counted before the write, so that a client that has its answer also sees it in /metrics.
    const unsigned status = c.res->status;
    record(route, route_name, req, status, seconds, c.request_bytes, c.res->body.size());
    if (status == 503) {  // to the write, which sends a small answer at once
      metrics.refusal_duration.Observe(
          std::chrono::duration<double>(Clock::now() - req.received_at).count());
    }
    Response res = std::move(*c.res);
    c.res.reset();
    const beast::error_code wec =
        co_await write_response(self, std::move(res), req, route, c.in->version, keep);
    c.in.reset();
    --active_requests;
    co_return !wec && keep;
  }

  // The response in Beast's form lives only in this frame, not in finish_request()'s. Its head
  // is written here in the bytes Beast's serializer gives (status line, the fields in their order
  // as "name: value", an empty line) and sent with the body in one gathered write: the
  // serializer's buffer sequences cost ~20 k instructions per response (bench/README.md,
  // "session 9, reqcpu").
  awaitable<beast::error_code> write_response(const std::shared_ptr<Connection>& self, Response&& r,
                                              const Request& req, const RouteEntry* route,
                                              unsigned version, bool keep) {
    std::string head;
    if (direct_head(head, r, req, route, version, keep)) {
      co_return co_await send_all(self, {asio::buffer(head), asio::buffer(r.body)});
    }
    auto bres = to_beast(std::move(r), req, route, version, keep);
    head = response_head(bres);
    co_return co_await send_all(self, {asio::buffer(head), asio::buffer(bres.body())});
  }

  // Sends the head and the body. What the socket takes at once goes in one non-blocking send
  // (an answer of a few KiB: all of it), with no deadline to arm and no trip through the event
  // loop's queue (async_write posts its completion even when the send was done at once); the
  // rest, if any, is written asynchronously under the write deadline (body_timeout).
  awaitable<beast::error_code> send_all(const std::shared_ptr<Connection>& self,
                                        std::array<asio::const_buffer, 2> buffers) {
    beast::error_code ec;
    std::size_t sent = self->socket.write_some(buffers, ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      ec = {};
      sent = 0;
    }
    if (ec) co_return ec;
    if (sent == asio::buffer_size(buffers)) co_return ec;
    beast::buffers_suffix<std::array<asio::const_buffer, 2>> rest(buffers);
    rest.consume(sent);
    Connection::arm_deadline(self, options.body_timeout);
    auto [wec, wn] = co_await asio::async_write(self->socket, rest, kTuple);
    self->operation_ended(wec);
    co_return wec;
  }

  // The head to_beast() + response_head() give, written from the views of its fields without
  // Beast's message (its field list, the set() lookups and copies: ~5 k instructions); false
  // when the response is not that simple (append_response_head).
  bool direct_head(std::string& head, const Response& r, const Request& req,
                   const RouteEntry* route, unsigned version, bool keep) const {
    std::array<HeadField, 16> fields;
    std::size_t n = 0;
    fields[n++] = {"Server", options.service_name};
    fields[n++] = {"Content-Type", r.content_type};
    if (!req.request_id.empty()) fields[n++] = {"x-request-id", req.request_id};
    std::string traceparent;
    if (!req.trace.trace_id.empty()) {
      traceparent = req.trace.traceparent();
      fields[n++] = {"traceparent", traceparent};
    }
    std::vector<Header> cors;
    if (route != nullptr && route->cors) {
      cors = cors_headers();
      for (const Header& h : cors) fields[n++] = {h.name, h.value};
    }
    fields[n++] = {"x-content-type-options", "nosniff"};
    fields[n++] = {"x-frame-options", "SAMEORIGIN"};
    const std::size_t distinct = n;
    if (n + r.headers.size() > fields.size()) return false;
    for (const Header& h : r.headers) fields[n++] = {h.name, h.value};
    return append_response_head(head, r.status, version, keep, r.body.size(),
                                std::span<const HeadField>(fields.data(), n), distinct);
  }

  // The series of wf_http_requests_total for the answer; a matched route's own (its method is
  // the request's) is kept in the route after its first use.
  prometheus::Counter& requests_counter(const RouteEntry* route, std::string_view route_name,
                                        std::string_view method, unsigned status) {
    std::atomic<prometheus::Counter*>* slot = nullptr;
    if (route != nullptr && status >= 100 && status < 600 && method == route->method) {
      slot = &(*route->requests_by_status)[status - 100];
      if (prometheus::Counter* known = slot->load(std::memory_order_acquire)) return *known;
    }
    prometheus::Counter& counter =
        metrics.requests.Add({{"route", std::string(route_name)},
                              {"method", std::string(method_label(method))},
                              {"status", std::to_string(status)}});
    if (slot != nullptr) slot->store(&counter, std::memory_order_release);
    return counter;
  }

  void record(const RouteEntry* route, std::string_view route_name, const Request& req,
              unsigned status, double seconds, std::size_t request_bytes,
              std::size_t response_bytes) {
    requests_counter(route, route_name, req.method, status).Increment();
    if (route != nullptr) {
      route->duration->Observe(seconds);
      route->request_size->Observe(static_cast<double>(request_bytes));
      route->response_size->Observe(static_cast<double>(response_bytes));
    }
    if (options.access_log) {
      const auto level = status >= 500 ? spdlog::level::warn : spdlog::level::info;
      obs::LogScope scope(req.trace.trace_id, req.trace.span_id, req.request_id);
      obs::log_event(
          level, fmt::format("{} {} {}", req.method, req.path, status),
          {obs::field_str("event.kind", "event"), obs::field_str("event.category", "web"),
           obs::field_str("http.request.method", req.method), obs::field_str("url.path", req.path),
           obs::field_int("http.response.status_code", status),
           obs::field_int("http.request.body.bytes", static_cast<long long>(request_bytes)),
           obs::field_int("http.response.body.bytes", static_cast<long long>(response_bytes)),
           obs::field_int("event.duration", static_cast<long long>(seconds * 1e9)),
           obs::field_str("client.address", req.client_address),
           obs::field_str("http.route", route_name)});
    }
  }

  static Response call_handler(const Handler& handler, const Request& req) {
    obs::LogScope scope(req.trace.trace_id, req.trace.span_id, req.request_id);
    try {
      return handler(req);
    } catch (const std::exception& e) {
      obs::count_bug("http.handler", e.what());
      return Response::error(
          500, "internal_error",
          fmt::format("the handler failed: {}; this is a bug, please report it with request id {}",
                      e.what(), req.request_id));
    }
  }

  static void call_async_handler(const AsyncHandler& handler, std::shared_ptr<AsyncRequest> ar) {
    const Request& req = ar->request;
    obs::LogScope scope(req.trace.trace_id, req.trace.span_id, req.request_id);
    try {
      handler(ar);
    } catch (const std::exception& e) {
      obs::count_bug("http.handler", e.what());
      ar->respond(Response::error(
          500, "internal_error",
          fmt::format("the handler failed: {}; this is a bug, please report it with request id {}",
                      e.what(), req.request_id)));
    }
  }

  // Matches the route and answers 401/404/405/503 and inline handlers here; nullopt (with the
  // route set): the handler runs off the coroutine (start_flight). Not a coroutine itself, so
  // that a request in flight keeps no frame of it (bench/slow_calls: memory per in-flight call).
  std::optional<Response> answer_here(SessionHandle& handle, Request& req,
                                      const RouteEntry*& route_out) {
    if (handle.admin && !admin_authorized(req)) {
      Response r = Response::error(
          401, "unauthorized",
          "admin requests need the header 'Authorization: Bearer <token>' with the token from the "
          "service's --admin-token-file");
      r.headers.push_back({"www-authenticate", "Bearer"});
      return r;
    }
    Match m = match(handle.admin ? admin_routes : routes, req.method, req.path);
    const RouteEntry* route = m.route;
    route_out = route;
    if (route == nullptr) return unmatched(req, m);
    const bool async = static_cast<bool>(route->async_handler);
    if (!async && (route->dispatch == Dispatch::kInline || !workers ||
                   (route->run_inline && route->run_inline(req)))) {
      return call_handler(route->handler, req);
    }
    if (auto busy = refuse_if_lagging()) return busy;
    if (!async && pending_work.fetch_add(1) >= options.max_pending_work) {
      pending_work.fetch_sub(1);
      metrics.rejected.Add({{"reason", "overloaded"}}).Increment();
      return Response::refusal(
          503, "overloaded", "the server is at its limit of concurrent work; retry after a second");
    }
    return std::nullopt;
  }

  // Only with --cors-origin, and only on the routes named in cors_routes (the evaluate routes).
  std::vector<Header> cors_headers() const {
    if (options.cors_origin.empty()) return {};
    std::vector<Header> h = {{"access-control-allow-origin", options.cors_origin},
                             {"access-control-allow-headers",
                              "accept, x-requested-with, content-type, x-request-id, traceparent"}};
    if (options.cors_origin != "*") h.push_back({"vary", "Origin"});
    return h;
  }

  bool admin_authorized(const Request& req) const {
    if (options.admin_token.empty()) return true;
    const auto auth = req.header("authorization");
    return auth && same_secret(*auth, "Bearer " + options.admin_token);
  }

  // 404, 405, or the answer to a CORS preflight (OPTIONS on a CORS route, when configured).
  Response unmatched(const Request& req, const Match& m) const {
    if (m.cors_route != nullptr && req.method == "OPTIONS" && !options.cors_origin.empty()) {
      Response r = Response::json(204, "");
      r.headers = cors_headers();
      r.headers.push_back({"access-control-allow-methods", m.allowed});
      r.headers.push_back({"access-control-max-age", "600"});
      return r;
    }
    if (m.path_known) {
      Response r = Response::error(
          405, "method_not_allowed",
          fmt::format("{} is not allowed on {}; allowed: {}", req.method, req.path, m.allowed));
      r.headers.push_back({"allow", m.allowed});
      return r;
    }
    return Response::error(404, "not_found",
                           fmt::format("no route for {} {}", req.method, req.path));
  }

  // Starts the handler (async, or kWorker on the pool) and the watch of the client's connection;
  // await_flight() then waits, holding no thread, for the flight's response. Not a coroutine.
  std::shared_ptr<Flight> start_flight(tcp::socket& socket, beast::flat_buffer& buffer,
                                       SessionHandle& handle, Request& req,
                                       const RouteEntry& route) {
    auto flight = std::make_shared<Flight>(handle.strand, route, req);
    req.cancel = flight->cancel;
    auto ar = make_async_request(req, flight);
    handle.flight = flight;
    // No deadline is armed here: the read of the request ended its own (Connection).
    // The buffer grew to hold the request just read; what it holds now is only a pipelined next
    // request (usually nothing), so give the rest back before the (possibly long) wait.
    buffer.shrink_to_fit();
    // A handler that answers before it returns (a refusal, a call of built-ins run on the loop)
    // is answered now: no watch to start and stop, no trip through the event loop's queue. Nor
    // is an answer it held (a repeated refusal, held 200 ms): the watch cost an epoll_ctl and a
    // cancelled wait per held refusal, and a hang-up meanwhile cancels nothing (the handler is
    // done), so the answer's write finds it (logged with the answer's status, not 499).
    start_handler(route, std::move(ar));
    if (!flight->response && !flight->held) watch_client(flight, socket, buffer);
    flight->wake.expires_at(req.deadline);
    return flight;
  }

  // The handler's own copy of the request (the body, the headers and the target with its query
  // move there: the session needs only the ids, the trace, the method and the path for its log
  // line and response headers); its responder posts the response to the connection's strand and
  // wakes the session, if the session still waits.
  std::shared_ptr<AsyncRequest> make_async_request(Request& req,
                                                   const std::shared_ptr<Flight>& flight) {
    std::string body = std::move(req.body);
    std::vector<Header> headers = std::move(req.headers);
    std::string target = std::move(req.target);  // one allocation fewer to copy a request
    std::string query = std::move(req.query);
    req.headers.clear();
    req.target.clear();
    req.query.clear();
    Request copy = req;
    copy.body = std::move(body);
    copy.headers = std::move(headers);
    copy.target = std::move(target);
    copy.query = std::move(query);
    std::weak_ptr<Flight> weak = flight;
    // Counted while the handler holds the request: the deliver function goes with it.
    held_counter->fetch_add(1);
    std::shared_ptr<void> held(nullptr, [counter = held_counter](void*) { counter->fetch_sub(1); });
    // One closure for the answer at once and for one held `delay` (a timer on the strand; beyond
    // the bound of held answers, it hands over at once as well): it is the larger part of what a
    // request in flight keeps for answering. `this` is used only once the loop is known alive.
    auto deliver = [this, weak, strand = flight->strand(), alive = loop_alive,
                    held = std::move(held)](Response r, std::chrono::milliseconds delay) {
      if (!alive->load()) return;
      if (delay.count() <= 0) {
        hand_over(strand, weak, std::move(r));
        return;
      }
      if (held_replies.fetch_add(1) >= kMaxHeldReplies) {
        held_replies.fetch_sub(1);
        hand_over(strand, weak, std::move(r));
        return;
      }
      if (strand.running_in_this_thread()) {
        if (auto f = weak.lock()) f->held = true;
      }
      auto timer = std::make_shared<asio::steady_timer>(strand, delay);
      timer->async_wait([this, timer, weak, r = std::move(r)](beast::error_code) mutable {
        held_replies.fetch_sub(1);
        settle(weak, std::move(r));
      });
    };
    return std::make_shared<AsyncRequest>(std::move(copy), flight->cancel,
                                          AsyncRequest::DeliverLater(std::move(deliver)));
  }

  // Gives the answer to the flight on its strand, from any thread.
  static void hand_over(const Flight::Strand& strand, const std::weak_ptr<Flight>& weak,
                        Response r) {
    if (strand.running_in_this_thread()) {
      settle(weak, std::move(r));  // e.g. from the handler itself, before it returned
      return;
    }
    // Deferred: from a thread of the loop (an evaluation that went on where its evaluator answer
    // arrived) it runs there after the current handler, without waking another I/O thread; from
    // any other thread it is a post.
    asio::defer(strand, [weak, r = std::move(r)]() mutable { settle(weak, std::move(r)); });
  }

  // On the flight's strand: the response is in; the session, if it still waits, wakes. After a
  // drain has cancelled the request, its answer is the server's 503, even if the handler's (e.g. a
  // timeout it reports for the cancelled work) lands before the session has woken up to give it.
  static void settle(const std::weak_ptr<Flight>& weak, Response r) {
    auto f = weak.lock();
    if (!f || f->response || f->shutdown) return;
    f->response = std::move(r);
    f->wake.cancel();
  }

  void start_handler(const RouteEntry& route, std::shared_ptr<AsyncRequest> ar) {
    if (route.async_handler) {
      call_async_handler(route.async_handler, std::move(ar));
      return;
    }
    asio::post(*workers, [this, handler = &route.handler, ar = std::move(ar)] {
      ar->respond(call_handler(*handler, ar->request));
      pending_work.fetch_sub(1);
    });
  }

  // Keeps one wait for readability posted while the handler works, so that the client's EOF or
  // reset cancels the request (kClientGone). A wait holds no buffer (a parked call costs less:
  // bench/slow_calls); once the socket is readable, what is there is read without blocking.
  // Bytes of a pipelined next request stay in `buffer` for the parser.
  void watch_client(const std::shared_ptr<Flight>& f, tcp::socket& socket,
                    beast::flat_buffer& buffer) {
    if (f->stop_watching || buffer.size() >= kWatchBufferCap) {
      f->watching = false;
      return;
    }
    f->watching = true;
    socket.async_wait(
        tcp::socket::wait_read,
        asio::bind_executor(f->strand(), [this, f, &socket, &buffer](beast::error_code ec) {
          if (!ec) ec = read_ready(socket, buffer);
          if (!ec) {
            watch_client(f, socket, buffer);
            return;
          }
          f->watching = false;
          if (!(ec == asio::error::operation_aborted && f->stop_watching)) {
            f->client_gone = true;
            cancel_flight(*f, Cancellation::Reason::kClientGone);
          }
          f->wake.cancel();
        }));
  }

  // Reads what a readable socket holds into `buffer` without blocking: success (a pipelined
  // request's bytes, or nothing after a spurious wake-up), or the error that ended the
  // connection (eof, reset).
  static beast::error_code read_ready(tcp::socket& socket, beast::flat_buffer& buffer) {
    beast::error_code ec;  // the socket is non-blocking for the session's life (run_session)
    const std::size_t n = socket.read_some(buffer.prepare(kWatchReadBytes), ec);
    buffer.commit(n);
    if (ec == asio::error::would_block || ec == asio::error::try_again) return {};
    return ec;
  }

  // Whether the wait of await_flight() for a flight is over, and its answer: the response, nullopt
  // when the client went away, or 503 when the server shuts down.
  static bool answer_ready(Flight& f, std::optional<Response>& out) {
    if (f.response) {
      out = std::move(f.response);
      return true;
    }
    if (f.client_gone) {
      out.reset();
      return true;
    }
    if (!f.shutdown) return false;
    out = shutting_down_response();
    return true;
  }

  // The deadline timer fired with no answer. The first time, the request is cancelled: async
  // routes get deadline_grace to answer, kWorker routes are waited for (their handlers end
  // themselves). After the grace: true, with the server's 504 in `out`.
  bool deadline_over(Flight& f, bool& deadline_passed, std::optional<Response>& out) {
    if (!deadline_passed) {
      deadline_passed = true;
      cancel_flight(f, Cancellation::Reason::kDeadline);
      if (f.route->async_handler) {
        f.wake.expires_after(options.deadline_grace);
      } else {
        f.wake.expires_at(asio::steady_timer::time_point::max());
      }
      return false;
    }
    out = Response::error(504, "deadline_exceeded",
                          fmt::format("the request did not finish within its deadline of {} ms",
                                      options.request_timeout.count()));
    return true;
  }

  // Raises the request's cancellation (first reason wins), counts it and logs it once.
  // Counted before the callbacks run, so that whoever they wake sees the count.
  void cancel_flight(Flight& f, Cancellation::Reason reason) {
    if (f.cancel->cancelled()) return;  // the server raises it only on the session's strand
    const std::string why(to_string(reason));
    metrics.cancelled.Add({{"route", f.route->name}, {"reason", why}}).Increment();
    const Request& req = *f.request;
    obs::LogScope scope(req.trace.trace_id, req.trace.span_id, req.request_id);
    obs::log_event(
        spdlog::level::info, fmt::format("request cancelled: {}", why),
        {obs::field_str("event.kind", "event"), obs::field_str("event.reason", why),
         obs::field_str("http.request.method", req.method), obs::field_str("url.path", req.path),
         obs::field_str("http.route", f.route->name)});
    f.cancel->cancel(reason);
  }

  void close_idle_sessions() {
    std::vector<std::shared_ptr<SessionHandle>> copy;
    {
      std::lock_guard lock(sessions_mu);
      copy.assign(sessions.begin(), sessions.end());
    }
    for (auto& h : copy) {
      asio::post(h->strand, [h] {
        if (h->socket != nullptr && h->idle) {
          beast::error_code ignored;
          h->socket->cancel(ignored);
        }
      });
    }
  }

  // At the end of the grace period: cancel what is still running (kShutdown); the sessions answer
  // 503 at once, whether or not their handlers ever answer.
  void cancel_in_flight() {
    std::vector<std::shared_ptr<SessionHandle>> copy;
    {
      std::lock_guard lock(sessions_mu);
      copy.assign(sessions.begin(), sessions.end());
    }
    for (auto& h : copy) {
      asio::post(h->strand, [this, h] {
        if (!h->flight) return;
        h->flight->shutdown = true;
        cancel_flight(*h->flight, Cancellation::Reason::kShutdown);
        h->flight->wake.cancel();
      });
    }
  }

  // Waits (bounded) until no handler holds a request (AsyncRequest) any more; true if none does.
  bool wait_released(Clock::time_point until) {
    while (held_requests.load() != 0) {
      if (Clock::now() >= until) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
  }

  // Waits (bounded) for in-flight requests to end; true if none is left.
  bool wait_idle(Clock::time_point until) {
    for (;;) {
      close_idle_sessions();
      if (active_requests.load() == 0) return true;
      if (Clock::now() >= until) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  int drain() {
    draining = true;
    metrics.draining.Set(1);
    spdlog::info(
        "draining: not ready; closing the listener in {} ms, then waiting up to {} ms for {} "
        "in-flight requests",
        options.shutdown_delay.count(), options.shutdown_grace.count(), active_requests.load());
    std::this_thread::sleep_for(options.shutdown_delay);
    asio::post(main_loop(), [this] {
      beast::error_code ignored;
      if (acceptor) acceptor->close(ignored);
      if (admin_acceptor) admin_acceptor->close(ignored);
    });
    int code = 0;
    if (!wait_idle(Clock::now() + options.shutdown_grace)) {
      spdlog::warn("shutdown grace period over with {} requests still in flight: cancelling them",
                   active_requests.load());
      cancel_in_flight();
      // Cancelled sessions answer 503 without waiting for their handlers; kWorker handlers that
      // still run are waited for below (workers->join).
      if (!wait_idle(Clock::now() + kCancelledAnswerTime)) code = 1;
    }
    // Handlers of cancelled requests let go of them once their outbound requests have been
    // aborted, which needs the event loop: it runs until then (bounded).
    if (!wait_released(Clock::now() + kCancelledAnswerTime)) {
      spdlog::warn("{} cancelled requests were still held by their handlers at shutdown",
                   held_requests.load());
      code = 1;
    }
    loop_alive->store(false);
    stop_loops();
    if (workers) workers->join();
    spdlog::info("stopped");
    return code;
  }
};

thread_local const Server::Impl::Loop* Server::Impl::t_loop = nullptr;

namespace {
thread_local asio::io_context* t_event_loop = nullptr;  // current_event_loop()
}  // namespace

boost::asio::io_context* current_event_loop() {
  return t_event_loop;
}

Server::Server(ServerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}

Server::~Server() {
  impl_->loop_alive->store(false);
  if (impl_->running) impl_->stop_loops();
  if (impl_->workers) impl_->workers->join();
}

void Server::add_route(std::string method, std::string pattern, std::string name, Dispatch dispatch,
                       Handler handler, std::function<bool(const Request&)> run_inline) {
  RouteEntry r{std::move(method), split_path(pattern), std::move(name),
               dispatch,          std::move(handler),  std::move(run_inline)};
  impl_->add(std::move(r), false);
}

void Server::add_admin_route(std::string method, std::string pattern, std::string name,
                             Handler handler) {
  RouteEntry r{std::move(method), split_path(pattern), std::move(name),
               Dispatch::kInline, std::move(handler),  nullptr};
  impl_->add(std::move(r), true);
}

void Server::add_async_route(std::string method, std::string pattern, std::string name,
                             AsyncHandler handler) {
  RouteEntry r{
      std::move(method), split_path(pattern), std::move(name), Dispatch::kInline, nullptr, nullptr};
  r.async_handler = std::move(handler);
  impl_->add(std::move(r), false);
}

boost::asio::io_context& Server::io_context() {
  return impl_->main_loop();
}

std::vector<boost::asio::io_context*> Server::io_contexts() {
  std::vector<boost::asio::io_context*> all;
  for (auto& l : impl_->loops) all.push_back(&l->ioc);
  return all;
}

RouteEntry& Server::Impl::add(RouteEntry r, bool admin) {
  auto& m = metrics;
  const auto& cors = options.cors_routes;
  r.cors = !admin && std::find(cors.begin(), cors.end(), r.name) != cors.end();
  r.duration = &m.duration.Add({{"route", r.name}, {"method", r.method}}, obs::latency_buckets());
  r.request_size = &m.request_size.Add({{"route", r.name}}, obs::size_buckets());
  r.response_size = &m.response_size.Add({{"route", r.name}}, obs::size_buckets());
  auto& table = admin ? admin_routes : routes;
  table.push_back(std::move(r));
  return table.back();
}

void Server::set_readiness(std::function<bool(std::string&)> check) {
  impl_->readiness = std::move(check);
}

bool Server::ready(std::string& why_not) const {
  if (impl_->draining) {
    why_not = "draining for shutdown";
    return false;
  }
  return !impl_->readiness || impl_->readiness(why_not);
}

bool Server::draining() const {
  return impl_->draining;
}

const ServerOptions& Server::options() const {
  return impl_->options;
}

void block_shutdown_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

namespace {

// Binds a listener; throws with a message that names the option to change.
tcp::acceptor listen_on(asio::io_context& ioc, const std::string& host, std::uint16_t port,
                        std::string_view port_flag, std::string_view address_flag) {
  beast::error_code ec;
  const auto address = asio::ip::make_address(host, ec);
  if (ec) {
    throw std::runtime_error(
        fmt::format("listen address '{}' is not an IP address: set {} to e.g. 127.0.0.1 or 0.0.0.0",
                    host, address_flag));
  }
  tcp::endpoint ep{address, port};
  tcp::acceptor acceptor(ioc);
  acceptor.open(ep.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(ep, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    throw std::runtime_error(
        fmt::format("cannot listen on {}:{}: {}; pick another port with {} (0 picks a free one)",
                    host, port, ec.message(), port_flag));
  }
  return acceptor;
}

}  // namespace

std::uint16_t Server::start() {
  Impl& s = *impl_;
  const ServerOptions& o = s.options;
  block_shutdown_signals();
  s.acceptor.emplace(listen_on(s.main_loop(), o.address, o.port, "--port", "--address"));
  const std::uint16_t port = s.acceptor->local_endpoint().port();
  if (o.admin_port >= 0) {
    beast::error_code ec;
    const auto admin_address = asio::ip::make_address(o.admin_address, ec);
    if (!ec && !admin_address.is_loopback() && o.admin_token.empty()) {
      throw std::runtime_error(
          fmt::format("the admin listener on {} is not on a loopback address: give it a token with "
                      "--admin-token-file FILE, or keep it on 127.0.0.1 (--admin-address)",
                      o.admin_address));
    }
    s.admin_acceptor.emplace(listen_on(s.main_loop(), o.admin_address,
                                       static_cast<std::uint16_t>(o.admin_port), "--admin-port",
                                       "--admin-address"));
    s.admin_port = s.admin_acceptor->local_endpoint().port();
    asio::co_spawn(s.main_loop(), s.accept_loop(*s.admin_acceptor, true), asio::detached);
  }
  if (o.worker_threads > 0) {
    s.workers = std::make_unique<asio::thread_pool>(static_cast<std::size_t>(o.worker_threads));
  }
  asio::co_spawn(s.main_loop(), s.accept_loop(*s.acceptor, false), asio::detached);
  // Each loop's probe also keeps its loop running while it has no connection.
  for (auto& l : s.loops) asio::co_spawn(l->ioc, s.probe_loop_lag(*l), asio::detached);
  s.running = true;
  for (std::size_t i = 0; i < s.loops.size(); ++i) {
    auto& l = s.loops[i];
    l->thread = std::thread([loop = l.get(), i] {
      obs::name_this_thread(fmt::format("wf-loop-{}", i));
      Impl::t_loop = loop;
      t_event_loop = &loop->ioc;
      loop->ioc.run();
    });
  }
  // One line that says where everything listens (tests and tools read server.port from it).
  obs::log_event(
      spdlog::level::info, fmt::format("listening on {}:{}", o.address, port),
      {obs::field_str("server.address", o.address), obs::field_int("server.port", port),
       obs::field_str("wf.admin.address", s.admin_port ? o.admin_address : ""),
       obs::field_int("wf.admin.port", s.admin_port), obs::field_int("wf.io_threads", o.io_threads),
       obs::field_int("wf.worker_threads", o.worker_threads)});
  return port;
}

std::uint16_t Server::admin_port() const {
  return impl_->admin_port;
}

int Server::run_until_signal() {
  Impl& s = *impl_;
  // Block the signals in this thread and wait for them synchronously; the event loop threads were
  // started earlier, so main() must have blocked them before start() (see block_shutdown_signals).
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::atomic<bool> done{false};
  std::thread waiter([&] {
    while (!done) {
      timespec ts{0, 100'000'000};
      siginfo_t info;
      const int sig = sigtimedwait(&set, &info, &ts);
      if (sig == SIGTERM || sig == SIGINT) {
        spdlog::info("received {}", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        std::lock_guard lock(s.stop_mu);
        s.stop_requested = true;
        s.stop_cv.notify_all();
        return;
      }
    }
  });
  {
    std::unique_lock lock(s.stop_mu);
    s.stop_cv.wait(lock, [&] { return s.stop_requested; });
  }
  done = true;
  const int code = s.drain();
  waiter.join();
  return code;
}

void Server::stop() {
  std::lock_guard lock(impl_->stop_mu);
  impl_->stop_requested = true;
  impl_->stop_cv.notify_all();
}

}  // namespace wf::http
