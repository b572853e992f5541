#pragma once
// An evaluate request's JSON text read straight into the engine's nodes: no JSON tree first
// (issue 9; bench/README.md "The nest, fifth pass"). Only the usual request is read here: a body
// object with "zobject" (a valid MIXED function call within the depth limits), optionally
// "doValidate" and "resultCache" as true or false, in plain JSON (strings of printable ASCII
// without escapes, no numbers, no duplicate keys), at most 16 KiB, no list longer than 64
// elements. Anything else gives nullopt and the caller
// takes the general path (the JSON tree, Node::from_canonical), which gives every error, refusal
// and answer it gave before: this reader only ever accepts what that path would take the same way.
//
// The nodes are what Node::from_canonical of the parsed zobject gives once every part of it is
// read: the normal form, objects' entries in key order (as nlohmann's map has them), a list node
// per cell with its implied Z881 type, interned references and strings where canonical_node makes
// them (request_nodes_test compares the two on every request of the corpora).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "orchestrator/engine/node.h"

namespace wf::orchestrator::engine_detail {

struct RequestLimits {
  int max_json_depth = 128;     // nesting of the body's arrays and objects (the body is 1)
  int max_zobject_depth = 128;  // zobject::depth of the zobject (a string is one level)
};

// What the request's string literals say about where its evaluation may run (routes.cc places it
// on the event loop or the CPU threads), counted while it is read: the same counts and verdicts
// as a scan of every string literal of the body's text gives (keys and values alike).
struct BodyLiterals {
  int calls = 0;      // "Z7" literals
  int not_local = 0;  // reference-like literals that are not a bundled built-in (served_json)
  // A literal that sends the call off the loop whatever else it holds: inline code ("Z14K3",
  // "Z16K..."), or "doValidate" anywhere but as the body's key with the value false.
  bool unusual = false;
};

struct ParsedCall {
  NodeP zobject;  // the call, in normal form (its root an object)
  bool do_validate = false;
  bool result_cache = true;  // false: the request opted out ("resultCache": false)
  // The function the call names (Z7K1 as a string, or the string Z9K1 of an object), as
  // EngineImpl::called_function reads the JSON; "" otherwise.
  std::string function;
  // The list nodes made from JSON arrays (their first cells): called_functions walks them as
  // the arrays they were.
  std::vector<const Node*> arrays;
  std::string_view body;  // the request's text (alive while the call runs)
  BodyLiterals literals;
};

// The request in `body` as nodes, or nullopt when it is not the usual one (see above).
std::optional<ParsedCall> parse_call(std::string_view body, const RequestLimits& limits);

// The JSON tree of the parsed request's body, for the rare paths that show the input as sent
// (an exception's Z507 quotes it): the body was plain JSON, so this never fails.
nlohmann::json request_json(const ParsedCall& call);

// The functions the call names by reference (Z7K1 of every call outside quotes), in the order and
// within the bounds the walk of its JSON (interpreter.cc, called_functions) gives them.
void called_functions(const ParsedCall& call, std::vector<std::string>& out);

}  // namespace wf::orchestrator::engine_detail
