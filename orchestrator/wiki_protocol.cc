#include "orchestrator/wiki_protocol.h"

#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>
#include <nlohmann/json.hpp>

#include "wf/zobject/zobject.h"

namespace wf::orchestrator {

std::expected<std::string, std::string> wikilambda_fetch_url(std::string_view api_url,
                                                             const std::vector<std::string>& zids) {
  auto parsed = boost::urls::parse_uri(api_url);
  if (!parsed) {
    return std::unexpected("the wiki API URL '" + std::string(api_url) +
                           "' is not a URL: set WIKI_API_URL to e.g. "
                           "https://www.wikifunctions.org/w/api.php");
  }
  std::string list;
  for (const auto& zid : zids) {
    if (!zobject::check_zid(zid)) {
      return std::unexpected("refusing to fetch '" + zid + "': not a ZID (^Z[1-9]\\d*$)");
    }
    list += (list.empty() ? "" : "|") + zid;
  }
  boost::urls::url url(*parsed);
  url.params().append({"action", "wikilambda_fetch"});
  url.params().append({"format", "json"});
  url.params().append({"zids", list});
  return std::string(url.buffer());
}

std::expected<std::map<std::string, std::string>, std::string> decode_wikilambda_fetch(
    std::string_view body, const std::vector<std::string>& zids) {
  auto answer = nlohmann::json::parse(body, nullptr, false);
  if (answer.is_discarded() || !answer.is_object()) {
    return std::unexpected("answered with something that is not a JSON object");
  }
  std::map<std::string, std::string> out;
  for (const auto& zid : zids) {
    auto it = answer.find(zid);
    if (it == answer.end() || !it->is_object()) continue;
    auto text = it->find("wikilambda_fetch");
    if (text == it->end() || !text->is_string()) continue;
    out.emplace(zid, text->get<std::string>());
  }
  return out;
}

}  // namespace wf::orchestrator
