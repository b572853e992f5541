// Schema validation of MIXED ZObjects and the Z502 error trees of errors.md §3.
#include <map>
#include <memory>

#include "wf/zobject/zobject.h"

namespace wf::zobject {
namespace {

bool is_mixed_key(std::string_view k) {
  return is_key(k);
}

void check(const json& v, std::vector<std::string>& path, std::vector<SchemaViolation>& out) {
  if (v.is_string()) return;
  if (v.is_array()) {
    if (v.size() > kMaxListElements + 1) {
      out.push_back(
          {path, make_error_msg(
                     "Z500", "a list of " + std::to_string(v.size() - 1) + " elements; at most " +
                                 std::to_string(kMaxListElements) + " are accepted in one list")});
      return;
    }
    for (std::size_t i = 0; i < v.size(); ++i) {
      path.push_back(std::to_string(i));
      check(v[i], path, out);
      path.pop_back();
    }
    return;
  }
  if (!v.is_object()) {
    out.push_back({path, make_error("Z521", {z99(v)})});
    return;
  }
  if (!v.contains("Z1K1")) out.push_back({path, make_error("Z523", {z99(v)})});
  for (const auto& [key, value] : v.items()) {
    if (!is_mixed_key(key)) {
      out.push_back({path, make_error("Z525", {z6(key)})});
      continue;
    }
    path.push_back(key);
    check(value, path, out);
    path.pop_back();
  }
}

// The common case, valid input, without building paths: one allocation-free pass.
bool is_valid_mixed(const json& v) {
  switch (v.type()) {
    case json::value_t::string:
      return true;
    case json::value_t::array:
      if (v.size() > kMaxListElements + 1) return false;
      for (const auto& e : v.get_ref<const json::array_t&>()) {
        if (!is_valid_mixed(e)) return false;
      }
      return true;
    case json::value_t::object: {
      const auto& o = v.get_ref<const json::object_t&>();
      if (o.find("Z1K1") == o.end()) return false;
      for (const auto& [key, value] : o) {
        if (!is_mixed_key(key) || !is_valid_mixed(value)) return false;
      }
      return true;
    }
    default:
      return false;
  }
}

struct TreeNode {
  std::vector<std::pair<std::string, std::unique_ptr<TreeNode>>> children;
  std::vector<json> errors;

  TreeNode& child(const std::string& key) {
    for (auto& [k, c] : children) {
      if (k == key) return *c;
    }
    children.emplace_back(key, std::make_unique<TreeNode>());
    return *children.back().second;
  }
};

json combine(std::vector<json> errors) {
  if (errors.size() == 1) return std::move(errors[0]);
  return make_error("Z509", {make_list(z9("Z5"), errors)});
}

json fold(const TreeNode& node) {
  std::vector<json> results;
  for (const auto& [key, child] : node.children) {
    json inner = fold(*child);
    json z39 = {{"Z1K1", z9("Z39")}, {"Z39K1", z6(key)}};
    results.push_back(make_error("Z526", {z39, inner}));
  }
  for (const auto& e : node.errors) results.push_back(e);
  return combine(std::move(results));
}

}  // namespace

std::vector<SchemaViolation> check_mixed(const json& value) {
  if (is_valid_mixed(value)) return {};
  std::vector<SchemaViolation> out;
  std::vector<std::string> path;
  check(value, path, out);
  return out;
}

json schema_error_tree(const std::vector<SchemaViolation>& violations) {
  TreeNode root;
  for (const auto& v : violations) {
    TreeNode* node = &root;
    for (const auto& seg : v.path) {
      if (is_global_key(seg)) node = &node->child(seg);
    }
    node->errors.push_back(v.error);
  }
  if (root.children.empty() && root.errors.empty()) return nullptr;
  json inner = fold(root);
  return make_error("Z502", {z9(error_type(inner)), inner});
}

json validate_normal(const json& value) {
  std::vector<SchemaViolation> out;
  std::vector<std::string> path;
  // Terminal shapes only: the rest of the NORMAL schemas is enforced by the engine's checks.
  auto visit = [&](auto&& self, const json& v) -> void {
    if (!v.is_object()) {
      if (!v.is_string()) out.push_back({path, make_error("Z521", {z99(v)})});
      return;
    }
    auto t = v.find("Z1K1");
    if (t == v.end()) {
      out.push_back({path, make_error("Z523", {z99(v)})});
      return;
    }
    if (t->is_string() && *t == "Z6") {
      auto k = v.find("Z6K1");
      if (k == v.end()) {
        out.push_back({path, make_error("Z532", {z99(v)})});
      } else if (!k->is_string()) {
        out.push_back({path, make_error("Z533", {z99(v)})});
      }
      return;
    }
    if (t->is_string() && *t == "Z9") {
      auto k = v.find("Z9K1");
      if (k == v.end()) {
        out.push_back({path, make_error("Z535", {z99(v)})});
      } else if (!k->is_string()) {
        out.push_back({path, make_error("Z536", {z99(v)})});
      } else if (!is_zid(k->get_ref<const std::string&>())) {
        out.push_back({path, make_error("Z537", {z6(k->get<std::string>())})});
      }
      return;
    }
    for (const auto& [key, child] : v.items()) {
      path.push_back(key);
      self(self, child);
      path.pop_back();
    }
  };
  visit(visit, value);
  if (out.empty()) return nullptr;
  return schema_error_tree(out);
}

}  // namespace wf::zobject
