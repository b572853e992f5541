#pragma once

#include <string>

namespace wf::obs {

// W3C trace context of one request (https://www.w3.org/TR/trace-context/).
struct TraceContext {
  std::string trace_id;   // 32 lowercase hex characters
  std::string span_id;    // 16 lowercase hex characters: this service's span
  std::string parent_id;  // 16 hex characters of the caller's span, empty when we started the trace
  bool sampled = true;

  // The header value to send downstream: version 00, our trace id, our span id.
  std::string traceparent() const;
};

}  // namespace wf::obs
