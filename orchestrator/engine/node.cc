// Node: conversion from/to JSON and the per-key resolution slots.
#include "orchestrator/engine/node.h"

#include <algorithm>
#include <array>
#include <boost/container/small_vector.hpp>
#include <functional>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>

#include "wf/sanitizer.h"
#include "wf/zobject/zobject.h"

namespace wf::orchestrator::engine_detail {

// ---- interning --------------------------------------------------------------------------------

namespace {

// Bounds of the process-wide tables: hostile input with endless distinct keys or ZIDs fills them
// once (a few MB at most), after which new texts are simply not interned.
constexpr std::size_t kMaxKeys = 1u << 16;
constexpr std::size_t kMaxStrings = 1u << 15;
constexpr std::size_t kMaxStringLength = 32;

// Only the texts objects are made of are interned: ZIDs, keys and type tags ("Z9", "Z20401",
// "Z20401K1"), a set that is bounded for a wiki, and the 128 one-character ASCII texts (the
// code points Z868 splits a string into, the Z6 of each shared). Other values (a call's string
// argument, code, labels) stay nodes of their request: interning them would fill the tables with
// one-off texts.
bool internable(std::string_view s) {
  if (s.size() == 1) return static_cast<unsigned char>(s[0]) < 0x80;
  return s.size() <= kMaxStringLength &&
         (wf::zobject::is_reference_like(s) || wf::zobject::is_key(s));
}

struct TextHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// Texts, and for bare strings their shared nodes, by text. Read under a shared lock; a small
// per-thread cache in front keeps the lock off the hot path.
template <typename Value>
class Interned {
 public:
  explicit Interned(std::size_t bound) : bound_(bound) {}
  // The interned value for `s`, made by make(s) when it is new; null when the table is full.
  template <typename Make>
  Value find_or_add(std::string_view s, Make&& make) {
    {
      std::shared_lock lock(mu_);
      if (auto it = map_.find(s); it != map_.end()) return it->second;
      if (map_.size() >= bound_) return nullptr;
    }
    std::unique_lock lock(mu_);
    if (map_.size() >= bound_) return nullptr;
    auto [it, added] = map_.try_emplace(std::string(s), nullptr);
    if (added) it->second = make(it->first);
    return it->second;
  }

