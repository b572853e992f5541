#include "wf/http/client.h"

#include <fmt/format.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/url/parse.hpp>
#include <future>
#include <map>
#include <mutex>
#include <thread>

namespace wf::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using asio::awaitable;
using tcp = asio::ip::tcp;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

namespace {

struct Target {
  std::string host;
  std::string port;
  std::string path;  // with query
  std::string key() const { return host + ":" + port; }
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
  if (t.host.size() > 2 && t.host.front() == '[' && t.host.back() == ']')
    t.host = t.host.substr(1, t.host.size() - 2);
  t.port = parsed->has_port() ? std::string(parsed->port()) : "80";
  if (t.port.empty() || t.port.size() > 5 || std::stoi(t.port) == 0 || std::stoi(t.port) > 65535) {
    return std::unexpected(ClientError{ClientError::Kind::kInvalidUrl,
                                       fmt::format("'{}': the port must be 1 to 65535", url)});
  }
  t.path = std::string(parsed->encoded_path());
  if (t.path.empty()) t.path = "/";
  if (parsed->has_query()) t.path += "?" + std::string(parsed->encoded_query());
  return t;
}

// One request in flight, for cancellation: the stream or resolver it waits on. Strand-only.
struct InFlight {
  asio::any_io_executor strand;
  beast::tcp_stream* stream = nullptr;
  tcp::resolver* resolver = nullptr;
  bool cancelled = false;

  // Called (through the strand) when the request's Cancellation is raised.
  void abort() {
    cancelled = true;
    beast::error_code ignored;
    if (stream != nullptr) stream->socket().close(ignored);
    if (resolver != nullptr) resolver->cancel();
  }
};

ClientError cancelled_error(const Target& t) {
  return ClientError{ClientError::Kind::kCancelled,
                     fmt::format("request to {}:{} cancelled", t.host, t.port)};
}

}  // namespace

struct HttpClient::OwnLoop {
  asio::io_context ioc;
  asio::executor_work_guard<asio::io_context::executor_type> guard{ioc.get_executor()};
  std::thread thread{[this] { ioc.run(); }};
  void stop() {
    guard.reset();
    ioc.stop();
    if (thread.joinable()) thread.join();
  }
  ~OwnLoop() { stop(); }
};

struct HttpClient::Impl {
  ClientOptions options;
  asio::io_context& ioc;
  std::mutex pool_mu;
  std::map<std::string, std::vector<std::unique_ptr<beast::tcp_stream>>> idle;

  Impl(ClientOptions o, asio::io_context& io) : options(std::move(o)), ioc(io) {}

  std::unique_ptr<beast::tcp_stream> take_idle(const std::string& key) {
    std::lock_guard lock(pool_mu);
    auto it = idle.find(key);
    if (it == idle.end() || it->second.empty()) return nullptr;
    auto s = std::move(it->second.back());
    it->second.pop_back();
    return s;
  }

