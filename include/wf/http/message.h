#pragma once
// Plain request/response values that route handlers see. No Beast types here, so that services
// and tests can include this header without pulling in Asio.

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "wf/http/cancellation.h"
#include "wf/io_wait.h"
#include "wf/obs/trace_context.h"

namespace wf::http {

using Clock = std::chrono::steady_clock;

using TraceContext = obs::TraceContext;

struct Header {
  std::string name;  // lowercase
  std::string value;
};

struct Request {
  std::string method;  // "GET", "POST", ...
  std::string target;  // raw target, with query
  std::string path;    // target without query
  std::string query;   // after '?', without it
  std::vector<Header> headers;
  std::string body;
  std::string request_id;  // echoed X-Request-Id or generated
  TraceContext trace;
  std::string client_address;
  // Who the service's admission gate found the caller to be (limits::Identity::key, e.g.
  // "user:Alice" or "ip:192.0.2.7"); empty where no gate runs. The orchestrator forwards it to the
  // evaluator (X-Wikifunctions-Caller), whose fair queue for sandbox children shares per caller.
  std::string caller;
  Clock::time_point received_at{};
  Clock::time_point deadline{};  // received_at + the service's request timeout
  // Raised when the client hangs up, the deadline passes or the drain runs out of time. Set for
  // async and kWorker routes (null for handlers run on the event loop).
  std::shared_ptr<Cancellation> cancel;
  // Set by the admission gate for an admitted call (service/admission.h): told when the call's
  // work parks on I/O and resumes, so that parked calls leave the running count. May be null.
  std::shared_ptr<IoWaitObserver> io_wait;

  // Case-insensitive lookup; the first header with that name.
  std::optional<std::string_view> header(std::string_view name) const;
};

struct Response {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<Header> headers;  // extra headers

  static Response json(unsigned status, std::string body);
  // {"status": s, "type": type, "title": <reason phrase>, "detail": message}: the shape of the
  // original services' framework errors.
  static Response error(unsigned status, std::string_view type, std::string_view message);
  // A refusal (429: the caller should slow down; 503: the service is busy or going away): the
  // body of error(), or `body` as given, and Retry-After in whole seconds (at least 1). The one
  // place both services build their 429/503 answers.
  static Response refusal(unsigned status, std::string_view type, std::string_view message,
                          std::chrono::milliseconds retry_after = std::chrono::seconds(1));
  static Response refusal_with_body(unsigned status, std::string body,
                                    std::chrono::milliseconds retry_after);
};

std::string_view reason_phrase(unsigned status);

}  // namespace wf::http
