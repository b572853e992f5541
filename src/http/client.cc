#include "wf/http/client.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/url/parse.hpp>
#include <cctype>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <thread>
#include <unordered_map>

#include "wf/http/server.h"
#include "wf/obs/process_stats.h"
#include "wire.h"

namespace wf::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

namespace {

// A URL as the client uses it, parsed once per client and URL (HttpClient::Impl::target).
struct Target {
  std::string host;
  std::string port;
  std::string path;                       // with query
  std::string key;                        // host:port, [v6]:port: idle pool key, Host field
  std::optional<tcp::endpoint> endpoint;  // when the host is a numeric address
};

std::expected<Target, ClientError> parse_url(const std::string& url) {
  auto parsed = boost::urls::parse_uri(url);
  if (!parsed) {
    return std::unexpected(
        ClientError{ClientError::Kind::kInvalidUrl, fmt::format("'{}' is not a URL", url)});
  }
  if (parsed->scheme() != "http") {
    return std::unexpected(ClientError{ClientError::Kind::kInvalidUrl,
                                       fmt::format("'{}': only http:// URLs are supported", url)});
  }
  Target t;
  t.host = std::string(parsed->host());
  if (t.host.empty()) {
    return std::unexpected(
        ClientError{ClientError::Kind::kInvalidUrl, fmt::format("'{}' has no host", url)});
  }
  // An IPv6 literal keeps its brackets in the Host field (RFC 7230 §5.4, RFC 3986 §3.2.2):
  // "[::1]:8080", not "::1:8080", whose port a server cannot tell from the address.
  const bool bracketed = t.host.size() > 2 && t.host.front() == '[' && t.host.back() == ']';
  const std::string authority_host = t.host;
  if (bracketed) t.host = t.host.substr(1, t.host.size() - 2);
  t.port = parsed->has_port() ? std::string(parsed->port()) : "80";
  if (t.port.empty() || t.port.size() > 5 || std::stoi(t.port) == 0 || std::stoi(t.port) > 65535) {
    return std::unexpected(ClientError{ClientError::Kind::kInvalidUrl,
                                       fmt::format("'{}': the port must be 1 to 65535", url)});
  }
  t.path = std::string(parsed->encoded_path());
  if (t.path.empty()) t.path = "/";
  if (parsed->has_query()) t.path += "?" + std::string(parsed->encoded_query());
  t.key = authority_host + ":" + t.port;
  beast::error_code ec;
  const auto address = asio::ip::make_address(t.host, ec);
  if (!ec) t.endpoint = tcp::endpoint(address, static_cast<std::uint16_t>(std::stoi(t.port)));
  return t;
}

ClientError cancelled_error(const Target& t) {
  return ClientError{ClientError::Kind::kCancelled,
                     fmt::format("request to {}:{} cancelled", t.host, t.port)};
}

}  // namespace

struct HttpClient::OwnLoop {
  asio::io_context ioc;
  asio::executor_work_guard<asio::io_context::executor_type> guard{ioc.get_executor()};
  std::thread thread{[this] {
    obs::name_this_thread("wf-client");
    ioc.run();
  }};
  void stop() {
    guard.reset();
    ioc.stop();
    if (thread.joinable()) thread.join();
  }
  ~OwnLoop() { stop(); }
};

struct HttpClient::Impl {
  // The connection pool of one event loop: its connections are registered with that loop's
  // io_context, so a request uses only connections of the loop it runs on.
  struct Loop {
    Loop(asio::io_context& io, std::size_t i) : ioc(io), index(i) {}
    asio::io_context& ioc;
    std::size_t index;  // in `loops`
    std::mutex pool_mu;
    // Idle keep-alive connections by host:port: plain sockets (each request in flight keeps its
    // own deadline timer, so a connection needs no Beast `tcp_stream` with its timers).
    std::map<std::string, std::vector<std::unique_ptr<tcp::socket>>> idle;
    // URLs parsed (under pool_mu): a client calls a few (an evaluator's, a wiki's with each
    // fetch's query), so the map is emptied when it holds kMaxTargets.
    std::unordered_map<std::string, std::shared_ptr<const Target>> targets;
  };
  static constexpr std::size_t kMaxTargets = 64;

  ClientOptions options;
  std::vector<std::unique_ptr<Loop>> loops;
  std::atomic<unsigned> next_loop{0};  // for requests sent from a thread that runs no loop

