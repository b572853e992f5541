// Natural-language texts and HTML fragments (definitions-2026): monolingual stringset equality
// Z832, wrap monolingual text Z861, natural language equality Z862, HTML fragment equality Z877.
#include <set>

#include "orchestrator/engine/builtin_table.h"
#include "orchestrator/engine/builtins_support.h"
#include "orchestrator/engine/definitions.h"
#include "wf/zobject/zobject.h"

namespace wf::orchestrator::engine_detail {

namespace zo = wf::zobject;

namespace {

// What identifies a language value: its ZID (a reference, or the ZID of a Z60's code), else
// "code:" and the code of a Z60 no bundled language has.
std::string language_key(const NodeP& n) {
  if (!n) return {};
  if (n->is_string) return n->text;
  if (n->is_ref()) return n->ref();
  std::string code = text_of(n->get("Z60K1"));
  std::string zid = Definitions::instance().language_zid(code);
  return zid.empty() ? "code:" + code : zid;
}

Envelope not_a(const BuiltinCall& c, std::size_t i, const char* type) {
  return Envelope::err(zo::make_error(
      "Z516", {zo::z6(c.id + " argument " + std::to_string(i + 1) + " must be a " + type),
               zo::z99(c.arg(i) ? c.arg(i)->to_json() : zo::void_value())}));
}

// Z832: same language and the same strings, in any order and counted once (a set).
Envelope same_stringset(const BuiltinCall& c) {
  std::string lang[2];
  std::set<std::string> strings[2];
  for (std::size_t i = 0; i < 2; ++i) {
    NodeP s = c.arg(i);
    if (!s || s->is_string || s->type_ref() != "Z31")
      return not_a(c, i, "monolingual stringset (Z31)");
    lang[i] = language_key(s->get("Z31K1"));
    for (const NodeP& e : c.in.list_elements(s->get("Z31K2"))) strings[i].insert(text_of(e));
  }
  return c.ok(bool_node(lang[0] == lang[1] && strings[0] == strings[1]));
}

// Z861: a Z11 of the text in the language, the language named by its ZID.
Envelope wrap_monolingual(const BuiltinCall& c) {
  std::string zid = zid_of_lazy(c.in, c.arg(1));
  if (!zo::is_zid(zid)) return not_a(c, 1, "natural language (Z60) known by its ZID");
  auto z11 = Node::make_object();
  z11->add("Z1K1", z9_node("Z11"));
  z11->add("Z11K1", z9_node(zid));
  z11->add("Z11K2", z6_node(text_of(c.arg(0))));
  return c.ok(z11);
}

Envelope same_language(const BuiltinCall& c) {
  for (std::size_t i = 0; i < 2; ++i) {
    NodeP l = c.arg(i);
    if (!l || (!l->is_string && !l->is_ref() && l->type_ref() != "Z60")) {
      return not_a(c, i, "natural language (Z60)");
    }
  }
  return c.ok(bool_node(language_key(c.arg(0)) == language_key(c.arg(1))));
}

// Z877: the same HTML text (Z89K1), compared exactly.
Envelope same_html(const BuiltinCall& c) {
  for (std::size_t i = 0; i < 2; ++i) {
    NodeP h = c.arg(i);
    if (!h || h->is_string || h->type_ref() != "Z89") return not_a(c, i, "HTML fragment (Z89)");
  }
  return c.ok(bool_node(text_of(c.arg(0)->get("Z89K1")) == text_of(c.arg(1)->get("Z89K1"))));
}

}  // namespace

void register_text_builtins(BuiltinTable& t) {
  t.add("Z932", {.arity = 2, .fn = same_stringset});
  t.add("Z961", {.arity = 2, .lazy = lazy_args({2}), .fn = wrap_monolingual});
  t.add("Z962", {.arity = 2, .fn = same_language});
  t.add("Z977", {.arity = 2, .fn = same_html});
}

}  // namespace wf::orchestrator::engine_detail
