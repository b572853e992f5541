#pragma once
// The engine's working representation of a ZObject during one request: a tree of Nodes that
// remembers, per key, the original value and the value it was resolved to (resolution is
// persistent, as in the reference), plus the scope (argument frame) each sub-object lives in.
// Nodes and frames belong to one request and are never shared across threads, with one
// exception: bare strings that are ZIDs, keys or type tags ("Z9", "Z801", "Z801K1") and the
// references and strings made of them ({"Z1K1": "Z9", "Z9K1": "Z801"}) are interned nodes, shared
// by every request, immutable and never freed (make_string, z9_node, z6_node, from_json,
// from_shared). They need no scope: they hold no argument reference.
//
// Nodes made with from_shared() are lazy: an entry keeps a pointer into an immutable JSON value
// (a bundled definition or a cached persisted object, kept alive by the Resolver for the whole
// request) and builds its child Node only when something reads it. Most of a definition (labels,
// testers, aliases) is never read, and cloning a lazy subtree copies pointers, not trees.
//
// Size (bench/slow_calls: memory per call parked on an evaluator): a Node is 80 bytes, an entry
// 48 (its key an interned id, its children intrusive pointers); a parked call's tree was
// mostly bare strings of 320 bytes each, now shared.

#include <array>
#include <concepts>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace wf::orchestrator::engine_detail {

using json = nlohmann::json;

struct Frame;
using FrameP = std::shared_ptr<Frame>;
struct Node;

// An owning pointer to a Node (intrusive count: 8 bytes where a shared_ptr takes 16, and no
// separate control block). Interned nodes are not counted. The count is not atomic: a
// request's nodes are used by one thread at a time (a fiber that moves to another thread
// synchronises through the pool's queue).
class NodeP {
 public:
  NodeP() = default;
  NodeP(std::nullptr_t) {}  // NOLINT: implicit, as for shared_ptr
  explicit NodeP(Node* n);  // adopts a fresh node (count 0) or an interned one
  NodeP(const NodeP& o) : p_(o.p_) { acquire(); }
  NodeP(NodeP&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  NodeP& operator=(const NodeP& o) {
    NodeP(o).swap(*this);
    return *this;
  }
  NodeP& operator=(NodeP&& o) noexcept {
    NodeP(std::move(o)).swap(*this);
    return *this;
  }
  ~NodeP() { release(); }

  Node* get() const { return p_; }
  Node* operator->() const { return p_; }
  Node& operator*() const { return *p_; }
  explicit operator bool() const { return p_ != nullptr; }
  void reset() { NodeP().swap(*this); }
  void swap(NodeP& o) noexcept { std::swap(p_, o.p_); }
  friend bool operator==(const NodeP& a, const NodeP& b) { return a.p_ == b.p_; }
  friend bool operator==(const NodeP& a, std::nullptr_t) { return a.p_ == nullptr; }

 private:
  // Always in line: a nest request releases ~500 pointers, and out of line (as GCC left it in
  // the interpreter's large functions) each paid a call around its few instructions.
  [[gnu::always_inline]] inline void acquire() const;
  [[gnu::always_inline]] inline void release();
  // Deletes a node whose count fell to zero. Out of line: release() stays a few instructions in
  // line (most releases only decrement: a request makes ~3,500 NodeP copies per 100 nodes).
  static void destroy(Node* n);
  Node* p_ = nullptr;
};

// The interned text of the empty key: constant-initialised, so it is there before any Key is made.
extern constinit const std::string kEmptyKeyText;

// An object key ("Z1K1", "Z801K1", "K2"): the address of its interned text, so a key costs 8
// bytes and keys compare by address. Keys beyond the interning bound (hostile input with
// millions of distinct keys) own their text instead.
class Key {
 public:
  Key() : Key(std::string_view()) {}
  Key(std::string_view s);  // NOLINT: implicit, keys are written as strings
  Key(const std::string& s) : Key(std::string_view(s)) {}  // NOLINT
  Key(const char* s) : Key(std::string_view(s)) {}         // NOLINT
  // Copying and destroying an interned key (nearly every key) is in line: a nest request
  // copies and drops ~800 of them (~2.5 k instructions in calls).
  Key(const Key& o) : bits_(o.interned() ? o.bits_ : copy_owned(o)) {}
  Key(Key&& o) noexcept : bits_(std::exchange(o.bits_, kEmpty())) {}
  Key& operator=(const Key& o) {
    Key(o).swap(*this);
    return *this;
  }
  Key& operator=(Key&& o) noexcept {
    Key(std::move(o)).swap(*this);
    return *this;
  }
  ~Key() {
    if (!interned()) delete_owned();
  }

