// Static validation of a request (evaluation.md §7) and the checks of the validators that
// actually check something (builtins.md §2: Z204, Z207, Z208, Z212, Z232).
#include <algorithm>
#include <set>

#include "orchestrator/engine/interpreter.h"
#include "wf/zobject/zobject.h"

namespace wf::orchestrator::engine_detail {

namespace zo = wf::zobject;

namespace {

std::string text_of(const NodeP& n) {
  if (!n) return {};
  return n->is_string ? n->text : n->str();
}

std::string local_key_of(const std::string& name) {
  auto k = name.rfind('K');
  if (k == std::string::npos) return name;
  std::string local = name.substr(k);
  return zo::is_local_key(local) ? local : name;
}

// Visits object nodes; a function call is entered only through Z1K1 and Z7K1.
void collect(const NodeP& node, std::vector<NodeP>& out, int depth) {
  if (!node || node->is_string || depth > 4096) return;
  out.push_back(node);
  bool call = node->is_call();
  for (std::size_t i = 0; i < node->entries.size(); ++i) {
    const std::string key = node->entries[i].key;
    if (call && key != "Z1K1" && key != "Z7K1") continue;
    collect(node->get(key), out, depth + 1);
  }
}

void add_flattened(std::vector<json>& errors, const json& e) {
  if (zo::error_type(e) == "Z509") {
    const json* payload = e.contains("Z5K2") ? &e["Z5K2"] : nullptr;
    if (payload && payload->contains("Z509K1")) {
      for (const auto& member : zo::list_items((*payload)["Z509K1"])) errors.push_back(member);
      return;
    }
  }
  errors.push_back(e);
}

}  // namespace

std::vector<json> Interpreter::check_key_list(const std::string& identity,
                                              const std::vector<std::string>& keys) {
  std::vector<json> errors;
  std::set<std::string> seen;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const std::string& key = keys[i];
    std::string local = key;
    if (zo::is_global_key(key)) {
      auto k = key.rfind('K');
      if (key.compare(0, k, identity) != 0) {
        errors.push_back(zo::make_error_msg("Z522", "Invalid key at index " + std::to_string(i) +
                                                        ": string should start with " + identity));
      }
      local = key.substr(k);
    }
    if (!seen.insert(key).second) {
      errors.push_back(
          zo::make_error_msg("Z522", "Duplicated key at index " + std::to_string(i) + ": " + key));
    }
    std::string expected = "K" + std::to_string(i + 1);
    if (local != expected) {
      if (i == 0) {
        errors.push_back(zo::make_error_msg(
            "Z522", "Invalid key at index 0: " + key + " (should be K1 or " + identity + "K1)"));
      } else {
        errors.push_back(zo::make_error_msg(
            "Z522", "Non-sequential key at index " + std::to_string(i) + ": " + key));
      }
    }
  }
  return errors;
}

std::vector<json> Interpreter::check_function_call(const NodeP& call) {
  std::vector<json> errors;
  if (!call || call->is_string || !call->is_call()) return errors;
  Envelope f = resolve_key(call, "Z7K1", empty_);
  if (aborted() || f.has_error() || !f.value || f.value->type_ref() != "Z8") return errors;
  NodeP z8 = f.value;
  Envelope a = resolve_key(z8, "Z8K1", empty_, Mode::kNoInternals);
  if (aborted() || a.has_error() || !a.value) return errors;
  struct Decl {
    std::string name;
    std::string local;
    NodeP declared;
  };
  std::vector<Decl> decls;
  for (const NodeP& z17 : list_elements(a.value)) {
    if (!z17 || z17->is_string) continue;
    Envelope n = resolve_key(z17, "Z17K2", empty_, Mode::kNoInternals);
    std::string name = text_of(n.value);
    if (!call->has(name) && !call->has(local_key_of(name))) return errors;  // discovery fails
    decls.push_back({name, local_key_of(name), z17->get("Z17K1")});
  }
  for (std::size_t i = 0; i < call->entries.size(); ++i) {
    const std::string key = call->entries[i].key;
    if (key == "Z1K1" || key == "Z7K1") continue;
    auto it = std::find_if(decls.begin(), decls.end(),
                           [&](const Decl& d) { return d.name == key || d.local == key; });
    if (it == decls.end()) {
      errors.push_back(zo::make_error_msg("Z525", "Invalid key for function call: " + key));
      continue;
    }
    std::string d;
    if (it->declared && it->declared->is_string) d = it->declared->text;
    if (it->declared && it->declared->is_ref()) d = it->declared->ref();
    if (d.empty()) continue;
    NodeP value = call->get(key);
    std::string actual;
    if (value && value->is_string) {
      actual = "Z6";
    } else if (value) {
      const Node* t = value->peek("Z1K1");
      if (t && t->is_string) actual = t->text;
      if (t && t->is_ref()) actual = t->ref();
    }
    if (actual.empty()) continue;
    if (d == actual || d == "Z1" || actual == "Z18" || actual == "Z9" || actual == "Z7") continue;
    errors.push_back(
        zo::make_error_msg("Z506", "Invalid argument type: expected " + d + ", got " + actual));
  }
  return errors;
}

