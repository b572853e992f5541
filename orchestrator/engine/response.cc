// Response building. The common case (a metadata map of the standard Z883(Z6,Z1) shape and a
// value that canonicalises) is built directly in canonical form: each metadata pair is written
// once, instead of appended to a normal-form list (a walk and several type copies per key) and
// then converted as a whole. Anything else takes the general path: map_set + to_canonical.
#include "orchestrator/engine/response.h"

#include <algorithm>
#include <array>
#include <boost/container/small_vector.hpp>
#include <cassert>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "wf/obs/json_escape.h"
#include "wf/zobject/zobject.h"

namespace wf::orchestrator::engine_detail {

namespace {

namespace zo = wf::zobject;
using json = nlohmann::json;
using object_t = json::object_t;

struct Types {
  json map_normal = zo::map_type(zo::z9("Z6"), zo::z9("Z1"));
  json pair_normal = zo::pair_type(zo::z9("Z6"), zo::z9("Z1"));
  json list_normal = zo::list_type(zo::pair_type(zo::z9("Z6"), zo::z9("Z1")));
  json map_canonical = zo::to_canonical(map_normal);
  json pair_canonical = zo::to_canonical(pair_normal);
};

const Types& types() {
  static const Types t;
  return t;
}

// Canonical form of a Z6 holding s.
json canonical_string(std::string s) {
  if (!zo::is_reference_like(s)) return json(std::move(s));
  return zo::z6(s);
}

// The key of a standard pair: a normal Z6 with a string Z6K1.
const std::string* pair_key(const json& k) {
  if (!k.is_object() || k.size() != 2) return nullptr;
  auto t = k.find("Z1K1");
  auto v = k.find("Z6K1");
  if (t == k.end() || v == k.end() || *t != "Z6" || !v->is_string()) return nullptr;
  return &v->get_ref<const std::string&>();
}

// Walks the pairs of a standard metadata map (a Z883(Z6, Z1) map in normal form, unique string
// keys), calling on_pair(key, value) for each; false when the map has any other shape or on_pair
// refuses a value (then the general path runs). A value that is not a map at all counts as an
// empty map, as envelope_set_metadata does.
template <class OnPair>
bool for_each_standard_pair(const json& meta, OnPair&& on_pair) {
  if (!zo::is_map(meta)) return true;
  if (meta.size() != 2) return false;
  const Types& t = types();
  auto mt = meta.find("Z1K1");
  auto k1 = meta.find("K1");
  if (mt == meta.end() || k1 == meta.end() || *mt != t.map_normal) return false;
  std::vector<std::string_view> seen;
  const json* node = &*k1;
  for (;;) {
    if (!node->is_object()) return false;
    const auto& o = node->get_ref<const object_t&>();
    auto lt = o.find("Z1K1");
    if (lt == o.end() || lt->second != t.list_normal) return false;
    auto head = o.find("K1");
    if (head == o.end()) return o.size() == 1;
    auto rest = o.find("K2");
    if (rest == o.end() || o.size() != 3) return false;
    const json& pair = head->second;
    if (!pair.is_object() || pair.size() != 3) return false;
    auto pt = pair.find("Z1K1");
    auto pk = pair.find("K1");
    auto pv = pair.find("K2");
    if (pt == pair.end() || pk == pair.end() || pv == pair.end() || *pt != t.pair_normal) {
      return false;
    }
    const std::string* key = pair_key(*pk);
    if (key == nullptr) return false;
    // Duplicate keys: leave them to the general path.
    if (std::find(seen.begin(), seen.end(), *key) != seen.end()) return false;
    seen.push_back(*key);
    if (!on_pair(*key, *pv)) return false;
    node = &rest->second;
  }
}

// The pairs with their values canonicalised.
bool standard_pairs(const json& meta, std::vector<std::pair<std::string, json>>& out) {
  return for_each_standard_pair(meta, [&out](const std::string& key, const json& value) {
    if (!zo::check_mixed(value).empty()) return false;
    out.emplace_back(key, zo::to_canonical(value));
    return true;
  });
}

std::optional<json> fast_canonical(const json& envelope, const TrailingMeta& trailing,
                                   const RunStart& start) {
  if (!envelope.is_object() || envelope.size() != 3) return std::nullopt;
  auto t = envelope.find("Z1K1");
  auto v = envelope.find("Z22K1");
  auto m = envelope.find("Z22K2");
  if (t == envelope.end() || v == envelope.end() || m == envelope.end()) return std::nullopt;
  if (zo::ref_id(*t) != "Z22" || !zo::check_mixed(*v).empty()) return std::nullopt;
  std::vector<std::pair<std::string, json>> pairs;
  pairs.reserve(12);
  if (!standard_pairs(*m, pairs)) return std::nullopt;
  for (const auto& [key, value] : trailing) {
    auto same =
        std::find_if(pairs.begin(), pairs.end(), [&](const auto& p) { return p.first == key; });
    if (same != pairs.end()) return std::nullopt;  // rare: leave it to the general path
    pairs.emplace_back(key, canonical_string(value));
  }
  const OrchestrationTexts orchestration(start);
  for (std::size_t i = 0; i < OrchestrationTexts::kCount; ++i) {
    const std::string_view key = OrchestrationTexts::kKeys[i];
    json value = canonical_string(std::string(orchestration.value(i)));
    auto same =
        std::find_if(pairs.begin(), pairs.end(), [&](const auto& p) { return p.first == key; });
    if (same != pairs.end()) {
      same->second = std::move(value);
    } else {
      pairs.emplace_back(key, std::move(value));
    }
  }
  const Types& ty = types();
  json list(json::value_t::array);
  auto& items = list.get_ref<json::array_t&>();
  items.reserve(pairs.size() + 1);
  items.push_back(ty.pair_canonical);
  for (auto& [key, value] : pairs) {
    json pair(json::value_t::object);
    auto& p = pair.get_ref<object_t&>();
    p.emplace_hint(p.end(), "K1", canonical_string(key));
    p.emplace_hint(p.end(), "K2", std::move(value));
    p.emplace_hint(p.end(), "Z1K1", ty.pair_canonical);
    items.push_back(std::move(pair));
  }
  json meta(json::value_t::object);
  auto& mo = meta.get_ref<object_t&>();
  mo.emplace_hint(mo.end(), "K1", std::move(list));
  mo.emplace_hint(mo.end(), "Z1K1", ty.map_canonical);
  json out(json::value_t::object);
  auto& o = out.get_ref<object_t&>();
  o.emplace_hint(o.end(), "Z1K1", "Z22");
  o.emplace_hint(o.end(), "Z22K1", zo::to_canonical(*v));
  o.emplace_hint(o.end(), "Z22K2", std::move(meta));
  return out;
}

// ---- text -------------------------------------------------------------------------------------

constexpr auto kReplace = json::error_handler_t::replace;

// A JSON string exactly as nlohmann's dump(-1, ' ', false, replace) writes it. Text with bytes
// of 0x80 and above takes nlohmann's own serialiser, so invalid UTF-8 is replaced the same way.
// How many of the first bytes of s are written as they are (none below 0x20, '"', '\\' or
// 0x80 and above): eight bytes at a time (bit tricks on a 64-bit word), then one by one.
std::size_t plain_prefix(std::string_view s) {
  constexpr std::uint64_t kOnes = 0x0101010101010101u;
  constexpr std::uint64_t kHighs = 0x8080808080808080u;
  // Whether some byte of v is zero, or below n (for n <= 0x80, with no byte of v >= 0x80).
  const auto has_below = [](std::uint64_t v, std::uint64_t n) {
    return (v - n * kOnes) & ~v & kHighs;
  };
  // Non-zero when one of the eight bytes at p is to be escaped.
  const auto special = [&has_below](const char* p) {
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    return (w & kHighs) | has_below(w, 0x20) | has_below(w ^ (0x22 * kOnes), 1) |
           has_below(w ^ (0x5C * kOnes), 1);
  };
  std::size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    if (special(s.data() + i) != 0) break;  // the special byte is found one by one below
  }
  // The last bytes of a text of eight or more whose words were plain: the word that ends at its
  // end (its first bytes, checked already, again).
  if (i < s.size() && i >= 8 && i + 8 > s.size() && special(s.data() + s.size() - 8) == 0) {
    return s.size();
  }
  for (; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == '"' || c == '\\' || c >= 0x80) break;
  }
  return i;
}

