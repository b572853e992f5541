#pragma once
// The HTTP/1.1 server both services run on: Boost.Beast + Asio with C++20 coroutines, kept out of
// this header so that services compile without Asio. Keep-alive; limits on body, header and
// connections; header/idle/body timeouts; JSON error bodies; request ids and W3C trace context;
// one access-log line and the wf_http_* metrics per request; graceful drain on SIGTERM/SIGINT.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "wf/http/cancellation.h"
#include "wf/http/message.h"

namespace boost::asio {
class io_context;
}

namespace wf::http {

struct ServerOptions {
  std::string service_name = "wf";
  std::string address = "127.0.0.1";
  std::uint16_t port = 0;  // 0: pick a free port (logged, and returned by start())
  int io_threads = 1;      // event loops: io_contexts, each run by one thread
  int worker_threads = 2;  // threads running kWorker handlers (blocking work); 0: none, they run
                           // on the event loop
  std::size_t max_body_bytes = 1u << 20;
  std::size_t max_header_bytes = 16u << 10;
  int max_connections = 1024;
  // Bound on kWorker requests running or waiting for a worker; beyond it: 503 + Retry-After.
  int max_pending_work = 256;
  // Backpressure when the event loop itself is the bottleneck (a flood of cheap calls): while a
  // timer due on the loop is overdue by more than this, requests to async and kWorker routes are
  // answered 503 + Retry-After at once, before their handler runs (counted as
  // wf_http_rejected_total{reason="event_loop_lag"}); /healthz, /metrics and the other inline
  // routes are still served. 0: off (the lag is still measured: wf_http_event_loop_lag_seconds).
  std::chrono::milliseconds max_loop_lag{0};
  std::chrono::milliseconds header_timeout{10000};   // to receive a request's headers
  std::chrono::milliseconds idle_timeout{30000};     // keep-alive connection with no request
  std::chrono::milliseconds body_timeout{30000};     // to receive a body, and to send a response
  std::chrono::milliseconds request_timeout{20000};  // Request::deadline = arrival + this
  std::chrono::milliseconds shutdown_grace{10000};   // in-flight requests may finish within this
  // Async routes: after a request's deadline has cancelled it (kDeadline), how long its handler
  // may still answer (e.g. with its own timeout error) before the server answers 504 itself.
  std::chrono::milliseconds deadline_grace{1000};
  // On SIGTERM, /readyz answers 503 for this long while the server still accepts, so that load
  // balancers stop sending before the listener closes (Kubernetes: endpoint removal lag).
  std::chrono::milliseconds shutdown_delay{0};
  bool access_log = true;
  // The admin listener serves the routes added with add_admin_route (and only those; the main
  // listener answers 404 for them). -1: no admin listener; 0: pick a free port (logged as
  // wf.admin.port, and returned by admin_port()).
  std::string admin_address = "127.0.0.1";
  int admin_port = 0;
  // When not empty, admin requests need "Authorization: Bearer <admin_token>" (401 otherwise).
  // Required when admin_address is not a loopback address.
  std::string admin_token;
  // Access-Control-Allow-Origin value ("*" or an origin) sent on the routes named in cors_routes,
  // which also answer CORS preflight (OPTIONS). Empty: no CORS headers at all.
  std::string cors_origin;
  std::vector<std::string> cors_routes = {"evaluate"};
};

enum class Dispatch {
  kInline,  // cheap, non-blocking: runs on the event loop
  kWorker,  // may block: runs on the worker pool, counted against max_pending_work
};

using Handler = std::function<Response(const Request&)>;

// One request to an asynchronous route (or a kWorker route, which the server runs the same way).
// The handler receives it as a shared_ptr and keeps it as long as it needs. `cancel` is raised
// when the client hangs up (kClientGone), the deadline passes (kDeadline) or a drain runs out of
// time (kShutdown); request.cancel is the same object.
class AsyncRequest {
 public:
  using DeliverLater = std::function<void(Response, std::chrono::milliseconds)>;
  // `deliver` hands the response to the connection; the server supplies it (tests may use any).
  // `deliver_later` (optional) hands it over after a delay, on a timer of the connection's
  // executor: without it, respond_after() answers at once. The request is taken as an rvalue:
  // make_shared moves it once, into `request` (by value it was moved twice, ~0.4k instructions).
  AsyncRequest(Request&& request, std::shared_ptr<Cancellation> cancel,
               std::function<void(Response)> deliver, DeliverLater deliver_later = nullptr);
  // The same with one function for both (the server's): `deliver(response, delay)` hands the
  // response over `delay` later, at once when it is 0.
  AsyncRequest(Request&& request, std::shared_ptr<Cancellation> cancel, DeliverLater deliver);
  // Not answered: a bug (500, counted) unless cancelled, then the error that matches the reason.
  ~AsyncRequest();
  AsyncRequest(const AsyncRequest&) = delete;
  AsyncRequest& operator=(const AsyncRequest&) = delete;

