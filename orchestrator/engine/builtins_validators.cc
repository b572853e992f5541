// Validators (builtins.md §2): Z201-Z299 answer their input; Z204, Z207, Z208, Z212 and Z232
// check something first (the checks are shared with static validation).
#include "orchestrator/engine/builtin_table.h"
#include "orchestrator/engine/builtins_support.h"
#include "wf/zobject/zobject.h"

namespace wf::orchestrator::engine_detail {

namespace zo = wf::zobject;

namespace {

// The keys (Zn of `key`) of every element of a list of objects.
std::vector<std::string> keys_of(Interpreter& in, const NodeP& list, const char* key) {
  std::vector<std::string> keys;
  for (const NodeP& e : in.list_elements(list)) {
    keys.push_back(e && !e->is_string ? text_of(e->get(key)) : "");
  }
  return keys;
}

std::vector<json> type_keys(Interpreter& in, const NodeP& z4) {
  const Node* k1 = z4->peek("Z4K1");
  if (!k1 || !k1->is_ref()) return {};
  return in.check_key_list(k1->ref(), keys_of(in, z4->get("Z4K2"), "Z3K2"));
}

std::vector<json> function_keys(Interpreter& in, const NodeP& z8) {
  const Node* k5 = z8->peek("Z8K5");
  if (!k5 || !k5->is_ref()) return {};
  return in.check_key_list(k5->ref(), keys_of(in, z8->get("Z8K1"), "Z17K2"));
}

std::vector<json> checks(const BuiltinCall& c, const NodeP& target) {
  const bool object = target && !target->is_string;
  if (c.id == "Z204" && object) return type_keys(c.in, target);
  if (c.id == "Z208" && object) return function_keys(c.in, target);
  if (c.id == "Z207") return c.in.check_function_call(target);
  if (c.id == "Z212") return c.in.check_multilingual_text(target);
  if (c.id == "Z232") return c.in.check_multilingual_stringset(target);
  return {};
}

Envelope validate(const BuiltinCall& c) {
  NodeP input = c.arg(0);
  NodeP target =
      input && !input->is_string && input->type_ref() == "Z99" ? input->get("Z99K1") : input;
  std::vector<json> errors = checks(c, target);
  if (errors.size() == 1) return Envelope::err(errors[0]);
  if (errors.size() > 1) {
    return Envelope::err(zo::make_error("Z509", {zo::make_list(zo::z9("Z5"), errors)}));
  }
  return c.ok(input);
}

}  // namespace

void register_validator_builtins(BuiltinTable& t) {
  for (int n = 200; n <= 299; ++n) t.add("Z" + std::to_string(n), {.arity = 1, .fn = validate});
}

}  // namespace wf::orchestrator::engine_detail
