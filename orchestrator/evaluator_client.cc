#include "orchestrator/evaluator_client.h"

#include <fmt/format.h>
#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <nlohmann/json.hpp>

#include "orchestrator/engine/code_answer.h"
#include "wf/codec/avro.h"
#include "wf/obs/log.h"
#include "wf/obs/metrics.h"
#include "wf/zobject/zobject.h"

namespace wf::orchestrator {
namespace {

// The language families and outcomes the metrics are labelled with.
constexpr const char* kFamilies[] = {"python", "javascript", "other"};
constexpr const char* kOutcomes[] = {"ok",      "http_error", "bad_json",     "transport",
                                     "timeout", "cancelled",  "no_evaluator", "bad_request"};
constexpr std::size_t kFamilyCount = std::size(kFamilies);
constexpr std::size_t kOutcomeCount = std::size(kOutcomes);

std::uint8_t family_of(const std::string& language) {
  if (language.rfind("python", 0) == 0) return 0;
  if (language.rfind("javascript", 0) == 0) return 1;
  return 2;
}

struct EvaluatorMetrics {
  prometheus::Family<prometheus::Counter>& calls;
  prometheus::Family<prometheus::Histogram>& duration;
  // Each series looked up once, when first used (so a series appears with its first call, as
  // before): prometheus-cpp's Add builds the labels' map and a new metric, then finds the one it
  // has (~1,700 instructions per series per call). Add is thread-safe and gives the same series
  // every time (none is removed), so a race stores the same pointer twice.
  std::array<std::array<std::atomic<prometheus::Counter*>, kOutcomeCount>, kFamilyCount>
      call_series{};
  std::array<std::atomic<prometheus::Histogram*>, kFamilyCount> duration_series{};

  static EvaluatorMetrics& get() {
    static EvaluatorMetrics m{
        prometheus::BuildCounter()
            .Name("wf_evaluator_calls_total")
            .Help("Code calls sent to evaluators, by language family and outcome (ok, http_error, "
                  "bad_json, transport, timeout, cancelled, no_evaluator, bad_request).")
            .Register(obs::registry()),
        prometheus::BuildHistogram()
            .Name("wf_evaluator_call_duration_seconds")
            .Help("Time of code calls to evaluators, by language family.")
            .Register(obs::registry()),
    };
    return m;
  }

  prometheus::Counter& call(std::uint8_t family, const char* outcome) {
    std::size_t o = 0;
    while (o < kOutcomeCount && std::strcmp(kOutcomes[o], outcome) != 0) ++o;
    // An outcome not in kOutcomes keeps its own label (looked up each time), never another's.
    if (o == kOutcomeCount)
      return calls.Add({{"language", kFamilies[family]}, {"outcome", outcome}});
    auto& slot = call_series[family][o];
    prometheus::Counter* c = slot.load(std::memory_order_acquire);
    if (c == nullptr) {
      c = &calls.Add({{"language", kFamilies[family]}, {"outcome", kOutcomes[o]}});
      slot.store(c, std::memory_order_release);
    }
    return *c;
  }

  prometheus::Histogram& call_duration(std::uint8_t family) {
    auto& slot = duration_series[family];
    prometheus::Histogram* h = slot.load(std::memory_order_acquire);
    if (h == nullptr) {
      h = &duration.Add({{"language", kFamilies[family]}}, obs::latency_buckets());
      slot.store(h, std::memory_order_release);
    }
    return *h;
  }
};

// Lists longer than this go as arrays in the JSON body (docs/compatibility.md "Long lists"): in
// normal form a list nests one level per element, deeper than Avro decoders and JSON parsers
// (the evaluator's 4096 levels, CPython's recursion limit) accept.
constexpr std::size_t kLongList = 64;

bool is_long_list(const nlohmann::json& v) {
  if (!zobject::is_list(v)) return false;
  const nlohmann::json* node = &v;
  for (std::size_t n = 0; node->is_object() && node->contains("K1"); ++n) {
    if (n >= kLongList) return true;
    auto next = node->find("K2");
    if (next == node->end()) break;
    node = &*next;
  }
  return false;
}

// A typed list (and the lists that are its elements, down to 16 levels) as the array
// [element type, elements...]; anything else as it is.
nlohmann::json flat_lists(const nlohmann::json& v, int depth = 0) {
  if (depth > 16 || !zobject::is_list(v)) return v;
  nlohmann::json out = nlohmann::json::array({zobject::list_item_type(v)});
  for (const auto& item : zobject::list_items(v)) out.push_back(flat_lists(item, depth + 1));
  return out;
}

// The JSON record form (docs/compatibility.md "Type converters", "Long lists"): for calls with
// type converters or long list arguments, which Avro 0.0.4 cannot carry.
bool needs_json_body(const CodeCall& call) {
  if (!call.converters.is_null()) return true;
  for (const auto& [key, value] : call.arguments.items()) {
    if (is_long_list(value)) return true;
  }
  return false;
}

// The evaluator answer's headers that are read (the others are not copied).
constexpr std::string_view kKeptHeaders[] = {kPoolWaitHeader};

// A request aborted by its cancellation: at the deadline that is the call's timeout.
const char* cancelled_outcome(const std::shared_ptr<Cancellation>& cancel) {
  const bool deadline = cancel && cancel->reason() == Cancellation::Reason::kDeadline;
  return deadline ? "timeout" : "cancelled";
}

// One code call in flight: what its completion needs to count, log and interpret the answer.
struct Pending {
  EvaluatorMetrics& metrics;
  std::uint8_t family;  // in kFamilies
  std::string language;
  std::string url;
  http::Clock::time_point start;
  // The ids for the log lines written on the event loop and the cancellation (its reason): not
  // the whole CallContext, whose traceparent and caller the request already carries. Held while
  // the call waits (bench/slow_calls: memory per in-flight call).
  std::string trace_id;
  std::string span_id;
  std::string request_id;
  std::shared_ptr<Cancellation> cancel;
  std::shared_ptr<IoWaitObserver> io_wait;  // the admission gate's view (CallContext::io_wait)

