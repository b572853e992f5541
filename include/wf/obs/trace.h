#pragma once
// W3C Trace Context: parse an incoming traceparent header or start a new trace.

#include <optional>
#include <string>
#include <string_view>

#include "wf/obs/trace_context.h"

namespace wf::obs {

struct ParsedTraceparent {
  std::string trace_id;
  std::string parent_id;
  bool sampled = false;
};

// Strict parse of a traceparent header value (version 00, or a higher version with its
// forward-compatible rules). Returns nullopt for anything invalid (all-zero ids, upper case,
// wrong lengths, version ff), in which case the caller starts a new trace.
std::optional<ParsedTraceparent> parse_traceparent(std::string_view value);

// Continues the incoming trace if the header is valid, otherwise starts one. Always a new span id.
TraceContext make_trace_context(std::optional<std::string_view> traceparent_header);

// Random lowercase hex id of `bytes` bytes (never all zeros).
std::string random_hex_id(std::size_t bytes);

}  // namespace wf::obs
