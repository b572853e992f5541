// Enumerations of ZObject references (definitions-2026): the enum type Z884, equality of its
// instances Z894 and the validator Z184. definitions-2026 gives these three functions no
// implementation; the bundled copies list Z984, Z994 and Z284 (docs/builtins.md).
//
// An enum type made by Z884(element type, references, ZID) is a Z4 whose identity is the ZID,
// with one identity key <ZID>K1 of the element type; an instance is {Z1K1: <ZID>, <ZID>K1: ref}.
#include <algorithm>

#include "orchestrator/engine/builtin_table.h"
#include "orchestrator/engine/builtins_support.h"
#include "wf/zobject/zobject.h"

namespace wf::orchestrator::engine_detail {

namespace zo = wf::zobject;

namespace {

Envelope bad(const BuiltinCall& c, const std::string& message, const NodeP& value) {
  return Envelope::err(zo::make_error(
      "Z516",
      {zo::z6(c.id + ": " + message), zo::z99(value ? value->to_json() : zo::void_value())}));
}

Envelope enum_type(const BuiltinCall& c) {
  const std::string zid = text_of(c.arg(2));
  if (!zo::is_zid(zid)) return bad(c, "the third argument must be the enum type's ZID", c.arg(2));
  auto yes = z9_node("Z41");
  NodeP key = make_z3(c.in, c.arg(0), zid + "K1", "identity");
  key->add("Z3K4", yes);
  NodeP z4 = make_z4(c.in, z9_node(zid), {key});
  z4->set("Z4K3", z9_node("Z184"));
  z4->add("Z4K4", z9_node("Z894"));
  return c.ok(z4);
}

// The one value key of an enum instance (the key that is not Z1K1), "" when there is not one.
std::string value_key(const NodeP& instance) {
  if (!instance || instance->is_string) return {};
  std::string key;
  for (const auto& e : instance->entries) {
    if (e.key == "Z1K1") continue;
    if (!key.empty()) return {};
    key = e.key;
  }
  return key;
}

Envelope same_instance(const BuiltinCall& c) {
  std::string keys[2];
  for (std::size_t i = 0; i < 2; ++i) {
    keys[i] = value_key(c.arg(i));
    if (keys[i].empty()) return bad(c, "an enum instance has one value key besides Z1K1", c.arg(i));
  }
  auto part = [&](std::size_t i, const std::string& k) { return c.arg(i)->get(k)->to_json(); };
  return c.ok(
      bool_node(part(0, "Z1K1") == part(1, "Z1K1") && part(0, keys[0]) == part(1, keys[1])));
}

// The references an enum type allows: Z884K2 of the persisted call that made it, when there
// is one (a type made inline has no list to check against).
std::vector<std::string> allowed_references(const BuiltinCall& c, const std::string& type_zid) {
  std::vector<std::string> out;
  if (!zo::is_zid(type_zid)) return out;
  const Dereferenced& d = c.in.resolver().dereference(type_zid);
  if (!d.z2) return out;
  const json& made = (*d.z2)["Z2K2"];
  if (zo::ref_id(made.value("Z7K1", json())) != "Z884" || !made.contains("Z884K2")) return out;
  for (const json& r : zo::list_items(made["Z884K2"])) out.push_back(zo::ref_id(r));
  return out;
}

// Whether a value is the object `zid` names: the reference itself, or its dereferenced value
// (eager evaluation replaces references inside objects by what they name).
bool names(const BuiltinCall& c, const NodeP& value, const std::string& zid) {
  if (c.in.named_zid(value) == zid) return true;
  if (!value || value->is_string || value->is_ref()) return false;
  Envelope d = c.in.dereference(zid);
  return !d.has_error() && d.value && d.value->to_json() == value->to_json();
}

// Z184: an instance of the enum type whose value is one of the type's references.
Envelope validate_instance(const BuiltinCall& c) {
  NodeP instance = c.arg(0);
  std::string key = value_key(instance);
  if (key.empty()) return bad(c, "an enum instance has one value key besides Z1K1", instance);
  NodeP type = c.arg(1);
  const Node* ident = type && !type->is_string ? type->peek("Z4K1") : nullptr;
  std::vector<std::string> allowed = allowed_references(c, ident ? ident->ref() : "");
  NodeP value = instance->get(key);
  if (allowed.empty()) return c.ok(instance);
  for (const std::string& zid : allowed) {
    if (names(c, value, zid)) return c.ok(instance);
  }
  return bad(c, "the value of " + key + " is not one of the values of enum type " + ident->ref(),
             instance);
}

}  // namespace

void register_enum_builtins(BuiltinTable& t) {
  t.add("Z984", {.arity = 3, .fn = enum_type});
  t.add("Z994", {.arity = 2, .fn = same_instance});
  t.add("Z284", {.arity = 2, .fn = validate_instance});
}

}  // namespace wf::orchestrator::engine_detail
