// The usual evaluate request read straight into nodes (request_nodes.h).
#include "orchestrator/engine/request_nodes.h"

#include <algorithm>
#include <bit>
#include <boost/container/small_vector.hpp>
#include <cstring>
#include <optional>
#include <utility>

#include "orchestrator/engine/definitions.h"
#include "wf/codec/plain_json.h"
#include "wf/zobject/zobject.h"

namespace wf::orchestrator::engine_detail {

namespace {

namespace zo = wf::zobject;

// Lists longer than this, and bodies larger, are left to the general path: its lazy view builds
// a list's cells only as they are read, and the interpreter's walks over a long chain of cells
// built up front (eager_walk's path checks deeper than 20 levels) grow with the square of its
// length (a 10,000-element list took 20 s; tests/integration/test_converters.py).
constexpr std::size_t kMaxReadElements = 64;
constexpr std::size_t kMaxReadBytes = 16u << 10;

// "Z14K3" or "Z16K...": inline code (an evaluator call). In line: every key and string is asked.
bool is_code_literal(std::string_view s) {
  return s.size() >= 4 && s[0] == 'Z' && s[1] == '1' &&
         ((s[2] == '6' && s[3] == 'K') || same_text(s, "Z14K3"));
}

// What the value being read is, for canonical_node's rules: a Z1K1 keeps "Z6" and "Z9" as bare
// strings, a Z6K1 or Z9K1 keeps any string as a bare string; any other string is a Z6 or a Z9.
enum class Slot { kValue, kType, kTerminal };

// A text of one to eight bytes as one word, its first byte the lowest and the rest zero (no plain
// byte is zero: equal words are equal texts); 0 for an empty or longer text. The reader compares
// and orders keys and ZIDs by their words: one comparison where a loop over the bytes took ~5
// instructions a byte (nearly every key and ZID has at most eight). `end`: the end of the buffer
// the text lies in (the word is read at once when eight bytes are there).
std::uint64_t word_of(std::string_view s, const char* end) {
  const std::size_t n = s.size();
  if (n == 0 || n > 8) return 0;
  std::uint64_t w = 0;
  if constexpr (std::endian::native == std::endian::little) {
    if (end - s.data() >= 8) {
      std::memcpy(&w, s.data(), sizeof w);
      return n == 8 ? w : w & ((std::uint64_t{1} << (8 * n)) - 1);
    }
  }
  for (std::size_t i = 0; i < n; ++i) {
    w |= std::uint64_t{static_cast<unsigned char>(s[i])} << (8 * i);
  }
  return w;
}

constexpr std::uint64_t word_of(const char (&s)[3]) {
  return std::uint64_t{static_cast<unsigned char>(s[0])} |
         std::uint64_t{static_cast<unsigned char>(s[1])} << 8;
}
constexpr std::uint64_t kZ5 = word_of("Z5"), kZ6 = word_of("Z6"), kZ7 = word_of("Z7"),
                        kZ9 = word_of("Z9");

// The order of two texts' words as the texts' order (key_less): the first byte most significant.
std::uint64_t order_of(std::uint64_t word) {
  return __builtin_bswap64(word);
}

// The slot of a text in a per-thread cache (ThreadCache::slot) from its FNV-1a hash, which the
// reader computes while it scans the text (scan_text).
template <typename Value>
Value& slot_of(ThreadCache<Value>& cache, std::uint32_t hash) {
  return cache.slots[(hash ^ (hash >> 16)) % ThreadCache<Value>::kSlots];
}

// What the reader knows of a text it met before, remembered per thread (the same keys and
// ZIDs come in every request): a valid key as its interned Key, whether it is inline code and
// how its value reads; a reference-like string value as its shared Z9 node, whether a bundled
// definition serves it. Only what holds for the text whatever the request is kept (the
// definitions never change). A text of at most eight bytes is recognised by its word.
struct KnownKey {
  Key key;  // the empty key: no text
  std::uint64_t word = 0;
  bool code = false;
  bool z7k1 = false;
  Slot slot = Slot::kValue;
};
struct KnownReference {
  Node* node = nullptr;  // the interned {"Z1K1": "Z9", "Z9K1": text}
  std::uint64_t word = 0;
  bool local = false;  // served_json(text) != nullptr
};

// Two ways per text: its slot and the slot beside it (two texts of one request that share a slot,
// such as Z810K2 and Z811K1 of the nest, would otherwise evict each other every request). A
// new text takes the first way, and what was there moves to the second.
template <typename Value>
Value& other_way(ThreadCache<Value>& cache, Value& first) {
  return cache.slots[static_cast<std::size_t>(&first - cache.slots.data()) ^ 1];
}

// A valid key's interned Key, whether it is inline code and how its value reads, or nullptr
// when `text` (its hash `hash`, its word `word`) is not a valid key. A key beyond the interning
// bound is checked and made again each time, into `spare` (made only then: an empty Key is a
// call to intern it).
const KnownKey* known_key(std::string_view text, std::uint32_t hash, std::uint64_t word,
                          std::optional<KnownKey>& spare) {
  if (text.empty()) return nullptr;  // the empty slot's text: never a key
  thread_local ThreadCache<KnownKey> cache;
  const auto holds = [&](const KnownKey& k) {
    return word != 0 ? k.word == word : same_text(k.key.str(), text);
  };
  KnownKey& slot = slot_of(cache, hash);
  if (holds(slot)) return &slot;
  KnownKey& other = other_way(cache, slot);
  if (holds(other)) return &other;
  if (!zo::is_key(text)) return nullptr;
  const CommonKeys& keys = common_keys();
  KnownKey made{Key(text), word, is_code_literal(text)};
  made.z7k1 = made.key == keys.z7k1;
  made.slot = made.key == keys.z1k1                            ? Slot::kType
              : made.key == keys.z6k1 || made.key == keys.z9k1 ? Slot::kTerminal
                                                               : Slot::kValue;
  if (!made.key.interned()) {
    return &spare.emplace(std::move(made));
  }
  other = std::move(slot);
  slot = std::move(made);
  return &slot;
}

// A reference-like text's shared Z9 node and verdict, or nullptr (not reference-like, or its
// node is not shared: the caller makes one of its own).
const KnownReference* known_reference(std::string_view text, std::uint32_t hash, std::uint64_t word,
                                      const Definitions& defs) {
  thread_local ThreadCache<KnownReference> cache;
  const auto holds = [&](const KnownReference& r) {
    if (word != 0) return r.word == word;
    return r.node != nullptr && same_text(r.node->entries[1].original->text, text);
  };
  KnownReference& slot = slot_of(cache, hash);
  if (holds(slot)) return &slot;
  KnownReference& other = other_way(cache, slot);
  if (holds(other)) return &other;
  if (!zo::is_reference_like(text)) return nullptr;
  NodeP node = z9_node_of(text);
  if (!node->interned) return nullptr;
  other = slot;
  slot = {node.get(), word, defs.served_json(text) != nullptr};
  return &slot;
}

// Keys in JSON order (nlohmann's map: std::less of the texts), in line: keys are a few letters.
bool key_less(std::string_view a, std::string_view b) {
  const std::size_t n = std::min(a.size(), b.size());
  for (std::size_t i = 0; i < n; ++i) {
    if (a[i] != b[i]) return static_cast<unsigned char>(a[i]) < static_cast<unsigned char>(b[i]);
  }
  return a.size() < b.size();
}

class CallReader {
 public:
  CallReader(std::string_view body, const RequestLimits& limits, ParsedCall& out)
      : c_{body.data(), body.data() + body.size()},
        max_json_depth_(std::min(limits.max_json_depth, codec::kMaxPlainDepth)),
        out_(out),
        defs_(Definitions::instance()) {
    max_zobject_depth_ = limits.max_zobject_depth;
  }

