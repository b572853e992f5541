// Validators (builtins.md §2): they answer their input; Z204, Z207, Z208, Z212, Z232 and Z289
// check something first (the first five share their checks with static validation).
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

// Z289: an HTML fragment's text (Z89K1) is a string.
std::vector<json> html_fragment(const NodeP& z89) {
  NodeP text = z89 && !z89->is_string ? z89->get("Z89K1") : nullptr;
  if (text && (text->is_string || text->is_z6())) return {};
  json quoted = zo::z99(z89 ? z89->to_json() : zo::void_value());
  json key = {{"Z1K1", zo::z9("Z39")}, {"Z39K1", zo::z6("Z89K1")}};
  if (!text) return {zo::make_error("Z511", {key, quoted})};
  return {zo::make_error("Z526", {key, zo::make_error("Z533", {quoted})})};
}

std::vector<json> checks(const BuiltinCall& c, const NodeP& target) {
  const bool object = target && !target->is_string;
  if (c.id == "Z204" && object) return type_keys(c.in, target);
  if (c.id == "Z208" && object) return function_keys(c.in, target);
  if (c.id == "Z207") return c.in.check_function_call(target);
  if (c.id == "Z212") return c.in.check_multilingual_text(target);
  if (c.id == "Z232") return c.in.check_multilingual_stringset(target);
  if (c.id == "Z289") return html_fragment(target);
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

// The validators' built-in implementations of the 2023 and 2026 definitions.
constexpr const char* kValidators[] = {
    "Z201", "Z202", "Z203", "Z204", "Z205", "Z206", "Z207", "Z208", "Z209", "Z210", "Z211",
    "Z212", "Z214", "Z216", "Z217", "Z218", "Z220", "Z221", "Z222", "Z223", "Z231", "Z232",
    "Z239", "Z240", "Z250", "Z260", "Z261", "Z280", "Z286", "Z289", "Z299"};

void register_validator_builtins(BuiltinTable& t) {
  for (const char* zid : kValidators) t.add(zid, {.arity = 1, .fn = validate});
}

}  // namespace wf::orchestrator::engine_detail