// Appends `size` bytes that write(p) writes at p, without zero-filling them first. The size given
// to resize_and_overwrite's operation is not used: libstdc++ 12 passes the grown capacity there
// when the string has to grow (its _M_create widens the size it is given), not the size asked.
template <class Write>
void append_in_place(std::string& out, std::size_t size, Write&& write) {
  const std::size_t at = out.size();
  out.resize_and_overwrite(at + size, [&](char* d, std::size_t) {
    write(d + at);
    return at + size;
  });
}

void write_string(std::string& out, std::string_view s) {
  const std::size_t plain = plain_prefix(s);
  if (plain == s.size()) {
    // One resize (no zero fill) and two stores: the quotes' push_backs were calls of their own.
    append_in_place(out, s.size() + 2, [s](char* p) {
      p[0] = '"';
      if (!s.empty()) std::memcpy(p + 1, s.data(), s.size());
      p[s.size() + 1] = '"';
    });
    return;
  }
  for (std::size_t i = plain; i < s.size(); ++i) {
    if (static_cast<unsigned char>(s[i]) >= 0x80) {
      out += json(std::string(s)).dump(-1, ' ', false, kReplace);
      return;
    }
  }
  out += '"';
  out.append(s.substr(0, plain));
  for (std::size_t i = plain; i < s.size(); ++i) {
    obs::append_json_char(out, static_cast<unsigned char>(s[i]), obs::JsonEscapes::kNlohmann);
  }
  out += '"';
}

