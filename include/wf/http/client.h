#pragma once
// A blocking HTTP/1.1 client for worker threads, with a keep-alive connection pool per host and a
// per-request deadline. One event-loop thread of its own does the I/O. Thread-safe.

#include <chrono>
#include <cstdint>
#include <expected>
#include <memory>
#include <string>
#include <vector>

#include "wf/http/message.h"

namespace wf::http {

struct ClientOptions {
  std::string user_agent = "wikifunctions-cpp";
  std::size_t max_idle_per_host = 64;
  std::size_t max_response_bytes = 16u << 20;
  std::chrono::milliseconds default_timeout{20000};  // when a request has no deadline
};

struct ClientRequest {
  std::string method = "GET";
  std::string url;  // http://host[:port]/path?query
  std::vector<Header> headers;
  std::string content_type;  // sent when the body is not empty
  std::string body;
  Clock::time_point deadline = Clock::time_point::max();
};

struct ClientResponse {
  unsigned status = 0;
  std::vector<Header> headers;
  std::string body;
};

struct ClientError {
  enum class Kind { kInvalidUrl, kConnect, kTimeout, kTransport, kProtocol, kTooLarge };
  Kind kind = Kind::kTransport;
  std::string message;  // names the peer and what went wrong
};

class HttpClient {
 public:
  explicit HttpClient(ClientOptions options = {});
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  std::expected<ClientResponse, ClientError> send(const ClientRequest& request);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace wf::http