 private:
  std::size_t bound_;
  std::shared_mutex mu_;
  std::unordered_map<std::string, Value, TextHash, std::equal_to<>> map_;
};

Interned<const std::string*>& key_table() {
  static auto* table = new Interned<const std::string*>(kMaxKeys);  // never destroyed
  return *table;
}

Interned<Node*>& string_table() {
  static auto* table = new Interned<Node*>(kMaxStrings);  // never destroyed
  return *table;
}

const std::string* intern_key(std::string_view s) {
  if (s.empty()) return &kEmptyKeyText;
  thread_local ThreadCache<const std::string*> cache;
  const std::string*& slot = cache.slot(s);
  if (slot != nullptr && same_text(*slot, s)) return slot;
  const std::string* p = key_table().find_or_add(s, [](const std::string& t) { return &t; });
  if (p != nullptr) slot = p;
  return p;
}

Node* intern_string(std::string_view s) {
  if (s.size() > kMaxStringLength) return nullptr;  // never interned: no hash of a long text
  thread_local ThreadCache<Node*> cache;
  Node*& slot = cache.slot(s);
  if (slot != nullptr && same_text(slot->text, s)) return slot;
  if (!internable(s)) return nullptr;
  Node* n = string_table().find_or_add(s, [](const std::string& t) {
    auto* node = new Node;
    node->interned = true;
    node->is_string = true;
    node->text = t;
    return node;
  });
  if (n != nullptr) slot = n;
  return n;
}

// The shared node of a reference or a string object, {"Z1K1": "Z9", "Z9K1": text} or the Z6
// equivalent; null when the text is too long or a table is full (its children must be shared
// too: nothing in a shared node is ever counted).
template <bool kReference>
Node* intern_terminal(std::string_view text) {
  if (text.size() > kMaxStringLength) return nullptr;  // never interned, as above
  thread_local ThreadCache<Node*> cache;
  Node*& slot = cache.slot(text);
  if (slot != nullptr && same_text(slot->entries[1].original->text, text)) return slot;
  if (!internable(text)) return nullptr;
  Node* tag = intern_string(kReference ? "Z9" : "Z6");
  Node* value = intern_string(text);
  if (tag == nullptr || value == nullptr) return nullptr;
  static auto* table = new Interned<Node*>(kMaxStrings);  // never destroyed
  Node* n = table->find_or_add(text, [&](const std::string&) {
    auto* node = new Node;
    node->interned = true;
    node->terminal = kReference ? Node::Terminal::kReference : Node::Terminal::kString;
    node->entries.reserve(2);
    node->entries.push_back({"Z1K1", NodeP(tag)});
    node->entries.push_back({kReference ? "Z9K1" : "Z6K1", NodeP(value)});
    return node;
  });
  if (n != nullptr) slot = n;
  return n;
}

// The shared node of a normal-form reference or string object `v`, else null.
Node* shared_terminal(const json& v) {
  if (!v.is_object() || v.size() != 2) return nullptr;
  const auto& o = v.get_ref<const json::object_t&>();
  const auto& [type_key, type] = *o.begin();
  const auto& [value_key, value] = *std::next(o.begin());
  if (!same_text(type_key, "Z1K1") || !type.is_string() || !value.is_string()) {
    return nullptr;
  }
  const std::string_view tag = type.get_ref<const std::string&>();
  const std::string_view key = value_key;
  const auto& text = value.get_ref<const std::string&>();
  if (same_text(tag, "Z9") && same_text(key, "Z9K1")) return intern_terminal<true>(text);
  if (same_text(tag, "Z6") && same_text(key, "Z6K1")) return intern_terminal<false>(text);
  return nullptr;
}

// The normal form of Z881(zid), made once per process for every item type named by a
// ZID (bounded as the interning tables are); null when the table is full.
// Remembered per thread in front of the table (its lock and hash): every cell of a list a
// built-in makes asks for its type (~700 instructions a cell through the table).
const json* list_type_json(std::string_view zid) {
  using Held = std::pair<const std::string, const json>;  // the ZID and its Z881 call
  thread_local ThreadCache<const Held*> cache;
  const Held*& slot = cache.slot(zid);
  if (slot != nullptr && same_text(slot->first, zid)) return &slot->second;
  if (!internable(zid) || !wf::zobject::is_reference_like(zid)) return nullptr;
  static auto* table = new Interned<const Held*>(kMaxStrings);  // never destroyed
  const Held* held = table->find_or_add(zid, [](const std::string& t) {
    const auto ref = [](const std::string& z) { return json{{"Z1K1", "Z9"}, {"Z9K1", z}}; };
    return new const Held{t, json{{"Z1K1", ref("Z7")}, {"Z7K1", ref("Z881")}, {"Z881K1", ref(t)}}};
  });
  if (held == nullptr) return nullptr;
  slot = held;
  return &held->second;
}

}  // namespace

// After the tables above (function statics) and before any request: a namespace-scope object of
// this translation unit, which nothing reads while the program starts.
const CommonKeys kCommonKeys;

constinit const std::string kEmptyKeyText;

bool Key::same_owned_text(const Key& a, const Key& b) {
  return a.str() == b.str();
}

Key::Key(std::string_view s) {
  if (const std::string* p = intern_key(s)) {
    bits_ = reinterpret_cast<std::uintptr_t>(p);
  } else {
    bits_ = reinterpret_cast<std::uintptr_t>(new std::string(s)) | 1;
  }
}

std::uintptr_t Key::copy_owned(const Key& o) {
  return reinterpret_cast<std::uintptr_t>(new std::string(o.str())) | 1;
}

void Key::delete_owned() {
  delete reinterpret_cast<std::string*>(bits_ & ~std::uintptr_t{1});
}

// ---- node memory ------------------------------------------------------------------------------

namespace {

constexpr bool kPooled = !(WF_ASAN || WF_TSAN);
constexpr std::size_t kPoolClasses = kMaxPooledBytes / 16 + 1;
constexpr std::size_t kMaxPooledBlocks = 1024;  // per size and thread: at most ~1.5 MiB a thread

// Trivial, so that reading it is one thread-pointer-relative access (a thread_local with a
// destructor is reached through an initialisation check on every use: ~25 instructions a
// block). The lists are given back to the allocator when the thread ends, by FreeBlocksReaper,
// which each thread makes when it first keeps a block. Initial-exec: the library is compiled as
// position-independent code, whose default model reaches a thread_local through a call
// (__tls_get_addr) that the linker turns into a plain access but that still made the compiler
// save registers around it on every block; wf_engine is a static library of executables, never
// loaded with dlopen.
struct FreeBlocks {
  struct Class {
    void* head = nullptr;  // each free block starts with the address of the next
    std::size_t count = 0;
  };
  std::array<Class, kPoolClasses> classes{};
  bool reaped = false;   // the thread has a reaper: blocks may be kept
  bool gone = false;     // the thread is ending: blocks go back to the allocator
  bool keeping = false;  // reaped and not gone: the one test of pooled_free's fast path
};
[[gnu::tls_model("initial-exec")]] constinit thread_local FreeBlocks t_free_blocks;

struct FreeBlocksReaper {
  ~FreeBlocksReaper() {
    FreeBlocks& blocks = t_free_blocks;
    blocks.gone = true;
    blocks.keeping = false;
    for (FreeBlocks::Class& c : blocks.classes) {
      while (c.head != nullptr) {
        void* next = *static_cast<void**>(c.head);
        ::operator delete(c.head);
        c.head = next;
      }
      c.count = 0;
    }
  }
};

[[gnu::noinline]] void make_reaper(FreeBlocks& blocks) {
  thread_local FreeBlocksReaper reaper;
  static_cast<void>(reaper);
  blocks.reaped = true;
  blocks.keeping = !blocks.gone;
}

// The paths of pooled_alloc and pooled_free that are not a list's head: out of line, so that the
// usual path (a block taken from or put on its list) saves no registers and makes no frame
// (callgrind: 22 and 28 instructions a call before, ~120 calls of each per nest request).
[[gnu::noinline]] void* allocate_block(std::size_t bytes) {
  if (kPooled && bytes <= kMaxPooledBytes) {
    return ::operator new((bytes + 15) / 16 * 16);  // the class's size: any of its uses fits
  }
  return ::operator new(bytes);
}

[[gnu::noinline]] void free_block(void* p, std::size_t bytes) noexcept {
  if (kPooled && bytes <= kMaxPooledBytes) {
    FreeBlocks& blocks = t_free_blocks;
    FreeBlocks::Class& c = blocks.classes[(bytes + 15) / 16];
    if (c.count < kMaxPooledBlocks && !blocks.gone) {
      if (!blocks.reaped) make_reaper(blocks);
      *static_cast<void**>(p) = c.head;
      c.head = p;
      ++c.count;
      return;
    }
    ::operator delete(p);
    return;
  }
  ::operator delete(p, bytes);
}

}  // namespace

void* pooled_alloc(std::size_t bytes) {
  if (kPooled && bytes <= kMaxPooledBytes) {
    FreeBlocks::Class& c = t_free_blocks.classes[(bytes + 15) / 16];
    if (void* p = c.head; p != nullptr) [[likely]] {
      c.head = *static_cast<void**>(p);
      --c.count;
      return p;
    }
  }
  return allocate_block(bytes);
}

void pooled_free(void* p, std::size_t bytes) noexcept {
  if (kPooled && bytes <= kMaxPooledBytes) {
    FreeBlocks& blocks = t_free_blocks;
    FreeBlocks::Class& c = blocks.classes[(bytes + 15) / 16];
    if (blocks.keeping && c.count < kMaxPooledBlocks) [[likely]] {
      *static_cast<void**>(p) = c.head;
      c.head = p;
      ++c.count;
      return;
    }
  }
  free_block(p, bytes);
}

// ---- nodes ------------------------------------------------------------------------------------

void NodeP::destroy(Node* n) {
  delete n;
}

namespace {

// The Key of a key of immortal JSON (Entry::immortal: never changed or freed), remembered per
// thread by the address of its text: bundled definitions are read as nodes in every request
// (~240 keys per nest request), and hashing and comparing each text cost ~95 instructions.
Key immortal_key(const std::string& text) {
  struct Slot {
    const std::string* text = nullptr;
    Key key;
  };
  static constexpr std::size_t kSlots = 1024;
  thread_local std::array<Slot, kSlots> cache;
  Slot& slot = cache[(reinterpret_cast<std::uintptr_t>(&text) >> 4) % kSlots];
  if (slot.text == &text) return slot.key;
  Key key(text);
  if (key.interned()) {  // an owned text is not kept: copying it would allocate
    slot.text = &text;
    slot.key = key;
  }
  return key;
}

// shared_terminal() of immortal JSON (Entry::immortal: never changed or freed), remembered per
// thread by its address, whether it is a terminal or not: the bundled definitions' objects are
// read as nodes in every request (~30 per nest request), and each asked shared_terminal (the
// object's two members, the text's hash and comparison: ~150 instructions). The answer for an
// address never changes: the JSON does not, and a text's interning, once tried, gives the same
// node or (a table full) the same null.
Node* immortal_terminal(const json& v) {
  struct Slot {
    const json* source = nullptr;
    Node* node = nullptr;
  };
  static constexpr std::size_t kSlots = 1024;
  thread_local std::array<Slot, kSlots> cache;
  Slot& slot = cache[(reinterpret_cast<std::uintptr_t>(&v) >> 4) % kSlots];
  if (slot.source == &v) return slot.node;
  Node* n = shared_terminal(v);
  slot = {&v, n};
  return n;
}

}  // namespace

NodeP Node::make_string(std::string s) {
  if (Node* shared = intern_string(s)) return NodeP(shared);
  auto* n = new Node;
  n->is_string = true;
  n->text = std::move(s);
  return NodeP(n);
}

NodeP Node::make_object() {
  return NodeP(new Node);
}

NodeP Node::from_json(const json& v) {
  if (v.is_string()) {
    const auto& s = v.get_ref<const std::string&>();
    if (Node* shared = intern_string(s)) return NodeP(shared);
    return make_string(s);
  }
  if (Node* shared = shared_terminal(v)) return NodeP(shared);
  auto n = make_object();
  if (v.is_object()) {
    n->entries.reserve(v.size());
    for (const auto& [k, child] : v.items())
      n->entries.push_back({k, from_json(child), nullptr, nullptr});
  } else if (!v.is_null()) {
    // Numbers and the like never reach the engine (normalization rejects them); keep the text.
    n->is_string = true;
    n->text = v.dump();
  }
  return n;
}

NodeP Node::from_shared(const json& v, bool immortal) {
  if (!v.is_object()) return from_json(v);
  if (Node* shared = immortal ? immortal_terminal(v) : shared_terminal(v)) return NodeP(shared);
  auto n = make_object();
  const auto& o = v.get_ref<const json::object_t&>();
  n->entries.reserve(o.size());
  for (const auto& [k, child] : o) {
    n->entries.emplace_back(immortal ? immortal_key(k) : Key(k), nullptr, nullptr, nullptr, &child,
                            Entry::Form::kNormal, immortal);
  }
  return n;
}

namespace {

namespace zo = wf::zobject;
using Form = Node::Entry::Form;

bool is_terminal_tag(const json& v) {
  if (!v.is_string()) return false;
  const std::string_view tag = v.get_ref<const std::string&>();
  return same_text(tag, "Z6") || same_text(tag, "Z9");
}

NodeP list_from(const json& array, std::size_t from);

// The normal form of a checked mixed value, one level: the children stay lazy.
NodeP canonical_node(const json& v) {
  if (v.is_string()) {
    const auto& s = v.get_ref<const std::string&>();
    return zo::is_reference_like(s) ? z9_node(s) : z6_node(s);
  }
  if (v.is_array()) return list_from(v, 1);
  if (!v.is_object()) return Node::from_shared(v);
  auto n = Node::make_object();
  const auto& o = v.get_ref<const json::object_t&>();
  n->entries.reserve(o.size());
  bool error = false;  // Z1K1 is "Z5": maybe an error normalization passes through
  for (const auto& [k, child] : o) {
    // normalize() keeps terminal tags and the strings of Z6K1/Z9K1 as they are.
    const std::string_view key = k;
    const bool type = same_text(key, "Z1K1");
    const bool keep = (type && is_terminal_tag(child)) ||
                      ((same_text(key, "Z6K1") || same_text(key, "Z9K1")) && child.is_string());
    error = error ||
            (type && child.is_string() && same_text(child.get_ref<const std::string&>(), "Z5"));
    n->entries.push_back(
        {k, nullptr, nullptr, nullptr, &child, keep ? Form::kNormal : Form::kCanonical});
  }
  // Only an object typed Z5 can be such an error: the full test (map lookups, ~390
  // instructions an object) for those alone.
  if (error && zo::is_normalization_error(v)) return Node::from_shared(v);
  return n;
}

// The list node of a canonical array [T, e1, e2, ...] that starts at element `from`, in the key
// order normalize() gives it (K1, K2, Z1K1); every node has its own Z881(T), as there: implied
// (Node::add_list_type) when T is a ZID or absent (Z1), else a call node whose Z881K1 is lazy.
NodeP list_from(const json& array, std::size_t from) {
  const auto& a = array.get_ref<const json::array_t&>();
  auto n = Node::make_object();
  n->entries.reserve(3);
  if (from < a.size()) {
    n->entries.push_back({"K1", nullptr, nullptr, nullptr, &a[from], Form::kCanonical});
    n->entries.push_back({"K2", nullptr, nullptr, nullptr, &array, Form::kListFrom, false, false,
                          static_cast<std::uint32_t>(from + 1)});
  }
  const json* implied = nullptr;
  if (a.empty()) {
    implied = list_type_json("Z1");
  } else if (a[0].is_string() && zo::is_reference_like(a[0].get_ref<const std::string&>())) {
    implied = list_type_json(a[0].get_ref<const std::string&>());
  }
  if (implied != nullptr) {
    n->add_shared(common_keys().z1k1, *implied);
    return n;
  }
  auto type = Node::make_object();
  type->entries.reserve(3);
  type->add("Z1K1", z9_node("Z7"));
  type->add("Z7K1", z9_node("Z881"));
  type->entries.push_back({"Z881K1", nullptr, nullptr, nullptr, &a[0], Form::kCanonical});
  n->add("Z1K1", std::move(type));
  return n;
}

// Builds a lazy entry's original from its source.
inline void materialise(Node::Entry& e) {
  if (e.source == nullptr) return;
  switch (e.form) {
    case Form::kNormal:
      e.original = Node::from_shared(*e.source, e.immortal);
      break;
    case Form::kCanonical:
      e.original = canonical_node(*e.source);
      break;
    case Form::kListFrom:
      e.original = list_from(*e.source, e.from);
      break;
  }
  e.source = nullptr;
}

// The normal-form JSON of an entry that is still lazy.
json lazy_json(const Node::Entry& e) {
  switch (e.form) {
    case Form::kNormal:
      return *e.source;
    case Form::kCanonical:
      return zo::to_normal(*e.source);
    case Form::kListFrom: {
      const auto& a = e.source->get_ref<const json::array_t&>();
      json rest = json::array();
      if (!a.empty()) rest.push_back(a[0]);
      for (std::size_t i = e.from; i < a.size(); ++i) rest.push_back(a[i]);
      return zo::to_normal(rest);
    }
  }
  return nullptr;
}

}  // namespace

void Node::build(Entry& e) {
  materialise(e);
}

const NodeP& Node::current(std::size_t i) const {
  Entry& e = entries[i];
  if (e.persisted) return e.persisted;
  materialise(e);
  return e.original;
}

json Node::to_json() const {
  if (is_string) return text;
  json out(json::value_t::object);
  auto& o = out.get_ref<json::object_t&>();
  for (auto& e : entries) {
    if (!e.persisted && e.source != nullptr &&
        (e.form != Form::kNormal || e.source->is_string() || e.source->is_object())) {
      o.insert_or_assign(e.key.str(), lazy_json(e));  // untouched lazy subtree: a copy
      continue;
    }
    const NodeP& v = e.persisted ? e.persisted : (materialise(e), e.original);
    o.insert_or_assign(e.key.str(), v ? v->to_json() : json(nullptr));
  }
  return out;
}

const json* list_type_of(std::string_view zid) {
  return list_type_json(zid);
}

NodeP Node::from_canonical(const json& v) {
  return canonical_node(v);
}

namespace {

void append_text(std::string& out, std::string_view text) {
  out += std::to_string(text.size());
  out += ':';
  out += text;
}

// The same encoding as Node::append_key for a JSON value read as a Node (from_json's rules: a
// non-string scalar is the string of its JSON text, null is absent).
void append_json_key(std::string& out, const json& v) {
  if (v.is_object()) {
    out += '{';
    for (const auto& [k, child] : v.get_ref<const json::object_t&>()) {
      append_text(out, k);
      append_json_key(out, child);
    }
    out += '}';
  } else if (v.is_string()) {
    out += '"';
    append_text(out, v.get_ref<const std::string&>());
  } else if (v.is_null()) {
    out += '{';
    out += '}';
  } else {
    out += '"';
    append_text(out, v.dump());
  }
}

}  // namespace

void Node::append_key(std::string& out) const {
  if (is_string) {
    out += '"';
    append_text(out, text);
    return;
  }
  // Entries in key order, as to_json()'s object would have them.
  const std::size_t n = entries.size();
  boost::container::small_vector<std::size_t, 8> order(n);
  for (std::size_t i = 0; i < n; ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](std::size_t a, std::size_t b) { return entries[a].key < entries[b].key; });
  out += '{';
  for (std::size_t j = 0; j < n; ++j) {
    Entry& e = entries[order[j]];
    append_text(out, e.key.str());
    if (!e.persisted && e.source != nullptr) {
      if (e.form == Form::kNormal) {
        append_json_key(out, *e.source);
      } else {
        append_json_key(out, lazy_json(e));
      }
      continue;
    }
    const NodeP& v = e.persisted ? e.persisted : (materialise(e), e.original);
    if (v) {
      v->append_key(out);
    } else {
      out += "{}";
    }
  }
  out += '}';
}

