// Errors as values (definitions-2026): try-catch Z850, throw Z851, is error type Z852, get the
// error of a call Z853, debug log Z854, and the type of an error type's payload Z885.
#include <expected>

#include "orchestrator/engine/builtin_table.h"
#include "orchestrator/engine/builtins_support.h"
#include "wf/zobject/zobject.h"

namespace wf::orchestrator::engine_detail {

namespace zo = wf::zobject;

namespace {

// The Z5 an error type argument must name: its ZID, or a Z5 saying how to name it.
std::expected<std::string, json> error_type_arg(const BuiltinCall& c, std::size_t i) {
  std::string zid = zid_of_lazy(c.in, c.arg(i));
  if (zo::is_zid(zid)) return zid;
  return std::unexpected(
      zo::make_error("Z516", {zo::z6(c.id + " argument " + std::to_string(i + 1) +
                                     ": name the error type by its ZID (e.g. \"Z506\")"),
                              c.arg(i) ? zo::z99(c.arg(i)->to_json()) : zo::void_value()}));
}

// Z850: the call's value; when it fails with the given error type, the handler's value.
Envelope try_catch(const BuiltinCall& c) {
  Envelope r = evaluate_lazy(c.in, c.arg(0));
  if (!r.has_error() || c.in.aborted()) return r;
  auto wanted = error_type_arg(c, 1);
  if (!wanted) return Envelope::err(wanted.error());
  if (error_type_of(Node::from_json(r.error())) != *wanted) return r;
  return evaluate_lazy(c.in, c.arg(2));
}

// Z851: fails with an error of the given type whose payload keys <type>K1.. are the parameters.
Envelope throw_error(const BuiltinCall& c) {
  auto type = error_type_arg(c, 0);
  if (!type) return Envelope::err(type.error());
  std::vector<json> params;
  for (const NodeP& p : c.in.list_elements(c.arg(1))) params.push_back(p ? p->to_json() : json());
  return Envelope::err(zo::make_error(*type, params));
}

Envelope is_error_type(const BuiltinCall& c) {
  auto wanted = error_type_arg(c, 1);
  if (!wanted) return Envelope::err(wanted.error());
  return c.ok(bool_node(error_type_of(c.arg(0)) == *wanted));
}

// Z853: a pair (Z882(Z40, Z1)): K1 true and K2 the error when the call failed, K1 false and K2
// the call's value otherwise.
Envelope error_of_call(const BuiltinCall& c) {
  Envelope r = evaluate_lazy(c.in, c.arg(0));
  if (c.in.aborted()) return r;
  const bool failed = r.has_error();
  auto pair = Node::make_object();
  pair->add("Z1K1", type_call("Z882", {{"Z882K1", z9_node("Z40")}, {"Z882K2", z9_node("Z1")}}));
  pair->add("K1", bool_node(failed));
  pair->add("K2", failed ? Node::from_json(r.error()) : (r.value ? r.value : z9_node("Z24")));
  return c.ok(pair);
}

// Debug lines kept per envelope, as Wikifunctions.Debug keeps them in the evaluator.
constexpr std::size_t kMaxDebugEntries = 100;
constexpr std::size_t kMaxDebugChars = 16384;
constexpr const char* kDebugTruncated = "... (debug log truncated)";

// A lazy call run as it is, keeping its envelope's metadata (resolution keeps only the value);
// any other lazy value evaluated.
Envelope run_keeping_metadata(const BuiltinCall& c, const NodeP& node) {
  if (!node || !node->is_call()) return evaluate_lazy(c.in, node);
  Envelope r = c.in.execute(node, node->scope ? node->scope : c.in.empty_frame(), false);
  if (r.has_error() || !r.value) return r;
  Envelope ev = c.in.eager(r.value);
  return ev.has_error() ? ev : r;
}

// Z854: the call's envelope with the line appended to its metadata's executorDebugLogs.
Envelope add_debug_log(const BuiltinCall& c) {
  Envelope r = run_keeping_metadata(c, c.arg(0));
  if (c.in.aborted()) return r;
  const json* old =
      r.meta && zo::is_map(*r.meta) ? zo::map_get(*r.meta, "executorDebugLogs") : nullptr;
  std::vector<json> items = old ? zo::list_items(*old) : std::vector<json>{};
  auto text = [](const json& z6) {
    return z6.is_string() ? z6.get<std::string>() : z6.is_object() ? z6.value("Z6K1", "") : "";
  };
  std::size_t chars = 0;
  for (const json& i : items) chars += text(i).size();
  const std::string line = text_of(c.arg(1));
  const bool truncated = !items.empty() && text(items.back()) == kDebugTruncated;
  if (!truncated) {
    const bool fits = items.size() < kMaxDebugEntries && chars + line.size() <= kMaxDebugChars;
    items.push_back(zo::z6(fits ? line : kDebugTruncated));
  }
  if (!r.meta || !zo::is_map(*r.meta)) r.meta = zo::empty_metadata_map();
  zo::map_set(*r.meta, "executorDebugLogs", zo::make_list(zo::z9("Z6"), items));
  return r;
}

// Z885: the type of an error type's payload, with the error type's keys (Z50K1).
Envelope error_type_to_type(const BuiltinCall& c) {
  auto zid = error_type_arg(c, 0);
  if (!zid) return Envelope::err(zid.error());
  Envelope z50 = c.in.dereference(*zid);
  if (z50.has_error()) return z50;
  std::vector<NodeP> keys = z50.value && !z50.value->is_string
                                ? c.in.list_elements(z50.value->get("Z50K1"))
                                : std::vector<NodeP>{};
  auto z4 = Node::make_object();
  z4->add("Z1K1", z9_node("Z4"));
  z4->add("Z4K1", type_call("Z885", {{"Z885K1", z9_node(*zid)}}));
  z4->add("Z4K2", c.in.make_list(z9_node("Z3"), keys));
  z4->add("Z4K3", z9_node("Z101"));
  return c.ok(z4);
}

}  // namespace

void register_error_builtins(BuiltinTable& t) {
  t.add("Z950", {.arity = 3, .lazy = lazy_args({1, 2, 3}), .fn = try_catch});
  t.add("Z951", {.arity = 2, .lazy = lazy_args({1}), .fn = throw_error});
  t.add("Z952", {.arity = 2, .lazy = lazy_args({2}), .fn = is_error_type});
  t.add("Z953", {.arity = 1, .lazy = lazy_args({1}), .fn = error_of_call});
  t.add("Z954", {.arity = 2, .lazy = lazy_args({1}), .fn = add_debug_log});
  t.add("Z985", {.arity = 1, .lazy = lazy_args({1}), .fn = error_type_to_type});
}

}  // namespace wf::orchestrator::engine_detail
