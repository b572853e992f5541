#pragma once
// ObjectFetcher over a wiki's action=wikilambda_fetch API (orchestrator-api.md §6).

#include <memory>
#include <string>

#include "orchestrator/engine/ports.h"
#include "wf/http/client.h"

namespace wf::orchestrator {

std::shared_ptr<ObjectFetcher> make_wiki_fetcher(std::string api_url,
                                                 std::shared_ptr<http::HttpClient> client);

}  // namespace wf::orchestrator