NodeP Node::clone(bool reset_scope) const {
  if (interned) return NodeP(const_cast<Node*>(this));  // immutable: the copy is itself
  auto n = make_object();
  n->is_string = is_string;
  n->text = text;
  if (!reset_scope) n->scope = scope;
  n->entries.reserve(entries.size());
  for (const auto& e : entries) {
    if (!e.persisted && e.source != nullptr) {
      // Untouched lazy subtree: share the source; a fresh copy is built when it is read.
      n->entries.emplace_back(e.key, nullptr, nullptr, nullptr, e.source, e.form, e.immortal,
                              e.built_type, e.from);
      continue;
    }
    const NodeP& v = e.persisted ? e.persisted : e.original;
    n->entries.emplace_back(e.key, v ? v->clone(reset_scope) : nullptr);
    n->entries.back().built_type = e.built_type && !e.persisted;
  }
  return n;
}

namespace {

// Lookups by key are the engine's most frequent operation (same_text: in line).
inline bool same_key(const Key& key, std::string_view b) {
  return same_text(key.str(), b);
}

}  // namespace

bool Node::has(std::string_view key) const {
  for (const auto& e : entries) {
    if (same_key(e.key, key)) return true;
  }
  return false;
}

Node::Entry* Node::entry(std::string_view key) {
  for (auto& e : entries) {
    if (same_key(e.key, key)) return &e;
  }
  return nullptr;
}