// Canonical text of a Z6 holding s (what canonical_string(s).dump() gives).
void write_canonical_z6(std::string& out, std::string_view s) {
  if (!zo::is_reference_like(s)) {
    write_string(out, s);
    return;
  }
  out += R"({"Z1K1":"Z6","Z6K1":)";
  write_string(out, s);
  out += '}';
}

// zo::is_reference_like, which a text that does not start with a capital letter never is.
bool reference_like(std::string_view s) {
  return !s.empty() && s[0] >= 'A' && s[0] <= 'Z' && zo::is_reference_like(s);
}

// Whether write_canonical_z6 writes `s` as it is, quoted: no byte to escape, not reference-like.
bool bare_z6(std::string_view s) {
  return plain_prefix(s) == s.size() && !reference_like(s);
}

// Canonical text of a normal-form value; false when it is not a valid ZObject (then the caller
// takes the general path). Normal Z6 and Z9, the usual metadata and result values, are written
// without building the canonical tree.
bool write_canonical(std::string& out, const json& v) {
  if (v.is_object() && v.size() == 2) {
    const auto& o = v.get_ref<const object_t&>();
    auto t = o.begin();  // "Z1K1" sorts first
    auto k = std::next(t);
    if (t->first == "Z1K1" && t->second.is_string() && k->second.is_string()) {
      const auto& tag = t->second.get_ref<const std::string&>();
      const auto& text = k->second.get_ref<const std::string&>();
      if (tag == "Z6" && k->first == "Z6K1") {
        write_canonical_z6(out, text);
        return true;
      }
      if (tag == "Z9" && k->first == "Z9K1" && zo::is_reference_like(text)) {
        write_string(out, text);
        return true;
      }
    }
  }
  if (!zo::check_mixed(v).empty()) return false;
  out += zo::to_canonical(v).dump(-1, ' ', false, kReplace);
  return true;
}

