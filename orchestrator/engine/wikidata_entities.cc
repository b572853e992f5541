#include "orchestrator/engine/wikidata_entities.h"

#include <algorithm>
#include <map>

#include "orchestrator/engine/fiber.h"
#include "orchestrator/engine/result_cache.h"
#include "wf/zobject/zobject.h"

namespace wf::orchestrator::engine_detail {

namespace zo = wf::zobject;

namespace {

constexpr std::size_t kBatch = 50;  // wbgetentities takes at most 50 ids per request

std::string cache_key(const std::string& id) {
  return "wikidata:" + id;
}

nlohmann::json fetch_error(const FetchError& e) {
  return zo::make_error_msg(e.rate_limited ? "Z567" : "Z500", e.message);
}

}  // namespace

std::expected<void, nlohmann::json> WikidataEntities::available() {
  if (resolver_.entity_source() != nullptr) return {};
  return std::unexpected(zo::make_error_msg(
      "Z500",
      "no Wikidata API is configured: start wf-orchestrator with --wikidata-api-url URL (or set "
      "WIKIDATA_API_URL) to a Wikibase api.php, e.g. a proxy of "
      "https://www.wikidata.org/w/api.php"));
}

std::shared_ptr<const nlohmann::json> WikidataEntities::cached(const std::string& id) {
  return resolver_.cache().get(cache_key(id));
}

std::expected<void, nlohmann::json> WikidataEntities::fetch_led(const std::vector<std::string>& ids,
                                                                bool land) {
  using Fetched = ObjectCache::Fetched;
  auto& cache = resolver_.cache();
  std::optional<nlohmann::json> error;
  for (std::size_t from = 0; from < ids.size(); from += kBatch) {
    const std::vector<std::string> batch(
        ids.begin() + static_cast<std::ptrdiff_t>(from),
        ids.begin() + static_cast<std::ptrdiff_t>(std::min(ids.size(), from + kBatch)));
    EntitySource::Entities answer =
        error ? EntitySource::Entities(std::unexpected(FetchError{"skipped"}))
              : await<EntitySource::Entities>([source = resolver_.entity_source(), batch,
                                               ctx = resolver_.context()](EntitySource::Done done) {
                  source->get_entities(batch, ctx, std::move(done));
                });
    if (!answer && !error) error = fetch_error(answer.error());
    for (const auto& id : batch) {
      Fetched outcome;
      if (!answer) {
        outcome.failure = answer.error().message;
      } else if (auto it = answer->find(id); it != answer->end()) {
        outcome.text = it->second.dump();
        auto value = std::make_shared<const nlohmann::json>(std::move(it->second));
        cache.put(cache_key(id), value, content_hash(*outcome.text));
        got_[id] = std::move(value);
      }
      if (land) cache.land(cache_key(id), outcome);
    }
  }
  if (error) return std::unexpected(std::move(*error));
  return {};
}

std::expected<std::vector<std::shared_ptr<const nlohmann::json>>, nlohmann::json>
WikidataEntities::get(const std::vector<std::string>& ids) {
  using Fetched = ObjectCache::Fetched;
  if (auto ok = available(); !ok) return std::unexpected(ok.error());
  resolver_.mark_external();
  auto& cache = resolver_.cache();
  std::vector<std::string> lead, join;
  for (const auto& id : ids) {
    if (got_.count(id) || std::find(lead.begin(), lead.end(), id) != lead.end() ||
        std::find(join.begin(), join.end(), id) != join.end()) {
      continue;
    }
    if (auto hit = cached(id)) {
      got_[id] = std::move(hit);
    } else if (cache.lead(cache_key(id))) {
      lead.push_back(id);
    } else {
      join.push_back(id);
    }
  }
  if (auto ok = fetch_led(lead, true); !ok) return std::unexpected(ok.error());
  for (const auto& id : join) {
    // Another request is fetching it: park until its answer lands.
    auto got = await<std::optional<Fetched>>([cache = &cache, key = cache_key(id)](
                                                 std::function<void(std::optional<Fetched>)> done) {
      auto shared = std::make_shared<std::function<void(std::optional<Fetched>)>>(std::move(done));
      if (!cache->join(key, [shared](Fetched f) { (*shared)(std::move(f)); })) {
        (*shared)(std::nullopt);
      }
    });
    if (got && got->failure.empty()) {
      if (got->text) {
        auto parsed = zo::parse(*got->text, 4 * resolver_.max_depth());
        if (parsed) got_[id] = std::make_shared<const nlohmann::json>(std::move(*parsed));
      }
      continue;
    }
    // Its flight ended before we joined, or failed for its own request: fetch on our own.
    if (auto ok = fetch_led({id}, false); !ok) return std::unexpected(ok.error());
  }
  std::vector<std::shared_ptr<const nlohmann::json>> out;
  out.reserve(ids.size());
  for (const auto& id : ids) {
    auto it = got_.find(id);
    if (it == got_.end()) return std::unexpected(zo::make_error("Z550", {nlohmann::json(id)}));
    out.push_back(it->second);
  }
  return out;
}

std::expected<std::vector<std::string>, nlohmann::json> WikidataEntities::find_lexemes(
    const std::string& property, const std::string& value) {
  if (auto ok = available(); !ok) return std::unexpected(ok.error());
  resolver_.mark_external();
  const std::string key = "wikidata-search:haswbstatement:" + property + "=" + value;
  std::vector<std::string> ids;
  if (auto hit = resolver_.cache().get(key); hit && hit->is_array()) {
    for (const auto& id : *hit) ids.push_back(id.get<std::string>());
    return ids;
  }
  auto answer = await<EntitySource::Ids>([source = resolver_.entity_source(), property, value,
                                          ctx = resolver_.context()](EntitySource::IdsDone done) {
    source->find_lexemes(property, value, ctx, std::move(done));
  });
  if (!answer) return std::unexpected(fetch_error(answer.error()));
  auto value_json = std::make_shared<const nlohmann::json>(*answer);
  resolver_.cache().put(key, value_json, content_hash(value_json->dump()));
  return std::move(*answer);
}

}  // namespace wf::orchestrator::engine_detail