NodeP Node::get(std::string_view key) {
  Entry* e = entry(key);
  return e == nullptr ? nullptr : get_entry(*e);
}

NodeP Node::get_entry(Entry& e) {
  if (!e.persisted) materialise(e);
  NodeP v = e.persisted ? e.persisted : e.original;
  if (v && !v->interned && !v->is_string && !v->scope && scope) v->scope = scope;
  return v;
}

const Node* Node::peek(std::string_view key) const {
  for (auto& e : entries) {
    if (!same_key(e.key, key)) continue;
    if (e.persisted) return e.persisted.get();
    materialise(e);
    return e.original.get();
  }
  return nullptr;
}

void Node::set(std::string_view key, NodeP value) {
  if (interned) return;  // a bare string has no keys (and an interned one is shared)
  settled = false;
  Entry* e = entry(key);
  if (e == nullptr) {
    entries.push_back({std::string(key), std::move(value), nullptr, nullptr});
    return;
  }
  e->persisted = std::move(value);
  e->value = nullptr;
}

void Node::add(Key key, NodeP value) {
  if (interned) return;
  settled = false;
  entries.emplace_back(std::move(key), std::move(value));  // in place: no Entry moved
}

void Node::add_shared(Key key, const json& source) {
  if (interned) return;
  entries.emplace_back(std::move(key), nullptr, nullptr, nullptr, &source, Form::kNormal, true);
}

