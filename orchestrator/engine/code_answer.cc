#include "orchestrator/engine/code_answer.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "wf/codec/plain_json.h"
#include "wf/zobject/metadata_text.h"
#include "wf/zobject/zobject.h"

namespace wf::orchestrator {

namespace {

namespace zo = wf::zobject;
using json = nlohmann::json;

// ---- the metadata map as wf-evaluator writes it ----------------------------------------------

// The bytes of wf-evaluator's metadata map (wf/zobject/metadata_text.h).
constexpr std::string_view kMapTypeText = wf::zobject::metadata_text::kMapType;
constexpr std::string_view kPairTypeText = wf::zobject::metadata_text::kPairType;
constexpr std::string_view kListTypeHeadText = wf::zobject::metadata_text::kListTypeHead;
// More pairs than this go to the Viewer (its depth bound then decides, as for any other text).
constexpr std::size_t kMaxExactPairs = 48;

// Reads a standard metadata map (code_answer.h) written byte for byte as wf-evaluator writes it,
// with one comparison per type text instead of a walk over its ~150 objects; the strings are read
// as the Viewer reads them (PlainCursor::string_text). Anything else (whitespace, another key
// order, an escape, "errors", a repeated key) is left to the Viewer: false, the cursor
// unmoved. On success the cursor is past the map and `pairs` holds its pairs in order.
bool read_exact_meta(codec::PlainCursor& c, MetaPairs& pairs) {
  const char* p = c.p;
  const auto take = [&](std::string_view s) {
    if (static_cast<std::size_t>(c.end - p) < s.size() || std::memcmp(p, s.data(), s.size()) != 0) {
      return false;
    }
    p += s.size();
    return true;
  };
  const auto string = [&](std::string_view& out) {
    codec::PlainCursor s{p, c.end};
    if (!s.string_text(out)) return false;
    p = s.p;
    return true;
  };
  if (!take(R"({"Z1K1":)") || !take(kMapTypeText) || !take(R"(,"K1":)")) return false;
  MetaPairs out;
  for (;;) {
    if (!take(R"({"Z1K1":)") || !take(kListTypeHeadText) || !take(kPairTypeText) || !take("}")) {
      return false;
    }
    if (take("}")) break;  // the list's end: a node with its type alone
    std::string_view key;
    std::string_view text;
    if (out.size() == kMaxExactPairs || !take(R"(,"K1":{"Z1K1":)") || !take(kPairTypeText) ||
        !take(R"(,"K1":{"Z1K1":"Z6","Z6K1":")") || !string(key) ||
        !take(R"(},"K2":{"Z1K1":"Z6","Z6K1":")") || !string(text) || !take(R"(}},"K2":)")) {
      return false;
    }
    if (key == "errors") return false;  // an error's map is kept whole (standard_pairs)
    for (const auto& [other, _] : out) {
      if (other == key) return false;
    }
    if (out.empty()) out.reserve(10);
    out.emplace_back(std::string(key), std::string(text));
  }
  for (std::size_t i = 0; i <= out.size(); ++i) {  // the nodes' closing braces, then the map's
    if (!take("}")) return false;
  }
  c.p = p;
  pairs = std::move(out);
  return true;
}

// ---- a view of the text: one node per value, no copies ----------------------------------------

struct View {
  enum class Kind : std::uint8_t { kObject, kArray, kString, kLiteral };
  Kind kind = Kind::kLiteral;
  std::string_view key;     // the member's name, for a member of an object
  std::string_view text;    // a string's characters; for any other value its whole text
  std::uint32_t first = 0;  // index of the first member or element + 1; 0: none
  std::uint32_t next = 0;   // index of the next sibling + 1; 0: none
  std::uint32_t size = 0;   // members or elements
};

// Reads what codec::parse_plain_json reads (objects, arrays, strings of printable ASCII without
// escapes, true, false, null; no duplicate keys; at most kMaxPlainDepth levels) into Views;
// anything else fails, and the caller parses the text as before.
class Viewer {
 public:
  static constexpr std::uint32_t kMaxMembers = 64;

  explicit Viewer(std::string_view text) : c_{text.data(), text.data() + text.size()} {
    nodes_.reserve(text.size() / 12 + 4);
  }

  bool read() {
    if (!value(0)) return false;
    skip_space();
    return c_.p == c_.end;
  }

  const View& node(std::uint32_t index) const { return nodes_[index]; }
  // The envelope's metadata map when read_exact_meta read it (its node and pairs), else nullptr.
  const View* exact_meta_node() const {
    return exact_meta_node_ ? &nodes_[exact_meta_node_ - 1] : nullptr;
  }
  MetaPairs take_exact_meta() { return std::move(exact_meta_); }

