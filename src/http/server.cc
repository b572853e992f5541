#include "wf/http/server.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <csignal>
#include <list>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <unordered_set>

#include "request_limits.h"
#include "wf/obs/log.h"
#include "wf/obs/metrics.h"
#include "wf/obs/trace.h"

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
  // Metrics children cached per route (prometheus-cpp's Add() takes a lock).
  prometheus::Histogram* duration = nullptr;
  prometheus::Histogram* request_size = nullptr;
  prometheus::Histogram* response_size = nullptr;
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
    };
    return m;
  }
};

// A connection's state that the drain logic may touch from another thread.
struct SessionHandle {
  asio::strand<asio::io_context::executor_type> strand;
  tcp::socket* socket = nullptr;  // valid while the session runs; touched only on `strand`
  std::atomic<bool> idle{true};
  explicit SessionHandle(asio::strand<asio::io_context::executor_type> s) : strand(std::move(s)) {}
};

}  // namespace

struct Server::Impl {
  ServerOptions options;
  asio::io_context ioc;
  std::unique_ptr<asio::thread_pool> workers;
  std::optional<tcp::acceptor> acceptor;
  std::vector<std::thread> io_threads;
  std::vector<RouteEntry> routes;
  std::function<bool(std::string&)> readiness;
  std::atomic<bool> draining{false};
  std::atomic<int> active_requests{0};
  std::atomic<int> pending_work{0};
  std::atomic<int> connections{0};
  std::mutex sessions_mu;
  std::unordered_set<std::shared_ptr<SessionHandle>> sessions;
  std::mutex stop_mu;
  std::condition_variable stop_cv;
  bool stop_requested = false;
  Metrics& metrics = Metrics::get();

  explicit Impl(ServerOptions o) : options(std::move(o)) {}

  const RouteEntry* match(std::string_view method, std::string_view path, bool& path_known,
                          std::string& allowed) const {
    const auto segs = split_path(path);
    const RouteEntry* found = nullptr;
    path_known = false;
    for (const RouteEntry& r : routes) {
      if (!segments_match(r.segments, segs)) continue;
      path_known = true;
      if (allowed.find(r.method) == std::string::npos)
        allowed += (allowed.empty() ? "" : ", ") + r.method;
      if (r.method == method && found == nullptr) found = &r;
    }
    return found;
  }

  awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, socket] = co_await acceptor->async_accept(asio::make_strand(ioc), kTuple);
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
      {
        std::lock_guard lock(sessions_mu);
        sessions.insert(handle);
      }
      auto ex = handle->strand;
      asio::co_spawn(ex, session(beast::tcp_stream(std::move(socket)), handle), asio::detached);
    }
  }

  awaitable<void> refuse_connection(tcp::socket socket) {
    beast::tcp_stream stream(std::move(socket));
    stream.expires_after(std::chrono::seconds(1));
    bhttp::response<bhttp::string_body> res{bhttp::status::service_unavailable, 11};
    res.set(bhttp::field::content_type, "application/json");
    res.set(bhttp::field::retry_after, "1");
    res.keep_alive(false);
    res.body() = Response::error(503, "too_many_connections",
                                 "the server has reached its connection limit; retry shortly")
                     .body;
    res.prepare_payload();
    co_await bhttp::async_write(stream, res, kTuple);
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  }

  // Builds the Beast response for `r`, with the headers every response carries.
  bhttp::response<bhttp::string_body> to_beast(Response&& r, const Request& req, unsigned version,
                                               bool keep_alive) {
    bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(r.status), version};
    res.set(bhttp::field::server, options.service_name);
    res.set(bhttp::field::content_type, r.content_type);
    if (!req.request_id.empty()) res.set("x-request-id", req.request_id);
    if (!req.trace.trace_id.empty()) res.set("traceparent", req.trace.traceparent());
    res.set(bhttp::field::access_control_allow_origin, "*");
    res.set(bhttp::field::access_control_allow_headers, "accept, x-requested-with, content-type");
    res.set("x-content-type-options", "nosniff");
    res.set("x-frame-options", "SAMEORIGIN");
    for (Header& h : r.headers) res.set(h.name, h.value);
    res.body() = std::move(r.body);
    res.keep_alive(keep_alive);
    res.prepare_payload();
    return res;
  }

  awaitable<void> session(beast::tcp_stream stream, std::shared_ptr<SessionHandle> handle) {
    ++connections;
    metrics.connections.Increment();
    metrics.accepted.Increment();
    // Register the socket so that a drain can close idle connections.
    co_await asio::post(handle->strand, use_awaitable);
    handle->socket = &stream.socket();
    beast::flat_buffer buffer;
    std::string client_address;
    {
      beast::error_code ec;
      const auto ep = stream.socket().remote_endpoint(ec);
      if (!ec) client_address = ep.address().to_string();
    }
    bool first = true;
    for (;;) {
      if (draining && !first) break;  // a new connection still gets its first request served
      handle->idle = true;
      RequestParser parser;
      apply_request_limits(parser, options);
      stream.expires_after(first && buffer.size() == 0 ? options.header_timeout
                                                       : options.idle_timeout);
      first = false;
      auto [hec, hn] = co_await bhttp::async_read_header(stream, buffer, parser, kTuple);
      if (hec) {
        if (hec == bhttp::error::end_of_stream || hec == beast::error::timeout ||
            hec == asio::error::operation_aborted || hec == asio::error::connection_reset ||
            hec == asio::error::eof || draining) {
          break;
        }
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
          message =
              fmt::format("request body exceeds the limit of {} bytes", options.max_body_bytes);
        }
        metrics.rejected.Add({{"reason", "malformed"}}).Increment();
        auto res = to_beast(Response::error(status, type, message), req, 11, false);
        stream.expires_after(options.body_timeout);
        co_await bhttp::async_write(stream, res, kTuple);
        break;
      }
      handle->idle = false;
      const auto received = Clock::now();
      auto& hreq = parser.get();

      Request req;
      req.received_at = received;
      req.deadline = received + options.request_timeout;
      req.method = std::string(hreq.method_string());
      req.target = std::string(hreq.target());
      const auto q = req.target.find('?');
      req.path = req.target.substr(0, q);
      if (q != std::string::npos) req.query = req.target.substr(q + 1);
      req.client_address = client_address;
      req.headers.reserve(8);
      for (const auto& f : hreq) {
        std::string name(f.name_string());
        for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        req.headers.push_back({std::move(name), std::string(f.value())});
      }
      const auto rid = req.header("x-request-id");
      req.request_id =
          rid && acceptable_request_id(*rid) ? std::string(*rid) : obs::random_hex_id(16);
      req.trace = obs::make_trace_context(req.header("traceparent"));

      std::optional<Response> early;
      bool close_after = false;
      const bool has_body_method =
          req.method == "POST" || req.method == "PUT" || req.method == "PATCH";
      if (has_body_method && !hreq.has_content_length() && !hreq.chunked()) {
        early =
            Response::error(411, "length_required",
                            "a request body needs a Content-Length header (or chunked encoding)");
        close_after = true;
      } else if (hreq.has_content_length() && hreq.payload_size() &&
                 *hreq.payload_size() > options.max_body_bytes) {
        early =
            Response::error(413, "payload_too_large",
                            fmt::format("request body of {} bytes exceeds the limit of {} bytes",
                                        *hreq.payload_size(), options.max_body_bytes));
        close_after = true;
      } else if (!parser.is_done()) {
        stream.expires_after(options.body_timeout);
        auto [bec, bn] = co_await bhttp::async_read(stream, buffer, parser, kTuple);
        if (bec == bhttp::error::body_limit) {
          early = Response::error(
              413, "payload_too_large",
              fmt::format("request body exceeds the limit of {} bytes", options.max_body_bytes));
          close_after = true;
        } else if (bec == beast::error::timeout) {
          early =
              Response::error(408, "request_timeout", "the request body did not arrive in time");
          close_after = true;
        } else if (bec) {
          break;  // the client went away mid-body
        }
      }
      if (!early) req.body = std::move(hreq.body());
      const bool keep_alive = hreq.keep_alive() && !close_after;
      const unsigned version = hreq.version();

      ++active_requests;
      metrics.in_flight.Increment();
      const RouteEntry* route = nullptr;
      // GCC 12 miscompiles co_await inside a conditional expression: keep it a statement.
      Response res;
      if (early) {
        res = std::move(*early);
      } else {
        res = co_await dispatch(req, route);
      }
      metrics.in_flight.Decrement();

      const std::string_view route_name = route ? std::string_view(route->name) : "unmatched";
      const unsigned status = res.status;
      const std::size_t response_bytes = res.body.size();
      const bool keep = keep_alive && !draining;
      auto bres = to_beast(std::move(res), req, version, keep);
      stream.expires_after(options.body_timeout);
      // Counted before the write, so that a client that has its answer also sees it in /metrics.
      const double seconds = std::chrono::duration<double>(Clock::now() - received).count();
      record(route, route_name, req, status, seconds, response_bytes);
      auto [wec, wn] = co_await bhttp::async_write(stream, bres, kTuple);
      --active_requests;
      if (wec || !keep) break;
    }
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    handle->socket = nullptr;
    {
      std::lock_guard lock(sessions_mu);
      sessions.erase(handle);
    }
    --connections;
    metrics.connections.Decrement();
  }

  void record(const RouteEntry* route, std::string_view route_name, const Request& req,
              unsigned status, double seconds, std::size_t response_bytes) {
    const std::string method(method_label(req.method));
    metrics.requests
        .Add({{"route", std::string(route_name)},
              {"method", method},
              {"status", std::to_string(status)}})
        .Increment();
    if (route != nullptr) {
      route->duration->Observe(seconds);
      route->request_size->Observe(static_cast<double>(req.body.size()));
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
           obs::field_int("http.request.body.bytes", static_cast<long long>(req.body.size())),
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

  awaitable<Response> dispatch(const Request& req, const RouteEntry*& route_out) {
    bool path_known = false;
    std::string allowed;
    const RouteEntry* route = match(req.method, req.path, path_known, allowed);
    route_out = route;
    if (route == nullptr) {
      if (path_known) {
        Response r = Response::error(
            405, "method_not_allowed",
            fmt::format("{} is not allowed on {}; allowed: {}", req.method, req.path, allowed));
        r.headers.push_back({"allow", allowed});
        co_return r;
      }
      co_return Response::error(404, "not_found",
                                fmt::format("no route for {} {}", req.method, req.path));
    }
    if (route->dispatch == Dispatch::kInline || (route->run_inline && route->run_inline(req))) {
      co_return call_handler(route->handler, req);
    }

    if (pending_work.fetch_add(1) >= options.max_pending_work) {
      pending_work.fetch_sub(1);
      metrics.rejected.Add({{"reason", "overloaded"}}).Increment();
      Response r = Response::error(
          503, "overloaded", "the server is at its limit of concurrent work; retry after a second");
      r.headers.push_back({"retry-after", "1"});
      co_return r;
    }
    const Handler* handler = &route->handler;
    auto work = [handler, &req]() -> awaitable<Response> { co_return call_handler(*handler, req); };
    auto [eptr, response] =
        co_await asio::co_spawn(workers->get_executor(), std::move(work), kTuple);
    pending_work.fetch_sub(1);
    if (eptr) co_return Response::error(500, "internal_error", "the handler failed");
    co_return std::move(response);
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

  int drain() {
    draining = true;
    metrics.draining.Set(1);
    spdlog::info(
        "draining: not ready; closing the listener in {} ms, then waiting up to {} ms for {} "
        "in-flight requests",
        options.shutdown_delay.count(), options.shutdown_grace.count(), active_requests.load());
    std::this_thread::sleep_for(options.shutdown_delay);
    asio::post(ioc, [this] {
      beast::error_code ignored;
      if (acceptor) acceptor->close(ignored);
    });
    const auto until = Clock::now() + options.shutdown_grace;
    int code = 0;
    for (;;) {
      close_idle_sessions();
      if (active_requests.load() == 0) break;
      if (Clock::now() >= until) {
        spdlog::warn("shutdown grace period over with {} requests still in flight",
                     active_requests.load());
        code = 1;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ioc.stop();
    for (auto& t : io_threads) t.join();
    io_threads.clear();
    workers->join();
    spdlog::info("stopped");
    return code;
  }
};

Server::Server(ServerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}

Server::~Server() {
  if (!impl_->io_threads.empty()) {
    impl_->ioc.stop();
    for (auto& t : impl_->io_threads) t.join();
  }
  if (impl_->workers) impl_->workers->join();
}

void Server::add_route(std::string method, std::string pattern, std::string name, Dispatch dispatch,
                       Handler handler, std::function<bool(const Request&)> run_inline) {
  auto& m = impl_->metrics;
  RouteEntry r{std::move(method), split_path(pattern), std::move(name),
               dispatch,          std::move(handler),  std::move(run_inline)};
  r.duration = &m.duration.Add({{"route", r.name}, {"method", r.method}}, obs::latency_buckets());
  r.request_size = &m.request_size.Add({{"route", r.name}}, obs::size_buckets());
  r.response_size = &m.response_size.Add({{"route", r.name}}, obs::size_buckets());
  impl_->routes.push_back(std::move(r));
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

std::uint16_t Server::start() {
  Impl& s = *impl_;
  block_shutdown_signals();
  s.workers = std::make_unique<asio::thread_pool>(
      static_cast<std::size_t>(std::max(1, s.options.worker_threads)));
  beast::error_code ec;
  const auto address = asio::ip::make_address(s.options.address, ec);
  if (ec)
    throw std::runtime_error(
        fmt::format("listen address '{}' is not an IP address: use e.g. 127.0.0.1 or 0.0.0.0",
                    s.options.address));
  tcp::endpoint ep{address, s.options.port};
  s.acceptor.emplace(s.ioc);
  s.acceptor->open(ep.protocol(), ec);
  if (!ec) s.acceptor->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) s.acceptor->bind(ep, ec);
  if (!ec) s.acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    throw std::runtime_error(fmt::format(
        "cannot listen on {}:{}: {}; pick another port with --port (0 picks a free one)",
        s.options.address, s.options.port, ec.message()));
  }
  const std::uint16_t port = s.acceptor->local_endpoint().port();
  asio::co_spawn(s.ioc, s.accept_loop(), asio::detached);
  for (int i = 0; i < std::max(1, s.options.io_threads); ++i) {
    s.io_threads.emplace_back([&s] { s.ioc.run(); });
  }
  obs::log_event(
      spdlog::level::info, fmt::format("listening on {}:{}", s.options.address, port),
      {obs::field_str("server.address", s.options.address), obs::field_int("server.port", port),
       obs::field_int("wf.io_threads", s.options.io_threads),
       obs::field_int("wf.worker_threads", s.options.worker_threads)});
  return port;
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
