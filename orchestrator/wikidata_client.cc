#include "orchestrator/wikidata_client.h"

#include <fmt/format.h>
#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "orchestrator/wikidata_protocol.h"
#include "wf/obs/log.h"
#include "wf/obs/metrics.h"

namespace wf::orchestrator {
namespace {

struct WikidataMetrics {
  prometheus::Family<prometheus::Counter>& requests;
  prometheus::Histogram& duration;

  static WikidataMetrics& get() {
    static WikidataMetrics m{
        prometheus::BuildCounter()
            .Name("wf_wikidata_requests_total")
            .Help("Requests to the Wikidata API, by operation (entities, search) and outcome (ok: "
                  "answered 200, http_error, rate_limited, transport, timeout, cancelled).")
            .Register(obs::registry()),
        prometheus::BuildHistogram()
            .Name("wf_wikidata_request_duration_seconds")
            .Help("Time of requests to the Wikidata API.")
            .Register(obs::registry())
            .Add({}, obs::latency_buckets()),
    };
    return m;
  }
};

// Why a request got no usable answer, counted and worded for the Z5 (naming the fix).
FetchError transport_error(WikidataMetrics& metrics, const char* op, const std::string& url,
                           std::chrono::milliseconds timeout, const CallContext& ctx,
                           const http::ClientError& error) {
  using K = http::ClientError::Kind;
  const bool deadline = ctx.cancel && ctx.cancel->reason() == Cancellation::Reason::kDeadline;
  const char* outcome = error.kind == K::kTimeout     ? "timeout"
                        : error.kind != K::kCancelled ? "transport"
                        : deadline                    ? "timeout"
                                                      : "cancelled";
  metrics.requests.Add({{"operation", op}, {"outcome", outcome}}).Increment();
  if (error.kind == K::kTimeout) {
    return FetchError{
        fmt::format("Wikidata API at {} did not answer within the time allowed "
                    "(wikidata_timeout_ms {} or the call's deadline): {}",
                    url, timeout.count(), error.message)};
  }
  return FetchError{fmt::format("Wikidata API at {} could not be reached: {}", url, error.message)};
}

// The status check shared by both operations: nullopt when the body is to be decoded.
std::optional<FetchError> status_error(WikidataMetrics& metrics, const char* op,
                                       const std::string& url, const http::ClientResponse& res) {
  if (res.status == 200) return std::nullopt;
  const bool limited = res.status == 429;
  metrics.requests.Add({{"operation", op}, {"outcome", limited ? "rate_limited" : "http_error"}})
      .Increment();
  FetchError e{fmt::format("Wikidata API at {} answered {}{}", url, res.status,
                           limited ? ": rate limited, try again later"
                                   : ": set --wikidata-api-url to a Wikibase api.php")};
  e.rate_limited = limited;
  return e;
}

void log_failure(const CallContext& ctx, const FetchError& e) {
  obs::LogScope scope(ctx.trace_id, ctx.span_id, ctx.request_id);
  obs::log_event(
      spdlog::level::warn, "wikidata request failed: " + e.message,
      {obs::field_str("event.action", "wikidata-fetch"), obs::field_str("event.outcome", "failure"),
       obs::field_str("error.message", e.message)});
}

class WikidataClient final : public EntitySource {
 public:
  WikidataClient(WikidataClientOptions options, std::shared_ptr<http::HttpClient> client)
      : options_(std::move(options)),
        client_(std::move(client)),
        metrics_(WikidataMetrics::get()) {}

  void get_entities(const std::vector<std::string>& ids, const CallContext& ctx,
                    Done done) override {
    auto url = wbgetentities_url(options_.api_url, ids);
    if (!url) return done(std::unexpected(FetchError{url.error()}));
    send(std::move(*url), ctx, "entities",
         [ids, done = std::move(done)](std::expected<std::string, FetchError> body) {
           if (!body) return done(std::unexpected(std::move(body.error())));
           auto out = decode_wbgetentities(*body, ids);
           if (!out) return done(std::unexpected(FetchError{"Wikidata API " + out.error()}));
           done(std::move(*out));
         });
  }

  void find_lexemes(const std::string& property, const std::string& value, const CallContext& ctx,
                    IdsDone done) override {
    auto url = lexeme_search_url(options_.api_url, property, value, options_.search_limit);
    if (!url) return done(std::unexpected(FetchError{url.error()}));
    send(std::move(*url), ctx, "search",
         [done = std::move(done)](std::expected<std::string, FetchError> body) {
           if (!body) return done(std::unexpected(std::move(body.error())));
           auto out = decode_lexeme_search(*body);
           if (!out) return done(std::unexpected(FetchError{"Wikidata API " + out.error()}));
           done(std::move(*out));
         });
  }

 private:
  // GETs `url` with the request's ids and the tighter of the call's deadline and our timeout;
  // `then` gets the 200 body or the error (counted and logged). No thread waits.
  void send(std::string url, const CallContext& ctx, const char* op,
            std::function<void(std::expected<std::string, FetchError>)> then) {
    http::ClientRequest req;
    req.method = "GET";
    req.url = std::move(url);
    req.deadline = std::min(ctx.deadline, http::Clock::now() + options_.timeout);
    if (!ctx.request_id.empty()) req.headers.push_back({"x-request-id", ctx.request_id});
    if (!ctx.traceparent.empty()) req.headers.push_back({"traceparent", ctx.traceparent});
    client_->async_send(
        std::move(req), ctx.cancel,
        [&metrics = metrics_, api = options_.api_url, timeout = options_.timeout, ctx, op,
         start = http::Clock::now(), then = std::move(then)](http::ClientResult res) {
          metrics.duration.Observe(
              std::chrono::duration<double>(http::Clock::now() - start).count());
          std::optional<FetchError> error;
          if (!res) {
            error = transport_error(metrics, op, api, timeout, ctx, res.error());
          } else {
            error = status_error(metrics, op, api, *res);
          }
          if (error) {
            log_failure(ctx, *error);
            return then(std::unexpected(std::move(*error)));
          }
          metrics.requests.Add({{"operation", op}, {"outcome", "ok"}}).Increment();
          then(std::move(res->body));
        });
  }

  WikidataClientOptions options_;
  std::shared_ptr<http::HttpClient> client_;
  WikidataMetrics& metrics_;
};

}  // namespace

std::shared_ptr<EntitySource> make_wikidata_client(WikidataClientOptions options,
                                                   std::shared_ptr<http::HttpClient> client) {
  return std::make_shared<WikidataClient>(std::move(options), std::move(client));
}

}  // namespace wf::orchestrator