// The canonical texts of the metadata map's types (types().pair_canonical and map_canonical,
// dumped), as constants: their sizes are known where they are copied. answer_text_test compares
// whole answers with the canonical tree's dump.
struct TextTypes {
  std::string_view pair = R"({"Z1K1":"Z7","Z7K1":"Z882","Z882K1":"Z6","Z882K2":"Z1"})";
  std::string_view map = R"({"Z1K1":"Z7","Z7K1":"Z883","Z883K1":"Z6","Z883K2":"Z1"})";
  // What follows a pair's value: its type and the pair's end.
  std::string_view pair_close =
      R"(,"Z1K1":{"Z1K1":"Z7","Z7K1":"Z882","Z882K1":"Z6","Z882K2":"Z1"}})";
};

constexpr TextTypes text_types() {
  return {};
}

constexpr std::string_view kHead = R"({"Z1K1":"Z22","Z22K1":)";
constexpr std::string_view kMetaOpen = R"(,"Z22K2":{"K1":[)";
constexpr std::string_view kPairOpen = R"(,{"K1":)";
constexpr std::string_view kPairValue = R"(,"K2":)";

// Whether a type is a reference to Z22 (canonical "Z22" or a normal Z9): zo::ref_id(t) == "Z22"
// without the copy of the id and the map lookups.
bool is_z22_reference(const json& t) {
  if (t.is_string()) return t.get_ref<const std::string&>() == "Z22";
  if (!t.is_object() || t.size() != 2) return zo::ref_id(t) == "Z22";
  const auto& o = t.get_ref<const object_t&>();
  auto type = o.begin();  // "Z1K1" sorts before "Z9K1"
  auto id = std::next(type);
  return type->first == "Z1K1" && id->first == "Z9K1" && type->second.is_string() &&
         id->second.is_string() && type->second.get_ref<const std::string&>() == "Z9" &&
         id->second.get_ref<const std::string&>() == "Z22";
}

// One metadata pair of the answer: a value of the envelope's map (`value`), or a Z6 given as its
// string (`text`: the trailing and orchestration* pairs).
struct MetaPair {
  std::string_view key;
  const json* value = nullptr;
  std::string_view text;
  bool bare = false;  // key and text are known to be bare_z6 (no need to look)
};

// A pair of `more` (StaticPairs): its key is bare_z6, its text is looked at unless known to be.
MetaPair static_pair(const TextPair& p) {
  assert(bare_z6(p.key));
  return MetaPair{p.key, nullptr, p.text, p.bare_text || bare_z6(p.text)};
}

// An answer's pairs, on the stack for the usual few.
using MetaPairs = boost::container::small_vector<MetaPair, 24>;

// The envelope's value and the pairs of its standard map followed by `trailing` and `more`,
// viewed, not copied: the answer before its orchestration* figures. False when the envelope has
// another shape or a trailing key is already a key of the map (rare: the general path).
bool collect_pairs(const json& envelope, const TrailingMeta& trailing, StaticPairs more,
                   const json*& value, MetaPairs& pairs) {
  if (!envelope.is_object() || envelope.size() != 3) return false;
  auto t = envelope.find("Z1K1");
  auto v = envelope.find("Z22K1");
  auto m = envelope.find("Z22K2");
  if (t == envelope.end() || v == envelope.end() || m == envelope.end()) return false;
  if (!is_z22_reference(*t)) return false;
  value = &*v;
  pairs.reserve(trailing.size() + more.size() + 16);
  const bool standard =
      for_each_standard_pair(*m, [&pairs](const std::string& key, const json& pv) {
        pairs.push_back({key, &pv, {}});
        return true;
      });
  if (!standard) return false;
  const std::size_t in_map = pairs.size();
  const auto in_the_map = [&pairs, in_map](std::string_view k) {
    const auto end = pairs.begin() + static_cast<std::ptrdiff_t>(in_map);
    return std::find_if(pairs.begin(), end, [&](const MetaPair& p) { return p.key == k; }) != end;
  };
  for (const auto& [key, text] : trailing) {
    if (in_the_map(key)) return false;
    pairs.push_back({key, nullptr, text});
  }
  for (const TextPair& p : more) {
    if (in_the_map(p.key)) return false;
    pairs.push_back(static_pair(p));
  }
  return true;
}

