#include "orchestrator/wikidata_protocol.h"

#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>

#include "orchestrator/engine/wikidata_mapping.h"

namespace wf::orchestrator {

namespace {

std::expected<boost::urls::url, std::string> api(std::string_view api_url) {
  auto parsed = boost::urls::parse_uri(api_url);
  if (!parsed) {
    return std::unexpected("the Wikidata API URL '" + std::string(api_url) +
                           "' is not a URL: set --wikidata-api-url (WIKIDATA_API_URL) to e.g. "
                           "http://wikidata-proxy.local/w/api.php");
  }
  return boost::urls::url(*parsed);
}

std::expected<nlohmann::json, std::string> object(std::string_view body) {
  auto answer = nlohmann::json::parse(body, nullptr, false);
  if (answer.is_discarded() || !answer.is_object()) {
    return std::unexpected("answered with something that is not a JSON object");
  }
  return answer;
}

// The string member `key` of `j`, "" when absent or not a string (value() would throw).
std::string text(const nlohmann::json& j, const char* key) {
  if (!j.is_object()) return {};
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::string api_error(const nlohmann::json& error) {
  auto code = text(error, "code");
  if (code.empty()) code = "unknown";
  const auto info = text(error, "info");
  return "answered error " + code + (info.empty() ? "" : ": " + info);
}

}  // namespace

std::expected<std::string, std::string> wbgetentities_url(std::string_view api_url,
                                                          const std::vector<std::string>& ids) {
  auto url = api(api_url);
  if (!url) return std::unexpected(url.error());
  std::string list;
  for (const auto& id : ids) {
    if (!wikidata::kind_of(id)) {
      return std::unexpected("refusing to fetch '" + id + "': not a Wikidata entity id");
    }
    list += (list.empty() ? "" : "|") + id;
  }
  url->params().append({"action", "wbgetentities"});
  url->params().append({"format", "json"});
  url->params().append({"ids", list});
  return std::string(url->buffer());
}

std::expected<std::map<std::string, nlohmann::json>, std::string> decode_wbgetentities(
    std::string_view body, const std::vector<std::string>& ids) {
  auto answer = object(body);
  if (!answer) return std::unexpected(answer.error());
  std::map<std::string, nlohmann::json> out;
  if (auto e = answer->find("error"); e != answer->end()) {
    if (text(*e, "code") == "no-such-entity") return out;
    return std::unexpected(api_error(*e));
  }
  auto entities = answer->find("entities");
  if (entities == answer->end() || !entities->is_object()) {
    return std::unexpected("answered without \"entities\"");
  }
  for (const auto& id : ids) {
    auto it = entities->find(id);
    if (it == entities->end() || !it->is_object() || it->contains("missing")) continue;
    out.emplace(id, std::move(*it));
  }
  return out;
}

std::expected<std::string, std::string> lexeme_search_url(std::string_view api_url,
                                                          const std::string& property,
                                                          const std::string& value, int limit) {
  auto url = api(api_url);
  if (!url) return std::unexpected(url.error());
  if (wikidata::kind_of(property) != wikidata::Kind::kProperty || !wikidata::kind_of(value)) {
    return std::unexpected("refusing to search haswbstatement:" + property + "=" + value +
                           ": not a property and an entity id");
  }
  url->params().append({"action", "query"});
  url->params().append({"format", "json"});
  url->params().append({"list", "search"});
  url->params().append({"srnamespace", "146"});
  url->params().append({"srlimit", std::to_string(limit)});
  url->params().append({"srsearch", "haswbstatement:" + property + "=" + value});
  return std::string(url->buffer());
}

std::expected<std::vector<std::string>, std::string> decode_lexeme_search(std::string_view body) {
  auto answer = object(body);
  if (!answer) return std::unexpected(answer.error());
  if (auto e = answer->find("error"); e != answer->end()) {
    return std::unexpected(api_error(*e));
  }
  std::vector<std::string> out;
  const auto query = answer->find("query");
  if (query == answer->end() || !query->is_object()) return out;
  const auto search = query->find("search");
  if (search == query->end() || !search->is_array()) return out;
  for (const auto& hit : *search) {
    std::string title = text(hit, "title");
    if (title.starts_with("Lexeme:")) title = title.substr(7);
    if (wikidata::kind_of(title) == wikidata::Kind::kLexeme) out.push_back(title);
  }
  return out;
}

}  // namespace wf::orchestrator
