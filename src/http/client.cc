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
  t.path = std::string(parsed->encoded_path());
  if (t.path.empty()) t.path = "/";
  if (parsed->has_query()) t.path += "?" + std::string(parsed->encoded_query());
  return t;
}

}  // namespace

struct HttpClient::Impl {
  ClientOptions options;
  asio::io_context ioc;
  asio::executor_work_guard<asio::io_context::executor_type> guard{ioc.get_executor()};
  std::thread thread;
  std::mutex pool_mu;
  std::map<std::string, std::vector<std::unique_ptr<beast::tcp_stream>>> idle;

  explicit Impl(ClientOptions o) : options(std::move(o)) {
    thread = std::thread([this] { ioc.run(); });
  }
  ~Impl() {
    guard.reset();
    ioc.stop();
    thread.join();
  }

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

  awaitable<std::expected<ClientResponse, ClientError>> exchange(const ClientRequest& req,
                                                                 const Target& t) {
    auto deadline = req.deadline;
    const auto now = Clock::now();
    if (deadline == Clock::time_point::max() || deadline - now > std::chrono::hours(24)) {
      deadline = now + options.default_timeout;
    }
    if (deadline <= now) {
      co_return std::unexpected(ClientError{
          ClientError::Kind::kTimeout, fmt::format("no time left to call {}:{}", t.host, t.port)});
    }
    bhttp::request<bhttp::string_body> hreq{bhttp::string_to_verb(req.method), t.path, 11};
    hreq.set(bhttp::field::host, t.host + ":" + t.port);
    hreq.set(bhttp::field::user_agent, options.user_agent);
    for (const Header& h : req.headers) hreq.set(h.name, h.value);
    if (!req.body.empty() || req.method == "POST" || req.method == "PUT") {
      if (!req.content_type.empty()) hreq.set(bhttp::field::content_type, req.content_type);
      hreq.body() = req.body;
    }
    hreq.keep_alive(true);
    hreq.prepare_payload();

    for (int attempt = 0; attempt < 2; ++attempt) {
      auto stream = take_idle(t.key());
      const bool reused = stream != nullptr;
      if (!stream) {
        tcp::resolver resolver(ioc);
        auto [rec, results] = co_await resolver.async_resolve(t.host, t.port, kTuple);
        if (rec) {
          co_return std::unexpected(
              ClientError{ClientError::Kind::kConnect,
                          fmt::format("cannot resolve {}: {}", t.host, rec.message())});
        }
        stream = std::make_unique<beast::tcp_stream>(ioc);
        stream->expires_at(deadline);
        auto [cec, ep] = co_await stream->async_connect(results, kTuple);
        if (cec) {
          const bool timeout = cec == beast::error::timeout;
          co_return std::unexpected(
              ClientError{timeout ? ClientError::Kind::kTimeout : ClientError::Kind::kConnect,
                          fmt::format("cannot connect to {}:{}: {}", t.host, t.port,
                                      timeout ? "timed out" : cec.message())});
        }
        stream->socket().set_option(tcp::no_delay(true));
      }
      stream->expires_at(deadline);
      auto [wec, wn] = co_await bhttp::async_write(*stream, hreq, kTuple);
      beast::flat_buffer buffer;
      bhttp::response_parser<bhttp::string_body> parser;
      parser.body_limit(options.max_response_bytes);
      beast::error_code rec;
      if (!wec) {
        auto [ec, n] = co_await bhttp::async_read(*stream, buffer, parser, kTuple);
        rec = ec;
      }
      const beast::error_code ec = wec ? wec : rec;
      if (ec) {
        // A pooled connection the peer closed while idle fails at once: retry on a fresh one.
        const bool stale =
            reused &&
            (ec == bhttp::error::end_of_stream || ec == asio::error::eof ||
             ec == asio::error::connection_reset || ec == asio::error::broken_pipe) &&
            !parser.got_some();
        if (stale) continue;
        if (ec == beast::error::timeout) {
          co_return std::unexpected(
              ClientError{ClientError::Kind::kTimeout,
                          fmt::format("{}:{} did not answer in time", t.host, t.port)});
        }
        if (ec == bhttp::error::body_limit) {
          co_return std::unexpected(
              ClientError{ClientError::Kind::kTooLarge,
                          fmt::format("{}:{} answered with more than {} bytes", t.host, t.port,
                                      options.max_response_bytes)});
        }
        const bool protocol =
            ec.category() == beast::error_code(bhttp::error::bad_version).category() &&
            ec != bhttp::error::end_of_stream;
        co_return std::unexpected(ClientError{
            protocol ? ClientError::Kind::kProtocol : ClientError::Kind::kTransport,
            fmt::format("request to {}:{} failed: {}", t.host, t.port,
                        ec == bhttp::error::end_of_stream ? "connection closed without an answer"
                                                          : ec.message())});
      }
      auto& res = parser.get();
      ClientResponse out;
      out.status = res.result_int();
      for (const auto& f : res) {
        std::string name(f.name_string());
        for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        out.headers.push_back({std::move(name), std::string(f.value())});
      }
      out.body = std::move(res.body());
      if (res.keep_alive()) {
        give_back(t.key(), std::move(stream));
      } else {
        beast::error_code ignored;
        stream->socket().shutdown(tcp::socket::shutdown_both, ignored);
      }
      co_return out;
    }
    co_return std::unexpected(
        ClientError{ClientError::Kind::kTransport,
                    fmt::format("{}:{} closed the connection twice", t.host, t.port)});
  }
};

HttpClient::HttpClient(ClientOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
HttpClient::~HttpClient() = default;

std::expected<ClientResponse, ClientError> HttpClient::send(const ClientRequest& request) {
  auto target = parse_url(request.url);
  if (!target) return std::unexpected(target.error());
  std::promise<std::expected<ClientResponse, ClientError>> promise;
  auto future = promise.get_future();
  auto work = impl_->exchange(request, *target);
  asio::co_spawn(impl_->ioc, std::move(work),
                 [&promise](std::exception_ptr e, std::expected<ClientResponse, ClientError> r) {
                   if (e) {
                     promise.set_value(std::unexpected(
                         ClientError{ClientError::Kind::kTransport, "client failure"}));
                   } else {
                     promise.set_value(std::move(r));
                   }
                 });
  return future.get();
}

}  // namespace wf::http
