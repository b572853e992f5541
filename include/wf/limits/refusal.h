#pragma once
// Why a call was refused and how the refusal is answered. Per-user limits answer 429 (the caller
// should slow down); service-wide overload answers 503 (anyone may retry elsewhere or later). Both
// carry Retry-After and a JSON body naming the limit and when it resets; callers that want a Z22
// envelope (the wiki, which shows Z5 errors to its users) get one instead (docs/limits.md).

#include <chrono>
#include <string>
#include <string_view>

#include "wf/limits/clock.h"

namespace wf::limits {

enum class Reason {
  kRate,          // 429: calls per second over the user's token bucket
  kConcurrency,   // 429: the user's calls in flight at the cap
  kCpu,           // 429: the user's CPU budget of the window is spent
  kQueueFull,     // 503: the fair queue is full
  kQueueTimeout,  // 503: waited in the queue longer than its budget (or the request's deadline)
  kTooManyUsers,  // 503: the table of tracked users is full of users with calls in flight
  kDraining,      // 503: the service is shutting down
};
inline constexpr int kReasonCount = 7;

std::string_view reason_name(Reason reason);  // "rate", "concurrency", ..., as in metrics
unsigned reason_status(Reason reason);        // 429 or 503

struct Refusal {
  Reason reason = Reason::kQueueFull;
  std::string class_name;  // the caller's class ("" when not known yet)
  double limit = 0;        // the limit's value (calls/s, calls, CPU ms, queue size)
  std::chrono::milliseconds retry_after{1000};  // when trying again may succeed
  WallTime resets_at{};                         // when the limit resets (window end, token refill)
  bool shared = false;                          // decided on the counters shared by all replicas
  // A per-user refusal (429) of a caller refused less than a second before: they call again
  // without waiting for Retry-After (a flood in a loop).
  bool repeated = false;
};

// A refusal as an HTTP answer, without depending on the HTTP module.
struct RefusalReply {
  unsigned status = 503;
  std::string retry_after;  // whole seconds, at least 1 (Retry-After header value)
  std::string body;
  std::string content_type = "application/json";
};
// The JSON body: {"status", "type": "limit_exceeded"|"overloaded", "title", "detail", "limit":
// {"name", "class", "value", "shared"}, "retry_after_ms", "resets_at"}; with `envelope`, a Z22
// (canonical form) whose Z5 is a Z500 carrying the same detail text, and the limit in metadata.
RefusalReply render(const Refusal& refusal, bool envelope);
// The sentence shown to the caller, e.g. "too many calls per second for class anonymous (limit 5
// per second, burst 10): retry in 200 ms".
std::string describe(const Refusal& refusal);

}  // namespace wf::limits
