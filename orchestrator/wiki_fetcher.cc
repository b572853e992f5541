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
                  "transport, timeout).")
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

class WikiFetcher final : public ObjectFetcher {
 public:
  WikiFetcher(std::string url, std::shared_ptr<http::HttpClient> client)
      : url_(std::move(url)), client_(std::move(client)), metrics_(FetchMetrics::get()) {}

  void fetch(const std::vector<std::string>& zids, const CallContext& ctx, Done done) override {
    auto result = fetch_once(zids, ctx);
    if (!result) {
      obs::log_event(
          spdlog::level::warn, "wiki fetch failed: " + result.error().message,
          {obs::field_str("event.action", "wiki-fetch"), obs::field_str("event.outcome", "failure"),
           obs::field_str("error.message", result.error().message),
           obs::field_int("wf.zids", static_cast<long long>(zids.size()))});
    }
    done(std::move(result));
  }

 private:
  std::expected<std::map<std::string, std::string>, FetchError> fetch_once(
      const std::vector<std::string>& zids, const CallContext& ctx) {
    http::ClientRequest req;
    req.method = "GET";
    std::string list;
    for (const auto& z : zids) list += (list.empty() ? "" : "%7C") + z;
    req.url = url_ + (url_.find('?') == std::string::npos ? "?" : "&") +
              "action=wikilambda_fetch&format=json&zids=" + list;
    req.deadline = ctx.deadline;
    if (!ctx.request_id.empty()) req.headers.push_back({"x-request-id", ctx.request_id});
    if (!ctx.traceparent.empty()) req.headers.push_back({"traceparent", ctx.traceparent});
    const auto start = http::Clock::now();
    auto res = client_->send(req);
    metrics_.duration.Observe(std::chrono::duration<double>(http::Clock::now() - start).count());
    if (!res) {
      const bool timeout = res.error().kind == http::ClientError::Kind::kTimeout;
      metrics_.requests.Add({{"outcome", timeout ? "timeout" : "transport"}}).Increment();
      return std::unexpected(FetchError{
          fmt::format("wiki API at {} could not be reached: {}", url_, res.error().message)});
    }
    if (res->status != 200) {
      metrics_.requests.Add({{"outcome", "http_error"}}).Increment();
      return std::unexpected(FetchError{
          fmt::format("wiki API at {} answered {}: set WIKI_API_URL to a wiki with WikiLambda",
                      url_, res->status)});
    }
    auto body = nlohmann::json::parse(res->body, nullptr, false);
    if (body.is_discarded() || !body.is_object()) {
      metrics_.requests.Add({{"outcome", "bad_json"}}).Increment();
      return std::unexpected(FetchError{
          fmt::format("wiki API at {} answered with something that is not a JSON object", url_)});
    }
    metrics_.requests.Add({{"outcome", "ok"}}).Increment();
    std::map<std::string, std::string> out;
    for (const auto& zid : zids) {
      auto it = body.find(zid);
      if (it == body.end() || !it->is_object()) continue;
      auto text = it->find("wikilambda_fetch");
      if (text == it->end() || !text->is_string()) continue;
      out.emplace(zid, text->get<std::string>());
      metrics_.objects.Increment();
    }
    return out;
  }

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