  // At most 256 loops (an exchange keeps its loop's index in a byte).
  Impl(ClientOptions o, const std::vector<asio::io_context*>& ios) : options(std::move(o)) {
    for (asio::io_context* io : ios) {
      if (loops.size() == 256) break;
      loops.push_back(std::make_unique<Loop>(*io, loops.size()));
    }
  }

  // The loop a request sent from this thread runs on: the caller's own when it runs one (an
  // evaluation on a server's loop thread: its answer comes back on that thread, with no hand-off
  // to another), else each in turn.
  Loop& loop_for_caller() {
    if (loops.size() == 1) return *loops.front();
    // A server's loop thread knows its loop (a thread-local load); another thread that runs one
    // of them (loops a Server does not run) is found by asking each loop's executor.
    asio::io_context* here = current_event_loop();
    for (auto& l : loops) {
      if (here != nullptr ? &l->ioc == here : l->ioc.get_executor().running_in_this_thread()) {
        return *l;
      }
    }
    return *loops[next_loop.fetch_add(1, std::memory_order_relaxed) % loops.size()];
  }

  // `url` parsed, from the loop's cache after its first use (boost::urls' parse and the strings
  // cost ~4,500 instructions per request).
  std::expected<std::shared_ptr<const Target>, ClientError> target(Loop& loop,
                                                                   const std::string& url) {
    {
      std::lock_guard lock(loop.pool_mu);
      auto it = loop.targets.find(url);
      if (it != loop.targets.end()) return it->second;
    }
    auto parsed = parse_url(url);
    if (!parsed) return std::unexpected(std::move(parsed.error()));
    auto t = std::make_shared<const Target>(std::move(*parsed));
    std::lock_guard lock(loop.pool_mu);
    if (loop.targets.size() >= kMaxTargets) loop.targets.clear();
    loop.targets.emplace(url, t);
    return t;
  }

  std::unique_ptr<tcp::socket> take_idle(Loop& loop, const std::string& key) {
    std::lock_guard lock(loop.pool_mu);
    auto it = loop.idle.find(key);
    if (it == loop.idle.end() || it->second.empty()) return nullptr;
    auto s = std::move(it->second.back());
    it->second.pop_back();
    return s;
  }

  void give_back(Loop& loop, const std::string& key, std::unique_ptr<tcp::socket> s) {
    std::lock_guard lock(loop.pool_mu);
    auto& v = loop.idle[key];
    if (v.size() < options.max_idle_per_host) v.push_back(std::move(s));
  }

  Clock::time_point effective_deadline(const ClientRequest& req) const {
    const auto now = Clock::now();
    if (req.deadline == Clock::time_point::max() || req.deadline - now > std::chrono::hours(24)) {
      return now + options.default_timeout;
    }
    return req.deadline;
  }

  // Takes the body (one copy of it while the request is in flight, not two).
  bhttp::request<bhttp::string_body> to_beast(ClientRequest& req, const Target& t) const {
    bhttp::request<bhttp::string_body> hreq{bhttp::string_to_verb(req.method), t.path, 11};
    hreq.set(bhttp::field::host, t.key);
    hreq.set(bhttp::field::user_agent, options.user_agent);
    for (const Header& h : req.headers) hreq.set(h.name, h.value);
    if (!req.body.empty() || req.method == "POST" || req.method == "PUT") {
      if (!req.content_type.empty()) hreq.set(bhttp::field::content_type, req.content_type);
      hreq.body() = std::move(req.body);
    }
    hreq.keep_alive(true);
    hreq.prepare_payload();
    return hreq;
  }

  static ClientError transport_error(const Target& t, beast::error_code ec, std::size_t limit) {
    if (ec == beast::error::timeout) {
      return ClientError{ClientError::Kind::kTimeout,
                         fmt::format("{}:{} did not answer in time", t.host, t.port)};
    }
    if (ec == bhttp::error::body_limit) {
      return ClientError{
          ClientError::Kind::kTooLarge,
          fmt::format("{}:{} answered with more than {} bytes", t.host, t.port, limit)};
    }
    const bool protocol =
        ec.category() == beast::error_code(bhttp::error::bad_version).category() &&
        ec != bhttp::error::end_of_stream;
    return ClientError{
        protocol ? ClientError::Kind::kProtocol : ClientError::Kind::kTransport,
        fmt::format("request to {}:{} failed: {}", t.host, t.port,
                    ec == bhttp::error::end_of_stream ? "connection closed without an answer"
                                                      : ec.message())};
  }