// The canonical Z22 text is written in three parts: the head (up to the metadata pairs), one
// part per pair, and the tail.
// A pair of two Z6 texts: when neither has a byte to escape (the usual metadata), the whole pair
// is one append of its size (a resize and the parts' copies) instead of five; a reference-like
// text is wrapped in its Z6 object there, as write_canonical_z6 does. `bare`: both are known to
// be bare_z6.
void write_text_pair(std::string& out, std::string_view key, std::string_view text,
                     bool bare = false) {
  constexpr std::string_view close = text_types().pair_close;
  constexpr std::string_view kZ6Open = R"({"Z1K1":"Z6","Z6K1":)";
  bool wrap_key = false;
  bool wrap_text = false;
  if (!bare) {
    if (plain_prefix(key) != key.size() || plain_prefix(text) != text.size()) {
      out += kPairOpen;
      write_canonical_z6(out, key);
      out += kPairValue;
      write_canonical_z6(out, text);
      out += close;
      return;
    }
    wrap_key = reference_like(key);
    wrap_text = reference_like(text);
  }
  const std::size_t size = kPairOpen.size() + key.size() + kPairValue.size() + text.size() + 4 +
                           close.size() + (wrap_key + wrap_text) * (kZ6Open.size() + 1);
  append_in_place(out, size, [&](char* d) {
    const auto put = [](char* p, std::string_view part) {
      std::memcpy(p, part.data(), part.size());
      return p + part.size();
    };
    const auto put_z6 = [&put](char* p, std::string_view s, bool wrap) {
      if (wrap) p = put(p, kZ6Open);
      *p++ = '"';
      p = put(p, s);
      *p++ = '"';
      if (wrap) *p++ = '}';
      return p;
    };
    char* p = put(d, kPairOpen);
    p = put_z6(p, key, wrap_key);
    p = put(p, kPairValue);
    p = put_z6(p, text, wrap_text);
    put(p, close);
  });
}

void write_tail(std::string& out) {
  out += R"(],"Z1K1":)";
  out += text_types().map;
  out += "}}";
}

// Room for an answer of `pairs` metadata pairs.
void reserve_answer(std::string& out, std::size_t pairs) {
  out.reserve(out.size() + 320 + pairs * (text_types().pair_close.size() + 72));
}

// The answer up to its first metadata pair, the envelope's value by write_value(out); false when
// the value is not a valid ZObject.
template <class WriteValue>
bool write_head(std::string& out, WriteValue&& write_value) {
  out += kHead;
  if (!write_value(out)) return false;
  out += kMetaOpen;
  out += text_types().pair;
  return true;
}

// The pairs, each value's canonical text written in place; false when a value is not a valid
// ZObject.
bool write_pairs(std::string& out, const MetaPairs& pairs, bool* errors) {
  for (const MetaPair& p : pairs) {
    if (p.key == "errors") *errors = true;
    if (p.value == nullptr) {
      write_text_pair(out, p.key, p.text, p.bare);
      continue;
    }
    out += kPairOpen;
    write_canonical_z6(out, p.key);
    out += kPairValue;
    if (!write_canonical(out, *p.value)) return false;
    out += text_types().pair_close;
  }
  return true;
}

