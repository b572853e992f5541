// POST /{domain}/v1/evaluate/: decode (wf::codec), check (call_request), route to the sandbox of
// the language family, and answer with the runtime's Z22 plus the §6 metadata.
//
// Answers (all HTTP 200 with a normal-form Z22 unless noted):
//   body over max_body_bytes            -> HTTP 413 (JSON error body)
//   application/json body not JSON      -> HTTP 400 (JSON error body), like the reference framework
//   other undecodable body              -> Z558 "Unable to find programming language in function
//                                          call. <why no decoder accepted the body>"
//   §3 early errors                     -> as call_request.cc builds them; no metadata
//   no sandbox for the language         -> Z558 "No executor found for programming language X."
//   sandbox kOk                         -> the runtime's Z22 + metadata
//   kTimeout                            -> Z558 "Function call timed out"
//   kCpuLimit                           -> Z558 "Function call timed out: <detail>"
//   kMemoryLimit                        -> Z507 "Function call ran out of memory: <detail>"
//   kOutputTooLarge                     -> Z507 "Function call result is too large: <detail>"
//   kForbidden                          -> Z507 "Function call attempted a forbidden operation:
//   <detail>" kCrashed                            -> Z507 "Function call crashed: <detail>"
//   kUnavailable                        -> HTTP 503 + Retry-After (the orchestrator then tries the
//                                          next implementation / reports the status)
//   kThrottled                          -> HTTP 429 + Retry-After: the code's share of sandbox
//                                          children is in use and its queue full (or its wait
//                                          budget spent); other code is still served
// Sandbox failures carry the metadata too (the reference has no such failures except its
// timeout, which it answers without metadata); here every executed call reports its cost.

#include "evaluator/service/evaluate_handler.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <chrono>
#include <ctime>
#include <future>
#include <string>
#include <utility>
#include <vector>

#include "evaluator/service/call_request.h"
#include "evaluator/service/language_table.h"
#include "evaluator/service/result_envelope.h"
#include "evaluator/service/result_text.h"
#include "wf/codec/avro.h"
#include "wf/io_wait.h"
#include "wf/obs/log.h"
#include "wf/obs/process_stats.h"