  const std::string& str() const {
    return *reinterpret_cast<const std::string*>(bits_ & ~std::uintptr_t{1});
  }
  operator const std::string&() const { return str(); }  // NOLINT
  void swap(Key& o) noexcept { std::swap(bits_, o.bits_); }
  // True when both are interned: then equal texts have equal addresses.
  bool interned() const { return (bits_ & 1) == 0; }
  std::uintptr_t id() const { return bits_; }

  // In line: the same address, or two interned keys (different texts). Only an owned key's
  // text is compared, out of line (the interpreter compares ~330 keys per nest request).
  friend bool operator==(const Key& a, const Key& b) {
    if (a.bits_ == b.bits_) return true;
    if (a.interned() && b.interned()) return false;
    return same_owned_text(a, b);
  }
  friend bool operator==(const Key& a, std::string_view b) { return a.str() == b; }
  friend bool operator==(const Key& a, const char* b) { return a.str() == b; }
  friend bool operator<(const Key& a, const Key& b) { return a.str() < b.str(); }

 private:
  // The empty key: the address of kEmptyKeyText (which intern_key gives for ""), a constant,
  // so that moving a key (which leaves the empty key behind) asks no function-local static.
  static std::uintptr_t kEmpty() { return reinterpret_cast<std::uintptr_t>(&kEmptyKeyText); }
  static bool same_owned_text(const Key& a, const Key& b);
  static std::uintptr_t copy_owned(const Key& o);  // a new owned copy of o's text, tagged
  void delete_owned();                             // frees an owned text
  std::uintptr_t bits_;  // low bit 1: an owned std::string*, else an interned one
};

// The keys the engine reads most, interned once (common_keys()): a lookup by one of them
// compares addresses instead of texts.
struct CommonKeys {
  Key z1k1{"Z1K1"}, z6k1{"Z6K1"}, z7k1{"Z7K1"}, z9k1{"Z9K1"}, z18k1{"Z18K1"}, k1{"K1"}, k2{"K2"};
};
extern const CommonKeys kCommonKeys;  // node.cc: made before any request
inline const CommonKeys& common_keys() {
  return kCommonKeys;
}

// Equality of two short texts in line: keys and tags are a few characters, for which a call to
// the library's compare and memcmp costs more than the comparison (callgrind: ~7% of the nest).
inline bool same_text(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i] != b[i]) return false;
  }
  return true;
}

// A direct-mapped per-thread cache in front of an interning table (node.cc) or of what is known
// of a text (the request reader's keys and references). Its slot hash is FNV-1a in line: the
// texts are a few characters, and every entry of every node built looks its key up here.
template <typename Value>
struct ThreadCache {
  static constexpr std::size_t kSlots = 512;
  std::array<Value, kSlots> slots{};
  Value& slot(std::string_view s) {
    std::uint32_t h = 2166136261u;
    for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 16777619u;
    return slots[(h ^ (h >> 16)) % kSlots];
  }
};

// Memory of nodes and of their entry arrays: per-thread lists of freed blocks of up to
// kMaxPooledBytes, by size in steps of 16 bytes, taken before the allocator is asked. A nest
// request makes and frees ~60 nodes and ~55 entry arrays of one to four entries: with these lists
// they cost a few instructions each instead of the allocator's ~80 (malloc + free). A block
// freed on another thread (a fiber resumed there) joins that thread's lists; each list is
// bounded, what is beyond goes back to the allocator. Off under the sanitizers, which must see
// every block freed.
inline constexpr std::size_t kMaxPooledBytes = 192;
void* pooled_alloc(std::size_t bytes);
void pooled_free(void* p, std::size_t bytes) noexcept;

template <class T>
struct PooledAllocator {
  using value_type = T;
  PooledAllocator() = default;
  template <class U>
  PooledAllocator(const PooledAllocator<U>&) {}  // NOLINT: rebinding, as std::allocator
  T* allocate(std::size_t n) { return static_cast<T*>(pooled_alloc(n * sizeof(T))); }
  void deallocate(T* p, std::size_t n) noexcept { pooled_free(p, n * sizeof(T)); }
  friend bool operator==(const PooledAllocator&, const PooledAllocator&) { return true; }
};

