#pragma once
// Wikibase's action API apart from its transport (docs/wikidata.md): the URLs of wbgetentities
// and of the lexeme search, and the decoding of their answers. Both take untrusted text (ids from
// user calls, bodies from the network) and never throw.

#include <expected>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace wf::orchestrator {

// `api_url` (e.g. https://www.wikidata.org/w/api.php) with
// action=wbgetentities&format=json&ids=Q1|L2-F1 appended. An error when the URL does not parse
// or an id is not a Wikibase entity id (Q…, P…, L…, L…-F…, L…-S…).
std::expected<std::string, std::string> wbgetentities_url(std::string_view api_url,
                                                          const std::vector<std::string>& ids);

// The entities of a wbgetentities answer by id: each requested id present and not "missing".
// An unknown id ({"error": {"code": "no-such-entity"}}) is absent, not an error; any other
// error object, or a body that is not a JSON object, is.
std::expected<std::map<std::string, nlohmann::json>, std::string> decode_wbgetentities(
    std::string_view body, const std::vector<std::string>& ids);

// A search of the Lexeme namespace (146) for haswbstatement:<property>=<value>, at most `limit`
// results. An error when the URL does not parse or property/value are not entity ids.
std::expected<std::string, std::string> lexeme_search_url(std::string_view api_url,
                                                          const std::string& property,
                                                          const std::string& value, int limit);

// The lexeme ids of a list=search answer ("Lexeme:L7" or "L7" titles), in order.
std::expected<std::vector<std::string>, std::string> decode_lexeme_search(std::string_view body);

}  // namespace wf::orchestrator
