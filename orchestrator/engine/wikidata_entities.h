#pragma once
// Wikidata entities for the built-ins of one request (docs/wikidata.md): through the shared
// object cache (keys "wikidata:<id>", the cache's TTL and byte bound), one fetch per entity in
// flight across requests (single flight, as wiki fetches), batched per call, over the
// EntitySource port (the fiber parks; no thread waits). Every failure is a Z5 value.

#include <expected>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "orchestrator/engine/resolver.h"

namespace wf::orchestrator::engine_detail {

class WikidataEntities {
 public:
  using json = nlohmann::json;
  explicit WikidataEntities(Resolver& resolver) : resolver_(resolver) {}

  // The entities' Wikibase JSON in the order of `ids`, or the Z5: Z500 when no Wikidata API is
  // configured or the request failed, Z550 when an entity does not exist, Z567 when Wikidata
  // rate-limited us.
  std::expected<std::vector<std::shared_ptr<const json>>, json> get(
      const std::vector<std::string>& ids);
  // Ids of the lexemes with a statement `property` = `value` (search), or the Z5.
  std::expected<std::vector<std::string>, json> find_lexemes(const std::string& property,
                                                             const std::string& value);

 private:
  // Fetches `ids` (none cached, at most one batch) and lands each in the cache's flight.
  std::expected<void, json> fetch_led(const std::vector<std::string>& ids, bool land);
  std::expected<void, json> available();  // the Z500 naming the flag when there is no source
  std::shared_ptr<const json> cached(const std::string& id);

  Resolver& resolver_;
  std::map<std::string, std::shared_ptr<const json>> got_;  // this call's entities by id
};

}  // namespace wf::orchestrator::engine_detail