// The head and the pairs (false, and `out` holding a part of the answer, when a value is not a
// valid ZObject: the caller drops it).
template <class WriteValue>
bool write_head_and_pairs(std::string& out, WriteValue&& write_value, const MetaPairs& pairs,
                          bool* errors) {
  reserve_answer(out, pairs.size());
  return write_head(out, write_value) && write_pairs(out, pairs, errors);
}

// Whether the orchestration* pair `i` is bare_z6 in key and text: the keys are, and so are the
// figures' texts (digits, '.', ':', '-', letters and spaces: none starts with a capital letter);
// the host name is looked at once (it is the same for the process's life).
bool orchestration_bare(const OrchestrationTexts& orchestration, std::size_t i) {
  if (i != OrchestrationTexts::kHostname) return true;
  static const bool hostname_bare = bare_z6(orchestration.value(i));
  return hostname_bare;
}

// Whether `key` has the size of one of the six orchestration* keys (one bit each in kSizes): a key
// of another size is none of them (the cost breakdown's keys, the implementation keys).
bool maybe_orchestration_key(std::string_view key) {
  constexpr std::uint64_t kSizes = [] {
    std::uint64_t bits = 0;
    for (std::string_view k : OrchestrationTexts::kKeys) bits |= std::uint64_t{1} << k.size();
    return bits;
  }();
  return key.size() < 64 && (kSizes >> key.size() & 1) != 0;
}

// Appends the orchestration* pairs (viewed: `orchestration` outlives `pairs`); one whose key is
// already among the pairs takes the new figure in the place of its first. Only keys of the six
// keys' sizes are compared with them.
void add_orchestration_pairs(const OrchestrationTexts& orchestration, MetaPairs& pairs) {
  std::array<bool, OrchestrationTexts::kCount> placed{};
  const auto pair = [&orchestration](std::size_t i) {
    return MetaPair{OrchestrationTexts::kKeys[i], nullptr, orchestration.value(i),
                    orchestration_bare(orchestration, i)};
  };
  for (MetaPair& p : pairs) {
    if (!maybe_orchestration_key(p.key)) continue;
    for (std::size_t i = 0; i < OrchestrationTexts::kCount; ++i) {
      if (!placed[i] && p.key == OrchestrationTexts::kKeys[i]) {
        p = pair(i);
        placed[i] = true;
        break;
      }
    }
  }
  for (std::size_t i = 0; i < OrchestrationTexts::kCount; ++i) {
    if (!placed[i]) pairs.push_back(pair(i));
  }
}

bool fast_text(const json& envelope, const TrailingMeta& trailing, StaticPairs more,
               const RunStart& start, std::string& out, bool* has_error) {
  const json* value = nullptr;
  MetaPairs pairs;
  if (!collect_pairs(envelope, trailing, more, value, pairs)) return false;
  const OrchestrationTexts orchestration(start);
  add_orchestration_pairs(orchestration, pairs);
  bool errors = false;
  const auto write_value = [value](std::string& o) { return write_canonical(o, *value); };
  if (!write_head_and_pairs(out, write_value, pairs, &errors)) {
    out.clear();
    return false;
  }
  write_tail(out);
  if (has_error != nullptr) *has_error = errors;
  return true;
}

// The text of an entry of a terminal value: its bare string, when the entry is built (a lazy one
// reads differently in to_json()) and holds one; else null.
const std::string* built_text(const Node::Entry& e) {
  if (!e.persisted && e.source != nullptr) return nullptr;
  const Node* v = e.persisted ? e.persisted.get() : e.original.get();
  return v != nullptr && v->is_string ? &v->text : nullptr;
}

// The tag ("Z6" or "Z9") and the text of a value Answer::is_terminal_value accepts.
struct Terminal {
  const std::string* tag = nullptr;
  const std::string* text = nullptr;
};