  class Exchange;
};

namespace {

// Beast's parser of an answer, with nothing between it and the caller's ClientResponse: the
// status, the headers the caller reads (ClientRequest::keep_headers: lowercase names, values as
// received) and the body appended to the response as it arrives, where `response_parser` built
// a message with every field in Beast's list, which was then copied and lowercased header by
// header (~2,200 instructions per evaluator answer). The framing (Content-Length, chunked, until
// the peer closes), the limits, keep-alive and the errors are basic_parser's own.
class AnswerParser final : public bhttp::basic_parser<false> {
 public:
  AnswerParser(bool keep_all, std::span<const std::string_view> keep, std::size_t body_limit)
      : keep_all_(keep_all), keep_(keep), body_limit_(body_limit) {
    this->body_limit(body_limit);
  }

  ClientResponse& response() { return response_; }

 private:
  void on_request_impl(bhttp::verb, beast::string_view, beast::string_view, int,
                       beast::error_code&) override {}

  void on_response_impl(int code, beast::string_view, int, beast::error_code&) override {
    response_.status = static_cast<unsigned>(code);
  }

  void on_field_impl(bhttp::field, beast::string_view name, beast::string_view value,
                     beast::error_code&) override {
    if (keep_all_) {
      std::string lower(name.data(), name.size());
      for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      response_.headers.push_back({std::move(lower), std::string(value.data(), value.size())});
      return;
    }
    for (const std::string_view kept : keep_) {
      if (kept.size() == name.size() && beast::iequals(kept, name)) {
        response_.headers.push_back({std::string(kept), std::string(value.data(), value.size())});
        return;
      }
    }
  }

  void on_header_impl(beast::error_code&) override {}

  // A known length (within the limit, which basic_parser enforces) is reserved at once.
  void on_body_init_impl(const boost::optional<std::uint64_t>& length,
                         beast::error_code&) override {
    if (length)
      response_.body.reserve(
          static_cast<std::size_t>(std::min<std::uint64_t>(*length, body_limit_)));
  }

  std::size_t on_body_impl(beast::string_view body, beast::error_code&) override {
    response_.body.append(body.data(), body.size());
    return body.size();
  }

  void on_chunk_header_impl(std::uint64_t, beast::string_view, beast::error_code&) override {}

  std::size_t on_chunk_body_impl(std::uint64_t, beast::string_view body,
                                 beast::error_code&) override {
    response_.body.append(body.data(), body.size());
    return body.size();
  }

  void on_finish_impl(beast::error_code&) override {}

  ClientResponse response_;
  bool keep_all_;
  std::span<const std::string_view> keep_;
  std::size_t body_limit_;
};

}  // namespace

// One request in flight, driven by the completion handlers of its operations on its loop,
// which own it: a request that waits for a slow evaluator keeps only this state, its socket's wait
// for readability and its deadline timer (no coroutine frames: bench/slow_calls, memory per
// parked call). The connection is a plain socket: this state's one timer is the deadline of every
// operation on it (connect, write, the wait for the answer, its read), where Beast's `tcp_stream`
// kept a shared state with three timers of its own per connection (~0.7 KiB). The Beast request
// exists only while it is written, and the parser and its buffer only while the answer is read.
// `impl_` keeps the pool alive while the request is in flight.
class HttpClient::Impl::Exchange : public std::enable_shared_from_this<Exchange> {
 public:
  // The loop's own executor, not a strand: each loop is run by one thread (ClientOptions), so the
  // exchange's handlers never run at once, and a strand's queue, its lock and its shared state per
  // request bought nothing.
  using Executor = asio::io_context::executor_type;

  // The completion handler of one of the exchange's operations: it runs on the exchange's loop
  // and is a continuation of the exchange's work (asio_handler_is_continuation). An operation that
  // completes at once, started from a thread of the loop (a write the socket took whole, an answer
  // already there), then queues its handler on that thread, after the current handler, instead of
  // on the loop's shared queue, which wakes the other I/O thread (a futex, or an epoll_ctl on the
  // reactor's interrupter) to run it there: one exchange stays on one thread (bench/README.md,
  // "Thread crossings per Python call", session 12).
  template <typename F>
  struct Step {
    using executor_type = Executor;
    Executor executor;
    F f;
    executor_type get_executor() const noexcept { return executor; }
    template <typename... Args>
    void operator()(Args&&... args) {
      f(std::forward<Args>(args)...);
    }
    friend bool asio_handler_is_continuation(Step*) { return true; }
  };
  template <typename F>
  Step<F> step(F f) const {
    return Step<F>{executor_, std::move(f)};
  }

