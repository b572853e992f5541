#pragma once
// The wiki's action=wikilambda_fetch protocol apart from its transport: the request URL and the
// decoding of the answer. Both take untrusted text (ZIDs from user calls, bodies from the
// network) and never throw.

#include <expected>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace wf::orchestrator {

// `api_url` (e.g. https://www.wikifunctions.org/w/api.php, which may carry a query of its own)
// with action=wikilambda_fetch&format=json&zids=Z1|Z2 appended, every parameter percent-encoded.
// An error when the URL does not parse or a ZID does not match ^Z[1-9]\d*$.
std::expected<std::string, std::string> wikilambda_fetch_url(std::string_view api_url,
                                                             const std::vector<std::string>& zids);

// For each of `zids` present in the answer, the JSON text of its persisted Z2 (the
// `wikilambda_fetch` string of {"Z1": {"wikilambda_fetch": "..."}}). An error when the body is
// not a JSON object.
std::expected<std::map<std::string, std::string>, std::string> decode_wikilambda_fetch(
    std::string_view body, const std::vector<std::string>& zids);

}  // namespace wf::orchestrator
