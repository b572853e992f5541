// Generic type constructors: typed list Z881, pair Z882, map Z883.
#include <memory>
#include <mutex>
#include <unordered_map>

#include "orchestrator/engine/builtin_table.h"
#include "orchestrator/engine/builtins_support.h"
#include "wf/zobject/zobject.h"

namespace wf::orchestrator::engine_detail {

namespace zo = wf::zobject;

namespace {

// Process-wide templates of Z881(Zn) as a Z4 (normal form), by ZID. Bounded: a hostile stream
// of new ZIDs stops adding templates instead of growing memory.
std::mutex list_types_mu;
std::unordered_map<std::string, std::shared_ptr<const json>> list_types;
constexpr std::size_t kMaxListTypes = 4096;

std::shared_ptr<const json> list_type_template(const std::string& zid) {
  std::lock_guard lock(list_types_mu);
  auto it = list_types.find(zid);
  return it == list_types.end() ? nullptr : it->second;
}

std::shared_ptr<const json> remember_list_type(const std::string& zid, json z4) {
  auto value = std::make_shared<const json>(std::move(z4));
  std::lock_guard lock(list_types_mu);
  if (list_types.size() >= kMaxListTypes) return value;  // still valid for this request
  return list_types.emplace(zid, value).first->second;
}

// Typed-list types of a plain reference (the common case: every list node's Z1K1 is Z881(Zn))
// come from a per-ZID template: a fresh lazy tree with the same content, without building ~100
// nodes each time.
Envelope typed_list(const BuiltinCall& c) {
  const NodeP& t = c.arg(0);
  std::string zid = t ? (t->is_string ? t->text : t->ref()) : std::string();
  if (!zid.empty() && zo::is_zid(zid)) {
    std::shared_ptr<const json> z4 = list_type_template(zid);
    if (!z4) z4 = remember_list_type(zid, list_z4(c.in, t)->to_json());
    c.in.keep(z4);  // the lazy tree points into it
    return c.ok(Node::from_shared(*z4));
  }
  return c.ok(list_z4(c.in, t));
}

Envelope typed_pair(const BuiltinCall& c) {
  return c.ok(pair_z4(c.in, c.arg(0), c.arg(1)));
}

// Z883: keys must be strings (Z6) or key references (Z39).
Envelope typed_map(const BuiltinCall& c) {
  NodeP key_type = c.arg(0);
  NodeP ident = key_type;  // identity of the key type: follow Z4K1 while present
  for (int guard = 0; guard < 32 && ident && !ident->is_string && ident->has("Z4K1"); ++guard) {
    ident = ident->get("Z4K1");
  }
  std::string kid = ident ? (ident->is_string ? ident->text : ident->ref()) : "";
  if (kid != "Z6" && kid != "Z39") {
    return Envelope::err(
        zo::make_error("Z516", {zo::z6("Z883K1"), key_type ? key_type->to_json() : json(nullptr)}));
  }
  NodeP elements = list_z4(c.in, pair_z4(c.in, key_type, c.arg(1)));
  return c.ok(make_z4(c.in, type_call("Z883", {{"Z883K1", key_type}, {"Z883K2", c.arg(1)}}),
                      {make_z3(c.in, elements, "K1", "elements")}));
}

}  // namespace

void register_type_builtins(BuiltinTable& t) {
  t.add("Z981", {.arity = 1, .fn = typed_list});
  t.add("Z982", {.arity = 2, .fn = typed_pair});
  t.add("Z983", {.arity = 2, .fn = typed_map});
}

}  // namespace wf::orchestrator::engine_detail
