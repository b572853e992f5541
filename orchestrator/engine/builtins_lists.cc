// List and pair built-ins: prepend, head, tail, is empty, first, second, list equality.
#include "orchestrator/engine/builtin_table.h"
#include "orchestrator/engine/builtins_support.h"
#include "wf/zobject/zobject.h"

namespace wf::orchestrator::engine_detail {

namespace zo = wf::zobject;

namespace {

// The element type of a typed list (Z881(T) as a call or as a Z4), Z1 when unknown.
NodeP item_type_of(const NodeP& list) {
  if (!list || list->is_string) return z9_node("Z1");
  NodeP t = list->get(common_keys().z1k1);
  if (t && t->is_call()) return t->get("Z881K1");
  if (t && !t->is_string && same_text(t->type_ref_view(), "Z4")) {
    NodeP k1 = t->get("Z4K1");
    if (k1 && k1->is_call()) return k1->get("Z881K1");
  }
  return z9_node("Z1");
}

Envelope prepend(const BuiltinCall& c) {
  NodeP list = c.arg(1);
  NodeP item_type = item_type_of(list);
  if (!item_type) item_type = z9_node("Z1");
  const CommonKeys& keys = common_keys();
  auto node = Node::make_object();
  node->entries.reserve(3);
  node->add_list_type(item_type);
  node->add(keys.k1, c.arg(0));
  node->add(keys.k2, list);
  return c.ok(node);
}

Envelope head(const BuiltinCall& c) {
  if (is_empty_list(c.arg(0))) {
    return Envelope::err(zo::make_error_msg("Z506", "An empty list has no head."));
  }
  return c.ok(c.arg(0)->get(common_keys().k1));
}

Envelope tail(const BuiltinCall& c) {
  if (is_empty_list(c.arg(0))) {
    return Envelope::err(zo::make_error_msg("Z506", "An empty list has no tail."));
  }
  return c.ok(c.arg(0)->get(common_keys().k2));
}

Envelope is_empty(const BuiltinCall& c) {
  return c.ok(bool_node(is_empty_list(c.arg(0))));
}

Envelope pair_member(const BuiltinCall& c, const char* k) {
  NodeP p = c.arg(0);
  if (!p || p->is_string || !p->has(k)) {
    return Envelope::err(
        zo::make_error_msg("Z507", std::string("Object did not contain key \"") + k + "\""));
  }
  return c.ok(p->get(k));
}

Envelope first(const BuiltinCall& c) {
  return pair_member(c, "K1");
}
Envelope second(const BuiltinCall& c) {
  return pair_member(c, "K2");
}

// Z989: element-wise equality through the given function, which must answer Booleans.
Envelope same_lists(const BuiltinCall& c) {
  NodeP a = c.arg(0);
  NodeP b = c.arg(1);
  while (!is_empty_list(a) && !is_empty_list(b)) {
    NodeP call = positional_call(c.in, c.arg(2), {a->get("K1"), b->get("K1")});
    Envelope r = c.in.execute(call, c.in.empty_frame(), false);
    if (r.has_error()) return r;
    const std::string_view v = bool_ref(r.value);  // r.value holds it
    if (!r.value || r.value->type_ref() != "Z40" || v.empty()) {
      return Envelope::err(
          zo::make_error_msg("Z516", "Provided equality function did not return Boolean."));
    }
    if (v != "Z41") return c.ok(bool_node(false));
    a = a->get("K2");
    b = b->get("K2");
  }
  return c.ok(bool_node(is_empty_list(a) && is_empty_list(b)));
}

}  // namespace

void register_list_builtins(BuiltinTable& t) {
  t.add("Z910", {.arity = 2, .fn = prepend});
  t.add("Z911", {.arity = 1, .fn = head});
  t.add("Z912", {.arity = 1, .fn = tail});
  t.add("Z913", {.arity = 1, .fn = is_empty});
  t.add("Z921", {.arity = 1, .fn = first});
  t.add("Z922", {.arity = 1, .fn = second});
  t.add("Z989", {.arity = 3, .fn = same_lists});
}

}  // namespace wf::orchestrator::engine_detail