Terminal terminal_of(const Node& value) {
  if (value.is_string || value.entries.size() != 2) return {};
  const CommonKeys& keys = common_keys();
  const std::string* tag = nullptr;
  const std::string* z6 = nullptr;
  const std::string* z9 = nullptr;
  for (const Node::Entry& e : value.entries) {
    const std::string* text = built_text(e);
    if (text == nullptr) return {};
    if (e.key == keys.z1k1) {
      tag = text;
    } else if (e.key == keys.z6k1) {
      z6 = text;
    } else if (e.key == keys.z9k1) {
      z9 = text;
    }
  }
  if (tag == nullptr) return {};
  if (same_text(*tag, "Z6") && z6 != nullptr) return {tag, z6};
  if (same_text(*tag, "Z9") && z9 != nullptr && zo::is_reference_like(*z9)) return {tag, z9};
  return {};
}

// The canonical text of a terminal value: what write_canonical writes of its to_json().
void write_terminal(std::string& out, const Node& value) {
  const Terminal t = terminal_of(value);
  if (same_text(*t.tag, "Z6")) {
    write_canonical_z6(out, *t.text);
  } else {
    write_string(out, *t.text);
  }
}

// fast_text of Z22(terminal, void) with `trailing` and `more`: the pairs are theirs.
std::string terminal_text(const Node& terminal, const TrailingMeta& trailing, StaticPairs more,
                          const RunStart& start, bool* has_error) {
  const OrchestrationTexts orchestration(start);
  const auto write_value = [&terminal](std::string& o) {
    write_terminal(o, terminal);
    return true;
  };
  std::string out;
  bool errors = false;
  const bool some_in_place =
      std::any_of(trailing.begin(), trailing.end(),
                  [](const auto& p) { return maybe_orchestration_key(p.first); }) ||
      std::any_of(more.begin(), more.end(),
                  [](const TextPair& p) { return maybe_orchestration_key(p.key); });
  if (some_in_place) {  // rare: an orchestration* figure may take a pair's place
    MetaPairs pairs;
    pairs.reserve(trailing.size() + more.size() + 8);
    for (const auto& [key, text] : trailing) pairs.push_back({key, nullptr, text});
    for (const TextPair& p : more) pairs.push_back(static_pair(p));
    add_orchestration_pairs(orchestration, pairs);
    reserve_answer(out, pairs.size());
    write_head(out, write_value);
    write_pairs(out, pairs, &errors);
  } else {  // each pair written as it comes, in the same order
    reserve_answer(out, trailing.size() + more.size() + OrchestrationTexts::kCount);
    write_head(out, write_value);
    for (const auto& [key, text] : trailing) {
      if (std::string_view(key) == "errors") errors = true;
      write_text_pair(out, key, text);
    }
    for (const TextPair& p : more) {
      if (p.key == "errors") errors = true;
      write_text_pair(out, p.key, p.text, p.bare_text);
    }
    for (std::size_t i = 0; i < OrchestrationTexts::kCount; ++i) {
      write_text_pair(out, OrchestrationTexts::kKeys[i], orchestration.value(i),
                      orchestration_bare(orchestration, i));
    }
  }
  write_tail(out);
  if (has_error != nullptr) *has_error = errors;
  return out;
}

// Whether a Z22 (canonical or normal) has an "errors" key in its metadata map.
bool envelope_has_error(const json& z22) {
  if (!z22.is_object()) return false;
  const auto meta = z22.find("Z22K2");
  if (meta == z22.end() || !meta->is_object()) return false;
  const auto list = meta->find("K1");
  if (list == meta->end()) return false;
  const auto has_errors_key = [](const json& pair) {
    const auto k = pair.find("K1");
    if (k == pair.end()) return false;
    if (k->is_string()) return *k == "errors";
    return k->is_object() && k->value("Z6K1", "") == "errors";
  };
  if (list->is_array()) {
    for (const auto& p : *list) {
      if (p.is_object() && has_errors_key(p)) return true;
    }
    return false;
  }
  // Normal form: a linked list of pairs.
  for (const json* node = &*list; node->is_object() && node->contains("K1");) {
    if (has_errors_key((*node)["K1"])) return true;
    const auto next = node->find("K2");
    if (next == node->end()) break;
    node = &*next;
  }
  return false;
}

}  // namespace

