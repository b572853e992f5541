#pragma once
// EntitySource over a Wikibase action API (Wikidata's api.php): wbgetentities and the lexeme
// search, on the pooled asynchronous HttpClient (docs/wikidata.md).

#include <chrono>
#include <memory>
#include <string>

#include "orchestrator/engine/ports.h"
#include "wf/http/client.h"

namespace wf::orchestrator {

struct WikidataClientOptions {
  std::string api_url;  // e.g. http://wikidata-proxy.local/w/api.php (http only)
  // Longest one Wikidata request may take (the call's own deadline also bounds it).
  std::chrono::milliseconds timeout{5000};
  int search_limit = 50;  // most lexemes one search returns
};

std::shared_ptr<EntitySource> make_wikidata_client(WikidataClientOptions options,
                                                   std::shared_ptr<http::HttpClient> client);

}  // namespace wf::orchestrator
