// Core built-ins (builtins.md §1): identity, if, keys of objects, reification, metadata,
// quotes, dereferencing, Booleans and languages.
#include <functional>

#include "orchestrator/engine/builtin_table.h"
#include "orchestrator/engine/builtins_support.h"
#include "orchestrator/engine/definitions.h"
#include "orchestrator/engine/run_metadata.h"
#include "wf/zobject/zobject.h"

namespace wf::orchestrator::engine_detail {

namespace zo = wf::zobject;

namespace {

NodeP pair_type() {
  return type_call("Z882", {{"Z882K1", z9_node("Z39")}, {"Z882K2", z9_node("Z1")}});
}

std::string key_of(const NodeP& z39) {
  return z39 && !z39->is_string ? text_of(z39->get("Z39K1")) : "";
}

Envelope identity(const BuiltinCall& c) {
  return c.ok(c.arg(0));
}

// Z902 (if): K2 and K3 arrive unevaluated; the chosen branch is resolved and evaluated here.
Envelope if_then_else(const BuiltinCall& c) {
  return evaluate_lazy(c.in, bool_ref(c.arg(0)) == "Z41" ? c.arg(1) : c.arg(2));
}

Envelope value_by_key(const BuiltinCall& c) {
  std::string k = key_of(c.arg(0));
  NodeP obj = c.arg(1);
  if (!obj || obj->is_string || !obj->has(k)) {
    return Envelope::err(zo::make_error_msg("Z507", "Object did not contain key \"" + k + "\""));
  }
  return c.ok(obj->get(k));
}

Envelope values_by_keys(const BuiltinCall& c) {
  NodeP obj = c.arg(1);
  std::vector<NodeP> pairs;
  std::vector<std::string> missing;
  for (const NodeP& key : c.in.list_elements(c.arg(0))) {
    std::string k = key_of(key);
    if (!obj || obj->is_string || !obj->has(k)) {
      missing.push_back(k);
      continue;
    }
    auto pair = Node::make_object();
    pair->add("Z1K1", pair_type());
    pair->add("K1", key);
    pair->add("K2", obj->get(k));
    pairs.push_back(pair);
  }
  if (!missing.empty()) {
    return Envelope::err(
        zo::make_error_msg("Z507", "Object did not contain key(s): " + join(missing, ",")));
  }
  auto map = Node::make_object();
  map->add("Z1K1", type_call("Z883", {{"Z883K1", z9_node("Z39")}, {"Z883K2", z9_node("Z1")}}));
  map->add("K1", c.in.make_list(pair_type(), pairs));
  return c.ok(map);
}

NodeP reify_node(Interpreter& in, const NodeP& n) {
  if (!n) return z6_node("");
  if (n->is_string) return z6_node(n->text);
  std::vector<NodeP> pairs;
  for (std::size_t i = 0; i < n->entries.size(); ++i) {
    const std::string key = n->entries[i].key;
    auto pair = Node::make_object();
    pair->add("Z1K1", pair_type());
    pair->add("K1", z39_node(key));
    pair->add("K2", reify_node(in, n->get(key)));
    pairs.push_back(pair);
  }
  return in.make_list(pair_type(), pairs);
}

Envelope reify(const BuiltinCall& c) {
  return c.ok(reify_node(c.in, c.arg(0)));
}

NodeP abstract_node(Interpreter& in, const NodeP& n) {
  if (!n || n->is_string) return n;
  if (n->is_z6()) return str_node(n->str());
  const Node* t = n->peek("Z1K1");
  bool listy = t && !t->is_string && !t->is_ref();
  if (!listy) return n;
  auto obj = Node::make_object();
  for (const NodeP& pair : in.list_elements(n)) {
    if (!pair || pair->is_string) continue;
    NodeP k = pair->get("K1");
    std::string key = k && !k->is_string ? text_of(k->get("Z39K1")) : text_of(k);
    obj->set(key, abstract_node(in, pair->get("K2")));
  }
  return obj;
}

Envelope abstract(const BuiltinCall& c) {
  return c.ok(abstract_node(c.in, c.arg(0)));
}

// Z920: the value is void; the metadata map holds the one pair.
Envelope add_metadata(const BuiltinCall& c) {
  json value = c.arg(1) ? c.arg(1)->to_json() : zo::void_value();
  json meta = zo::empty_metadata_map();
  zo::map_set(meta, text_of(c.arg(0)), value);
  return Envelope{z9_node("Z24"), std::move(meta)};
}

// Z923: orchestrates the quoted call on its own and answers its envelope as a pair.
Envelope envelope_of(const BuiltinCall& c) {
  NodeP inner = unquote(c.arg(0));
  RunStart start = run_start();
  json env = c.in.orchestrate(inner ? inner->to_json() : json(nullptr), c.in.do_validate());
  add_orchestration_metadata(env, start);
  auto pair = Node::make_object();
  pair->add("Z1K1", type_call("Z882", {{"Z882K1", z9_node("Z1")}, {"Z882K2", z9_node("Z1")}}));
  pair->add("K1", Node::from_json(env["Z22K1"]));
  pair->add("K2", Node::from_json(env["Z22K2"]));
  return c.ok(pair);
}

// Z928: the persistent object of a ZID, bundled first, else from the resolver.
Envelope persistent_object(const BuiltinCall& c) {
  NodeP inner = unquote(c.arg(0));
  std::string zid = inner ? (inner->is_string ? inner->text : inner->ref()) : "";
  if (auto z2 = Definitions::instance().original(zid)) return c.ok(Node::from_shared(*z2));
  const Dereferenced& d = c.in.resolver().dereference(zid);
  if (!d.failure.empty()) {
    json e = zo::make_error("Z500", {});
    e["Z5K2"]["Z500K1"] = "Error thrown by dereference(): " + d.failure + ".";
    return Envelope::err(e);
  }
  if (!d.z2) return Envelope::err(d.error);
  return c.ok(Node::from_shared(*d.z2));
}

Envelope unquoted(const BuiltinCall& c) {
  return c.ok(unquote(c.arg(0)));
}

Envelope same_boolean(const BuiltinCall& c) {
  return c.ok(bool_node(bool_ref(c.arg(0)) == bool_ref(c.arg(1))));
}

// Z960: the Z60 of a language code; an unknown code answers a Z525 error as the value.
Envelope language_of_code(const BuiltinCall& c) {
  std::string code = text_of(c.arg(0));
  std::string zid = Definitions::instance().language_zid(code);
  if (zid.empty()) {
    return c.ok(Node::from_json(zo::make_error_msg("Z525", "Invalid language code: " + code)));
  }
  Envelope d = c.in.dereference(zid);
  if (d.has_error()) return d;
  return c.ok(d.value);
}

}  // namespace

void register_core_builtins(BuiltinTable& t) {
  t.add("Z901", {.arity = 1, .fn = identity});
  t.add("Z902", {.arity = 3, .lazy = lazy_args({2, 3}), .fn = if_then_else});
  t.add("Z903", {.arity = 2, .fn = value_by_key});
  t.add("Z904", {.arity = 2, .fn = values_by_keys});
  t.add("Z905", {.arity = 1, .fn = reify});
  t.add("Z908", {.arity = 1, .fn = abstract});
  t.add("Z920", {.arity = 2, .fn = add_metadata});
  t.add("Z923", {.arity = 1, .fn = envelope_of});
  t.add("Z928", {.arity = 1, .fn = persistent_object});
  t.add("Z931", {.arity = 2, .fn = unquoted});
  t.add("Z944", {.arity = 2, .fn = same_boolean});
  t.add("Z960", {.arity = 1, .fn = language_of_code});
  t.add("Z999", {.arity = 1, .fn = unquoted});
}

}  // namespace wf::orchestrator::engine_detail