  const View* child(const View& v) const { return v.first ? &nodes_[v.first - 1] : nullptr; }
  const View* next(const View& v) const { return v.next ? &nodes_[v.next - 1] : nullptr; }

  const View* member(const View& object, std::string_view key) const {
    for (const View* m = child(object); m != nullptr; m = next(*m)) {
      if (m->key == key) return m;
    }
    return nullptr;
  }

 private:
  void skip_space() { c_.skip_space(); }
  bool string_text(std::string_view& out) { return c_.string_text(out); }
  bool literal(std::string_view word) { return c_.literal(word); }

  // An object's text already read (a type, repeated once per list node or pair of a map), with
  // the node that has its members and how many levels it holds below its own.
  struct Repeat {
    std::string_view text;
    std::uint32_t node = 0;
    int height = 0;
    std::uint64_t used = 0;
  };
  static constexpr std::size_t kMinRepeat = 48;  // shorter objects cost less to read than to match
  static constexpr std::size_t kMaxRepeat = 1024;

  // A remembered object whose text starts at the cursor, and fits under the depth bound here.
  const Repeat* repeated(int depth) {
    const auto left = static_cast<std::size_t>(c_.end - c_.p);
    for (Repeat& r : repeats_) {
      const std::size_t n = r.text.size();
      if (n == 0 || n > left || depth + r.height >= codec::kMaxPlainDepth) continue;
      // The last bytes first: they differ between types that share their first ones.
      if (c_.p[n - 2] != r.text[n - 2] || std::memcmp(c_.p, r.text.data(), n) != 0) continue;
      r.used = ++tick_;
      return &r;
    }
    return nullptr;
  }

  // Keeps an object just read for repeated(), in place of the one matched least recently.
  void remember(std::uint32_t node, const char* start, int height) {
    const auto n = static_cast<std::size_t>(c_.p - start);
    if (n < kMinRepeat || n > kMaxRepeat) return;
    Repeat* slot = &repeats_[0];
    for (Repeat& r : repeats_) {
      if (r.used < slot->used) slot = &r;
    }
    *slot = Repeat{std::string_view(start, n), node, height, ++tick_};
  }

  // Appends the value at the cursor as a node (its index: nodes_.size() - 1 before its children).
  bool value(int depth) {
    deepest_ = std::max(deepest_, depth);
    skip_space();
    if (c_.p == c_.end) return false;
    const char* start = c_.p;
    const auto index = static_cast<std::uint32_t>(nodes_.size());
    nodes_.emplace_back();
    bool ok = false;
    View::Kind kind = View::Kind::kLiteral;
    switch (*c_.p) {
      case '{': {
        if (const Repeat* r = repeated(depth)) {
          // The text of an object read before: the same members, so its children serve.
          View& v = nodes_[index];
          v.kind = View::Kind::kObject;
          v.text = std::string_view(start, r->text.size());
          v.first = nodes_[r->node].first;
          v.size = nodes_[r->node].size;
          c_.p += r->text.size();
          deepest_ = std::max(deepest_, depth + r->height);
          return true;
        }
        ++c_.p;
        kind = View::Kind::kObject;
        const int outer = deepest_;
        deepest_ = depth;
        ok = depth < codec::kMaxPlainDepth && members(index, depth + 1);
        if (ok) remember(index, start, deepest_ - depth);
        deepest_ = std::max(outer, deepest_);
        break;
      }
      case '[':
        ++c_.p;
        kind = View::Kind::kArray;
        ok = depth < codec::kMaxPlainDepth && elements(index, depth + 1);
        break;
      case '"': {
        ++c_.p;
        std::string_view s;
        ok = string_text(s);
        nodes_[index].kind = View::Kind::kString;
        nodes_[index].text = s;
        return ok;
      }
      case 't':
        ok = literal("true");
        break;
      case 'f':
        ok = literal("false");
        break;
      case 'n':
        ok = literal("null");
        break;
      default:
        return false;  // a number, or not JSON
    }
    nodes_[index].kind = kind;
    nodes_[index].text = std::string_view(start, static_cast<std::size_t>(c_.p - start));
    return ok;
  }

  // Links the node just appended after `last` (the parent's previous child, or none).
  void link(std::uint32_t parent, std::uint32_t& last, std::uint32_t child) {
    if (last == 0) {
      nodes_[parent].first = child + 1;
    } else {
      nodes_[last - 1].next = child + 1;
    }
    last = child + 1;
    ++nodes_[parent].size;
  }