void Node::add_built_list_type(const json& source) {
  if (interned) return;
  add_shared(common_keys().z1k1, source);
  entries.back().built_type = true;
}

const json* Node::implied_list_type(const NodeP& item) {
  // A reference of its own (read from a definition or a request, not shared) with nothing but
  // its two keys writes the same Z881 call as the shared one: Z810 prepends to a list whose
  // item type was read so, and its cell's type was a call node, resolved per request.
  if (!item || item->is_string || !(item->interned || item->entries.size() == 2)) return nullptr;
  if (!item->is_ref()) return nullptr;
  return list_type_json(item->ref_view());
}

void Node::add_list_type(const NodeP& item) {
  const CommonKeys& keys = common_keys();
  if (const json* implied = implied_list_type(item)) {
    add_built_list_type(*implied);
    return;
  }
  // The two references, looked up once (z9_node hashes and compares the text each time).
  static Node* const kZ7 = intern_terminal<true>("Z7");
  static Node* const kZ881 = intern_terminal<true>("Z881");
  auto t = make_object();
  t->entries.reserve(3);
  t->add(keys.z1k1, kZ7 != nullptr ? NodeP(kZ7) : z9_node("Z7"));
  t->add(keys.z7k1, kZ881 != nullptr ? NodeP(kZ881) : z9_node("Z881"));
  t->add("Z881K1", item);
  add(keys.z1k1, std::move(t));
}

