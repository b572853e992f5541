// String built-ins: equality, code points, and back.
#include <algorithm>
#include <array>
#include <vector>

#include "orchestrator/engine/builtin_table.h"
#include "orchestrator/engine/builtins_support.h"
#include "wf/zobject/zobject.h"

namespace wf::orchestrator::engine_detail {

namespace zo = wf::zobject;

namespace {

Envelope same_string(const BuiltinCall& c) {
  return c.ok(bool_node(text_of(c.arg(0)) == text_of(c.arg(1))));
}

// Length of the UTF-8 sequence starting with byte c (1 for a stray continuation byte).
std::size_t utf8_length(unsigned char c) {
  if (c < 0x80) return 1;
  if ((c >> 5) == 0x6) return 2;
  if ((c >> 4) == 0xE) return 3;
  if ((c >> 3) == 0x1E) return 4;
  return 1;
}

const Key& z86k1() {
  static const Key key("Z86K1");
  return key;
}

// The Z86 of the code point `text`: {Z1K1: Z86, Z86K1: text as a Z6}.
NodeP code_point_node(std::string text) {
  auto cp = Node::make_object();
  cp->entries.reserve(2);
  cp->add(common_keys().z1k1, z9_node("Z86"));
  cp->add(z86k1(), z6_node(std::move(text)));  // one ASCII character: a shared node
  return cp;
}

// The code points of the 128 ASCII characters as shared nodes (Node::interned: immutable, never
// counted or freed), made once per process as intern_terminal makes a shared string object: a
// string's code points are mostly these, and each was a node and an entry array per character
// and request, built and freed again. Null for a character whose parts are not shared (the
// string table was full): then a node per request.
NodeP ascii_code_point(unsigned char c) {
  // A plain array in static storage: it outlives static destruction, so the nodes stay
  // reachable to LeakSanitizer at exit (a vector's buffer is freed before its check).
  static const std::array<Node*, 128> shared = [] {
    std::array<Node*, 128> out{};
    for (int ch = 0; ch < 128; ++ch) {
      NodeP tag = z9_node("Z86");
      NodeP text = z6_node(std::string(1, static_cast<char>(ch)));
      if (!tag->interned || !text->interned) continue;
      auto* node = new Node;  // never freed
      node->interned = true;
      node->entries.reserve(2);
      node->entries.push_back({common_keys().z1k1, std::move(tag)});
      node->entries.push_back({z86k1(), std::move(text)});
      out[ch] = node;
    }
    return out;
  }();
  Node* n = c < 0x80 ? shared[c] : nullptr;
  return n != nullptr ? NodeP(n) : nullptr;
}

Envelope string_to_code_points(const BuiltinCall& c) {
  const std::string s = text_of(c.arg(0));
  std::vector<NodeP> items;
  items.reserve(std::min<std::size_t>(s.size(), zo::kMaxListElements + 1));
  for (std::size_t i = 0; i < s.size();) {
    const auto first = static_cast<unsigned char>(s[i]);
    std::size_t len = std::min(utf8_length(first), s.size() - i);
    NodeP cp = len == 1 ? ascii_code_point(first) : nullptr;
    items.push_back(cp ? std::move(cp) : code_point_node(s.substr(i, len)));
    i += len;
    if (items.size() > zo::kMaxListElements) {
      return Envelope::err(zo::make_error_msg(
          "Z500", "the string has more than " + std::to_string(zo::kMaxListElements) +
                      " code points, the longest list a value may hold"));
    }
  }
  return c.ok(c.in.make_list(z9_node("Z86"), items));
}

// Appends what text_of(n) gives (a bare string's text, a Z6's Z6K1), without copies.
void append_text(std::string& out, const Node* n) {
  if (n == nullptr) return;
  if (n->is_string) {
    out += n->text;
    return;
  }
  const CommonKeys& keys = common_keys();
  const Node* t = n->peek(keys.z1k1);
  if (t == nullptr || !t->is_string || !text_is(*t, "Z6")) return;
  const Node* k = n->peek(keys.z6k1);
  if (k != nullptr && k->is_string) out += k->text;
}

// The list's cells read in place by interned keys (list_elements copied every element, and
// looked K1, K2 and Z86K1 up by text: ~1.2 k instructions a code point).
Envelope code_points_to_string(const BuiltinCall& c) {
  const CommonKeys& keys = common_keys();
  std::string out;
  for (const Node* cell = c.arg(0).get(); cell != nullptr && !cell->is_string;
       cell = cell->peek(keys.k2)) {
    if (!cell->has(keys.k1)) break;
    const Node* e = cell->peek(keys.k1);
    if (e == nullptr) continue;
    if (e->is_string) {
      out += e->text;
    } else if (e->is_z6()) {
      append_text(out, e);
    } else {
      append_text(out, e->peek(z86k1()));
    }
  }
  return c.ok(z6_node(std::move(out)));
}

Envelope same_code_point(const BuiltinCall& c) {
  auto cp = [](const NodeP& n) {
    return n && !n->is_string ? text_of(n->get("Z86K1")) : text_of(n);
  };
  return c.ok(bool_node(cp(c.arg(0)) == cp(c.arg(1))));
}

}  // namespace

void register_string_builtins(BuiltinTable& t) {
  t.add("Z966", {.arity = 2, .fn = same_string});
  t.add("Z968", {.arity = 1, .fn = string_to_code_points});
  t.add("Z986", {.arity = 1, .fn = code_points_to_string});
  t.add("Z988", {.arity = 2, .fn = same_code_point});
}

}  // namespace wf::orchestrator::engine_detail