namespace wf::evaluator {
namespace {

const char* status_name(CallOutcome::Status status) {
  switch (status) {
    case CallOutcome::Status::kOk:
      return "ok";
    case CallOutcome::Status::kTimeout:
      return "timeout";
    case CallOutcome::Status::kCpuLimit:
      return "cpu_limit";
    case CallOutcome::Status::kMemoryLimit:
      return "memory_limit";
    case CallOutcome::Status::kOutputTooLarge:
      return "output_too_large";
    case CallOutcome::Status::kForbidden:
      return "forbidden";
    case CallOutcome::Status::kCrashed:
      return "crashed";
    case CallOutcome::Status::kUnavailable:
      return "unavailable";
    case CallOutcome::Status::kCancelled:
      return "cancelled";
    case CallOutcome::Status::kThrottled:
      return "throttled";
  }
  return "unknown";
}

using SteadyClock = std::chrono::steady_clock;
using SystemClock = std::chrono::system_clock;

constexpr std::size_t kMaxExecutionOutput = 64u << 10;

double thread_cpu_ms() {
  timespec ts{};
  if (::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return 0;
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

std::string iso_utc_ms(SystemClock::time_point t) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch());
  const std::time_t secs = static_cast<std::time_t>(ms.count() / 1000);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms.count() % 1000);
}

std::string mebibytes(std::uint64_t bytes) {
  return fmt::format("{:.2f} MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
}

// The service's resident memory for evaluationMemoryUsage. Reading /proc/self/statm is four
// system calls (openat, fstat, read, close) per call; the figure is informational, so it is read
// at most every 100 ms and shared by every call (as the orchestrator's orchestrationMemoryUsage).
std::uint64_t service_resident_bytes() {
  using std::chrono::steady_clock;
  static std::atomic<std::uint64_t> cached{0};
  static std::atomic<steady_clock::rep> next{0};
  const auto now = steady_clock::now().time_since_epoch().count();
  auto due = next.load(std::memory_order_relaxed);
  if (now >= due &&
      next.compare_exchange_strong(due, now + std::chrono::duration_cast<steady_clock::duration>(
                                                  std::chrono::milliseconds(100))
                                                  .count())) {
    cached.store(obs::resident_bytes(), std::memory_order_relaxed);
  }
  const std::uint64_t bytes = cached.load(std::memory_order_relaxed);
  return bytes > 0 ? bytes : obs::resident_bytes();
}

const std::string& hostname() {
  static const std::string name = [] {
    std::array<char, 256> buf{};
    if (::gethostname(buf.data(), buf.size() - 1) != 0) return std::string("unknown");
    return std::string(buf.data());
  }();
  return name;
}

bool is_json_content_type(std::string_view ct) {
  std::string lower;
  for (char c : ct.substr(0, ct.find(';'))) {
    if (c != ' ' && c != '\t') lower.push_back(static_cast<char>(std::tolower(c)));
  }
  return lower == "application/json" || (lower.size() > 5 && lower.ends_with("+json"));
}

std::string dump(const Json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

http::Response json_response(unsigned status, std::string body) {
  return http::Response::json(status, std::move(body));
}

std::string with_detail(std::string_view headline, const std::string& detail) {
  return detail.empty() ? fmt::format("{}.", headline) : fmt::format("{}: {}", headline, detail);
}

// The Z5 for a sandbox outcome other than kOk / kUnavailable.
Json outcome_error(const CallOutcome& outcome) {
  using S = CallOutcome::Status;
  switch (outcome.status) {
    case S::kTimeout:
      return make_error("Z558", "Function call timed out");
    case S::kCpuLimit:
      return make_error("Z558", with_detail("Function call timed out", outcome.detail));
    case S::kMemoryLimit:
      return make_error("Z507", with_detail("Function call ran out of memory", outcome.detail));
    case S::kOutputTooLarge:
      return make_error("Z507", with_detail("Function call result is too large", outcome.detail));
    case S::kForbidden:
      return make_error(
          "Z507", with_detail("Function call attempted a forbidden operation", outcome.detail));
    case S::kCrashed:
    case S::kUnavailable:
    case S::kCancelled:
    case S::kThrottled:
    case S::kOk:
      break;
  }
  return make_error("Z507", with_detail("Function call crashed", outcome.detail));
}

// The Z22 of a kOk outcome: the runtime's JSON as is, or the reference's Z507 texts.
Json result_of(const CallOutcome& outcome, const codec::DecodeLimits& limits) {
  const std::string& text = outcome.output.z22_json;
  const bool blank = std::all_of(
      text.begin(), text.end(), [](char c) { return std::isspace(static_cast<unsigned char>(c)); });
  if (blank) {
    if (!outcome.output.ok && !outcome.output.error_message.empty()) {
      return make_error_envelope(
          make_error("Z507", fmt::format("Executor failed: {}", outcome.output.error_message)));
    }
    return make_error_envelope(make_error("Z507", "Executor returned an empty response."));
  }
  auto parsed = codec::parse_json<Json>(text, limits);
  if (!parsed || !parsed->is_object()) {
    return make_error_envelope(
        make_error("Z507", fmt::format("Executor returned some nonsense: {}.", text)));
  }
  return std::move(*parsed);
}

class Handler final : public EvaluateHandler {
 public:
  Handler(const EvaluateOptions& options, std::shared_ptr<Sandbox> python,
          std::shared_ptr<Sandbox> javascript)
      : options_(options), python_(std::move(python)), javascript_(std::move(javascript)) {}

  std::shared_ptr<SandboxCall> start(const http::Request& request, Respond respond) override {
    Started started;
    started.wall = SystemClock::now();
    started.steady = SteadyClock::now();
    started.cpu_ms = thread_cpu_ms();
    started.trace = request.trace;
    started.request_id = request.request_id;
    auto answer = [&respond](http::Response response) {
      respond(std::move(response));
      return nullptr;
    };

    if (request.body.size() > options_.max_body_bytes) {
      return answer(
          http::Response::error(413, "request_too_large",
                                fmt::format("the request body has {} bytes; the limit is {} bytes",
                                            request.body.size(), options_.max_body_bytes)));
    }
    auto decoded = codec::decode_request_body<Json>(request.body, limits_);
    if (!decoded) {
      const auto ct = request.header("content-type");
      if (ct && is_json_content_type(*ct)) {
        auto json = codec::parse_json<Json>(request.body, limits_);
        return answer(http::Response::error(
            400, "bad_request",
            fmt::format("the body is not valid JSON: {}",
                        json ? std::string("no detail") : json.error().message)));
      }
      return answer(envelope(make_error_envelope(
          make_error("Z558", fmt::format("Unable to find programming language in function call. {}",
                                         decoded.error().message)))));
    }

    auto call = to_call_request(decoded->value);
    if (!call) return answer(envelope(make_error_envelope(std::move(call.error()))));

    Sandbox* sandbox = nullptr;
    switch (language_family(call->language)) {
      case LanguageFamily::kPython:
        sandbox = python_.get();
        break;
      case LanguageFamily::kJavaScript:
        sandbox = javascript_.get();
        break;
      case LanguageFamily::kNone:
        break;
    }
    if (sandbox == nullptr) {
      return answer(envelope(make_error_envelope(make_error(
          "Z558", fmt::format("No executor found for programming language {}.", call->language)))));
    }

    CallInput input;
    input.code = std::move(call->code);
    input.function_name = std::move(call->function_name);
    input.arguments_json = dump(call->arguments);
    if (!call->converters.is_null()) input.converters_json = dump(call->converters);
    input.caller = fair_queue_caller(request, options_.caller_trusted_peers);
    auto deadline = started.steady + options_.timeout;
    if (request.deadline != http::Clock::time_point{} && request.deadline < deadline) {
      deadline = request.deadline;
    }
    // The caller's own deadline (remainingTime) lowers the limit: nobody waits for a later answer.
    if (call->remaining_time_ms) {
      const auto caller =
          started.steady + std::chrono::duration_cast<SteadyClock::duration>(
                               std::chrono::duration<double, std::milli>(*call->remaining_time_ms));
      if (caller < deadline) deadline = caller;
    }
    started.language = call->language;
    started.function = input.function_name;
    started.cpu_ms = thread_cpu_ms() - started.cpu_ms;
    return sandbox->start(
        std::move(input), deadline,
        [this, started = std::move(started), respond = std::move(respond)](CallOutcome outcome) {
          http::Response response = answer_outcome(started, outcome);
          add_pool_wait(response, outcome);
          respond(std::move(response));
        });
  }

 private:
  // What the completion needs of the request that started the call.
  struct Started {
    SystemClock::time_point wall;
    SteadyClock::time_point steady;
    double cpu_ms = 0;
    obs::TraceContext trace;
    std::string request_id;
    std::string language;
    std::string function;
  };

  // On the sandbox's event loop: the response for a finished call.
  http::Response answer_outcome(const Started& started, const CallOutcome& outcome) const {
    obs::LogScope scope(started.trace.trace_id, started.trace.span_id, started.request_id);
    if (outcome.status != CallOutcome::Status::kOk) {
      // What led up to a failure must be in the log (with this request's trace id).
      obs::log_event(outcome.status == CallOutcome::Status::kCancelled ? spdlog::level::info
                                                                       : spdlog::level::warn,
                     fmt::format("sandboxed call failed: {}", outcome.detail),
                     {obs::field_str("event.action", "sandbox-call"),
                      obs::field_str("event.outcome", "failure"),
                      obs::field_str("error.type", status_name(outcome.status)),
                      obs::field_str("error.message", outcome.detail),
                      obs::field_str("wf.language", started.language),
                      obs::field_str("wf.function", started.function),
                      obs::field_num("wf.child_cpu_ms", outcome.cpu_ms)});
    }
    if (obs::current_level() <= spdlog::level::debug) log_call_cost(started, outcome);
    if (outcome.status == CallOutcome::Status::kThrottled) {
      return http::Response::refusal(
          429, "sandbox_share_in_use",
          fmt::format("{} (sandbox_children_per_flow, sandbox_queue_per_flow, "
                      "sandbox_queue_wait_ms); retry later",
                      outcome.detail));
    }
    if (outcome.status == CallOutcome::Status::kUnavailable ||
        outcome.status == CallOutcome::Status::kCancelled) {
      return http::Response::refusal(
          503, "sandbox_unavailable",
          fmt::format("no {} sandbox child is available right now ({}); retry shortly",
                      started.language, outcome.detail.empty() ? "no detail" : outcome.detail));
    }
    const std::vector<MetadataEntry> entries = metadata_entries(started, outcome);
    if (outcome.status == CallOutcome::Status::kOk) {
      // The usual answer: the runtime's canonical text passes through (result_text.h).
      if (auto text = pass_through_z22(outcome.output.z22_json, entries)) {
        return json_response(200, std::move(*text));
      }
    }
    Json z22 = outcome.status == CallOutcome::Status::kOk
                   ? result_of(outcome, limits_)
                   : make_error_envelope(outcome_error(outcome));
    set_metadata(z22, entries);
    return envelope(z22);
  }

  // At log_level debug, one line per call saying where its time in the service went: the wait for
  // a child because none was free, the time from the handing of its child to its outcome, whether
  // that child was warmed up, and the rest (decoding, a wait behind its own flow's cap, the
  // loop). With the request id the orchestrator forwards, a slow call's line joins the
  // orchestrator's (bench/overload/run's fairness phase does).
  static void log_call_cost(const Started& started, const CallOutcome& outcome) {
    using Ms = std::chrono::duration<double, std::milli>;
    const auto took = SteadyClock::now() - started.steady;
    obs::log_event(
        spdlog::level::debug, "sandbox call cost",
        {obs::field_str("event.action", "sandbox-call-cost"),
         obs::field_str("event.outcome", status_name(outcome.status)),
         obs::field_int("event.duration",
                        std::chrono::duration_cast<std::chrono::nanoseconds>(took).count()),
         obs::field_str("wf.language", started.language),
         obs::field_str("wf.function", started.function),
         obs::field_num("wf.pool_wait_ms", Ms(outcome.pool_wait).count()),
         obs::field_num("wf.in_child_ms", Ms(outcome.in_child).count()),
         obs::field_int("wf.child_warm", outcome.child_warm),
         obs::field_num("wf.child_cpu_ms", outcome.cpu_ms)});
  }

  // How long the call waited for a sandbox child because none was free, for the orchestrator's
  // adaptive admission limit (a header: the Z22's metadata stays as the spec has it).
  static void add_pool_wait(http::Response& response, const CallOutcome& outcome) {
    if (outcome.pool_wait.count() <= 0) return;
    response.headers.push_back(
        {std::string(kPoolWaitHeader),
         fmt::format("{:.3f}",
                     std::chrono::duration<double, std::milli>(outcome.pool_wait).count())});
  }

  // The §6 metadata keys the service sets, in order.
  static std::vector<MetadataEntry> metadata_entries(const Started& started,
                                                     const CallOutcome& outcome) {
    const auto ended_wall = SystemClock::now();
    const auto duration_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - started.steady)
            .count();
    std::vector<MetadataEntry> entries;
    entries.reserve(9);
    entries.push_back({"evaluationMemoryUsage", mebibytes(service_resident_bytes())});
    // The service's own CPU for this request: decoding and checking (on the thread that started
    // it; the completion runs on an event-loop thread and costs a few microseconds).
    entries.push_back({"evaluationCpuUsage", fmt::format("{:.3f} ms", started.cpu_ms)});
    entries.push_back({"evaluationStartTime", iso_utc_ms(started.wall)});
    entries.push_back({"evaluationEndTime", iso_utc_ms(ended_wall)});
    entries.push_back({"evaluationDuration", fmt::format("{} ms", duration_ms)});
    entries.push_back({"evaluationHostname", hostname()});
    if (outcome.peak_rss_bytes > 0) {
      entries.push_back({"executionMemoryUsage", mebibytes(outcome.peak_rss_bytes)});
    }
    entries.push_back({"executionCpuUsage", fmt::format("{:.3f} ms", outcome.cpu_ms)});
    if (!outcome.output.captured_output.empty()) {
      entries.push_back(
          {"executionOutput", outcome.output.captured_output.substr(0, kMaxExecutionOutput)});
    }
    return entries;
  }

  static http::Response envelope(const Json& z22) { return json_response(200, dump(z22)); }

  EvaluateOptions options_;
  std::shared_ptr<Sandbox> python_;
  std::shared_ptr<Sandbox> javascript_;
  codec::DecodeLimits limits_{};
};

}  // namespace

std::string fair_queue_caller(const http::Request& request,
                              const std::vector<limits::Cidr>& trusted_peers) {
  constexpr std::size_t kMaxCallerBytes = 256;
  const auto forwarded = request.header("x-wikifunctions-caller");
  if (!forwarded || forwarded->empty() || forwarded->size() > kMaxCallerBytes ||
      std::any_of(forwarded->begin(), forwarded->end(),
                  [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; })) {
    return request.client_address;
  }
  const auto peer = limits::parse_ip(request.client_address);
  if (!peer || !limits::contains(trusted_peers, *peer)) return request.client_address;
  // A prefix no address has, so a forwarded name never shares a flow with a peer's address.
  return "fwd " + std::string(*forwarded);
}

namespace {

CancelReason cancel_reason_of(http::Cancellation::Reason reason) {
  switch (reason) {
    case http::Cancellation::Reason::kDeadline:
      return CancelReason::kDeadline;
    case http::Cancellation::Reason::kShutdown:
      return CancelReason::kShutdown;
    case http::Cancellation::Reason::kNone:
    case http::Cancellation::Reason::kClientGone:
    case http::Cancellation::Reason::kAbandoned:
      break;
  }
  return CancelReason::kClientGone;
}

}  // namespace

void serve_evaluate(EvaluateHandler& handler, std::shared_ptr<http::AsyncRequest> request) {
  // Lives as long as the call's completion: unregisters the cancel callback when the call ends.
  struct InFlight {
    http::Cancellation::Registration registration;
  };
  auto in_flight = std::make_shared<InFlight>();
  std::shared_ptr<SandboxCall> call = handler.start(
      request->request,
      [request, in_flight](http::Response response) { request->respond(std::move(response)); });
  if (!call || !request->cancel) return;
  in_flight->registration = request->cancel->on_cancel(
      [call](http::Cancellation::Reason reason) { call->cancel(cancel_reason_of(reason)); });
}

http::Response EvaluateHandler::handle(const http::Request& request) {
  std::promise<http::Response> answered;
  std::future<http::Response> response = answered.get_future();
  start(request, [&answered](http::Response r) { answered.set_value(std::move(r)); });
  return response.get();
}

std::unique_ptr<EvaluateHandler> make_evaluate_handler(const EvaluateOptions& options,
                                                       std::shared_ptr<Sandbox> python,
                                                       std::shared_ptr<Sandbox> javascript) {
  return std::make_unique<Handler>(options, std::move(python), std::move(javascript));
}

}  // namespace wf::evaluator
