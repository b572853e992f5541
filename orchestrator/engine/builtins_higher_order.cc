// Functions over lists that take a function (definitions-2026): map Z873, filter Z872, reduce
// Z876. The function is called with positional arguments (K1, K2), as Z889 calls its equality.
#include "orchestrator/engine/builtin_table.h"
#include "orchestrator/engine/builtins_support.h"
#include "wf/zobject/zobject.h"

namespace wf::orchestrator::engine_detail {

namespace zo = wf::zobject;

namespace {

Envelope apply(const BuiltinCall& c, const std::vector<NodeP>& args) {
  return c.in.execute(positional_call(c.in, c.arg(0), args), c.in.empty_frame(), false);
}

// The item type of a list value (its Z881K1), Z1 when it has none.
NodeP item_type(const NodeP& list) {
  NodeP t = list && !list->is_string ? list->get("Z1K1") : nullptr;
  NodeP k = t && t->is_call() ? t->get("Z881K1") : nullptr;
  return k ? k : z9_node("Z1");
}

// The declared return type of the function argument when it is a reference, else Z1.
NodeP return_type(const NodeP& z8) {
  const Node* k2 = z8 && !z8->is_string ? z8->peek("Z8K2") : nullptr;
  return k2 && k2->is_ref() ? z9_node(k2->ref()) : z9_node("Z1");
}

// Z873: the list of the function's values on each element, typed by the function's return type.
Envelope map_list(const BuiltinCall& c) {
  std::vector<NodeP> out;
  for (const NodeP& e : c.in.list_elements(c.arg(1))) {
    Envelope r = apply(c, {e});
    if (r.has_error() || c.in.aborted()) return r;
    out.push_back(r.value ? r.value : z9_node("Z24"));
  }
  return c.ok(c.in.make_list(return_type(c.arg(0)), out));
}

// Z872: the elements on which the function answers true, in order; the function must answer
// Booleans.
Envelope filter_list(const BuiltinCall& c) {
  std::vector<NodeP> out;
  for (const NodeP& e : c.in.list_elements(c.arg(1))) {
    Envelope r = apply(c, {e});
    if (r.has_error() || c.in.aborted()) return r;
    const std::string_view b = bool_ref(r.value);  // r.value holds it
    if (!r.value || r.value->type_ref() != "Z40" || b.empty()) {
      return Envelope::err(
          zo::make_error("Z516", {zo::z6("Z872K1: the filter function must return a Boolean (Z40)"),
                                  zo::z99(r.value ? r.value->to_json() : zo::void_value())}));
    }
    if (b == "Z41") out.push_back(e);
  }
  return c.ok(c.in.make_list(item_type(c.arg(1)), out));
}

// Z876: folds the list from the left: acc = f(acc, element), starting from the initial object.
Envelope reduce_list(const BuiltinCall& c) {
  NodeP acc = c.arg(2);
  for (const NodeP& e : c.in.list_elements(c.arg(1))) {
    Envelope r = apply(c, {acc, e});
    if (r.has_error() || c.in.aborted()) return r;
    acc = r.value ? r.value : z9_node("Z24");
  }
  return c.ok(acc);
}

}  // namespace

void register_higher_order_builtins(BuiltinTable& t) {
  t.add("Z972", {.arity = 2, .fn = filter_list});
  t.add("Z973", {.arity = 2, .fn = map_list});
  t.add("Z976", {.arity = 3, .fn = reduce_list});
}

}  // namespace wf::orchestrator::engine_detail