namespace {

// Node::ref() without a copy, for the shape tests below.
std::string_view ref_text(const Node& n) {
  if (n.terminal == Node::Terminal::kReference) return n.entries[1].original->text;
  if (n.is_string || n.terminal == Node::Terminal::kString) return {};
  const CommonKeys& keys = common_keys();
  // Z1K1 first: most nodes asked are not references, and then Z9K1 is not looked for (a scan of
  // every entry, which would also build the lazy ones it passes).
  const Node* t = n.peek(keys.z1k1);
  if (t == nullptr || !t->is_string || !text_is(*t, "Z9")) return {};
  const Node* k = n.peek(keys.z9k1);
  if (k != nullptr && k->is_string) return k->text;
  return {};
}

}  // namespace

std::string Node::ref() const {
  return std::string(ref_text(*this));
}

std::string_view Node::ref_view_of_entries() const {
  return engine_detail::ref_text(*this);
}

std::string Node::str() const {
  if (terminal == Terminal::kString) return entries[1].original->text;
  if (is_string || terminal == Terminal::kReference) return {};
  const CommonKeys& keys = common_keys();
  const Node* t = peek(keys.z1k1);
  if (t == nullptr || !t->is_string || !text_is(*t, "Z6")) return {};
  const Node* k = peek(keys.z6k1);
  if (k != nullptr && k->is_string) return k->text;
  return {};
}

