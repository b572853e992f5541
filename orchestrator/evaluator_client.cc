#include "orchestrator/evaluator_client.h"

#include <fmt/format.h>
#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "wf/codec/avro.h"
#include "wf/obs/log.h"
#include "wf/obs/metrics.h"

namespace wf::orchestrator {
namespace {

std::string family_of(const std::string& language) {
  if (language.rfind("python", 0) == 0) return "python";
  if (language.rfind("javascript", 0) == 0) return "javascript";
  return "other";
}

struct EvaluatorMetrics {
  prometheus::Family<prometheus::Counter>& calls;
  prometheus::Family<prometheus::Histogram>& duration;

  static EvaluatorMetrics& get() {
    static EvaluatorMetrics m{
        prometheus::BuildCounter()
            .Name("wf_evaluator_calls_total")
            .Help("Code calls sent to evaluators, by language family and outcome (ok, http_error, "
                  "bad_json, transport, timeout, no_evaluator).")
            .Register(obs::registry()),
        prometheus::BuildHistogram()
            .Name("wf_evaluator_call_duration_seconds")
            .Help("Time of code calls to evaluators, by language family.")
            .Register(obs::registry()),
    };
    return m;
  }
};

class EvaluatorClient final : public CodeRunner {
 public:
  EvaluatorClient(EvaluatorRoutes routes, std::shared_ptr<http::HttpClient> client)
      : routes_(std::move(routes)), client_(std::move(client)), metrics_(EvaluatorMetrics::get()) {}

  void run(const CodeCall& call, const CallContext& ctx, Done done) override {
    done(run_blocking(call, ctx));
  }

 private:
  Result run_blocking(const CodeCall& call, const CallContext& ctx) {
    const std::string family = family_of(call.coding_language);
    auto count = [&](const char* outcome) {
      metrics_.calls.Add({{"language", family}, {"outcome", outcome}}).Increment();
    };
    const auto route = routes_.url_by_language.find(call.coding_language);
    if (route == routes_.url_by_language.end()) {
      count("no_evaluator");
      return std::unexpected(
          CodeRunError{CodeRunError::Kind::kNoEvaluator,
                       fmt::format("No evaluator is available for {}", call.coding_language)});
    }
    auto fail = [&](const char* outcome, const std::string& message) {
      obs::log_event(
          spdlog::level::warn, "evaluator call failed: " + message,
          {obs::field_str("event.action", "evaluator-call"),
           obs::field_str("event.outcome", "failure"), obs::field_str("error.type", outcome),
           obs::field_str("error.message", message),
           obs::field_str("wf.language", call.coding_language),
           obs::field_str("url.full", route->second)});
    };
    codec::CodeRequest request;
    request.reentrant = false;
    const auto now = http::Clock::now();
    // The real remaining time of this request (the original sent a negative number: see
    // docs/compatibility.md).
    request.remaining_time_ms =
        ctx.deadline == http::Clock::time_point::max()
            ? 20000.0
            : std::max(0.0, std::chrono::duration<double, std::milli>(ctx.deadline - now).count());
    request.coding_language = call.coding_language;
    request.code_string = call.code;
    request.function_name = call.function_name;
    auto body = codec::encode_code_request(request, call.arguments);
    if (!body) {
      count("bad_request");
      return std::unexpected(CodeRunError{
          CodeRunError::Kind::kFailed,
          fmt::format("Could not encode the call for the evaluator: {}", body.error().message)});
    }
    http::ClientRequest req;
    req.method = "POST";
    req.url = route->second;
    req.content_type = "application/octet-stream";
    req.body = std::move(*body);
    req.deadline = ctx.deadline;
    if (!ctx.request_id.empty()) req.headers.push_back({"x-request-id", ctx.request_id});
    if (!ctx.traceparent.empty()) req.headers.push_back({"traceparent", ctx.traceparent});
    auto& histogram = metrics_.duration.Add({{"language", family}}, obs::latency_buckets());
    auto res = client_->send(req);
    histogram.Observe(std::chrono::duration<double>(http::Clock::now() - now).count());
    if (!res) {
      const char* outcome =
          res.error().kind == http::ClientError::Kind::kTimeout ? "timeout" : "transport";
      count(outcome);
      fail(outcome, res.error().message);
      return std::unexpected(CodeRunError{CodeRunError::Kind::kFailed, res.error().message});
    }
    if (res->status < 200 || res->status >= 300) {
      count("http_error");
      fail("http_error", fmt::format("status {}", res->status));
      return std::unexpected(CodeRunError{
          CodeRunError::Kind::kFailed,
          fmt::format("Function evaluation failed with status {}: {}", res->status, res->body)});
    }
    auto z22 = nlohmann::json::parse(res->body, nullptr, false);
    if (z22.is_discarded()) {
      count("bad_json");
      fail("bad_json", "the answer is not JSON");
      return std::unexpected(CodeRunError{
          CodeRunError::Kind::kFailed,
          fmt::format("Function evaluation failed: the evaluator at {} answered with invalid JSON",
                      route->second)});
    }
    count("ok");
    return z22;
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