  void give_back(const std::string& key, std::unique_ptr<beast::tcp_stream> s) {
    std::lock_guard lock(pool_mu);
    auto& v = idle[key];
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
    hreq.set(bhttp::field::host, t.host + ":" + t.port);
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

  // A new connection to `t` (numeric addresses skip the resolver).
  awaitable<std::expected<std::unique_ptr<beast::tcp_stream>, ClientError>> connect(
      const Target& t, Clock::time_point deadline, InFlight& op) {
    std::vector<tcp::endpoint> endpoints;
    beast::error_code aec;
    const auto address = asio::ip::make_address(t.host, aec);
    if (!aec) {
      endpoints.emplace_back(address, static_cast<std::uint16_t>(std::stoi(t.port)));
    } else {
      tcp::resolver resolver(ioc);
      op.resolver = &resolver;
      auto [rec, results] = co_await resolver.async_resolve(t.host, t.port, kTuple);
      op.resolver = nullptr;
      if (op.cancelled) co_return std::unexpected(cancelled_error(t));
      if (rec) {
        co_return std::unexpected(
            ClientError{ClientError::Kind::kConnect,
                        fmt::format("cannot resolve {}: {}", t.host, rec.message())});
      }
      for (const auto& r : results) endpoints.push_back(r.endpoint());
    }
    auto stream = std::make_unique<beast::tcp_stream>(ioc);
    stream->expires_at(deadline);
    op.stream = stream.get();
    auto [cec, ep] = co_await stream->async_connect(endpoints, kTuple);
    op.stream = nullptr;
    if (op.cancelled) co_return std::unexpected(cancelled_error(t));
    if (cec) {
      const bool timeout = cec == beast::error::timeout;
      co_return std::unexpected(
          ClientError{timeout ? ClientError::Kind::kTimeout : ClientError::Kind::kConnect,
                      fmt::format("cannot connect to {}:{}: {}", t.host, t.port,
                                  timeout ? "timed out" : cec.message())});
    }
    beast::error_code ignored;
    stream->socket().set_option(tcp::no_delay(true), ignored);
    co_return stream;
  }

  // What the deadline timer of a wait for the answer shares with its handler, which may run
  // after the wait is over (attempt()).
  struct AnswerWatch {
    tcp::socket* socket;
    bool done = false;
    bool expired = false;
  };

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

  static ClientResponse from_beast(bhttp::response<bhttp::string_body>& res) {
    ClientResponse out;
    out.status = res.result_int();
    for (const auto& f : res) {
      std::string name(f.name_string());
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      out.headers.push_back({std::move(name), std::string(f.value())});
    }
    out.body = std::move(res.body());
    return out;
  }

  // Runs on its own strand; `self` keeps the pool alive while the request is in flight.
  static awaitable<ClientResult> exchange(std::shared_ptr<Impl> self, ClientRequest req, Target t,
                                          std::shared_ptr<Cancellation> cancel) {
    // GCC 12 miscompiles co_await inside an initializer list: keep it a statement.
    asio::any_io_executor strand = co_await asio::this_coro::executor;
    InFlight op;
    op.strand = strand;
    Cancellation::Registration registration;
    if (cancel) {
      registration = cancel->on_cancel(
          [&op](Cancellation::Reason) { asio::post(op.strand, [&op] { op.abort(); }); });
    }
    ClientResult result = co_await self->attempt(req, t, op);
    // A posted abort() may still be queued on the strand: let it run while `op` is alive.
    registration.reset();
    co_await asio::post(op.strand, asio::use_awaitable);
    co_return result;
  }

  // Writes the request. Its Beast form lives only in this frame, not in attempt()'s, which stays
  // while the answer is awaited (bench/slow_calls: memory per in-flight call). The request itself
  // is not needed after the write unless the connection came from the pool: then its body is
  // kept for a retry on a fresh one.
  awaitable<beast::error_code> write_request(beast::tcp_stream& stream, ClientRequest& req,
                                             const Target& t, bool keep_for_retry) const {
    auto hreq = to_beast(req, t);
    auto [ec, n] = co_await bhttp::async_write(stream, hreq, kTuple);
    if (keep_for_retry) {
      req.body = std::move(hreq.body());
    } else {
      req = {};
    }
    co_return ec;
  }

  // What read_answer() found: the answer, or the error and whether any of it had arrived.
  struct Answer {
    beast::error_code ec;
    bool got_some = false;
    bool keep_alive = false;
    ClientResponse response;
  };

  // Reads the answer that has started to arrive; the parser and its buffer live only in this frame.
  awaitable<Answer> read_answer(beast::tcp_stream& stream) const {
    Answer a;
    // Room for a usual answer at once (an evaluator's Z22 is ~4 KiB): Beast's reads start at
    // 512 bytes and grow, one read system call each.
    beast::flat_buffer buffer;
    buffer.reserve(16u << 10);
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(options.max_response_bytes);
    auto [ec, n] = co_await bhttp::async_read(stream, buffer, parser, kTuple);
    a.ec = ec;
    a.got_some = parser.got_some();
    if (!ec) {
      a.keep_alive = parser.get().keep_alive();
      a.response = from_beast(parser.get());
    }
    co_return a;
  }

  awaitable<ClientResult> attempt(ClientRequest& req, const Target& t, InFlight& op) {
    const auto deadline = effective_deadline(req);
    if (deadline <= Clock::now()) {
      co_return std::unexpected(ClientError{
          ClientError::Kind::kTimeout, fmt::format("no time left to call {}:{}", t.host, t.port)});
    }
    for (int attempt = 0; attempt < 2; ++attempt) {
      if (op.cancelled) co_return std::unexpected(cancelled_error(t));
      auto stream = take_idle(t.key());
      const bool reused = stream != nullptr;
      if (!stream) {
        auto connected = co_await connect(t, deadline, op);
        if (!connected) co_return std::unexpected(connected.error());
        stream = std::move(*connected);
      }
      op.stream = stream.get();
      stream->expires_at(deadline);
      const beast::error_code wec = co_await write_request(*stream, req, t, reused);
      beast::error_code rec;
      if (!wec && !op.cancelled) {
        // Waits until the answer starts to arrive (or the peer closes), holding no read buffer
        // and no Beast read operation while the evaluator works (seconds for a slow call); the
        // answer is then read at once; timeout at the deadline. Here rather than in a coroutine
        // of its own: one frame fewer per request in flight (bench/slow_calls, memory per
        // in-flight call).
        auto watch = std::make_shared<AnswerWatch>(AnswerWatch{&stream->socket()});
        asio::steady_timer timer(op.strand, deadline);
        timer.async_wait([watch](beast::error_code tec) {
          if (tec || watch->done) return;
          watch->expired = true;
          beast::error_code ignored;
          watch->socket->cancel(ignored);
        });
        auto [ec] = co_await stream->socket().async_wait(tcp::socket::wait_read, kTuple);
        watch->done = true;
        timer.cancel();
        rec = watch->expired ? beast::error_code(beast::error::timeout) : ec;
      }
      Answer answer;
      if (!wec && !rec && !op.cancelled) answer = co_await read_answer(*stream);
      if (!rec) rec = answer.ec;
      op.stream = nullptr;
      if (op.cancelled) co_return std::unexpected(cancelled_error(t));  // the socket is closed
      const beast::error_code ec = wec ? wec : rec;
      if (ec) {
        // A pooled connection the peer closed while idle fails at once: retry on a fresh one.
        const bool stale =
            reused &&
            (ec == bhttp::error::end_of_stream || ec == asio::error::eof ||
             ec == asio::error::connection_reset || ec == asio::error::broken_pipe) &&
            !answer.got_some;
        if (stale) continue;
        co_return std::unexpected(transport_error(t, ec, options.max_response_bytes));
      }
      if (answer.keep_alive) {
        give_back(t.key(), std::move(stream));
      } else {
        beast::error_code ignored;
        stream->socket().shutdown(tcp::socket::shutdown_both, ignored);
      }
      co_return std::move(answer.response);
    }
    co_return std::unexpected(
        ClientError{ClientError::Kind::kTransport,
                    fmt::format("{}:{} closed the connection twice", t.host, t.port)});
  }
};

HttpClient::HttpClient(ClientOptions options) {
  if (options.io_context == nullptr) own_loop_ = std::make_unique<OwnLoop>();
  asio::io_context& ioc = options.io_context ? *options.io_context : own_loop_->ioc;
  impl_ = std::make_shared<Impl>(std::move(options), ioc);
}

HttpClient::~HttpClient() {
  if (own_loop_) {
    // Stop our thread first; then idle connections go while their io_context still exists,
    // and the frames of unfinished requests go with the io_context.
    own_loop_->stop();
    {
      std::lock_guard lock(impl_->pool_mu);
      impl_->idle.clear();
    }
    impl_.reset();
  }
}

void HttpClient::async_send(ClientRequest request, std::shared_ptr<Cancellation> cancel,
                            std::function<void(ClientResult)> done) {
  auto target = parse_url(request.url);
  auto strand = asio::make_strand(impl_->ioc);
  if (!target) {
    asio::post(strand, [done = std::move(done), e = target.error()] { done(std::unexpected(e)); });
    return;
  }
  asio::co_spawn(
      strand, Impl::exchange(impl_, std::move(request), std::move(*target), std::move(cancel)),
      [done = std::move(done)](std::exception_ptr e, ClientResult r) {
        if (e) {
          r = std::unexpected(ClientError{ClientError::Kind::kTransport, "client failure"});
        }
        done(std::move(r));
      });
}

ClientResult HttpClient::send(const ClientRequest& request) {
  std::promise<ClientResult> promise;
  auto future = promise.get_future();
  async_send(request, nullptr, [&promise](ClientResult r) { promise.set_value(std::move(r)); });
  return future.get();
}

}  // namespace wf::http