  Request request;
  std::shared_ptr<Cancellation> cancel;

  // Answers the request from any thread; the response is written on the connection's strand.
  // Only the first call counts (later ones return false). After the client went away, the
  // response is dropped, and so it is once the server has stopped its event loop (drain done, or
  // destroyed). Must not race with the Server's destructor.
  bool respond(Response response);
  // The same, but the response is written `delay` later (a timer on the connection's executor:
  // no thread waits). The request counts as answered at once. For answers held on purpose (a
  // refusal to a caller who ignores Retry-After); the server holds at most a few thousand at once
  // and sends the others at once.
  bool respond_after(std::chrono::milliseconds delay, Response response);
  bool responded() const;
  // Runs `before` on the answer (whoever gives it: the handler, at once or with respond_after(),
  // or, unanswered, the destructor) just before it goes to the connection: for a wrapper that
  // must see the answer (admission charges the call's CPU), without a second AsyncRequest per
  // call. Call it before the request is shared with another thread.
  void before_answer(std::function<void(Response&)> before);

 private:
  // One function for the answer, at once or later: each parked call holds an AsyncRequest, and
  // with two it was 520 bytes, over the 512-byte allocation class (server.cc, static_assert).
  DeliverLater deliver_;
  std::atomic<bool> responded_{false};
};

// Runs on an event-loop thread (the connection's strand) and must not block: start the work and
// return; answer later with request->respond(...) from any thread.
using AsyncHandler = std::function<void(std::shared_ptr<AsyncRequest>)>;

class Server {
 public:
  explicit Server(ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // `pattern` is a path with {name} segments matching any one segment, e.g.
  // "/{domain}/v1/evaluate"; a trailing slash on the request path is ignored. `name` labels metrics
  // (bounded set). For kWorker routes, `run_inline` (optional, cheap) may claim a request for the
  // event loop: requests known not to block skip the hand-off to a worker thread.
  void add_route(std::string method, std::string pattern, std::string name, Dispatch dispatch,
                 Handler handler, std::function<bool(const Request&)> run_inline = nullptr);
  // An admin route (log level, limits): an inline handler served only on the admin listener.
  void add_admin_route(std::string method, std::string pattern, std::string name, Handler handler);
  // An asynchronous route: no thread is held while the request is in progress.
  void add_async_route(std::string method, std::string pattern, std::string name,
                       AsyncHandler handler);
  // Extra readiness condition for /readyz (dependencies); the server adds "not draining".
  void set_readiness(std::function<bool(std::string& why_not)> check);
  bool ready(std::string& why_not) const;
  bool draining() const;

  // Binds (the main and the admin listener) and starts the threads; returns the main listener's
  // port. Throws std::runtime_error if it cannot bind, or if the admin listener would be on a
  // non-loopback address without a token. Routes must all be added before start().
  std::uint16_t start();
  // The admin listener's bound port after start(); 0 if there is none.
  std::uint16_t admin_port() const;
  // Blocks until SIGTERM/SIGINT (then drains: not ready, stop accepting, finish in-flight work
  // within shutdown_grace) or until stop(). Returns the process exit code (0 on a clean drain).
  int run_until_signal();
  // Starts the same drain from another thread (tests, embedded use).
  void stop();

  const ServerOptions& options() const;

  // The first event loop (one thread runs it after start(); the listeners are on it), for
  // services that put their own sockets, descriptors and timers on it. Include "wf/http/io.h" to
  // use it. Objects on it must be destroyed before the Server.
  boost::asio::io_context& io_context();
  // Every event loop (io_threads of them, the first is io_context()): connections are spread over
  // them, one thread runs each. For an HttpClient that does its I/O on the loop of the thread
  // that calls it (ClientOptions::io_contexts).
  std::vector<boost::asio::io_context*> io_contexts();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The event loop this thread runs (a loop thread of any Server: set when the thread starts), or
// null on every other thread. One thread-local load, for code that must know which loop it is on
// (the engine's EventLoop port, HttpClient's pool per loop).
boost::asio::io_context* current_event_loop();

// Blocks SIGTERM and SIGINT in the calling thread, so that threads created afterwards inherit the
// mask and only run_until_signal() sees them. Call first thing in main(), before any thread starts.
void block_shutdown_signals();

// Identity served at /_info and used in metrics.
struct ServiceInfo {
  std::string name;
  std::string version;
  std::string commit;
  std::string description;
  std::string openapi_json;  // the OpenAPI document served at /openapi.json
};

// /healthz, /readyz, /metrics, /_info, /openapi.json; on the admin listener GET, PUT and POST
// /_admin/log-level.
void add_standard_routes(Server& server, const ServiceInfo& info);

}  // namespace wf::http