bool Node::is_ref_of_entries() const {
  if (is_string) return false;
  const CommonKeys& keys = common_keys();
  const Node* t = peek(keys.z1k1);
  if (t == nullptr || !t->is_string || !text_is(*t, "Z9")) return false;
  const Node* k = peek(keys.z9k1);
  return k != nullptr && k->is_string;
}

bool Node::is_z6() const {
  if (terminal != Terminal::kNone) return terminal == Terminal::kString;
  const CommonKeys& keys = common_keys();
  const Node* t = is_string ? nullptr : peek(keys.z1k1);
  return t && t->is_string && text_is(*t, "Z6") && peek(keys.z6k1) != nullptr;
}

std::string Node::type_ref() const {
  return std::string(type_ref_view());
}

std::string_view Node::type_ref_view() const {
  if (is_string) return "Z6";
  const Node* t = peek(common_keys().z1k1);
  if (t == nullptr) return {};
  if (t->is_string) return t->text;
  return ref_text(*t);
}

bool Node::is_call() const {
  if (is_string || terminal != Terminal::kNone) return false;
  const CommonKeys& keys = common_keys();
  const Node* t = peek(keys.z1k1);
  return t && !t->is_string && same_text(ref_text(*t), "Z7") && peek(keys.z7k1) != nullptr;
}