std::string dump_response(const json& z22, bool* has_error) {
  if (has_error != nullptr) *has_error = envelope_has_error(z22);
  return z22.dump(-1, ' ', false, kReplace);
}

void add_trailing_metadata(json& envelope, const TrailingMeta& trailing, StaticPairs more) {
  for (const auto& [key, value] : trailing) zo::envelope_set_metadata(envelope, key, zo::z6(value));
  for (const TextPair& p : more) zo::envelope_set_metadata(envelope, p.key, zo::z6(p.text));
}

std::string finish_response_text(const json& envelope, const TrailingMeta& trailing,
                                 const RunStart& start, bool* has_error, StaticPairs more) {
  std::string out;
  if (fast_text(envelope, trailing, more, start, out, has_error)) return out;
  json copy = envelope;
  add_trailing_metadata(copy, trailing, more);
  return dump_response(finish_response(std::move(copy), start), has_error);
}

bool Answer::is_terminal_value(const Node& value) {
  return terminal_of(value).tag != nullptr;
}

json& Answer::as_envelope() {
  if (terminal) {
    envelope = zo::make_envelope(terminal->to_json(), nullptr);
    terminal.reset();
  }
  return envelope;
}

bool Answer::has_error() const {
  return !terminal && zo::has_error(envelope);  // a terminal's metadata is void
}

std::string finish_answer_text(Answer& answer, const TrailingMeta& trailing, const RunStart& start,
                               bool* has_error, StaticPairs more) {
  if (answer.terminal) return terminal_text(*answer.terminal, trailing, more, start, has_error);
  return finish_response_text(answer.envelope, trailing, start, has_error, more);
}

std::optional<std::string> cached_answer_head(const json& envelope, const TrailingMeta& trailing) {
  const json* value = nullptr;
  MetaPairs pairs;
  if (!collect_pairs(envelope, trailing, {}, value, pairs)) return std::nullopt;
  // The pairs a served answer adds must not be there already (nor an error: never cached).
  for (const MetaPair& p : pairs) {
    if (p.key == "errors" || p.key == kResultCacheKey || p.key.starts_with("orchestration")) {
      return std::nullopt;
    }
  }
  std::string out;
  bool errors = false;
  const auto write_value = [value](std::string& o) { return write_canonical(o, *value); };
  if (!write_head_and_pairs(out, write_value, pairs, &errors)) return std::nullopt;
  return out;
}

std::string cached_answer(std::string_view head, const TrailingMeta& added, const RunStart& start) {
  std::string out;
  out.reserve(head.size() + (added.size() + 6) * (text_types().pair.size() + 80) +
              text_types().map.size());
  out.append(head);
  for (const auto& [key, value] : added) write_text_pair(out, key, value);
  const OrchestrationTexts orchestration(start);
  for (std::size_t i = 0; i < OrchestrationTexts::kCount; ++i) {
    write_text_pair(out, OrchestrationTexts::kKeys[i], orchestration.value(i),
                    orchestration_bare(orchestration, i));
  }
  write_tail(out);
  return out;
}

json finish_response(json envelope, const RunStart& start) {
  return finish_response(std::move(envelope), TrailingMeta{}, start);
}

json finish_response(json envelope, const TrailingMeta& trailing, const RunStart& start) {
  if (auto fast = fast_canonical(envelope, trailing, start)) return std::move(*fast);
  add_trailing_metadata(envelope, trailing);
  add_orchestration_metadata(envelope, start);
  if (zo::check_mixed(envelope).empty()) return zo::to_canonical(envelope);
  return envelope;
}

}  // namespace wf::orchestrator::engine_detail
