#include "orchestrator/wiki_fetcher.h"

#include <fmt/format.h>
#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "wf/obs/log.h"
#include "wf/obs/metrics.h"

namespace wf::orchestrator {
namespace {

struct FetchMetrics {
  prometheus::Family<prometheus::Counter>& requests;
  prometheus::Histogram& duration;
  prometheus::Counter& objects;

  static FetchMetrics& get() {
    static FetchMetrics m{
        prometheus::BuildCounter()
            .Name("wf_wiki_fetch_requests_total")
            .Help("wikilambda_fetch requests to the wiki, by outcome (ok, http_error, bad_json, "
                  "transport, timeout, cancelled).")
            .Register(obs::registry()),
        prometheus::BuildHistogram()
            .Name("wf_wiki_fetch_duration_seconds")
            .Help("Time of wikilambda_fetch requests.")
            .Register(obs::registry())
            .Add({}, obs::latency_buckets()),
        prometheus::BuildCounter()
            .Name("wf_wiki_fetched_objects_total")
            .Help("Objects received from the wiki.")
            .Register(obs::registry())
            .Add({}),
    };
    return m;
  }
};

// The wiki's answer to one wikilambda_fetch request as the engine wants it.
ObjectFetcher::Result interpret(FetchMetrics& metrics, const std::string& url,
                                const std::vector<std::string>& zids, const CallContext& ctx,
                                http::ClientResult res) {
  if (!res) {
    using K = http::ClientError::Kind;
    const K kind = res.error().kind;
    // A request aborted by its cancellation at the deadline timed out; else the caller left.
    const bool deadline = ctx.cancel && ctx.cancel->reason() == Cancellation::Reason::kDeadline;
    const char* outcome = kind == K::kTimeout     ? "timeout"
                          : kind != K::kCancelled ? "transport"
                          : deadline              ? "timeout"
                                                  : "cancelled";
    metrics.requests.Add({{"outcome", outcome}}).Increment();
    return std::unexpected(FetchError{
        fmt::format("wiki API at {} could not be reached: {}", url, res.error().message)});
  }
  if (res->status != 200) {
    metrics.requests.Add({{"outcome", "http_error"}}).Increment();
    return std::unexpected(FetchError{
        fmt::format("wiki API at {} answered {}: set WIKI_API_URL to a wiki with WikiLambda", url,
                    res->status)});
  }
  auto body = nlohmann::json::parse(res->body, nullptr, false);
  if (body.is_discarded() || !body.is_object()) {
    metrics.requests.Add({{"outcome", "bad_json"}}).Increment();
    return std::unexpected(FetchError{
        fmt::format("wiki API at {} answered with something that is not a JSON object", url)});
  }
  metrics.requests.Add({{"outcome", "ok"}}).Increment();
  std::map<std::string, std::string> out;
  for (const auto& zid : zids) {
    auto it = body.find(zid);
    if (it == body.end() || !it->is_object()) continue;
    auto text = it->find("wikilambda_fetch");
    if (text == it->end() || !text->is_string()) continue;
    out.emplace(zid, text->get<std::string>());
    metrics.objects.Increment();
  }
  return out;
}

// interpret(), with a log line (carrying the request's trace id: this runs on the event loop)
// when the fetch failed.
ObjectFetcher::Result answer(FetchMetrics& metrics, const std::string& url,
                             const std::vector<std::string>& zids, const CallContext& ctx,
                             http::ClientResult res) {
  auto result = interpret(metrics, url, zids, ctx, std::move(res));
  if (!result) {
    obs::LogScope scope(ctx.trace_id, ctx.span_id, ctx.request_id);
    obs::log_event(
        spdlog::level::warn, "wiki fetch failed: " + result.error().message,
        {obs::field_str("event.action", "wiki-fetch"), obs::field_str("event.outcome", "failure"),
         obs::field_str("error.message", result.error().message),
         obs::field_int("wf.zids", static_cast<long long>(zids.size()))});
  }
  return result;
}

class WikiFetcher final : public ObjectFetcher {
 public:
  WikiFetcher(std::string url, std::shared_ptr<http::HttpClient> client)
      : url_(std::move(url)), client_(std::move(client)), metrics_(FetchMetrics::get()) {}

  // With HttpClient::async_send: no thread waits for the wiki; raising ctx.cancel closes the
  // request's connection.
  void fetch(const std::vector<std::string>& zids, const CallContext& ctx, Done done) override {
    http::ClientRequest req;
    req.method = "GET";
    std::string list;
    for (const auto& z : zids) list += (list.empty() ? "" : "%7C") + z;
    req.url = url_ + (url_.find('?') == std::string::npos ? "?" : "&") +
              "action=wikilambda_fetch&format=json&zids=" + list;
    req.deadline = ctx.deadline;
    if (!ctx.request_id.empty()) req.headers.push_back({"x-request-id", ctx.request_id});
    if (!ctx.traceparent.empty()) req.headers.push_back({"traceparent", ctx.traceparent});
    client_->async_send(std::move(req), ctx.cancel,
                        [&metrics = metrics_, url = url_, zids, ctx, start = http::Clock::now(),
                         done = std::move(done)](http::ClientResult res) {
                          metrics.duration.Observe(
                              std::chrono::duration<double>(http::Clock::now() - start).count());
                          done(answer(metrics, url, zids, ctx, std::move(res)));
                        });
  }

 private:
  std::string url_;
  std::shared_ptr<http::HttpClient> client_;
  FetchMetrics& metrics_;
};

}  // namespace

std::shared_ptr<ObjectFetcher> make_wiki_fetcher(std::string api_url,
                                                 std::shared_ptr<http::HttpClient> client) {
  return std::make_shared<WikiFetcher>(std::move(api_url), std::move(client));
}

}  // namespace wf::orchestrator