  void count(const char* outcome) const { metrics.call(family, outcome).Increment(); }

  void log_failure(const char* outcome, const std::string& message) const {
    // A cancelled call is the caller's doing (hang-up, deadline), not the evaluator's failure.
    const bool cancelled = std::string_view(outcome) == "cancelled";
    obs::LogScope scope(trace_id, span_id, request_id);
    obs::log_event(cancelled ? spdlog::level::info : spdlog::level::warn,
                   (cancelled ? "evaluator call cancelled: " : "evaluator call failed: ") + message,
                   {obs::field_str("event.action", "evaluator-call"),
                    obs::field_str("event.outcome", "failure"),
                    obs::field_str("error.type", outcome), obs::field_str("error.message", message),
                    obs::field_str("wf.language", language), obs::field_str("url.full", url)});
  }

  CodeRunner::Result failed(const char* outcome, const std::string& log_message,
                            std::string error_message) const {
    count(outcome);
    log_failure(outcome, log_message);
    return std::unexpected(CodeRunError{CodeRunError::Kind::kFailed, std::move(error_message)});
  }

  // The evaluator's wait for a sandbox child (kPoolWaitHeader), told to the admission gate as
  // congestion (docs/limits.md, "The adaptive limit").
  void report_pool_wait(const http::ClientResponse& res) const {
    if (!io_wait) return;
    for (const http::Header& h : res.headers) {
      if (h.name != kPoolWaitHeader) continue;  // the client lowercases the names it keeps
      char* end = nullptr;
      const double ms = std::strtod(h.value.c_str(), &end);
      // At most an hour: a bigger or malformed value is not the evaluator's and is ignored.
      if (end != h.value.c_str() && ms > 0 && ms < 3.6e6) {
        io_wait->congested(std::chrono::duration_cast<std::chrono::nanoseconds>(
            std::chrono::duration<double, std::milli>(ms)));
      }
      return;
    }
  }

  // The evaluator's answer as the engine wants it: its Z22, or the error the spec words.
  CodeRunner::Result interpret(http::ClientResult res) const {
    metrics.call_duration(family).Observe(
        std::chrono::duration<double>(http::Clock::now() - start).count());
    if (res) report_pool_wait(*res);
    if (!res) {
      using K = http::ClientError::Kind;
      const K kind = res.error().kind;
      const char* outcome = kind == K::kTimeout     ? "timeout"
                            : kind == K::kCancelled ? cancelled_outcome(cancel)
                                                    : "transport";
      return failed(outcome, res.error().message, res.error().message);
    }
    if (res->status < 200 || res->status >= 300) {
      return failed(
          "http_error", fmt::format("status {}", res->status),
          fmt::format("Function evaluation failed with status {}: {}", res->status, res->body));
    }
    // The usual answer (normal form, plain ASCII strings, a metadata map of Z6 pairs) is read
    // without building its map (code_answer.h).
    CodeAnswer answer = read_code_answer(res->body);
    if (answer.z22.is_discarded()) {
      return failed(
          "bad_json", "the answer is not JSON",
          fmt::format("Function evaluation failed: the evaluator at {} answered with invalid JSON",
                      url));
    }
    count("ok");
    return answer;
  }
};

class EvaluatorClient final : public CodeRunner {
 public:
  EvaluatorClient(EvaluatorRoutes routes, std::shared_ptr<http::HttpClient> client)
      : routes_(std::move(routes)), client_(std::move(client)), metrics_(EvaluatorMetrics::get()) {}

