// String built-ins: equality, code points, and back.
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

Envelope string_to_code_points(const BuiltinCall& c) {
  const std::string s = text_of(c.arg(0));
  const CommonKeys& keys = common_keys();
  static const Key kZ86K1("Z86K1");
  const NodeP z86 = z9_node("Z86");
  std::vector<NodeP> items;
  items.reserve(std::min<std::size_t>(s.size(), zo::kMaxListElements + 1));
  for (std::size_t i = 0; i < s.size();) {
    std::size_t len = std::min(utf8_length(static_cast<unsigned char>(s[i])), s.size() - i);
    auto cp = Node::make_object();
    cp->entries.reserve(2);
    cp->add(keys.z1k1, z86);
    cp->add(kZ86K1, z6_node(s.substr(i, len)));  // one ASCII character: a shared node
    items.push_back(cp);
    i += len;
    if (items.size() > zo::kMaxListElements) {
      return Envelope::err(zo::make_error_msg(
          "Z500", "the string has more than " + std::to_string(zo::kMaxListElements) +
                      " code points, the longest list a value may hold"));
    }
  }
  return c.ok(c.in.make_list(z86, items));
}

Envelope code_points_to_string(const BuiltinCall& c) {
  std::string out;
  for (const NodeP& e : c.in.list_elements(c.arg(0))) {
    if (!e) continue;
    if (e->is_string) {
      out += e->text;
    } else if (e->is_z6()) {
      out += e->str();
    } else {
      out += text_of(e->get("Z86K1"));
    }
  }
  return c.ok(z6_node(out));
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