  // The body object: "zobject", "doValidate", "resultCache", each at most once.
  bool body() {
    c_.skip_space();
    if (c_.p == c_.end || *c_.p != '{' || max_json_depth_ < 1) return false;
    ++c_.p;
    bool zobject = false, validate = false, cache = false;
    const bool ok = c_.members([&](std::string_view key) {
      c_.skip_space();
      if (same_text(key, "zobject")) {
        if (zobject || c_.p == c_.end || *c_.p != '{') return false;  // a call is an object
        zobject = true;
        NodeP root = value(Slot::kValue, 2, max_zobject_depth_, true);
        if (!root) return false;
        out_.zobject = std::move(root);
        return true;
      }
      bool* flag = nullptr;
      if (same_text(key, "doValidate")) {
        if (validate) return false;
        validate = true;
        flag = &out_.do_validate;
      } else if (same_text(key, "resultCache")) {
        if (cache) return false;
        cache = true;
        flag = &out_.result_cache;
      } else {
        return false;  // another key: the general path reads it
      }
      if (c_.literal("true")) {
        *flag = true;
      } else if (c_.literal("false")) {
        *flag = false;
      } else {
        return false;
      }
      return true;
    });
    if (!ok || !zobject) return false;
    if (out_.do_validate) out_.literals.unusual = true;
    c_.skip_space();
    return c_.p == c_.end;
  }

