#pragma once
// Small helpers shared by the built-in families (builtins_*.cc): reading strings, Booleans and
// quotes out of argument values, and building Booleans, references, calls and type objects.

#include <string>
#include <utility>
#include <vector>

#include "orchestrator/engine/interpreter.h"

namespace wf::orchestrator::engine_detail {

std::string text_of(const NodeP& n);  // a string's text (bare or Z6), else ""
NodeP bool_node(bool v);              // a Z40
std::string_view bool_ref(
    const NodeP& n);  // Z40K1 reference of a Boolean (a view, valid while n is), "" otherwise
NodeP z39_node(const std::string& key);  // a Z39 key reference
NodeP unquote(const NodeP& quote);       // Z99K1 of a quote, the value itself otherwise
bool is_empty_list(const NodeP& list);   // no K1
std::string join(const std::vector<std::string>& parts, const char* sep);
NodeP type_call(const std::string& fn, const std::vector<std::pair<std::string, NodeP>>& args);
// A call {Z1K1: Z7, Z7K1: fn, K1: args[0], K2: args[1], ...} in the empty frame.
NodeP positional_call(Interpreter& in, const NodeP& fn, const std::vector<NodeP>& args);

// A lazy argument resolved and evaluated in its own scope (the empty frame when it has none).
Envelope evaluate_lazy(Interpreter& in, const NodeP& node);
// The ZID a lazy argument names: a reference as written, else the value's identity (Z4K1 of a
// type, Z50K2 of an error type) or, for a natural language, the ZID of its code. "" when none.
std::string zid_of_lazy(Interpreter& in, const NodeP& node);

// The ZID of an error's type (Z5K1): a reference, or the identity (Z50K2) of the error type
// an evaluated error shows in its place. "" when there is none.
std::string error_type_of(const NodeP& z5);

// Type objects (normal form): a Z3 key with an English label, a Z4, the Z4 of Z881(t) and of
// Z882(a, b).
NodeP make_z3(Interpreter& in, NodeP type, const std::string& key, const std::string& label);
NodeP make_z4(Interpreter& in, NodeP identity, const std::vector<NodeP>& keys);
NodeP list_z4(Interpreter& in, const NodeP& t);
NodeP pair_z4(Interpreter& in, const NodeP& a, const NodeP& b);

}  // namespace wf::orchestrator::engine_detail