// Whether a string node's text is `s` (inline: shape tests compare two- or three-letter tags).
struct Node;
inline bool text_is(const Node& n, std::string_view s);

struct Node {
  struct Entry {
    Key key;
    NodeP original;
    NodeP persisted;  // what output shows (the reference's setObject); null = original
    NodeP value;      // memo of the fully resolved value of this key; null = not resolved yet
    const json* source = nullptr;  // original not built yet: build it from here on first read
    // How `source` reads. kNormal: as it is. kCanonical: in normal form (a string is a Z6 or a
    // Z9, an array a typed list), normalised only when read. kListFrom: the typed list of the
    // array's elements from index `from` on (the K2 of a list node read from an array).
    enum class Form : std::uint8_t { kNormal, kCanonical, kListFrom } form = Form::kNormal;
    // `source` lives for the whole process and never changes (a bundled definition, a list-type
    // template): what is derived from its content alone may be remembered across requests by
    // its address (Interpreter::resolve_types).
    bool immortal = false;
    // A list cell's Z1K1 as a built-in wrote it: the implied Z881 of a ZID (make_list,
    // add_list_type). The reference builds such a list's type with the item type's ZID as a
    // string, which binding an argument does not expand: resolving the cell as a generic instance
    // leaves this Z1K1 as written (its Z4 kept in `value`), so output shows the item type by
    // its ZID (["Z86", ...]), where a list read from the request shows the expanded Z4.
    bool built_type = false;
    std::uint32_t from = 0;
  };
  using Entries = std::vector<Entry, PooledAllocator<Entry>>;

  Node() = default;
  static void* operator new(std::size_t bytes) { return pooled_alloc(bytes); }
  static void operator delete(void* p, std::size_t bytes) noexcept { pooled_free(p, bytes); }
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  std::uint32_t refs = 0;  // owners (NodeP); unused for interned nodes
  bool interned = false;   // shared by all requests: never changed, counted or freed
  bool is_string = false;  // a bare string (Z1K1 "Z6"/"Z9", or a Z6K1/Z9K1 value)
  // Nothing in this object is left to evaluate or type-resolve: a typed list a built-in made
  // whose cells' types are implied (add_list_type of a shared reference), whose elements are
  // bare strings or shared objects that are not references (a code point, a string object),
  // and whose tail is settled too. Eager evaluation (above 20 levels: below, a repeated key is
  // Z516) and the type walk skip it; set() and add() clear it (the contents changed).
  bool settled = false;
  // Set on the interned reference and string objects ({"Z1K1": "Z9", "Z9K1": zid} and the Z6
  // equivalent: intern_terminal, node.cc), which never change: the shape tests below answer for
  // them without looking for Z1K1 and Z9K1 (a nest request asks ~160 of them, most of the shared
  // Z7 reference that every call's Z1K1 is and of the ZID references).
  enum class Terminal : std::uint8_t { kNone, kReference, kString };
  Terminal terminal = Terminal::kNone;
  std::string text;
  mutable Entries entries;  // mutable: lazy originals are built on first read
  FrameP scope;             // null: inherits the scope of the parent it is read through

  // Sets the scope of an object node. Bare strings and shared nodes have none: they hold no
  // argument reference, so they never resolve differently in one frame or another.
  void set_scope(FrameP s) {
    if (!is_string && !interned) scope = std::move(s);
  }

  // A bare string: ZIDs, keys and type tags are interned (one node per text for the whole
  // process, up to a bound), other texts are fresh nodes.
  static NodeP make_string(std::string s);
  static NodeP make_object();
  static NodeP from_json(const json& v);
  // Lazy view of `v`, which must stay alive and unchanged while the nodes are used; with
  // `immortal`, `v` lives and stays unchanged for the whole process (Entry::immortal).
  static NodeP from_shared(const json& v, bool immortal = false);
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
  NodeP get_entry(Entry& e);  // get() of an entry of this node
  // Replaces the current value of key (adds the key when absent).
  void set(std::string_view key, NodeP value);
  void add(Key key, NodeP value);  // appends without lookup (building new objects)
  // Appends `key` as a lazy view of `source`, which lives and stays unchanged for the whole
  // process (Entry::immortal): no node is built for it unless something reads it.
  void add_shared(Key key, const json& source);
  // add_shared of a list cell's implied type as a built-in writes it (Entry::built_type).
  void add_built_list_type(const json& source);
  // Appends the Z1K1 of a typed list's cell whose item type is `item`: Z881(item). When `item`
  // is an interned reference the type is implied: a lazy view of per-process JSON, built only
  // when read (most cells' types never are: eager evaluation skips Z1K1), else a new call node.
  void add_list_type(const NodeP& item);
  // The per-process JSON add_list_type adds for `item` (Z881 of a reference to a ZID), or null
  // when it adds a call node of its own: asked once for a list of many cells.
  static const json* implied_list_type(const NodeP& item);