 private:
  // Spaces before the next token (PlainCursor::skip_space), in line: most calls find none or
  // one (", " and ": "), where a call cost more than the loop.
  void skip() {
    const char* p = c_.p;
    while (p != c_.end && static_cast<unsigned char>(*p) <= ' ' &&
           (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) {
      ++p;
    }
    c_.p = p;
  }

  // A string's text (after its opening quote) up to its closing quote, which is consumed, and
  // the FNV-1a hash of ThreadCache::slot computed on the way (one pass where the scan and the
  // hash each took one); false for anything but printable ASCII without escapes.
  bool scan_text(std::string_view& out, std::uint32_t& hash) {
    const char* p = c_.p;
    const char* const end = c_.end;
    std::uint32_t h = 2166136261u;
    while (p != end && codec::kStringByte[static_cast<unsigned char>(*p)] == codec::kPlainByte) {
      h = (h ^ static_cast<unsigned char>(*p)) * 16777619u;
      ++p;
    }
    if (p == end || *p != '"') return false;  // the end, an escape or a byte not plain
    out = std::string_view(c_.p, static_cast<std::size_t>(p - c_.p));
    c_.p = p + 1;
    hash = h;
    return true;
  }

  // The node of the value at the cursor, at JSON nesting `depth` (of its arrays and objects) and
  // with `levels` zobject levels left; null when the request is not the usual one. `top`: the
  // zobject itself, whose Z7K1 names the function.
  NodeP value(Slot slot, int depth, int levels, bool top = false) {
    if (levels < 1) return nullptr;
    skip();
    if (c_.p == c_.end) return nullptr;
    switch (*c_.p) {
      case '"':
        return string_value(slot);
      case '{':
        ++c_.p;
        if (depth > max_json_depth_) return nullptr;
        return object(depth, levels, top);
      case '[':
        ++c_.p;
        if (depth > max_json_depth_) return nullptr;
        return array(depth, levels);
      default:
        return nullptr;  // a number, true, false, null: not a valid ZObject here
    }
  }

  // value() of a string (the cursor at its opening quote). In line: an object's members read
  // their string values here without a call to value().
  [[gnu::always_inline]] NodeP string_value(Slot slot) {
    ++c_.p;
    std::string_view s;
    std::uint32_t hash = 0;
    if (!scan_text(s, hash)) return nullptr;
    const std::uint64_t word = word_of(s, c_.end);
    // "Z5": an error object, or a reference to Z5 (canonical_node and prepare_call treat
    // those apart).
    if (word == kZ5) return nullptr;
    if (slot == Slot::kTerminal || (slot == Slot::kType && (word == kZ6 || word == kZ9))) {
      if (counting_) count(s, zo::is_reference_like(s));
      return string_node_of(s);
    }
    if (const KnownReference* known = known_reference(s, hash, word, defs_)) {
      if (counting_) {
        BodyLiterals& l = out_.literals;
        if (word == kZ7) ++l.calls;
        if (!known->local) ++l.not_local;
      }
      return NodeP(known->node);
    }
    const bool reference = zo::is_reference_like(s);
    if (counting_) count(s, reference);
    return reference ? z9_node_of(s) : z6_node_of(s);
  }

  // An object's members after its '{', in key order, as the node's entries.
  NodeP object(int depth, int levels, bool top) {
    struct Member {
      std::uint64_t order;  // order_of the key's word; 0: a key of more than eight bytes
      Key key;
      NodeP node;
    };
    boost::container::small_vector<Member, 8> members;
    bool typed = false;
    std::optional<KnownKey> spare;
    skip();
    if (c_.p != c_.end && *c_.p == '}') return nullptr;  // {}: no Z1K1
    for (;;) {
      skip();
      if (c_.p == c_.end || *c_.p != '"') return nullptr;
      ++c_.p;
      std::string_view text;
      std::uint32_t hash = 0;
      if (!scan_text(text, hash)) return nullptr;
      skip();
      if (c_.p == c_.end || *c_.p != ':') return nullptr;
      ++c_.p;
      const std::uint64_t word = word_of(text, c_.end);
      const KnownKey* known = known_key(text, hash, word, spare);
      if (known == nullptr) return nullptr;
      if (known->code) out_.literals.unusual = true;
      // Copies: reading the value may reuse the cache's slot (an owned key is the spare's).
      Key key = spare && known == &*spare ? std::move(spare->key) : known->key;
      const Slot slot = known->slot;
      const bool names_function = top && known->z7k1;
      typed = typed || slot == Slot::kType;
      skip();
      const bool quoted = c_.p != c_.end && *c_.p == '"';
      const char* at = c_.p + 1;
      // A string at once (most values are), anything else through value().
      NodeP node = quoted && levels > 1 ? string_value(slot) : value(slot, depth + 1, levels - 1);
      if (!node) return nullptr;
      if (names_function) function_of(quoted, at, *node);
      members.push_back({order_of(word), std::move(key), std::move(node)});
      skip();
      if (c_.p == c_.end) return nullptr;
      if (*c_.p == ',') {
        ++c_.p;
        continue;
      }
      if (*c_.p != '}') return nullptr;
      ++c_.p;
      break;
    }
    if (!typed) return nullptr;
    // Key order, as the JSON tree's map has it; a repeated key is the general path's.
    // Requests usually list a call's keys in order already (Z1K1, Z7K1, its arguments).
    const auto before = [](const Member& a, const Member& b) {
      if (a.order != 0 && b.order != 0) return a.order < b.order;
      return key_less(a.key.str(), b.key.str());
    };
    bool sorted = true;
    for (std::size_t i = 1; i < members.size() && sorted; ++i) {
      const Member& a = members[i - 1];
      const Member& b = members[i];
      sorted = a.order != 0 && b.order != 0 ? a.order < b.order : before(a, b);
    }
    if (!sorted) {
      std::sort(members.begin(), members.end(), before);
      for (std::size_t i = 1; i < members.size(); ++i) {
        if (members[i - 1].key == members[i].key) return nullptr;
      }
    }
    auto n = Node::make_object();
    // A fresh object: appended in place, as Node::add does (nothing to clear).
    n->entries.reserve(members.size());
    for (Member& m : members) n->entries.emplace_back(std::move(m.key), std::move(m.node));
    return n;
  }

  // The function the zobject's Z7K1 names (ParsedCall::function): the string at `at` when the
  // value was `quoted`, else an object's Z9K1 when that is a string (a bare string node here).
  void function_of(bool quoted, const char* at, const Node& node) {
    if (quoted) {
      out_.function.assign(at, static_cast<std::size_t>(c_.p - 1 - at));
      return;
    }
    if (node.is_string) return;
    for (const auto& e : node.entries) {
      if (e.key == common_keys().z9k1 && e.original && e.original->is_string) {
        out_.function = e.original->text;
      }
    }
  }

  // [T, e1, ..., en]: a list node per cell (K1, K2, Z1K1, as list_from makes them), the last one
  // with its type only. T is the item type: a ZID (or none, for []) gives each cell the implied
  // Z881(T) of list_from; else each cell has a Z881 call of its own with T read again.
  NodeP array(int depth, int levels) {
    boost::container::small_vector<NodeP, 8> items;
    const char* type_at = nullptr;  // T's text, when it is read again per cell
    const json* implied = nullptr;
    std::size_t count = 0;
    const bool ok = c_.items(']', [&] {
      if (++count > kMaxReadElements + 1) return false;
      if (count == 1) {
        skip();
        type_at = c_.p;
        if (c_.p != c_.end && *c_.p == '"') {
          codec::PlainCursor ahead{c_.p + 1, c_.end};
          std::string_view s;
          if (ahead.string_text(s) && zo::is_reference_like(s)) implied = list_type_of(s);
        }
        return static_cast<bool>(value(Slot::kValue, depth + 1, levels - 1));  // T, checked
      }
      NodeP item = value(Slot::kValue, depth + 1, levels - 1);
      if (!item) return false;
      items.push_back(std::move(item));
      return true;
    });
    if (!ok) return nullptr;
    if (count == 0) implied = list_type_of("Z1");
    if (implied == nullptr && count == 0) return nullptr;  // the table is full: rare, general path
    // Cells from the last one back.
    NodeP next;
    for (std::size_t i = items.size() + 1; i-- > 0;) {
      auto cell = Node::make_object();
      cell->entries.reserve(3);
      if (i < items.size()) {
        cell->add(common_keys().k1, std::move(items[i]));
        cell->add(common_keys().k2, std::move(next));
      }
      if (implied != nullptr) {
        cell->add_shared(common_keys().z1k1, *implied);
      } else {
        NodeP item_type = type_again(type_at, depth + 1, levels - 1);
        if (!item_type) return nullptr;
        auto type = Node::make_object();
        type->entries.reserve(3);
        type->add("Z1K1", z9_node("Z7"));
        type->add("Z7K1", z9_node("Z881"));
        type->add("Z881K1", std::move(item_type));
        cell->add("Z1K1", std::move(type));
      }
      next = std::move(cell);
    }
    // Room for a few at once: growing one by one cost an allocation per array up to four.
    if (out_.arrays.capacity() == 0) out_.arrays.reserve(8);
    out_.arrays.push_back(next.get());
    return next;
  }

  // The item type T read again from its text (each cell's Z881 call has a node of its own); its
  // literals were counted when it was first read.
  NodeP type_again(const char* at, int depth, int levels) {
    const char* saved = c_.p;
    c_.p = at;
    counting_ = false;
    NodeP n = value(Slot::kValue, depth, levels);
    counting_ = true;
    c_.p = saved;
    return n;
  }

  // A string value of the zobject, counted into BodyLiterals. The zobject's keys are counted
  // where they are read (only inline code matters for a key), the body's own keys by body().
  void count(std::string_view s, bool reference) {
    BodyLiterals& l = out_.literals;
    if (same_text(s, "Z7")) ++l.calls;
    if (reference && defs_.served_json(s) == nullptr) ++l.not_local;
    if (is_code_literal(s) || same_text(s, "doValidate")) l.unusual = true;
  }
  codec::PlainCursor c_;
  int max_json_depth_;
  int max_zobject_depth_ = 128;
  ParsedCall& out_;
  const Definitions& defs_;
  bool counting_ = true;  // off while an item type is read again (type_again)
};

bool is_ref_node(const Node& n, std::string_view& zid) {
  if (n.is_string || n.entries.size() != 2) return false;
  const Node::Entry& t = n.entries[0];
  const Node::Entry& k = n.entries[1];
  if (!(t.key == common_keys().z1k1) || !(k.key == common_keys().z9k1)) return false;
  const NodeP& tv = n.current(0);
  const NodeP& kv = n.current(1);
  if (!tv || !tv->is_string || !same_text(tv->text, "Z9") || !kv || !kv->is_string) return false;
  zid = kv->text;
  return true;
}

// interpreter.cc's called_functions, on the nodes: a list node made from an array is walked as
// the array (its item type, then its elements), a string's Z6 or Z9 as the string (a leaf).
void walk_calls(const ParsedCall& call, const Node& v, std::vector<std::string>& out, int depth) {
  if (depth > 64 || out.size() >= 32 || v.is_string) return;
  if (std::find(call.arrays.begin(), call.arrays.end(), &v) != call.arrays.end()) {
    // The item type: an implied Z881 of a ZID (lazy, left unbuilt) stands for a string; a call
    // has it as its Z881K1.
    for (const Node::Entry& e : v.entries) {
      if (!(e.key == common_keys().z1k1) || e.source != nullptr || !e.original) continue;
      if (const Node* t = e.original->peek("Z881K1")) walk_calls(call, *t, out, depth + 1);
    }
    for (const Node* cell = &v; cell != nullptr;) {
      const Node* item = cell->peek(common_keys().k1);
      if (item == nullptr) break;
      walk_calls(call, *item, out, depth + 1);
      cell = cell->peek(common_keys().k2);
    }
    return;
  }
  for (std::size_t i = 0; i < v.entries.size(); ++i) {
    const Node::Entry& e = v.entries[i];
    if (e.key == "Z99K1") continue;  // quoted: never evaluated
    const NodeP& child = v.current(i);
    if (!child) continue;
    if (e.key == common_keys().z7k1) {
      std::string_view zid;
      if (child->is_string) {
        zid = child->text;
      } else if (!is_ref_node(*child, zid)) {
        zid = {};
      }
      if (zo::is_zid(zid) && !zo::is_builtin_type(zid)) out.emplace_back(zid);
    }
    walk_calls(call, *child, out, depth + 1);
  }
}

}  // namespace

std::optional<ParsedCall> parse_call(std::string_view body, const RequestLimits& limits) {
  if (body.size() > kMaxReadBytes) return std::nullopt;
  ParsedCall out;
  out.body = body;
  if (!CallReader(body, limits, out).body()) return std::nullopt;
  return out;
}

nlohmann::json request_json(const ParsedCall& call) {
  return nlohmann::json::parse(call.body, nullptr, false);
}

void called_functions(const ParsedCall& call, std::vector<std::string>& out) {
  if (call.zobject) walk_calls(call, *call.zobject, out, 0);
}

}  // namespace wf::orchestrator::engine_detail
