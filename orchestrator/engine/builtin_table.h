#pragma once
// The built-in functions as one table: ZID of the built-in implementation (Z14K4) -> how many
// arguments it takes, which of them it receives unevaluated, and the native function. Each
// family of built-ins lives in its own builtins_<family>.cc and declares its entries in one
// register_<family>_builtins(BuiltinTable&); builtin_table() runs every family's registration
// once (the list is kFamilies in builtin_table.cc: a new family adds one line there).

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "orchestrator/engine/interpreter.h"

namespace wf::orchestrator::engine_detail {

// One invocation of a built-in. `args` are the call's arguments sorted by argument name (K1,
// K2, ...), padded with null up to the declared arity; lazy ones are unevaluated. A view: the
// caller's storage (a vector, or execute_builtin's array on its stack) outlives the call.
struct BuiltinCall {
  Interpreter& in;
  const std::string& id;
  std::span<const NodeP> args;

  NodeP arg(std::size_t i) const { return i < args.size() ? args[i] : nullptr; }
  // A successful result; a value without a scope gets the empty frame. Not a shared node
  // (Node::set_scope): a Boolean, a code point, a short string object are read by every thread,
  // and writing this request's frame into one was a data race (Z811 of a list of them).
  Envelope ok(NodeP v) const {
    if (v && !v->scope) v->set_scope(in.empty_frame());
    return Envelope::ok(std::move(v));
  }
};

using BuiltinFn = Envelope (*)(const BuiltinCall&);

struct BuiltinSpec {
  std::size_t arity = 0;   // number of arguments (the Z8K1 of the function it implements)
  std::uint32_t lazy = 0;  // bit i set: argument i (0-based, in name order) is passed unevaluated
  BuiltinFn fn = nullptr;

  bool is_lazy(std::size_t i) const { return i < 32 && (lazy >> i & 1U) != 0; }
};

// The lazy mask of the given 1-based argument positions: lazy_args({2, 3}) = K2 and K3.
constexpr std::uint32_t lazy_args(std::initializer_list<unsigned> positions) {
  std::uint32_t mask = 0;
  for (unsigned p : positions) mask |= p >= 1 && p <= 32 ? 1U << (p - 1) : 0U;
  return mask;
}

class BuiltinTable {
 public:
  // Declares one built-in. A ZID declared twice, a null function or a lazy bit beyond the
  // arity is a programming error: std::logic_error naming the ZID (raised at start-up, when
  // the table is built, never on a request).
  void add(std::string zid, BuiltinSpec spec);
  const BuiltinSpec* find(std::string_view zid) const;
  std::vector<std::string> zids() const;  // sorted, for tests and docs

 private:
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, BuiltinSpec, Hash, std::equal_to<>> specs_;
};

// Every family registered, built on first use (thread-safe) and read-only afterwards.
const BuiltinTable& builtin_table();

// The families (one file each).
void register_core_builtins(BuiltinTable& table);          // builtins_core.cc
void register_string_builtins(BuiltinTable& table);        // builtins_strings.cc
void register_list_builtins(BuiltinTable& table);          // builtins_lists.cc
void register_type_builtins(BuiltinTable& table);          // builtins_types.cc
void register_validator_builtins(BuiltinTable& table);     // builtins_validators.cc
void register_error_builtins(BuiltinTable& table);         // builtins_errors.cc
void register_higher_order_builtins(BuiltinTable& table);  // builtins_higher_order.cc
void register_text_builtins(BuiltinTable& table);          // builtins_text.cc
void register_enum_builtins(BuiltinTable& table);          // builtins_enums.cc
void register_wikidata_builtins(BuiltinTable& table);      // builtins_wikidata.cc

}  // namespace wf::orchestrator::engine_detail
