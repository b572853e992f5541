#pragma once
// Shape tests on shared normal-form JSON (definitions, fetched objects) that answer what the
// same test answers on Node::from_shared of it, without building the nodes.

#include <nlohmann/json.hpp>
#include <string>

namespace wf::orchestrator::engine_detail {

// Node::from_shared reads a non-object other than null as a bare string.
inline bool json_node_is_string(const nlohmann::json& v) {
  return !v.is_object() && !v.is_null();
}

// The text of such a bare string.
inline std::string json_node_text(const nlohmann::json& v) {
  return v.is_string() ? v.get_ref<const std::string&>() : v.dump();
}

// Node::is_ref(): a Z9 whose Z9K1 is a bare string.
inline bool json_is_ref(const nlohmann::json& v) {
  if (!v.is_object()) return false;
  auto t = v.find("Z1K1");
  auto k = v.find("Z9K1");
  return t != v.end() && k != v.end() && t->is_string() &&
         t->get_ref<const std::string&>() == "Z9" && json_node_is_string(*k);
}

// Node::ref(): the ZID a reference names, "" when `v` is not one.
inline std::string json_ref(const nlohmann::json& v) {
  return json_is_ref(v) ? json_node_text(v["Z9K1"]) : std::string();
}

}  // namespace wf::orchestrator::engine_detail