  Exchange(std::shared_ptr<Impl> impl, Impl::Loop& loop, Executor executor, ClientRequest req,
           std::shared_ptr<const Target> t, std::shared_ptr<Cancellation> cancel,
           std::function<void(ClientResult)> done)
      : impl_(std::move(impl)),
        executor_(std::move(executor)),
        req_(std::move(req)),
        t_(std::move(t)),
        cancel_(std::move(cancel)),
        done_(std::move(done)),
        timer_(executor_),
        loop_index_(static_cast<std::uint8_t>(loop.index)) {}

  // On the loop's thread (as every member below).
  void start() {
    if (cancel_) {
      // Raised on another thread: the abort runs on the loop, if the request is still there.
      registration_ =
          cancel_->on_cancel([weak = weak_from_this(), executor = executor_](Cancellation::Reason) {
            asio::post(executor, [weak] {
              if (auto self = weak.lock()) self->abort();
            });
          });
    }
    deadline_ = impl_->effective_deadline(req_);
    if (deadline_ <= Clock::now()) {
      finish(std::unexpected(
          ClientError{ClientError::Kind::kTimeout,
                      fmt::format("no time left to call {}:{}", t_->host, t_->port)}));
      return;
    }
    arm_deadline();
    next_attempt();
  }

 private:
  // What the answer's read needs while it runs.
  struct Reading {
    Reading(const ClientRequest& req, std::size_t limit)
        : parser(req.keep_all_headers, req.keep_headers, limit) {}
    beast::flat_buffer buffer;
    AnswerParser parser;
  };

  // The request's cancellation was raised: the connection (or the name lookup) is closed, so the
  // operation waiting on it ends at once, and the request answers kCancelled.
  void abort() {
    cancelled_ = true;
    beast::error_code ignored;
    if (socket_) socket_->close(ignored);
    if (resolver_) resolver_->cancel();
  }

  // Two attempts: a pooled connection the peer closed while idle fails at once, and the request
  // goes again on a fresh one.
  void next_attempt() {
    if (attempts_++ >= 2) {
      finish(std::unexpected(
          ClientError{ClientError::Kind::kTransport,
                      fmt::format("{}:{} closed the connection twice", t_->host, t_->port)}));
      return;
    }
    if (cancelled_) return finish(std::unexpected(cancelled_error(*t_)));
    socket_ = impl_->take_idle(loop(), t_->key);
    reused_ = socket_ != nullptr;
    if (reused_) return write();
    connect();
  }

  // A new connection (numeric addresses skip the resolver).
  void connect() {
    if (t_->endpoint) return connect_to({*t_->endpoint});
    resolver_ = std::make_unique<tcp::resolver>(loop().ioc);
    resolver_->async_resolve(
        t_->host, t_->port,
        step([self = shared_from_this()](beast::error_code ec, tcp::resolver::results_type rs) {
          self->resolved(ec, rs);
        }));
  }

  void resolved(beast::error_code ec, const tcp::resolver::results_type& results) {
    resolver_.reset();
    operation_ended(ec);
    if (cancelled_) return finish(std::unexpected(cancelled_error(*t_)));
    if (ec) {
      const bool timeout = ec == beast::error::timeout;
      finish(std::unexpected(ClientError{
          timeout ? ClientError::Kind::kTimeout : ClientError::Kind::kConnect,
          fmt::format("cannot resolve {}: {}", t_->host, timeout ? "timed out" : ec.message())}));
      return;
    }
    std::vector<tcp::endpoint> endpoints;
    for (const auto& r : results) endpoints.push_back(r.endpoint());
    connect_to(std::move(endpoints));
  }

  void connect_to(std::vector<tcp::endpoint> endpoints) {
    socket_ = std::make_unique<tcp::socket>(loop().ioc);
    // Asio's connect operation keeps its own copy of the endpoints.
    asio::async_connect(
        *socket_, endpoints,
        step([self = shared_from_this()](beast::error_code ec, const tcp::endpoint&) {
          self->connected(ec);
        }));
  }

