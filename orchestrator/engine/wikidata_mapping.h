#pragma once
// Wikibase entity JSON (Wikidata's wbgetentities answer, the documented Wikibase JSON format) as
// the ZObjects of the Wikidata types Z6001-Z6096 (docs/wikidata.md). Pure functions on untrusted
// JSON: they never throw and bound what they read. The output is canonical JSON.

#include <cstdint>
#include <expected>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace wf::orchestrator::wikidata {

using json = nlohmann::json;

enum class Kind { kItem, kProperty, kLexeme, kForm, kSense };

struct KindInfo {
  Kind kind;
  const char* entity_type;     // Z6001 item, Z6002 property, Z6005 lexeme, Z6004 form, Z6006 sense
  const char* reference_type;  // Z6091, Z6092, Z6095, Z6094, Z6096
  const char* wikibase_type;   // "item", "property", "lexeme", "form", "sense"
};

// The kind of a Wikibase id (Q42, P31, L7, L7-F1, L7-S2), nullopt when `id` is none.
std::optional<Kind> kind_of(std::string_view id);
const KindInfo& info(Kind kind);
// The kind whose reference type (Z6091...) or entity type (Z6001...) is `zid`, else nullopt.
std::optional<Kind> kind_by_reference_type(std::string_view zid);
std::optional<Kind> kind_by_entity_type(std::string_view zid);
// {"Z1K1": <reference type of id's kind>, "<type>K1": id}; null when id is not an entity id.
json reference(std::string_view id);

// Z60 of a language code: the ZID when the code is known, else a literal Z60 with the code.
using LanguageZid = std::function<std::string(std::string_view code)>;

// A value left out of the mapping because its type is not one the Wikidata types can hold (a
// datatype newer than Z6001-Z6096, or a malformed value): reported as a Z598 warning.
struct Discarded {
  std::string what;   // e.g. "the value of P1234 (datavalue type 'musical-notation')"
  std::string value;  // the datavalue's JSON, at most kMaxDiscardedText bytes
};
inline constexpr std::size_t kMaxDiscardedText = 500;

// What Z6820 asks for (empty set: everything). parts: Z6031-Z6038 ZIDs; languages: codes;
// properties: P ids. `discarded`, when set, receives the values left out (Z598).
struct Filter {
  std::set<std::string> parts;
  std::set<std::string> languages;
  std::set<std::string> properties;
  std::vector<Discarded>* discarded = nullptr;
};

// The ZObject of one entity, or why its JSON is not the entity asked for.
std::expected<json, std::string> to_zobject(const json& entity, const LanguageZid& language,
                                            const Filter& filter = {});

// One sitelink ({"site":"enwiki","title":"...","url"?:...}) as a Z6039.
json sitelink(const json& link, const LanguageZid& language);
// The language code and the project of a site id: enwiki -> (en, wiki), dewikiquote ->
// (de, wikiquote), commonswiki -> (mul, commonswiki); nullopt when the id is not a site id.
std::optional<std::pair<std::string, std::string>> split_site(std::string_view site);

// A decimal number as Wikibase writes it ("+1.5", "-0.25", "12", "1.0E-5") as a canonical
// Z19677 rational; nullopt when it is not such a number (or too long).
std::optional<json> rational(std::string_view decimal);

}  // namespace wf::orchestrator::wikidata