  // Shape helpers on the current view.
  std::string ref() const;  // Z9K1 of a Z9 node, else ""
  // The same without a copy (valid while the node is).
  std::string_view ref_view() const {
    if (terminal == Terminal::kReference) return entries[1].original->text;
    if (terminal == Terminal::kString) return {};
    return ref_view_of_entries();
  }
  std::string str() const;                 // Z6K1 of a Z6 node, else ""
  std::string type_ref() const;            // ZID of Z1K1 when it is a Z9 or a bare string, else ""
  std::string_view type_ref_view() const;  // the same without a copy (valid while the node is)
  bool is_ref() const {                    // a Z9
    if (terminal != Terminal::kNone) return terminal == Terminal::kReference;
    return is_ref_of_entries();
  }
  bool is_z6() const;
  bool is_call() const;                          // a normal Z7: Z1K1 = Z7 and has Z7K1
  bool is_arg_ref() const;                       // a Z18 with a string Z18K1
  std::string arg_name() const;                  // Z18K1 of a Z18
  const Node* peek(std::string_view key) const;  // current value without scope inheritance
  // The same lookups by a Key (common_keys()), compared by address when interned. A template:
  // a string literal still picks the overloads above.
  template <std::same_as<Key> K>
  const Node* peek(const K& key) const {
    for (auto& e : entries) {
      if (!(e.key == key)) continue;
      if (e.persisted) return e.persisted.get();
      if (e.source != nullptr) build(e);
      return e.original.get();
    }
    return nullptr;
  }
  template <std::same_as<Key> K>
  Entry* entry(const K& key) {
    for (auto& e : entries) {
      if (e.key == key) return &e;
    }
    return nullptr;
  }
  // get() by a Key: the current value, the child inheriting this node's scope when it has none.
  template <std::same_as<Key> K>
  NodeP get(const K& key) {
    Entry* e = entry(key);
    return e == nullptr ? nullptr : get_entry(*e);
  }
  template <std::same_as<Key> K>
  bool has(const K& key) const {
    for (const auto& e : entries) {
      if (e.key == key) return true;
    }
    return false;
  }

 private:
  static void build(Entry& e);  // a lazy entry's original from its source
  // ref_view() and is_ref() of a node that is not an interned terminal: read from its entries.
  std::string_view ref_view_of_entries() const;
  bool is_ref_of_entries() const;
};

inline bool text_is(const Node& n, std::string_view s) {
  return same_text(n.text, s);
}

inline void NodeP::acquire() const {
  if (p_ != nullptr && !p_->interned) ++p_->refs;
}

inline void NodeP::release() {
  if (p_ != nullptr && !p_->interned && --p_->refs == 0) destroy(p_);
  p_ = nullptr;
}

inline NodeP::NodeP(Node* n) : p_(n) {
  acquire();
}

NodeP str_node(std::string s);  // bare string node
NodeP z6_node(std::string s);   // {"Z1K1":"Z6","Z6K1":s}
NodeP z9_node(std::string s);   // {"Z1K1":"Z9","Z9K1":s}
// The same three from a view of the text, copied only when it is not interned (the request
// reader: most of a request's strings are ZIDs, keys and tags).
NodeP z6_node_of(std::string_view s);
NodeP z9_node_of(std::string_view s);
NodeP string_node_of(std::string_view s);  // Node::make_string
// The per-process normal form of Z881(zid) that a list read from a canonical array [zid, ...]
// carries as each cell's implied type (Node::from_canonical); null when the table is full.
const json* list_type_of(std::string_view zid);

}  // namespace wf::orchestrator::engine_detail