  // The request's one deadline, armed once when it starts (one timer operation per request, not
  // one per connect, write, wait and read): at `deadline_` the timer closes the connection (as
  // Beast's tcp_stream did on a timeout) or cancels the name lookup, which ends whichever
  // operation is in progress; its handler calls operation_ended(), which reports
  // beast::error::timeout for it. finish() cancels the timer.
  void arm_deadline() {
    timer_.expires_at(deadline_);
    timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (ec || !self->done_) return;  // cancelled, or the request has finished
      self->expired_ = true;
      beast::error_code ignored;
      if (self->socket_) self->socket_->close(ignored);
      if (self->resolver_) self->resolver_->cancel();
    });
  }

  // An operation has completed (on the loop): `ec` is the timeout if the deadline ended it.
  void operation_ended(beast::error_code& ec) const {
    if (expired_) ec = beast::error::timeout;
  }

  void connected(beast::error_code ec) {
    operation_ended(ec);
    if (cancelled_) return finish(std::unexpected(cancelled_error(*t_)));
    if (ec) {
      const bool timeout = ec == beast::error::timeout;
      finish(std::unexpected(
          ClientError{timeout ? ClientError::Kind::kTimeout : ClientError::Kind::kConnect,
                      fmt::format("cannot connect to {}:{}: {}", t_->host, t_->port,
                                  timeout ? "timed out" : ec.message())}));
      return;
    }
    beast::error_code ignored;
    socket_->set_option(tcp::no_delay(true), ignored);
    write();
  }

  // The head written directly (wire.h, append_request_head: the bytes Beast's serializer wrote
  // for the message the client built), or, for what is not that simple (a caller's Host header,
  // an unusual method), from Beast's message; sent with the body in one gathered write.
  void write() {
    const RequestHeadParts parts{
        req_.method,  t_->path,          t_->key,         impl_->options.user_agent,
        req_.headers, req_.content_type, req_.body.size()};
    if (!append_request_head(head_, parts)) {
      try {
        auto message = impl_->to_beast(req_, *t_);
        head_ = request_head(message);
        req_.body = std::move(message.body());
      } catch (const std::exception&) {
        return finish(
            std::unexpected(ClientError{ClientError::Kind::kTransport, "client failure"}));
      }
    }
    const std::array<asio::const_buffer, 2> buffers{asio::buffer(head_), asio::buffer(req_.body)};
    asio::async_write(*socket_, buffers,
                      step([self = shared_from_this()](beast::error_code ec, std::size_t) {
                        self->written(ec);
                      }));
  }

  // The request is not needed after the write unless the connection came from the pool: then
  // its body is kept for a retry on a fresh one.
  void written(beast::error_code ec) {
    operation_ended(ec);
    if (!reused_) {
      // Only what the answer's read needs (the headers to keep) stays.
      ClientRequest kept;
      kept.keep_all_headers = req_.keep_all_headers;
      kept.keep_headers = req_.keep_headers;
      req_ = std::move(kept);
    }
    head_ = std::string();
    if (ec || cancelled_) return conclude(ec, false);
    wait_for_answer();
  }

  // Waits until the answer starts to arrive (or the peer closes), holding no read buffer and no
  // Beast read operation while the evaluator works (seconds for a slow call); timeout at the
  // deadline (the timer cancels the wait).
  void wait_for_answer() {
    socket_->async_wait(
        tcp::socket::wait_read,
        step([self = shared_from_this()](beast::error_code ec) { self->answer_arriving(ec); }));
  }

  void answer_arriving(beast::error_code ec) {
    operation_ended(ec);
    if (ec || cancelled_) return conclude(ec, false);
    // Room for a usual answer at once (an evaluator's Z22 is ~4 KiB): Beast's reads start at
    // 512 bytes and grow, one read system call each.
    reading_ = std::make_unique<Reading>(req_, impl_->options.max_response_bytes);
    reading_->buffer.reserve(16u << 10);
    bhttp::async_read(*socket_, reading_->buffer, reading_->parser,
                      step([self = shared_from_this()](beast::error_code rec, std::size_t) {
                        self->answer_read(rec);
                      }));
  }

  void answer_read(beast::error_code ec) {
    operation_ended(ec);
    const bool got_some = reading_->parser.got_some();
    ClientResponse answer;
    if (!ec) {
      // basic_parser's keep-alive: HTTP/1.1 without "Connection: close" (1.0 with keep-alive),
      // and an answer with a length: one that ends when the peer closes is not pooled.
      keep_alive_ = reading_->parser.keep_alive();
      answer = std::move(reading_->parser.response());
    }
    reading_.reset();
    conclude(ec, got_some, std::move(answer));
  }

  // The attempt is over: the answer, a retry on a fresh connection, or the error.
  void conclude(beast::error_code ec, bool got_some, ClientResponse answer = {}) {
    if (cancelled_) return finish(std::unexpected(cancelled_error(*t_)));  // the socket is closed
    if (ec) {
      // A pooled connection the peer closed while idle fails at once: retry on a fresh one.
      const bool stale = reused_ &&
                         (ec == bhttp::error::end_of_stream || ec == asio::error::eof ||
                          ec == asio::error::connection_reset || ec == asio::error::broken_pipe) &&
                         !got_some;
      if (stale) {
        socket_.reset();
        return next_attempt();
      }
      return finish(std::unexpected(transport_error(*t_, ec, impl_->options.max_response_bytes)));
    }
    if (keep_alive_) {
      impl_->give_back(loop(), t_->key, std::move(socket_));
    } else {
      beast::error_code ignored;
      socket_->shutdown(tcp::socket::shutdown_both, ignored);
    }
    finish(std::move(answer));
  }

  Impl::Loop& loop() const { return *impl_->loops[loop_index_]; }

  // Runs `done` once (on the loop). An abort still queued finds the request without a stream.
  void finish(ClientResult result) {
    registration_.reset();
    timer_.cancel();
    socket_.reset();
    resolver_.reset();
    auto done = std::move(done_);
    done_ = nullptr;
    if (done) done(std::move(result));
  }

  std::shared_ptr<Impl> impl_;  // first: it outlives the I/O objects below
  Executor executor_;
  ClientRequest req_;
  std::shared_ptr<const Target> t_;
  std::shared_ptr<Cancellation> cancel_;
  std::function<void(ClientResult)> done_;
  Cancellation::Registration registration_;
  Clock::time_point deadline_;
  asio::steady_timer timer_;
  std::unique_ptr<tcp::resolver> resolver_;
  std::unique_ptr<tcp::socket> socket_;
  std::string head_;                  // the request's head while it is written
  std::unique_ptr<Reading> reading_;  // while the answer is read
  int attempts_ = 0;
  bool reused_ = false;
  bool cancelled_ = false;
  bool expired_ = false;
  bool keep_alive_ = false;
  // The loop it runs on, and whose pool it uses (an index in the padding after the flags, not a
  // pointer: the exchange is held per parked call).
  std::uint8_t loop_index_;
};

