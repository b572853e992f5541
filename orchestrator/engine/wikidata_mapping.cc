// Wikibase entity JSON -> canonical ZObjects of the Wikidata types (docs/wikidata.md).
#include "orchestrator/engine/wikidata_mapping.h"

#include <array>
#include <cstdint>
#include <numeric>

#include "wf/zobject/zobject.h"

namespace wf::orchestrator::wikidata {

namespace {

constexpr std::array<KindInfo, 5> kKinds = {{
    {Kind::kItem, "Z6001", "Z6091", "item"},
    {Kind::kProperty, "Z6002", "Z6092", "property"},
    {Kind::kLexeme, "Z6005", "Z6095", "lexeme"},
    {Kind::kForm, "Z6004", "Z6094", "form"},
    {Kind::kSense, "Z6006", "Z6096", "sense"},
}};

// The precision values of Z6062, by Wikibase precision number (0 = billion years ... 14 = second).
constexpr std::array<const char*, 15> kPrecisions = {
    "Q524410", "Q24004467", "Q24004469", "Q20764", "Q24004476", "Q24004477", "Q36507", "Q578",
    "Q39911",  "Q577",      "Q5151",     "Q573",   "Q25235",    "Q7727",     "Q11574"};

constexpr std::size_t kMaxDigits = 200;  // longest number turned into a rational

bool all_digits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

bool positive_number(std::string_view s) {
  return all_digits(s) && s.front() != '0';
}

// A string as canonical JSON: text that normalisation would read as a reference (a capital
// letter and a number: Z42, but also Q42, P31, L7) is wrapped in an explicit Z6.
json str(std::string_view s) {
  if (zobject::is_reference_like(s)) return json{{"Z1K1", "Z6"}, {"Z6K1", std::string(s)}};
  return std::string(s);
}

std::string text(const json& j, const char* key) {
  if (!j.is_object()) return {};
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

const json* member(const json& j, const char* key) {
  if (!j.is_object()) return nullptr;
  auto it = j.find(key);
  return it == j.end() ? nullptr : &*it;
}

// Member `key` of `j`, null when `j` is not an object or lacks it (json::value() would throw).
const json& at(const json& j, const char* key) {
  static const json kNull;
  const json* m = member(j, key);
  return m != nullptr ? *m : kNull;
}

json typed_list(const char* type, json items) {
  json out = json::array({type});
  for (auto& i : items) out.push_back(std::move(i));
  return out;
}

json language_value(const LanguageZid& language, std::string_view code) {
  std::string zid = language ? language(code) : std::string();
  if (!zid.empty()) return zid;
  return json{{"Z1K1", "Z60"}, {"Z60K1", str(code)}};
}

bool wanted_language(const Filter& f, const std::string& code) {
  return f.languages.empty() || f.languages.count(code) > 0;
}

bool wanted_part(const Filter& f, const char* part) {
  return f.parts.empty() || f.parts.count(part) > 0;
}

// {"en": {"language": "en", "value": "..."}} -> Z12.
json multilingual(const json* terms, const LanguageZid& language, const Filter& f) {
  json items = json::array();
  if (terms != nullptr && terms->is_object()) {
    for (const auto& [code, term] : terms->items()) {
      if (!wanted_language(f, code) || !term.is_object()) continue;
      items.push_back({{"Z1K1", "Z11"},
                       {"Z11K1", language_value(language, code)},
                       {"Z11K2", str(text(term, "value"))}});
    }
  }
  return {{"Z1K1", "Z12"}, {"Z12K1", typed_list("Z11", std::move(items))}};
}

// {"en": [{"language": "en", "value": "..."}, ...]} -> Z32.
json stringsets(const json* aliases, const LanguageZid& language, const Filter& f) {
  json items = json::array();
  if (aliases != nullptr && aliases->is_object()) {
    for (const auto& [code, list] : aliases->items()) {
      if (!wanted_language(f, code) || !list.is_array()) continue;
      json values = json::array();
      for (const auto& a : list) values.push_back(str(text(a, "value")));
      items.push_back({{"Z1K1", "Z31"},
                       {"Z31K1", language_value(language, code)},
                       {"Z31K2", typed_list("Z6", std::move(values))}});
    }
  }
  return {{"Z1K1", "Z32"}, {"Z32K1", typed_list("Z31", std::move(items))}};
}

json natural(std::uint64_t n) {
  return {{"Z1K1", "Z13518"}, {"Z13518K1", std::to_string(n)}};
}

json sign(int s) {
  return {{"Z1K1", "Z16659"}, {"Z16659K1", s > 0 ? "Z16660" : s == 0 ? "Z16661" : "Z16662"}};
}

json integer(std::int64_t n) {
  const std::uint64_t magnitude =
      n < 0 ? static_cast<std::uint64_t>(-(n + 1)) + 1 : static_cast<std::uint64_t>(n);
  return {{"Z1K1", "Z16683"},
          {"Z16683K1", sign(n > 0    ? 1
                            : n == 0 ? 0
                                     : -1)},
          {"Z16683K2", natural(magnitude)}};
}

// "http://www.wikidata.org/entity/Q11573" -> "Q11573" ("" when not an entity URI).
std::string entity_from_uri(std::string_view uri) {
  const auto slash = uri.rfind('/');
  std::string_view id = slash == std::string_view::npos ? uri : uri.substr(slash + 1);
  return kind_of(id) ? std::string(id) : std::string();
}

json enum_instance(const char* type, std::string_view qid) {
  return {{"Z1K1", type}, {std::string(type) + "K1", reference(qid)}};
}

std::optional<json> rational_of_number(const json& n) {
  if (n.is_string()) return rational(n.get<std::string>());
  if (n.is_number()) return rational(n.dump());
  return std::nullopt;
}

std::optional<json> quantity(const json& v) {
  auto amount = rational_of_number(at(v, "amount"));
  if (!amount) return std::nullopt;
  json q = {{"Z1K1", "Z6010"}, {"Z6010K1", *amount}};
  if (auto lower = rational_of_number(at(v, "lowerBound"))) q["Z6010K2"] = *lower;
  if (auto upper = rational_of_number(at(v, "upperBound"))) q["Z6010K3"] = *upper;
  if (auto unit = entity_from_uri(text(v, "unit")); !unit.empty()) q["Z6010K4"] = reference(unit);
  return q;
}

std::optional<json> geo(const json& v) {
  auto lat = rational_of_number(at(v, "latitude"));
  auto lon = rational_of_number(at(v, "longitude"));
  if (!lat || !lon) return std::nullopt;
  json g = {{"Z1K1", "Z6011"}, {"Z6011K1", *lat}, {"Z6011K2", *lon}};
  if (auto p = rational_of_number(at(v, "precision"))) g["Z6011K3"] = *p;
  if (auto globe = entity_from_uri(text(v, "globe")); !globe.empty())
    g["Z6011K4"] = reference(globe);
  return g;
}

std::optional<std::uint64_t> small_natural(const json& v) {
  if (v.is_number_unsigned()) return v.get<std::uint64_t>();
  if (v.is_number_integer() && v.get<std::int64_t>() >= 0) return v.get<std::uint64_t>();
  return std::nullopt;
}

// "+2001-12-31T00:00:00Z" -> Z6064 (the date part stays a string: docs/wikidata.md).
std::optional<json> time(const json& v) {
  const std::string t = text(v, "time");
  const auto tpos = t.find('T');
  if (tpos == std::string::npos || t.size() < tpos + 9 || t[tpos + 3] != ':' ||
      t[tpos + 6] != ':') {
    return std::nullopt;
  }
  auto part = [&](std::size_t at) -> std::optional<std::uint64_t> {
    std::string_view d(t.data() + at, 2);
    if (!all_digits(d)) return std::nullopt;
    return static_cast<std::uint64_t>((d[0] - '0') * 10 + (d[1] - '0'));
  };
  auto h = part(tpos + 1), m = part(tpos + 4), s = part(tpos + 7);
  if (!h || !m || !s) return std::nullopt;
  json datetime = {{"Z1K1", "Z6061"},
                   {"Z6061K1", str(t.substr(0, tpos))},
                   {"Z6061K2",
                    {{"Z1K1", "Z6060"},
                     {"Z6060K1", natural(*h)},
                     {"Z6060K2", natural(*m)},
                     {"Z6060K3", natural(*s)}}}};
  json out = {{"Z1K1", "Z6064"}, {"Z6064K1", std::move(datetime)}};
  if (auto p = small_natural(at(v, "precision")); p && *p < kPrecisions.size()) {
    out["Z6064K2"] = enum_instance("Z6062", kPrecisions[*p]);
  }
  if (auto b = small_natural(at(v, "before"))) out["Z6064K3"] = natural(*b);
  if (auto a = small_natural(at(v, "after"))) out["Z6064K4"] = natural(*a);
  if (const json* tz = member(v, "timezone"); tz && tz->is_number_integer()) {
    out["Z6064K5"] = integer(tz->get<std::int64_t>());
  }
  if (auto cal = entity_from_uri(text(v, "calendarmodel")); !cal.empty()) {
    out["Z6064K6"] = enum_instance("Z6063", cal);
  }
  return out;
}

std::optional<json> entity_value(const json& v) {
  std::string id = text(v, "id");
  if (id.empty()) {  // older form: entity-type + numeric-id
    const std::string type = text(v, "entity-type");
    const json* num = member(v, "numeric-id");
    if (num == nullptr || !num->is_number_unsigned()) return std::nullopt;
    const std::string n = std::to_string(num->get<std::uint64_t>());
    id = type == "item" ? "Q" + n : type == "property" ? "P" + n : type == "lexeme" ? "L" + n : "";
  }
  json r = reference(id);
  if (r.is_null()) return std::nullopt;
  return r;
}

// A snak's datavalue as the ZObject of its value (Z6003K3, Z6007K2); nullopt when its type is not
// one we know.
std::optional<json> datavalue(const json& dv, const LanguageZid& language) {
  const std::string type = text(dv, "type");
  const json* value = member(dv, "value");
  if (value == nullptr) return std::nullopt;
  if (type == "string") {
    if (!value->is_string()) return std::nullopt;
    return str(value->get<std::string>());
  }
  if (type == "wikibase-entityid") return entity_value(*value);
  if (type == "monolingualtext") {
    return json{{"Z1K1", "Z11"},
                {"Z11K1", language_value(language, text(*value, "language"))},
                {"Z11K2", str(text(*value, "text"))}};
  }
  if (type == "quantity") return quantity(*value);
  if (type == "time") return time(*value);
  if (type == "globecoordinate") return geo(*value);
  return std::nullopt;
}

const char* subtype(const std::string& snaktype) {
  if (snaktype == "novalue") return "Z6022";
  if (snaktype == "somevalue") return "Z6023";
  return "Z6021";
}

// Notes a datavalue that could not be mapped (Z598), when the caller collects them.
void discard(std::vector<Discarded>* discarded, const std::string& property, const json& dv) {
  if (discarded == nullptr) return;
  std::string value = dv.dump(-1, ' ', true, json::error_handler_t::replace);
  if (value.size() > kMaxDiscardedText) value = value.substr(0, kMaxDiscardedText - 3) + "...";
  discarded->push_back({"the value of " + property + " (datavalue type '" + text(dv, "type") + "')",
                        std::move(value)});
}

// A snak as Z6007 (claim); nullopt when its value cannot be mapped (the claim is left out and
// noted in `discarded`).
std::optional<json> claim(const json& snak, const LanguageZid& language,
                          std::vector<Discarded>* discarded) {
  const std::string property = text(snak, "property");
  if (kind_of(property) != Kind::kProperty) return std::nullopt;
  const std::string snaktype = text(snak, "snaktype");
  json c = {{"Z1K1", "Z6007"}, {"Z6007K1", reference(property)}, {"Z6007K3", subtype(snaktype)}};
  if (snaktype == "value") {
    auto v = datavalue(at(snak, "datavalue"), language);
    if (!v) {
      discard(discarded, property, at(snak, "datavalue"));
      return std::nullopt;
    }
    c["Z6007K2"] = std::move(*v);
  }
  return c;
}

// {"P31": [snak, ...], ...} -> list of Z6007.
json claims(const json* snaks, const LanguageZid& language, std::vector<Discarded>* discarded) {
  json items = json::array();
  if (snaks != nullptr && snaks->is_object()) {
    for (const auto& [p, list] : snaks->items()) {
      if (!list.is_array()) continue;
      for (const auto& snak : list) {
        if (auto c = claim(snak, language, discarded)) items.push_back(std::move(*c));
      }
    }
  }
  return typed_list("Z6007", std::move(items));
}

std::optional<json> statement(const json& s, const json& subject, const LanguageZid& language,
                              std::vector<Discarded>* discarded) {
  auto main = claim(at(s, "mainsnak"), language, discarded);
  if (!main) return std::nullopt;
  const std::string rank = text(s, "rank");
  json out = {{"Z1K1", "Z6003"},
              {"Z6003K1", subject},
              {"Z6003K2", (*main)["Z6007K1"]},
              {"Z6003K4", rank == "preferred"    ? "Z6041"
                          : rank == "deprecated" ? "Z6043"
                                                 : "Z6042"},
              {"Z6003K5", claims(member(s, "qualifiers"), language, discarded)},
              {"Z6003K7", (*main)["Z6007K3"]}};
  if (main->contains("Z6007K2")) out["Z6003K3"] = (*main)["Z6007K2"];
  json refs = json::array();
  if (const json* r = member(s, "references"); r && r->is_array()) {
    for (const auto& ref : *r) {
      refs.push_back(
          {{"Z1K1", "Z6008"}, {"Z6008K1", claims(member(ref, "snaks"), language, discarded)}});
    }
  }
  out["Z6003K6"] = typed_list("Z6008", std::move(refs));
  return out;
}

// The entity's statements ("claims", or "statements" in newer answers) as a list of Z6003.
json statements(const json& entity, const json& subject, const LanguageZid& language,
                const Filter& f) {
  json items = json::array();
  const json* all = member(entity, "claims");
  if (all == nullptr) all = member(entity, "statements");
  if (all != nullptr && all->is_object() && wanted_part(f, "Z6036")) {
    for (const auto& [p, list] : all->items()) {
      if (!f.properties.empty() && f.properties.count(p) == 0) continue;
      if (!list.is_array()) continue;
      for (const auto& s : list) {
        if (auto st = statement(s, subject, language, f.discarded)) {
          items.push_back(std::move(*st));
        }
      }
    }
  }
  return typed_list("Z6003", std::move(items));
}

json terms(const json& entity, const char* key, const char* part, const LanguageZid& language,
           const Filter& f) {
  static const json kNone;
  return multilingual(wanted_part(f, part) ? member(entity, key) : &kNone, language, f);
}

json aliases(const json& entity, const LanguageZid& language, const Filter& f) {
  static const json kNone;
  return stringsets(wanted_part(f, "Z6035") ? member(entity, "aliases") : &kNone, language, f);
}

std::string lexeme_of(std::string_view id) {
  return std::string(id.substr(0, id.find('-')));
}

json forms(const json& entity, const LanguageZid& language, const Filter& f);
json senses(const json& entity, const LanguageZid& language, const Filter& f);

json form(const json& e, const std::string& id, const LanguageZid& language, const Filter& f) {
  json features = json::array();
  if (const json* g = member(e, "grammaticalFeatures"); g && g->is_array()) {
    for (const auto& q : *g) {
      if (q.is_string() && kind_of(q.get<std::string>()) == Kind::kItem)
        features.push_back(reference(q.get<std::string>()));
    }
  }
  json subject = reference(id);
  return {{"Z1K1", "Z6004"},
          {"Z6004K1", subject},
          {"Z6004K2", reference(lexeme_of(id))},
          {"Z6004K3", multilingual(member(e, "representations"), language, f)},
          {"Z6004K4", typed_list("Z6091", std::move(features))},
          {"Z6004K5", statements(e, subject, language, f)}};
}

json sense(const json& e, const std::string& id, const LanguageZid& language, const Filter& f) {
  json subject = reference(id);
  return {{"Z1K1", "Z6006"},
          {"Z6006K1", subject},
          {"Z6006K2", multilingual(member(e, "glosses"), language, f)},
          {"Z6006K3", statements(e, subject, language, f)},
          {"Z6006K4", reference(lexeme_of(id))}};
}

template <typename Make>
json sub_entities(const json& entity, const char* key, Kind kind, const char* type, Make make,
                  const LanguageZid& language, const Filter& f) {
  json items = json::array();
  if (const json* list = member(entity, key); list && list->is_array()) {
    for (const auto& e : *list) {
      const std::string id = text(e, "id");
      if (kind_of(id) != kind) continue;
      items.push_back(make(e, id, language, f));
    }
  }
  return typed_list(type, std::move(items));
}

json forms(const json& entity, const LanguageZid& language, const Filter& f) {
  return sub_entities(entity, "forms", Kind::kForm, "Z6004", form, language, f);
}

json senses(const json& entity, const LanguageZid& language, const Filter& f) {
  return sub_entities(entity, "senses", Kind::kSense, "Z6006", sense, language, f);
}

json lexeme(const json& e, const std::string& id, const LanguageZid& language, const Filter& f) {
  json subject = reference(id);
  // The lexeme's language is an item (e.g. Q1860); Z6005K3 is a Z60, taken from the code of its
  // first lemma (docs/wikidata.md).
  std::string code;
  if (const json* lemmas = member(e, "lemmas"); lemmas && lemmas->is_object() && !lemmas->empty()) {
    code = lemmas->begin().key();
  }
  json out = {{"Z1K1", "Z6005"},
              {"Z6005K1", subject},
              {"Z6005K2", multilingual(member(e, "lemmas"), language, f)},
              {"Z6005K3", language_value(language, code)},
              {"Z6005K5", statements(e, subject, language, f)},
              {"Z6005K6", senses(e, language, f)},
              {"Z6005K7", forms(e, language, f)}};
  if (auto cat = text(e, "lexicalCategory"); kind_of(cat) == Kind::kItem)
    out["Z6005K4"] = reference(cat);
  return out;
}

json sitelinks(const json& e, const LanguageZid& language, const Filter& f) {
  json items = json::array();
  const json* links = member(e, "sitelinks");
  if (links != nullptr && links->is_object() && wanted_part(f, "Z6037")) {
    for (const auto& [site, link] : links->items()) {
      json z = sitelink(link, language);
      if (!z.is_null()) items.push_back(std::move(z));
    }
  }
  return typed_list("Z6039", std::move(items));
}

json item_or_property(const json& e, const std::string& id, Kind kind, const LanguageZid& language,
                      const Filter& f) {
  const char* type = info(kind).entity_type;
  const std::string k = type;
  json subject = reference(id);
  json out = {{"Z1K1", type},
              {k + "K1", subject},
              {k + "K2", terms(e, "labels", "Z6033", language, f)},
              {k + "K3", terms(e, "descriptions", "Z6034", language, f)},
              {k + "K4", aliases(e, language, f)},
              {k + "K5", statements(e, subject, language, f)}};
  if (kind == Kind::kItem) out["Z6001K6"] = sitelinks(e, language, f);
  return out;
}

// Digits without leading zeros ("0" for none).
std::string trim_zeros(std::string digits) {
  const auto first = digits.find_first_not_of('0');
  return first == std::string::npos ? "0" : digits.substr(first);
}

}  // namespace

std::optional<Kind> kind_of(std::string_view id) {
  if (id.size() < 2 || id.size() > 40) return std::nullopt;
  const char head = id[0];
  const auto dash = id.find('-');
  std::string_view main = id.substr(1, dash == std::string_view::npos ? id.npos : dash - 1);
  if (!positive_number(main)) return std::nullopt;
  if (dash == std::string_view::npos) {
    if (head == 'Q') return Kind::kItem;
    if (head == 'P') return Kind::kProperty;
    if (head == 'L') return Kind::kLexeme;
    return std::nullopt;
  }
  std::string_view sub = id.substr(dash + 1);
  if (head != 'L' || sub.size() < 2 || !positive_number(sub.substr(1))) return std::nullopt;
  if (sub[0] == 'F') return Kind::kForm;
  if (sub[0] == 'S') return Kind::kSense;
  return std::nullopt;
}

const KindInfo& info(Kind kind) {
  for (const auto& k : kKinds) {
    if (k.kind == kind) return k;
  }
  return kKinds[0];
}

std::optional<Kind> kind_by_reference_type(std::string_view zid) {
  for (const auto& k : kKinds) {
    if (zid == k.reference_type) return k.kind;
  }
  return std::nullopt;
}

std::optional<Kind> kind_by_entity_type(std::string_view zid) {
  for (const auto& k : kKinds) {
    if (zid == k.entity_type) return k.kind;
  }
  return std::nullopt;
}

json reference(std::string_view id) {
  auto kind = kind_of(id);
  if (!kind) return nullptr;
  const std::string type = info(*kind).reference_type;
  return {{"Z1K1", type}, {type + "K1", str(id)}};
}

std::optional<std::pair<std::string, std::string>> split_site(std::string_view site) {
  if (site == "commonswiki") return std::make_pair(std::string("mul"), std::string(site));
  // Longest project names first: "wiki" is a suffix of the others' database names.
  static constexpr std::array<std::string_view, 8> kProjects = {
      "wikiversity", "wiktionary", "wikisource", "wikivoyage",
      "wikiquote",   "wikibooks",  "wikinews",   "wiki"};
  for (auto project : kProjects) {
    if (site.size() > project.size() && site.ends_with(project)) {
      std::string code(site.substr(0, site.size() - project.size()));
      for (char& c : code) {
        if (c == '_') c = '-';  // database names spell zh-min-nan as zh_min_nan
      }
      return std::make_pair(code, std::string(project));
    }
  }
  return std::nullopt;
}

json sitelink(const json& link, const LanguageZid& language) {
  const std::string site = text(link, "site");
  const std::string title = text(link, "title");
  auto split = split_site(site);
  if (!split || title.empty()) return nullptr;
  std::string url = text(link, "url");
  if (url.empty()) {  // as Wikidata builds it:
                      // https://<lang>.<project>.org/wiki/<Title_with_underscores>
    const auto& [code, project] = *split;
    std::string host = project == "commonswiki" ? "commons.wikimedia.org"
                       : project == "wiki"      ? code + ".wikipedia.org"
                                                : code + "." + project + ".org";
    std::string path = title;
    for (char& c : path) {
      if (c == ' ') c = '_';
    }
    url = "https://" + host + "/wiki/" + path;
  }
  return {{"Z1K1", "Z6039"},
          {"Z6039K1", str(site)},
          {"Z6039K2", language_value(language, split->first)},
          {"Z6039K3", str(split->second)},
          {"Z6039K4", str(title)},
          {"Z6039K5", str(url)}};
}

std::optional<json> rational(std::string_view d) {
  int negative = 0;
  if (!d.empty() && (d[0] == '+' || d[0] == '-')) {
    negative = d[0] == '-';
    d.remove_prefix(1);
  }
  const auto e = d.find_first_of("eE");
  long exponent = 0;
  if (e != std::string_view::npos) {
    std::string_view exp = d.substr(e + 1);
    const bool neg_exp = !exp.empty() && exp[0] == '-';
    if (!exp.empty() && (exp[0] == '-' || exp[0] == '+')) exp.remove_prefix(1);
    if (!all_digits(exp) || exp.size() > 3) return std::nullopt;
    exponent = std::stol(std::string(exp)) * (neg_exp ? -1 : 1);
    d = d.substr(0, e);
  }
  const auto dot = d.find('.');
  std::string_view whole = d.substr(0, dot);
  std::string_view frac = dot == std::string_view::npos ? std::string_view() : d.substr(dot + 1);
  if (whole.empty() && frac.empty()) return std::nullopt;
  if ((!whole.empty() && !all_digits(whole)) || (!frac.empty() && !all_digits(frac)))
    return std::nullopt;
  std::string numerator = std::string(whole) + std::string(frac);
  long scale = static_cast<long>(frac.size()) - exponent;  // value = numerator / 10^scale
  if (scale < 0) {
    if (numerator.size() + static_cast<std::size_t>(-scale) > kMaxDigits) return std::nullopt;
    numerator.append(static_cast<std::size_t>(-scale), '0');
    scale = 0;
  }
  numerator = trim_zeros(std::move(numerator));
  if (numerator.size() > kMaxDigits || scale > static_cast<long>(kMaxDigits)) return std::nullopt;
  while (scale > 0 && numerator.size() > 1 && numerator.back() == '0') {
    numerator.pop_back();
    --scale;
  }
  if (numerator == "0") scale = 0;
  std::string denominator = "1" + std::string(static_cast<std::size_t>(scale), '0');
  if (numerator.size() <= 18 && denominator.size() <= 18) {  // reduce when it fits in 64 bits
    std::uint64_t n = std::stoull(numerator), m = std::stoull(denominator);
    const std::uint64_t g = std::gcd(n, m);
    if (g > 1) {
      numerator = std::to_string(n / g);
      denominator = std::to_string(m / g);
    }
  }
  const int s = numerator == "0" ? 0 : negative ? -1 : 1;
  return json{{"Z1K1", "Z19677"},
              {"Z19677K1", sign(s)},
              {"Z19677K2", {{"Z1K1", "Z13518"}, {"Z13518K1", numerator}}},
              {"Z19677K3", {{"Z1K1", "Z13518"}, {"Z13518K1", denominator}}}};
}

std::expected<json, std::string> to_zobject(const json& entity, const LanguageZid& language,
                                            const Filter& filter) {
  const std::string id = text(entity, "id");
  auto kind = kind_of(id);
  if (!kind) return std::unexpected("the entity has no Wikibase id (\"id\": \"" + id + "\")");
  switch (*kind) {
    case Kind::kItem:
    case Kind::kProperty:
      return item_or_property(entity, id, *kind, language, filter);
    case Kind::kLexeme:
      return lexeme(entity, id, language, filter);
    case Kind::kForm:
      return form(entity, id, language, filter);
    case Kind::kSense:
      return sense(entity, id, language, filter);
  }
  return std::unexpected("unknown entity kind");
}

}  // namespace wf::orchestrator::wikidata
