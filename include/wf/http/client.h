#pragma once
// An HTTP/1.1 client with a keep-alive connection pool per host and a per-request deadline.
// async_send() holds no thread while the request is in flight and can be cancelled; send() blocks
// (for worker threads). The I/O runs on a thread of the client's own, or on event loops it is
// given (the server's, ClientOptions::io_context), each run by one thread. Thread-safe.

#include <chrono>
#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "wf/http/cancellation.h"
#include "wf/http/message.h"

namespace boost::asio {
class io_context;
}

namespace wf::http {

struct ClientOptions {
  std::string user_agent = "wikifunctions-cpp";
  std::size_t max_idle_per_host = 64;
  std::size_t max_response_bytes = 16u << 20;
  std::chrono::milliseconds default_timeout{20000};  // when a request has no deadline
  // Do the I/O on this event loop (e.g. Server::io_context()) instead of a thread of the client's
  // own. It must be run by one thread (a request's handlers run on the loop's executor, with no
  // strand), outlive the client, and send() must not be called from its thread.
  boost::asio::io_context* io_context = nullptr;
  // Or on these (Server::io_contexts(), each run by one thread; when not empty, io_context is not
  // used): a request sent from a thread that runs one of them does its I/O on that one, with a
  // connection pool per loop; one sent from another thread goes to each in turn. They must
  // outlive the client, and send() must not be called from their threads.
  std::vector<boost::asio::io_context*> io_contexts;
};

struct ClientRequest {
  std::string method = "GET";
  std::string url;  // http://host[:port]/path?query
  std::vector<Header> headers;
  std::string content_type;  // sent when the body is not empty
  std::string body;
  Clock::time_point deadline = Clock::time_point::max();
  // The answer's headers the caller reads. By default the response carries all of them; with
  // `keep_all_headers` false only those named in `keep_headers` (lowercase names, matched in any
  // case; the span must outlive the request): each header kept costs a copy of its name,
  // lowercased, and of its value, and an evaluator call reads one.
  bool keep_all_headers = true;
  std::span<const std::string_view> keep_headers;
};

struct ClientResponse {
  unsigned status = 0;
  std::vector<Header> headers;  // lowercase names, in the answer's order (see keep_headers)
  std::string body;
};

struct ClientError {
  enum class Kind {
    kInvalidUrl,
    kConnect,
    kTimeout,
    kTransport,
    kProtocol,
    kTooLarge,
    kCancelled,  // the request's Cancellation was raised; its connection was closed
  };
  Kind kind = Kind::kTransport;
  std::string message;  // names the peer and what went wrong
};

using ClientResult = std::expected<ClientResponse, ClientError>;

class HttpClient {
 public:
  explicit HttpClient(ClientOptions options = {});
  // Requests still in flight on an external event loop keep the connection pool alive until they
  // end; their completions still run.
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Blocks until the answer, the deadline or an error.
  ClientResult send(const ClientRequest& request);

  // Starts the request and returns at once. `done` runs once, on a thread of the client's event
  // loop (never inside async_send); it does not run if that loop is destroyed first. When `cancel`
  // (may be null) is raised before the answer, the request's connection is closed (not pooled) and
  // `done` gets ClientError::kCancelled. For an awaitable or a yield_context, use
  // wf::http::async_send in "wf/http/io.h".
  void async_send(ClientRequest request, std::shared_ptr<Cancellation> cancel,
                  std::function<void(ClientResult)> done);

 private:
  struct Impl;
  struct OwnLoop;
  std::unique_ptr<OwnLoop> own_loop_;  // when no external io_context was given
  std::shared_ptr<Impl> impl_;
};

}  // namespace wf::http