HttpClient::HttpClient(ClientOptions options) {
  std::vector<asio::io_context*> ios = options.io_contexts;
  if (ios.empty() && options.io_context != nullptr) ios.push_back(options.io_context);
  if (ios.empty()) {
    own_loop_ = std::make_unique<OwnLoop>();
    ios.push_back(&own_loop_->ioc);
  }
  impl_ = std::make_shared<Impl>(std::move(options), ios);
}

HttpClient::~HttpClient() {
  if (own_loop_) {
    // Stop our thread first; then idle connections go while their io_context still exists,
    // and unfinished requests go with the io_context (their handlers own them).
    own_loop_->stop();
    for (auto& l : impl_->loops) {
      std::lock_guard lock(l->pool_mu);
      l->idle.clear();
    }
    impl_.reset();
  }
}

void HttpClient::async_send(ClientRequest request, std::shared_ptr<Cancellation> cancel,
                            std::function<void(ClientResult)> done) {
  Impl::Loop& loop = impl_->loop_for_caller();
  auto target = impl_->target(loop, request.url);
  auto executor = loop.ioc.get_executor();
  if (!target) {
    asio::post(executor,
               [done = std::move(done), e = target.error()] { done(std::unexpected(e)); });
    return;
  }
  // The target holds what the URL says: the request need not keep it while in flight.
  request.url = {};
  auto exchange =
      std::make_shared<Impl::Exchange>(impl_, loop, executor, std::move(request),
                                       std::move(*target), std::move(cancel), std::move(done));
  // Deferred: from a thread of the loop (an evaluation that sends its code from there) it starts
  // on this thread after the current handler, without waking another I/O thread; from any other
  // thread it is a post.
  asio::defer(executor, [exchange = std::move(exchange)] { exchange->start(); });
}

ClientResult HttpClient::send(const ClientRequest& request) {
  std::promise<ClientResult> promise;
  auto future = promise.get_future();
  async_send(request, nullptr, [&promise](ClientResult r) { promise.set_value(std::move(r)); });
  return future.get();
}

}  // namespace wf::http
