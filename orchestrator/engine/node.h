#pragma once
// The engine's working representation of a ZObject during one request: a tree of Nodes that
// remembers, per key, the original value and the value it was resolved to (resolution is
// persistent, as in the reference), plus the scope (argument frame) each sub-object lives in.
// Nodes and frames belong to one request and are never shared across threads.
//
// Nodes made with from_shared() are lazy: an entry keeps a pointer into an immutable JSON value
// (a bundled definition or a cached persisted object, kept alive by the Resolver for the whole
// request) and builds its child Node only when something reads it. Most of a definition (labels,
// testers, aliases) is never read, and cloning a lazy subtree copies pointers, not trees.

#include <boost/container/small_vector.hpp>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace wf::orchestrator::engine_detail {

using json = nlohmann::json;

struct Frame;
using FrameP = std::shared_ptr<Frame>;
struct Node;
using NodeP = std::shared_ptr<Node>;

struct Node {
  struct Entry {
    std::string key;
    NodeP original;
    NodeP persisted;  // what output shows (the reference's setObject); null = original
    NodeP value;      // memo of the fully resolved value of this key; null = not resolved yet
    const json* source = nullptr;  // original not built yet: build it from here on first read
    // How `source` reads. kNormal: as it is. kCanonical: in normal form (a string is a Z6 or a
    // Z9, an array a typed list), normalised only when read. kListFrom: the typed list of the
    // array's elements from index `from` on (the K2 of a list node read from an array).
    enum class Form : std::uint8_t { kNormal, kCanonical, kListFrom } form = Form::kNormal;
    std::uint32_t from = 0;
  };

  // Most objects are references, strings, Booleans or code points (two keys): their entries live
  // in the node itself, one allocation per node instead of two (bench_zobject BM_EngineNest14).
  using Entries = boost::container::small_vector<Entry, 2>;

  bool is_string = false;  // a bare string (Z1K1 "Z6"/"Z9", or a Z6K1/Z9K1 value)
  std::string text;
  mutable Entries entries;  // mutable: lazy originals are built on first read
  FrameP scope;             // null: inherits the scope of the parent it is read through

  static NodeP make_string(std::string s);
  static NodeP make_object();
  static NodeP from_json(const json& v);
  // Lazy view of `v`, which must stay alive and unchanged while the nodes are used.
  static NodeP from_shared(const json& v);
  // Lazy view of the normal form of `v` (canonical, normal or mixed, accepted by
  // zobject::check_mixed), which must stay alive and unchanged while the nodes are used. Only
  // what is read is normalised: the engine's normalisation of a request costs nothing per list
  // element it never reads (bench_zobject BM_EngineNormaliseLarge).
  static NodeP from_canonical(const json& v);
  json to_json() const;
  // Appends a text that identifies the current view's content (equal exactly when to_json()
  // would be equal; keys in sorted order, strings length-prefixed), without building JSON: the
  // key of the interpreter's per-request type memo.
  void append_key(std::string& out) const;
  // Deep copy. With reset_scope every copied node's scope is cleared.
  NodeP clone(bool reset_scope) const;

  // The current value of entry i (persisted, else original), without scope inheritance.
  const NodeP& current(std::size_t i) const;

  bool has(std::string_view key) const;
  Entry* entry(std::string_view key);
  // The current value of key (persisted, else original); the child inherits this node's scope
  // when it has none. Null when absent.
  NodeP get(std::string_view key);
  // Replaces the current value of key (adds the key when absent).
  void set(std::string_view key, NodeP value);
  void add(std::string key, NodeP value);  // appends without lookup (building new objects)

  // Shape helpers on the current view.
  std::string ref() const;       // Z9K1 of a Z9 node, else ""
  std::string str() const;       // Z6K1 of a Z6 node, else ""
  std::string type_ref() const;  // ZID of Z1K1 when it is a Z9 or a bare string, else ""
  bool is_ref() const;           // a Z9
  bool is_z6() const;
  bool is_call() const;                          // a normal Z7: Z1K1 = Z7 and has Z7K1
  bool is_arg_ref() const;                       // a Z18 with a string Z18K1
  std::string arg_name() const;                  // Z18K1 of a Z18
  const Node* peek(std::string_view key) const;  // current value without scope inheritance
};

NodeP str_node(std::string s);  // bare string node
NodeP z6_node(std::string s);   // {"Z1K1":"Z6","Z6K1":s}
NodeP z9_node(std::string s);   // {"Z1K1":"Z9","Z9K1":s}

}  // namespace wf::orchestrator::engine_detail
