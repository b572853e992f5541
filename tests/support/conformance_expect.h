#pragma once
// The `expect` checks of shared/conformance/run.py (README "Case format"), for the tests that run
// conformance cases in process (engine, evaluator handler). One message per failed check.

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace wf::testing {

using json = nlohmann::json;

// "Z24", a Z9 reference to Z24, or an instance of Z21 (run.py's is_void).
bool is_void(const json& x);
// A Z883 map, canonical or normal.
bool is_zmap(const json& x);
// The value of `key` in a Z883 map (canonical typed list or normal linked list).
std::optional<json> map_get(const json& zmap, const std::string& key);
// The keys of a Z883 map, in order.
std::vector<std::string> map_keys(const json& zmap);
// The `errors` value of a Z22 envelope (void when absent); a Z22K2 that is not a map is the error.
json get_error(const json& envelope);
json without_z1k1(const json& x);
std::string short_text(const json& x);
// Every `expect` field but http_status, checked against the response body.
std::vector<std::string> check_expect(const json& expect, const json& body);

}  // namespace wf::testing