std::vector<json> Interpreter::check_multilingual_text(const NodeP& z12) {
  std::vector<json> errors;
  if (!z12 || z12->is_string) return errors;
  std::set<std::string> seen;
  for (const NodeP& z11 : list_elements(z12->get("Z12K1"))) {
    if (!z11 || z11->is_string) continue;
    Envelope lang = resolve_key(z11, "Z11K1", empty_);
    if (aborted() || lang.has_error() || !lang.value || lang.value->is_string) continue;
    std::string code = text_of(lang.value->get("Z60K1"));
    if (!seen.insert(code).second) {
      errors.push_back(zo::make_error_msg(
          "Z522", "Duplicate Z11K1/language element in Z12/Multilingual text: '" + code + "'"));
    }
  }
  return errors;
}

std::vector<json> Interpreter::check_multilingual_stringset(const NodeP& z32) {
  std::vector<json> errors;
  if (!z32 || z32->is_string) return errors;
  std::set<std::string> seen;
  for (const NodeP& z31 : list_elements(z32->get("Z32K1"))) {
    if (!z31 || z31->is_string) continue;
    NodeP lang = z31->get("Z31K1");
    if (!lang || lang->is_string || !lang->has("Z60K1")) continue;
    std::string code = text_of(lang->get("Z60K1"));
    if (!seen.insert(code).second) {
      errors.push_back(zo::make_error_msg(
          "Z522",
          "Duplicate Z31K1/language element in Z32/Multilingual stringset: '" + code + "'"));
    }
  }
  return errors;
}

json Interpreter::static_validate(const json& normal_call) {
  NodeP root = Node::from_json(normal_call);
  root->set_scope(empty_);
  std::vector<NodeP> nodes;
  collect(root, nodes, 0);
  std::vector<json> errors;
  ++validator_depth_;
  for (const NodeP& node : nodes) {
    if (aborted()) break;
    std::string type = node->type_ref();
    if (!zo::is_builtin_type(type)) continue;
    std::vector<json> found;
    if (type == "Z4") {
      const Node* k1 = node->peek("Z4K1");
      std::vector<std::string> keys;
      for (const NodeP& z3 : list_elements(node->get("Z4K2"))) {
        keys.push_back(z3 && !z3->is_string ? text_of(z3->get("Z3K2")) : "");
      }
      if (k1 && k1->is_ref()) found = check_key_list(k1->ref(), keys);
    } else if (type == "Z7") {
      found = check_function_call(node);
    } else if (type == "Z8") {
      const Node* k5 = node->peek("Z8K5");
      std::vector<std::string> keys;
      for (const NodeP& z17 : list_elements(node->get("Z8K1"))) {
        keys.push_back(z17 && !z17->is_string ? text_of(z17->get("Z17K2")) : "");
      }
      if (k5 && k5->is_ref()) found = check_key_list(k5->ref(), keys);
    } else if (type == "Z12") {
      found = check_multilingual_text(node);
    } else if (type == "Z32") {
      found = check_multilingual_stringset(node);
    }
    if (found.size() > 1) {
      add_flattened(errors, zo::make_error("Z509", {zo::make_list(zo::z9("Z5"), found)}));
    } else if (found.size() == 1) {
      add_flattened(errors, found[0]);
    }
  }
  --validator_depth_;
  if (errors.empty()) return nullptr;
  if (errors.size() == 1) return errors[0];
  return zo::make_error("Z509", {zo::make_list(zo::z9("Z5"), errors)});
}

}  // namespace wf::orchestrator::engine_detail
