#include "wf/limits/refusal.h"

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <array>
#include <nlohmann/json.hpp>

#include "wf/obs/log.h"
#include "wf/zobject/zobject.h"

namespace wf::limits {
namespace {

struct ReasonInfo {
  std::string_view name;
  unsigned status;
  std::string_view what;          // completes "… for class X"
  std::string_view limit_format;  // the limit's value, {} = Refusal::limit
};

// Indexed by Reason.
constexpr std::array<ReasonInfo, kReasonCount> kReasons{{
    {"rate", 429, "too many calls per second", "limit {:g} calls per second"},
    {"concurrency", 429, "too many calls in flight at once", "limit {:g} calls at once"},
    {"cpu", 429, "CPU-time budget spent", "limit {:g} ms of CPU per window"},
    {"queue_full", 503, "the service is saturated and its queue is full", "queue of {:g} calls"},
    {"queue_timeout", 503, "the service is saturated: the call waited in the queue too long",
     "queue-time budget {:g} ms"},
    {"too_many_users", 503, "the service tracks too many callers with calls in flight",
     "{:g} callers tracked"},
    {"draining", 503, "the service is shutting down", "{:g} calls queued"},
}};

const ReasonInfo& info(Reason r) {
  return kReasons[static_cast<std::size_t>(r)];
}

std::string limit_text(const Refusal& r) {
  return fmt::format(fmt::runtime(info(r.reason).limit_format), r.limit);
}

std::string iso8601(WallTime t) {
  const auto seconds = std::chrono::floor<std::chrono::seconds>(t);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t - seconds).count();
  return fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:03d}Z", seconds, ms);
}

// The plain JSON body, written directly: the bytes nlohmann::json's dump gave for the same object
// (keys in its order, sorted; the same escapes; the limit's number through nlohmann), at a
// fraction of the cost. Most requests at 3x capacity are refused, and building the object and
// dumping it took 37,000 of the 80,000 instructions the orchestrator spent on a refusal
// (bench/orchestrator_cpu --call refused).
std::string plain_body(const Refusal& r, unsigned status, std::string_view detail,
                       std::string_view resets) {
  const bool per_user = status == 429;
  std::string out;
  out.reserve(320 + detail.size() + r.class_name.size());
  out += R"({"detail":)";
  obs::append_json_string_as_nlohmann(out, detail);
  out += R"(,"limit":{"class":)";
  obs::append_json_string_as_nlohmann(out, r.class_name);
  out += R"(,"name":")";
  out += reason_name(r.reason);
  out += R"(","shared":)";
  out += r.shared ? "true" : "false";
  out += R"(,"value":)";
  out += nlohmann::json(r.limit).dump();
  out += R"(},"resets_at":")";
  out += resets;
  out += R"(","retry_after_ms":)";
  out += std::to_string(r.retry_after.count());
  out += R"(,"status":)";
  out += std::to_string(status);
  out += per_user ? R"(,"title":"Too Many Requests","type":"limit_exceeded"})"
                  : R"(,"title":"Service Unavailable","type":"overloaded"})";
  return out;
}

}  // namespace

std::string_view reason_name(Reason reason) {
  return info(reason).name;
}
unsigned reason_status(Reason reason) {
  return info(reason).status;
}

std::string describe(const Refusal& r) {
  const bool per_user = reason_status(r.reason) == 429;
  return fmt::format("{}{} ({}{}): retry in {} ms", info(r.reason).what,
                     per_user ? fmt::format(" for class {}", r.class_name) : std::string(),
                     limit_text(r), r.shared ? ", counted across all replicas" : "",
                     r.retry_after.count());
}

RefusalReply render(const Refusal& r, bool envelope) {
  RefusalReply reply;
  reply.status = reason_status(r.reason);
  const long long seconds = (r.retry_after.count() + 999) / 1000;
  reply.retry_after = std::to_string(seconds < 1 ? 1 : seconds);
  const std::string detail = describe(r);
  const std::string resets = iso8601(r.resets_at);
  if (envelope) {
    // There is no error type for limits in function-schemata: Z500 (unspecified) carries the text
    // so that every client can show it; the metadata names the limit for programs.
    namespace zo = zobject;
    nlohmann::json z22 = zo::error_envelope(zo::make_error_msg("Z500", detail));
    zo::envelope_set_metadata(z22, "limitExceeded", zo::z6(reason_name(r.reason)));
    zo::envelope_set_metadata(z22, "limitResetsAt", zo::z6(resets));
    zo::envelope_set_metadata(z22, "retryAfterMs", zo::z6(std::to_string(r.retry_after.count())));
    reply.body = zo::to_canonical(z22).dump();
    return reply;
  }
  reply.body = plain_body(r, reply.status, detail, resets);
  return reply;
}

}  // namespace wf::limits