bool Node::is_arg_ref() const {
  if (is_string || terminal != Terminal::kNone) return false;
  const CommonKeys& keys = common_keys();
  const Node* t = peek(keys.z1k1);
  if (!t || t->is_string || !same_text(ref_text(*t), "Z18")) return false;
  const Node* k = peek(keys.z18k1);
  return k && (k->is_string || k->is_z6());
}

std::string Node::arg_name() const {
  const Node* k = peek(common_keys().z18k1);
  if (!k) return {};
  return k->is_string ? k->text : k->str();
}

NodeP str_node(std::string s) {
  return Node::make_string(std::move(s));
}

namespace {

// A string or reference object of its own (a text that is not shared): one entry array of two,
// its keys and tag the shared ones (the keys were interned by text and the array grown twice).
// `text` is its value's bare string node.
NodeP terminal_object_of(bool reference, NodeP text) {
  const CommonKeys& keys = common_keys();
  static Node* const kZ6 = intern_string("Z6");
  static Node* const kZ9 = intern_string("Z9");
  Node* tag = reference ? kZ9 : kZ6;
  auto n = Node::make_object();
  n->entries.reserve(2);
  n->add(keys.z1k1, tag != nullptr ? NodeP(tag) : str_node(reference ? "Z9" : "Z6"));
  n->add(reference ? keys.z9k1 : keys.z6k1, std::move(text));
  return n;
}

NodeP terminal_object(bool reference, std::string s) {
  return terminal_object_of(reference, str_node(std::move(s)));
}

// The shared terminal object of `s` when there is one, else a fresh one owning its text (a
// std::string is moved, a view copied only here).
template <bool kReference, typename Text>
NodeP terminal_node(Text&& s) {
  if (Node* shared = intern_terminal<kReference>(s)) return NodeP(shared);
  return terminal_object(kReference, std::string(std::forward<Text>(s)));
}

}  // namespace

NodeP z6_node(std::string s) {
  return terminal_node<false>(std::move(s));
}

NodeP z9_node(std::string s) {
  return terminal_node<true>(std::move(s));
}

NodeP z6_node_of(std::string_view s) {
  // Most string values are never interned (a call's text argument, "Hello"): made at once,
  // without the two look-ups that would find nothing (~350 instructions a string).
  if (!internable(s)) {
    auto text = NodeP(new Node);
    text->is_string = true;
    text->text = std::string(s);
    return terminal_object_of(false, std::move(text));
  }
  return terminal_node<false>(s);
}

NodeP z9_node_of(std::string_view s) {
  return terminal_node<true>(s);
}

NodeP string_node_of(std::string_view s) {
  if (Node* shared = intern_string(s)) return NodeP(shared);
  auto* n = new Node;
  n->is_string = true;
  n->text = std::string(s);
  return NodeP(n);
}

}  // namespace wf::orchestrator::engine_detail
