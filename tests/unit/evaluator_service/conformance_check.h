#pragma once
// The conformance `expect` checks (tests/support/conformance_expect.h) in the shapes the evaluator
// handler tests use: map_get answers null for a missing key, check_case also checks the status.

#include <string>
#include <vector>

#include "conformance_expect.h"

namespace wf::evaluator::testing {

using nlohmann::json;
using wf::testing::get_error;
using wf::testing::is_void;
using wf::testing::is_zmap;
using wf::testing::map_keys;
using wf::testing::without_z1k1;

// Value of `key` in a Z883 map, or null.
inline json map_get(const json& map, const std::string& key) {
  return wf::testing::map_get(map, key).value_or(json(nullptr));
}

inline std::vector<std::string> check_case(const json& c, unsigned status, const json& body) {
  const json exp = c.value("expect", json::object());
  std::vector<std::string> fails;
  if (status != exp.value("http_status", 200u)) {
    fails.push_back("HTTP status " + std::to_string(status));
  }
  auto rest = wf::testing::check_expect(exp, body);
  fails.insert(fails.end(), rest.begin(), rest.end());
  return fails;
}

}  // namespace wf::evaluator::testing
