// The table of built-ins: every family's registration, run once.
#include "orchestrator/engine/builtin_table.h"

#include <algorithm>
#include <stdexcept>

namespace wf::orchestrator::engine_detail {

void BuiltinTable::add(std::string zid, BuiltinSpec spec) {
  if (spec.fn == nullptr) throw std::logic_error("built-in " + zid + " has no function");
  if (spec.arity < 32 && (spec.lazy >> spec.arity) != 0) {
    throw std::logic_error("built-in " + zid + " marks an argument beyond its arity as lazy");
  }
  if (!specs_.emplace(zid, spec).second) {
    throw std::logic_error("built-in " + zid + " is declared twice; keep one declaration");
  }
}

const BuiltinSpec* BuiltinTable::find(std::string_view zid) const {
  auto it = specs_.find(zid);
  return it == specs_.end() ? nullptr : &it->second;
}

std::vector<std::string> BuiltinTable::zids() const {
  std::vector<std::string> out;
  out.reserve(specs_.size());
  for (const auto& [zid, spec] : specs_) out.push_back(zid);
  std::sort(out.begin(), out.end());
  return out;
}

namespace {

using Family = void (*)(BuiltinTable&);
// One line per family (builtin_table.h); a new family adds its registration here.
// clang-format off
constexpr Family kFamilies[] = {
    register_core_builtins,
    register_string_builtins,
    register_list_builtins,
    register_type_builtins,
    register_validator_builtins,
    register_error_builtins,
    register_higher_order_builtins,
    register_text_builtins,
    register_enum_builtins,
    register_wikidata_builtins,
};
// clang-format on

}  // namespace

const BuiltinTable& builtin_table() {
  static const BuiltinTable table = [] {
    BuiltinTable t;
    for (Family family : kFamilies) family(t);
    return t;
  }();
  return table;
}

}  // namespace wf::orchestrator::engine_detail