  bool members(std::uint32_t parent, int depth) {
    std::uint32_t last = 0;
    return c_.members([&](std::string_view key) {
      // A duplicate key (nlohmann keeps one of them), or more members than are worth comparing
      // keys for: left to the general parser.
      if (nodes_[parent].size >= kMaxMembers) return false;
      for (const View* m = last ? child(nodes_[parent]) : nullptr; m != nullptr; m = next(*m)) {
        if (m->key == key) return false;
      }
      const auto index = static_cast<std::uint32_t>(nodes_.size());
      if (parent == 0 && key == "Z22K2" && exact_meta_node_ == 0 && exact_meta(index)) {
        // done: the envelope's map as wf-evaluator writes it
      } else if (!value(depth)) {
        return false;
      }
      nodes_[index].key = key;
      link(parent, last, index);
      return true;
    });
  }

  // The envelope's Z22K2 read by read_exact_meta: one node for the whole map, without children.
  bool exact_meta(std::uint32_t index) {
    skip_space();
    const char* start = c_.p;
    if (!read_exact_meta(c_, exact_meta_)) return false;
    View& v = nodes_.emplace_back();
    v.kind = View::Kind::kObject;
    v.text = std::string_view(start, static_cast<std::size_t>(c_.p - start));
    exact_meta_node_ = index + 1;
    return true;
  }

  bool elements(std::uint32_t parent, int depth) {
    std::uint32_t last = 0;
    return c_.items(']', [&] {
      const auto index = static_cast<std::uint32_t>(nodes_.size());
      if (!value(depth)) return false;
      link(parent, last, index);
      return true;
    });
  }

  codec::PlainCursor c_;
  std::vector<View> nodes_;
  MetaPairs exact_meta_;               // the pairs read_exact_meta read
  std::uint32_t exact_meta_node_ = 0;  // its node's index + 1; 0: none
  std::array<Repeat, 8> repeats_{};
  std::uint64_t tick_ = 0;
  int deepest_ = 0;  // the deepest level read so far (repeated(): the bound holds for a copy)
};

// ---- the standard metadata map ----------------------------------------------------------------

struct MetaTypes {
  json map = zo::map_type(zo::z9("Z6"), zo::z9("Z1"));
  json pair = zo::pair_type(zo::z9("Z6"), zo::z9("Z1"));
  json list = zo::list_type(zo::pair_type(zo::z9("Z6"), zo::z9("Z1")));
};

const MetaTypes& meta_types() {
  static const MetaTypes t;
  return t;
}

// Whether the viewed value is `j` (objects and strings: what a type is made of). Members are
// unique in a View (Viewer), so equal sizes and every member found equal mean the same object.
bool same(const Viewer& viewer, const View& v, const json& j) {
  if (v.kind == View::Kind::kString) {
    return j.is_string() && j.get_ref<const std::string&>() == v.text;
  }
  if (v.kind != View::Kind::kObject || !j.is_object() || j.size() != v.size) return false;
  const auto& o = j.get_ref<const json::object_t&>();
  for (const View* m = viewer.child(v); m != nullptr; m = viewer.next(*m)) {
    const auto it = o.find(m->key);
    if (it == o.end() || !same(viewer, *m, it->second)) return false;
  }
  return true;
}

// Whether `v` is `type`; `seen` remembers the text of one that was, since an answer repeats the
// same text for every list node and pair (and the same text is the same value).
bool is_type(const Viewer& viewer, const View& v, const json& type, std::string_view& seen) {
  if (!seen.empty() && v.text == seen) return true;
  if (!same(viewer, v, type)) return false;
  seen = v.text;
  return true;
}

// The string of a normal Z6 ({"Z1K1": "Z6", "Z6K1": string}), or nullptr.
const std::string_view* z6_text(const Viewer& viewer, const View& v) {
  if (v.kind != View::Kind::kObject || v.size != 2) return nullptr;
  const View* t = viewer.member(v, "Z1K1");
  const View* s = viewer.member(v, "Z6K1");
  if (t == nullptr || s == nullptr || t->kind != View::Kind::kString || t->text != "Z6" ||
      s->kind != View::Kind::kString) {
    return nullptr;
  }
  return &s->text;
}