  // Sends the call with HttpClient::async_send: no thread waits for the evaluator, and raising
  // ctx.cancel closes the request's connection (the evaluator then stops the sandbox child).
  void run(const CodeCall& call, const CallContext& ctx, Done done) override {
    Pending pending{metrics_,
                    family_of(call.coding_language),
                    call.coding_language,
                    "",
                    http::Clock::now(),
                    ctx.trace_id,
                    ctx.span_id,
                    ctx.request_id,
                    ctx.cancel,
                    ctx.io_wait};
    const auto route = routes_.url_by_language.find(call.coding_language);
    if (route == routes_.url_by_language.end()) {
      pending.count("no_evaluator");
      done(std::unexpected(
          CodeRunError{CodeRunError::Kind::kNoEvaluator,
                       fmt::format("No evaluator is available for {}", call.coding_language)}));
      return;
    }
    pending.url = route->second;
    const bool json = needs_json_body(call);
    auto body = encode(call, ctx, json);
    if (!body) {
      pending.count("bad_request");
      done(std::unexpected(CodeRunError{
          CodeRunError::Kind::kFailed,
          fmt::format("Could not encode the call for the evaluator: {}", body.error().message)}));
      return;
    }
    http::ClientRequest req;
    req.method = "POST";
    req.url = route->second;
    req.content_type = json ? "application/json" : "application/octet-stream";
    req.body = std::move(*body);
    req.deadline = ctx.deadline;
    // The one header of the answer read here (report_pool_wait).
    req.keep_all_headers = false;
    req.keep_headers = kKeptHeaders;
    req.headers.reserve(3);
    if (!ctx.request_id.empty()) req.headers.push_back({"x-request-id", ctx.request_id});
    if (!ctx.traceparent.empty()) req.headers.push_back({"traceparent", ctx.traceparent});
    // The user the call is for: wf-evaluator believes it from its caller_trusted_peers and then
    // shares sandbox children per user rather than per orchestrator (docs/limits.md).
    if (!ctx.caller.empty()) req.headers.push_back({"x-wikifunctions-caller", ctx.caller});
    client_->async_send(std::move(req), ctx.cancel,
                        [pending = std::move(pending), done = std::move(done)](
                            http::ClientResult res) { done(pending.interpret(std::move(res))); });
  }

 private:
  // Versioned Avro 0.0.4 with the real remaining time of this request (the original sent a
  // negative number: see docs/compatibility.md). A call with type converters goes as the JSON
  // record form with `typeConverters`, which Avro 0.0.4 cannot carry (docs/compatibility.md
  // "Type converters").
  static std::expected<std::string, codec::Error> encode(const CodeCall& call,
                                                         const CallContext& ctx, bool json) {
    const double remaining_ms =
        ctx.deadline == http::Clock::time_point::max()
            ? 20000.0
            : std::max(0.0,
                       std::chrono::duration<double, std::milli>(ctx.deadline - http::Clock::now())
                           .count());
    if (json) {
      nlohmann::json arguments = nlohmann::json::object();
      for (const auto& [key, value] : call.arguments.items()) arguments[key] = flat_lists(value);
      nlohmann::json body = {{"reentrant", false},
                             {"remainingTime", remaining_ms},
                             {"codingLanguage", call.coding_language},
                             {"codeString", call.code},
                             {"functionName", call.function_name},
                             {"functionArguments", std::move(arguments)}};
      if (!call.converters.is_null()) body["typeConverters"] = call.converters;
      return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
    codec::CodeRequest request;
    request.reentrant = false;
    request.remaining_time_ms = remaining_ms;
    request.coding_language = call.coding_language;
    request.code_string = call.code;
    request.function_name = call.function_name;
    return codec::encode_code_request(request, call.arguments);
  }

  EvaluatorRoutes routes_;
  std::shared_ptr<http::HttpClient> client_;
  EvaluatorMetrics& metrics_;
};

}  // namespace

std::shared_ptr<CodeRunner> make_evaluator_client(EvaluatorRoutes routes,
                                                  std::shared_ptr<http::HttpClient> client) {
  return std::make_shared<EvaluatorClient>(std::move(routes), std::move(client));
}

}  // namespace wf::orchestrator
