// The Wikidata built-ins (definitions-2026, docs/wikidata.md): fetch Z6820-Z6826, lexeme search
// Z6830/Z6831, sitelinks Z6839, equality Z6801-Z6808, and the Wikidata enums Z6884, Z6894-Z6896
// with their validator Z6184. Entities come through WikidataEntities (cache, single flight,
// the EntitySource port); the mapping to ZObjects is wikidata_mapping.h.
//
// A Wikidata enum type made by Z6884(reference type, references, ZID) is a Z4 whose identity is
// the ZID, with one identity key <ZID>K1 of the reference type; an instance is
// {Z1K1: <ZID>, <ZID>K1: reference}, as for Z884.
#include <algorithm>
#include <array>

#include "orchestrator/engine/builtin_table.h"
#include "orchestrator/engine/builtins_support.h"
#include "orchestrator/engine/definitions.h"
#include "orchestrator/engine/wikidata_entities.h"
#include "orchestrator/engine/wikidata_mapping.h"
#include "wf/zobject/zobject.h"

namespace wf::orchestrator::engine_detail {

namespace zo = wf::zobject;
namespace wd = wikidata;

namespace {

std::string language_zid(std::string_view code) {
  return Definitions::instance().language_zid(code);
}

Envelope bad(const BuiltinCall& c, const std::string& message, const NodeP& value) {
  return Envelope::err(zo::make_error(
      "Z516",
      {zo::z6(c.id + ": " + message), zo::z99(value ? value->to_json() : zo::void_value())}));
}

// Canonical JSON from the mapping as the built-in's value.
Envelope value_of(const BuiltinCall& c, const json& canonical) {
  auto normal = zo::normalize(canonical);
  if (!normal) return Envelope::err(normal.error());
  return c.ok(Node::from_json(*normal));
}

// The text of an id: a string, or a Z9 (normalisation reads "Q42" as a reference, as it reads
// any capital letter and a number).
std::string id_text(const NodeP& n) {
  if (n && n->is_ref()) return n->ref();
  return text_of(n);
}

// The ZID of a value's type: Z1K1 as a reference, or the identity (Z4K1) of the Z4 that
// resolution put in its place; "" when there is none.
std::string type_zid(const NodeP& n) {
  if (!n || n->is_string) return {};
  std::string t = n->type_ref();
  if (!t.empty()) return t;
  NodeP z1k1 = n->get("Z1K1");
  const Node* identity = z1k1 && !z1k1->is_string ? z1k1->peek("Z4K1") : nullptr;
  if (identity == nullptr) return {};
  return identity->is_ref() ? identity->ref() : identity->is_string ? identity->text : "";
}

// The id a Wikidata reference carries ({Z1K1: Z6091, Z6091K1: "Q42"}; a bare "Q42" too), ""
// when `n` is none or (with `kind`) of another kind.
std::string reference_id(const NodeP& n, std::optional<wd::Kind> kind = std::nullopt) {
  if (!n) return {};
  std::string id;
  if (n->is_string || n->is_z6() || n->is_ref()) {
    id = id_text(n);
  } else {
    const std::string type = type_zid(n);
    if (!wd::kind_by_reference_type(type)) return {};
    id = id_text(n->get(type + "K1"));
  }
  auto k = wd::kind_of(id);
  if (!k || (kind && *k != *kind)) return {};
  return id;
}

// The ZID an enum value names: a reference, or the identity (<type>K1) of an instance, which
// resolution may have replaced by the instance again (Z6033 -> {Z6030K1: {Z6030K1: Z6033}}).
std::string enum_zid(NodeP n) {
  for (int depth = 0; n && depth < 8; ++depth) {
    if (n->is_ref()) return n->ref();
    if (n->is_string) return n->text;
    const std::string type = type_zid(n);
    n = type.empty() ? nullptr : n->get(type + "K1");
  }
  return {};
}

// The code of a natural language (Z60): a literal's Z60K1, or a reference's (Z1002 -> "en").
std::string language_code(const BuiltinCall& c, const NodeP& n) {
  if (!n) return {};
  if (n->is_ref() || (n->is_string && zo::is_zid(n->text))) {
    Envelope d = c.in.dereference(n->is_ref() ? n->ref() : n->text);
    return d.has_error() || !d.value ? std::string() : language_code(c, d.value);
  }
  if (n->is_string) return n->text;
  return text_of(n->get("Z60K1"));
}

std::vector<NodeP> elements(const BuiltinCall& c, const NodeP& list) {
  return list ? c.in.list_elements(list) : std::vector<NodeP>{};
}

// ---- fetch ----------------------------------------------------------------------------------

// Values of entity `id` the mapping left out (a datatype it does not know): one Z598 warning
// ("Wikidata value discarded: not recognised") each, in the response's metadata.
void warn_discarded(const BuiltinCall& c, const std::string& id,
                    const std::vector<wd::Discarded>& discarded) {
  for (const wd::Discarded& d : discarded) {
    c.in.warn(zo::make_error("Z598", {json(d.what + " of " + id), json(d.value)}));
  }
}

struct FetchOne {
  const char* zid;
  wd::Kind kind;
};
constexpr std::array<FetchOne, 5> kFetchOne = {{{"Z6921", wd::Kind::kItem},
                                                {"Z6922", wd::Kind::kProperty},
                                                {"Z6924", wd::Kind::kForm},
                                                {"Z6925", wd::Kind::kLexeme},
                                                {"Z6926", wd::Kind::kSense}}};

Envelope fetch_one(const BuiltinCall& c) {
  auto spec = std::find_if(kFetchOne.begin(), kFetchOne.end(),
                           [&](const FetchOne& f) { return c.id == f.zid; });
  if (spec == kFetchOne.end()) return bad(c, "not a Wikidata fetch built-in", nullptr);
  const std::string id = reference_id(c.arg(0), spec->kind);
  if (id.empty()) {
    return bad(
        c,
        std::string("expected a Wikidata reference of type ") + wd::info(spec->kind).reference_type,
        c.arg(0));
  }
  WikidataEntities source(c.in.resolver());
  auto got = source.get({id});
  if (!got) return Envelope::err(got.error());
  std::vector<wd::Discarded> discarded;
  wd::Filter everything;
  everything.discarded = &discarded;
  auto z = wd::to_zobject(*got->front(), language_zid, everything);
  if (!z)
    return Envelope::err(zo::make_error_msg("Z500", "Wikidata entity " + id + ": " + z.error()));
  warn_discarded(c, id, discarded);
  return value_of(c, *z);
}

// Z6820: the entities by id (a Z883 map of Z6 -> Z1), filtered by parts, languages, properties.
Envelope fetch_entities(const BuiltinCall& c) {
  std::vector<std::string> ids;
  for (const NodeP& r : elements(c, c.arg(0))) {
    std::string id = reference_id(r);
    if (id.empty()) return bad(c, "expected Wikidata references (Z6091, Z6092, Z6094-Z6096)", r);
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  }
  wd::Filter filter;
  for (const NodeP& p : elements(c, c.arg(1))) filter.parts.insert(enum_zid(p));
  for (const NodeP& l : elements(c, c.arg(2))) filter.languages.insert(language_code(c, l));
  for (const NodeP& p : elements(c, c.arg(3))) {
    std::string id = reference_id(p, wd::Kind::kProperty);
    if (id.empty()) return bad(c, "expected Wikidata property references (Z6092)", p);
    filter.properties.insert(id);
  }
  std::vector<wd::Discarded> discarded;
  filter.discarded = &discarded;
  WikidataEntities source(c.in.resolver());
  auto got = source.get(ids);
  if (!got) return Envelope::err(got.error());
  const json pair_type = zo::pair_type(zo::z9("Z6"), zo::z9("Z1"));
  std::vector<json> pairs;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    auto z = wd::to_zobject(*(*got)[i], language_zid, filter);
    if (!z)
      return Envelope::err(
          zo::make_error_msg("Z500", "Wikidata entity " + ids[i] + ": " + z.error()));
    warn_discarded(c, ids[i], discarded);
    discarded.clear();
    auto normal = zo::normalize(*z);
    if (!normal) return Envelope::err(normal.error());
    pairs.push_back({{"Z1K1", pair_type}, {"K1", zo::z6(ids[i])}, {"K2", std::move(*normal)}});
  }
  json map = {{"Z1K1", zo::map_type(zo::z9("Z6"), zo::z9("Z1"))},
              {"K1", zo::make_list(pair_type, pairs)}};
  return c.ok(Node::from_json(map));
}

// Whether a lexeme has a lemma in the language `code` (its own code or a variant: en, en-gb).
bool has_lemma_in(const json& lexeme, const std::string& code) {
  auto lemmas = lexeme.find("lemmas");
  if (lemmas == lexeme.end() || !lemmas->is_object()) return false;
  for (const auto& [lang, term] : lemmas->items()) {
    if (lang == code ||
        (lang.size() > code.size() && lang.starts_with(code) && lang[code.size()] == '-')) {
      return true;
    }
  }
  return false;
}

// Z6830 / Z6831: lexemes with a statement <property> = <item or sense>, in the language.
Envelope find_lexemes(const BuiltinCall& c) {
  const wd::Kind target_kind = c.id == "Z6930" ? wd::Kind::kItem : wd::Kind::kSense;
  const std::string target = reference_id(c.arg(0), target_kind);
  if (target.empty()) {
    return bad(c,
               std::string("expected a reference of type ") + wd::info(target_kind).reference_type,
               c.arg(0));
  }
  const std::string property = reference_id(c.arg(1), wd::Kind::kProperty);
  if (property.empty()) return bad(c, "expected a Wikidata property reference (Z6092)", c.arg(1));
  const std::string code = language_code(c, c.arg(2));
  if (code.empty()) return bad(c, "expected a natural language (Z60)", c.arg(2));
  WikidataEntities source(c.in.resolver());
  auto ids = source.find_lexemes(property, target);
  if (!ids) return Envelope::err(ids.error());
  std::vector<json> found;
  if (!ids->empty()) {
    auto lexemes = source.get(*ids);
    if (!lexemes) return Envelope::err(lexemes.error());
    for (std::size_t i = 0; i < ids->size(); ++i) {
      if (!has_lemma_in(*(*lexemes)[i], code)) continue;
      auto normal = zo::normalize(wd::reference((*ids)[i]));
      if (normal) found.push_back(std::move(*normal));
    }
  }
  return c.ok(Node::from_json(zo::make_list(zo::z9("Z6095"), found)));
}

// Z6839: the item's sitelinks whose project and language are among those asked (empty: any).
Envelope fetch_sitelinks(const BuiltinCall& c) {
  const std::string id = reference_id(c.arg(0), wd::Kind::kItem);
  if (id.empty()) return bad(c, "expected a Wikidata item reference (Z6091)", c.arg(0));
  std::vector<std::string> projects, languages;
  for (const NodeP& p : elements(c, c.arg(1))) projects.push_back(text_of(p));
  for (const NodeP& l : elements(c, c.arg(2))) languages.push_back(language_code(c, l));
  auto wanted = [](const std::vector<std::string>& set, const std::string& v) {
    return set.empty() || std::find(set.begin(), set.end(), v) != set.end();
  };
  WikidataEntities source(c.in.resolver());
  auto got = source.get({id});
  if (!got) return Envelope::err(got.error());
  std::vector<json> links;
  auto all = got->front()->find("sitelinks");
  if (all != got->front()->end() && all->is_object()) {
    for (const auto& [site, link] : all->items()) {
      auto split = wd::split_site(site);
      if (!split || !wanted(projects, split->second) || !wanted(languages, split->first)) continue;
      json z = wd::sitelink(link, language_zid);
      if (z.is_null()) continue;
      auto normal = zo::normalize(z);
      if (normal) links.push_back(std::move(*normal));
    }
  }
  return c.ok(Node::from_json(zo::make_list(zo::z9("Z6039"), links)));
}

// ---- equality -------------------------------------------------------------------------------

// Entities are the same when their identities (ids) are; statements, claims and references,
// which have no id, when they are equal key by key.
Envelope same(const BuiltinCall& c) {
  NodeP a = c.arg(0), b = c.arg(1);
  if (!a || !b || a->is_string || b->is_string)
    return bad(c, "expected two Wikidata objects", a ? b : a);
  const std::string type = type_zid(a), type_b = type_zid(b);
  if (wd::kind_by_entity_type(type)) {
    const std::string ia = reference_id(a->get(type + "K1"));
    const std::string ib = reference_id(b->get(type_b + "K1"));
    if (!ia.empty() && !ib.empty()) return c.ok(bool_node(type == type_b && ia == ib));
  }
  return c.ok(bool_node(a->to_json() == b->to_json()));
}

// ---- enums ----------------------------------------------------------------------------------

Envelope enum_type(const BuiltinCall& c) {
  const std::string zid = text_of(c.arg(2));
  if (!zo::is_zid(zid)) return bad(c, "the third argument must be the enum type's ZID", c.arg(2));
  NodeP key = make_z3(c.in, c.arg(0), zid + "K1", "identity");
  key->add("Z3K4", z9_node("Z41"));
  NodeP z4 = make_z4(c.in, z9_node(zid), {key});
  z4->set("Z4K3", z9_node("Z6184"));
  z4->add("Z4K4", z9_node("Z6894"));
  return c.ok(z4);
}

// The value of an enum instance: the one key besides Z1K1 (null when there is not exactly one).
NodeP instance_value(const NodeP& instance) {
  if (!instance || instance->is_string) return nullptr;
  std::string key;
  for (const auto& e : instance->entries) {
    if (e.key == "Z1K1") continue;
    if (!key.empty()) return nullptr;
    key = e.key;
  }
  return key.empty() ? nullptr : instance->get(key);
}

Envelope same_instance(const BuiltinCall& c) {
  NodeP va = instance_value(c.arg(0)), vb = instance_value(c.arg(1));
  if (!va) return bad(c, "an enum instance has one value key besides Z1K1", c.arg(0));
  if (!vb) return bad(c, "an enum instance has one value key besides Z1K1", c.arg(1));
  const bool same_type = c.arg(0)->get("Z1K1")->to_json() == c.arg(1)->get("Z1K1")->to_json();
  const std::string ra = reference_id(va), rb = reference_id(vb);
  const bool same_value = !ra.empty() ? ra == rb : va->to_json() == vb->to_json();
  return c.ok(bool_node(same_type && same_value));
}

Envelope reference_of(const BuiltinCall& c) {
  NodeP v = instance_value(c.arg(0));
  if (!v) return bad(c, "an enum instance has one value key besides Z1K1", c.arg(0));
  return c.ok(v);
}

// The Z6884 call a persisted enum type `zid` was made by, or null.
const json* enum_call(const BuiltinCall& c, const std::string& zid) {
  if (!zo::is_zid(zid)) return nullptr;
  const Dereferenced& d = c.in.resolver().dereference(zid);
  if (!d.z2) return nullptr;
  auto it = d.z2->find("Z2K2");
  if (it == d.z2->end() || !it->is_object() || !it->contains("Z6884K2")) return nullptr;
  return zo::ref_id(it->value("Z7K1", json())) == "Z6884" ? &*it : nullptr;
}

// Z6896: the instances of a persisted Wikidata enum type, one per reference it lists.
Envelope enum_values(const BuiltinCall& c) {
  const std::string zid = text_of(c.arg(0));
  const json* made = enum_call(c, zid);
  if (made == nullptr)
    return bad(c, zid + " is not a persisted Wikidata enum type (Z6884)", c.arg(0));
  std::vector<json> values;
  for (const json& r : zo::list_items((*made)["Z6884K2"])) {
    values.push_back({{"Z1K1", zo::z9(zid)}, {zid + "K1", r}});
  }
  return c.ok(Node::from_json(zo::make_list(zo::z9("Z1"), values)));
}

// Z6184: an instance whose reference is one of its persisted type's references.
Envelope validate_instance(const BuiltinCall& c) {
  NodeP instance = c.arg(0);
  NodeP value = instance_value(instance);
  if (!value) return bad(c, "an enum instance has one value key besides Z1K1", instance);
  const Node* ident = c.arg(1) && !c.arg(1)->is_string ? c.arg(1)->peek("Z4K1") : nullptr;
  const json* made = enum_call(c, ident ? ident->ref() : type_zid(instance));
  if (made == nullptr) return c.ok(instance);  // an inline type has no list to check against
  const std::string id = reference_id(value);
  for (const json& r : zo::list_items((*made)["Z6884K2"])) {
    if (!id.empty() && reference_id(Node::from_json(r)) == id) return c.ok(instance);
  }
  return bad(c, "the reference is not one of the values of this Wikidata enum type", instance);
}

}  // namespace

void register_wikidata_builtins(BuiltinTable& t) {
  for (const auto& f : kFetchOne) t.add(f.zid, {.arity = 1, .fn = fetch_one});
  t.add("Z6920", {.arity = 4, .fn = fetch_entities});
  t.add("Z6930", {.arity = 3, .fn = find_lexemes});
  t.add("Z6931", {.arity = 3, .fn = find_lexemes});
  t.add("Z6939", {.arity = 3, .fn = fetch_sitelinks});
  for (int n = 6901; n <= 6908; ++n) t.add("Z" + std::to_string(n), {.arity = 2, .fn = same});
  t.add("Z6984", {.arity = 3, .fn = enum_type});
  t.add("Z6994", {.arity = 2, .fn = same_instance});
  t.add("Z6995", {.arity = 1, .fn = reference_of});
  t.add("Z6996", {.arity = 1, .fn = enum_values});
  t.add("Z6284", {.arity = 2, .fn = validate_instance});
}

}  // namespace wf::orchestrator::engine_detail