// The pairs of a standard metadata map, or nullopt for any other value.
std::optional<MetaPairs> standard_pairs(const Viewer& viewer, const View& meta) {
  if (meta.kind != View::Kind::kObject || meta.size != 2) return std::nullopt;
  const MetaTypes& types = meta_types();
  const View* map_type = viewer.member(meta, "Z1K1");
  const View* node = viewer.member(meta, "K1");
  std::string_view seen_map;
  if (map_type == nullptr || node == nullptr || !is_type(viewer, *map_type, types.map, seen_map)) {
    return std::nullopt;
  }
  MetaPairs pairs;
  pairs.reserve(10);
  std::string_view seen_list;
  std::string_view seen_pair;
  for (;;) {
    if (node->kind != View::Kind::kObject) return std::nullopt;
    const View* list_type = viewer.member(*node, "Z1K1");
    if (list_type == nullptr || !is_type(viewer, *list_type, types.list, seen_list)) {
      return std::nullopt;
    }
    if (node->size == 1) return pairs;
    const View* pair = viewer.member(*node, "K1");
    const View* rest = viewer.member(*node, "K2");
    if (node->size != 3 || pair == nullptr || rest == nullptr ||
        pair->kind != View::Kind::kObject || pair->size != 3) {
      return std::nullopt;
    }
    const View* pair_type = viewer.member(*pair, "Z1K1");
    const View* key = viewer.member(*pair, "K1");
    const View* value = viewer.member(*pair, "K2");
    if (pair_type == nullptr || key == nullptr || value == nullptr ||
        !is_type(viewer, *pair_type, types.pair, seen_pair)) {
      return std::nullopt;
    }
    const std::string_view* k = z6_text(viewer, *key);
    const std::string_view* text = z6_text(viewer, *value);
    // "errors" makes an envelope an error (Envelope::has_error): that answer keeps its map.
    if (k == nullptr || text == nullptr || *k == "errors") return std::nullopt;
    for (const auto& [other, _] : pairs) {
      if (other == *k) return std::nullopt;  // duplicate keys: the general path's business
    }
    pairs.emplace_back(std::string(*k), std::string(*text));
    node = rest;
  }
}

std::optional<CodeAnswer> split_answer(std::string_view text) {
  Viewer viewer(text);
  if (!viewer.read()) return std::nullopt;
  const View& root = viewer.node(0);
  if (root.kind != View::Kind::kObject) return std::nullopt;
  const View* meta = viewer.member(root, "Z22K2");
  if (meta == nullptr) return std::nullopt;
  auto pairs = meta == viewer.exact_meta_node() ? std::optional(viewer.take_exact_meta())
                                                : standard_pairs(viewer, *meta);
  if (!pairs) return std::nullopt;
  CodeAnswer out;
  out.z22 = json(json::value_t::object);
  auto& o = out.z22.get_ref<json::object_t&>();
  for (const View* m = viewer.child(root); m != nullptr; m = viewer.next(*m)) {
    if (m == meta) continue;
    auto v = codec::parse_plain_json(m->text);
    if (!v) return std::nullopt;
    o.emplace(std::string(m->key), std::move(*v));
  }
  out.meta = std::move(*pairs);
  return out;
}

}  // namespace

CodeAnswer read_code_answer(std::string_view text) {
  if (auto split = split_answer(text)) return std::move(*split);
  if (auto plain = codec::parse_plain_json(text)) return CodeAnswer(std::move(*plain));
  return CodeAnswer(json::parse(text, nullptr, false));
}

json metadata_map(const MetaPairs& pairs) {
  const MetaTypes& types = meta_types();
  json node(json::value_t::object);
  node.get_ref<json::object_t&>().emplace("Z1K1", types.list);
  for (auto it = pairs.rbegin(); it != pairs.rend(); ++it) {
    json pair(json::value_t::object);
    auto& p = pair.get_ref<json::object_t&>();
    p.emplace_hint(p.end(), "K1", zo::z6(it->first));
    p.emplace_hint(p.end(), "K2", zo::z6(it->second));
    p.emplace_hint(p.end(), "Z1K1", types.pair);
    json outer(json::value_t::object);
    auto& o = outer.get_ref<json::object_t&>();
    o.emplace_hint(o.end(), "K1", std::move(pair));
    o.emplace_hint(o.end(), "K2", std::move(node));
    o.emplace_hint(o.end(), "Z1K1", types.list);
    node = std::move(outer);
  }
  json map(json::value_t::object);
  auto& m = map.get_ref<json::object_t&>();
  m.emplace_hint(m.end(), "K1", std::move(node));
  m.emplace_hint(m.end(), "Z1K1", types.map);
  return map;
}

json whole_z22(CodeAnswer answer) {
  if (answer.meta && answer.z22.is_object()) answer.z22["Z22K2"] = metadata_map(*answer.meta);
  return std::move(answer.z22);
}

}  // namespace wf::orchestrator
