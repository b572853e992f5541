// The Wikidata family: the Wikibase JSON -> ZObject mapping (wikidata_mapping.h) and the
// built-ins through Engine::evaluate with a fake EntitySource (docs/wikidata.md).
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>

#include "orchestrator/engine/engine.h"
#include "orchestrator/engine/wikidata_mapping.h"

namespace wf::orchestrator::testing {
namespace {

using json = nlohmann::json;
namespace wd = wikidata;

// An id as canonical JSON writes it: explicit Z6, since "Q1" alone would be read as a reference.
json zs(const std::string& id) {
  return {{"Z1K1", "Z6"}, {"Z6K1", id}};
}
json wref(const std::string& type, const std::string& id) {
  return {{"Z1K1", type}, {type + "K1", zs(id)}};
}

std::string lang(std::string_view code) {
  if (code == "en") return "Z1002";
  if (code == "de") return "Z1430";
  return "";
}

json item_q1() {
  return json::parse(R"({
    "type": "item", "id": "Q1",
    "labels": {"en": {"language": "en", "value": "universe"},
               "xx": {"language": "xx", "value": "Z42"}},
    "descriptions": {"en": {"language": "en", "value": "totality"}},
    "aliases": {"en": [{"language": "en", "value": "cosmos"}, {"language": "en", "value": "all"}]},
    "claims": {
      "P31": [{"mainsnak": {"snaktype": "value", "property": "P31",
                            "datavalue": {"value": {"entity-type": "item", "numeric-id": 36906466},
                                          "type": "wikibase-entityid"}},
               "rank": "preferred",
               "qualifiers": {"P580": [{"snaktype": "somevalue", "property": "P580"}]},
               "references": [{"snaks": {"P143": [{"snaktype": "value", "property": "P143",
                   "datavalue": {"value": {"id": "Q328"}, "type": "wikibase-entityid"}}]}}]}],
      "P2386": [{"mainsnak": {"snaktype": "value", "property": "P2386",
                              "datavalue": {"value": {"amount": "+8.8e26", "unit": "1"}, "type": "quantity"}},
                 "rank": "normal"}],
      "P1": [{"mainsnak": {"snaktype": "value", "property": "P1",
                           "datavalue": {"value": {}, "type": "musical-notation-2"}}, "rank": "normal"}],
      "P580": [{"mainsnak": {"snaktype": "value", "property": "P580",
                             "datavalue": {"value": {"time": "-13798000000-00-00T00:00:00Z", "timezone": -60,
                                                     "before": 0, "after": 2, "precision": 3,
                                                     "calendarmodel": "http://www.wikidata.org/entity/Q1985727"},
                                           "type": "time"}}, "rank": "deprecated"}],
      "P1451": [{"mainsnak": {"snaktype": "novalue", "property": "P1451"}, "rank": "normal"}]
    },
    "sitelinks": {"enwiki": {"site": "enwiki", "title": "Universe"},
                  "zh_min_nanwikisource": {"site": "zh_min_nanwikisource", "title": "Ú-tiū"},
                  "commonswiki": {"site": "commonswiki", "title": "Category:Universe",
                                  "url": "https://commons.wikimedia.org/wiki/Category:Universe"}}
  })");
}

json find_statement(const json& statements, const std::string& property) {
  for (std::size_t i = 1; i < statements.size(); ++i) {
    if (statements[i]["Z6003K2"]["Z6092K1"]["Z6K1"] == property) return statements[i];
  }
  return nullptr;
}

TEST(WikidataMapping, KindsOfIds) {
  EXPECT_EQ(wd::kind_of("Q42"), wd::Kind::kItem);
  EXPECT_EQ(wd::kind_of("P31"), wd::Kind::kProperty);
  EXPECT_EQ(wd::kind_of("L7"), wd::Kind::kLexeme);
  EXPECT_EQ(wd::kind_of("L7-F12"), wd::Kind::kForm);
  EXPECT_EQ(wd::kind_of("L7-S1"), wd::Kind::kSense);
  for (const char* bad :
       {"", "Q", "Q0", "Q01", "X1", "Q1-F1", "L1-F", "L1-X1", "L1-F0", "L1--F1", "Q1 ", "Z1"}) {
    EXPECT_FALSE(wd::kind_of(bad)) << bad;
  }
  EXPECT_EQ(wd::reference("L7-S1"), json({{"Z1K1", "Z6096"}, {"Z6096K1", "L7-S1"}}));
  EXPECT_EQ(wd::reference("Q42"), wref("Z6091", "Q42"));
  EXPECT_TRUE(wd::reference("nope").is_null());
}

TEST(WikidataMapping, ItemTermsAndSitelinks) {
  auto z = wd::to_zobject(item_q1(), lang);
  ASSERT_TRUE(z) << z.error();
  EXPECT_EQ((*z)["Z1K1"], "Z6001");
  EXPECT_EQ((*z)["Z6001K1"], wref("Z6091", "Q1"));
  const json& labels = (*z)["Z6001K2"]["Z12K1"];
  ASSERT_EQ(labels.size(), 3u);
  EXPECT_EQ(labels[1], json({{"Z1K1", "Z11"}, {"Z11K1", "Z1002"}, {"Z11K2", "universe"}}));
  // An unknown code is a literal Z60; text that looks like a ZID stays a string.
  EXPECT_EQ(labels[2]["Z11K1"], json({{"Z1K1", "Z60"}, {"Z60K1", "xx"}}));
  EXPECT_EQ(labels[2]["Z11K2"], json({{"Z1K1", "Z6"}, {"Z6K1", "Z42"}}));
  EXPECT_EQ((*z)["Z6001K4"]["Z32K1"][1]["Z31K2"], json({"Z6", "cosmos", "all"}));
  const json& links = (*z)["Z6001K6"];
  ASSERT_EQ(links.size(), 4u);
  EXPECT_EQ(links[0], "Z6039");
  EXPECT_EQ(links[1]["Z6039K3"], "commonswiki");
  EXPECT_EQ(links[1]["Z6039K5"], "https://commons.wikimedia.org/wiki/Category:Universe");
  EXPECT_EQ(links[2]["Z6039K2"], "Z1002");
  EXPECT_EQ(links[2]["Z6039K5"], "https://en.wikipedia.org/wiki/Universe");
  EXPECT_EQ(links[3]["Z6039K2"], json({{"Z1K1", "Z60"}, {"Z60K1", "zh-min-nan"}}));
  EXPECT_EQ(links[3]["Z6039K3"], "wikisource");
  EXPECT_EQ(links[3]["Z6039K5"], "https://zh-min-nan.wikisource.org/wiki/Ú-tiū");
}

TEST(WikidataMapping, Statements) {
  auto z = wd::to_zobject(item_q1(), lang);
  ASSERT_TRUE(z) << z.error();
  const json& st = (*z)["Z6001K5"];
  EXPECT_EQ(st[0], "Z6003");
  EXPECT_EQ(st.size(), 5u);  // the unknown value type (P1) is left out
  json p31 = find_statement(st, "P31");
  EXPECT_EQ(p31["Z6003K1"], wref("Z6091", "Q1"));
  EXPECT_EQ(p31["Z6003K3"], wref("Z6091", "Q36906466"));  // numeric-id
  EXPECT_EQ(p31["Z6003K4"], "Z6041");
  EXPECT_EQ(p31["Z6003K7"], "Z6021");
  EXPECT_EQ(p31["Z6003K5"][1],
            json({{"Z1K1", "Z6007"}, {"Z6007K1", wref("Z6092", "P580")}, {"Z6007K3", "Z6023"}}));
  EXPECT_EQ(p31["Z6003K6"][1]["Z6008K1"][1]["Z6007K2"]["Z6091K1"]["Z6K1"], "Q328");
  json none = find_statement(st, "P1451");
  EXPECT_FALSE(none.contains("Z6003K3"));
  EXPECT_EQ(none["Z6003K7"], "Z6022");
  json mass = find_statement(st, "P2386")["Z6003K3"];
  EXPECT_EQ(mass["Z1K1"], "Z6010");
  EXPECT_EQ(mass["Z6010K1"]["Z19677K2"]["Z13518K1"], "880000000000000000000000000");
  EXPECT_FALSE(mass.contains("Z6010K4"));  // unit "1": no unit
  json t = find_statement(st, "P580");
  EXPECT_EQ(t["Z6003K4"], "Z6043");
  const json& time = t["Z6003K3"];
  EXPECT_EQ(time["Z6064K1"]["Z6061K1"], "-13798000000-00-00");
  EXPECT_EQ(time["Z6064K1"]["Z6061K2"]["Z6060K1"]["Z13518K1"], "0");
  EXPECT_EQ(time["Z6064K2"], json({{"Z1K1", "Z6062"}, {"Z6062K1", wref("Z6091", "Q20764")}}));
  EXPECT_EQ(time["Z6064K4"]["Z13518K1"], "2");
  EXPECT_EQ(time["Z6064K5"]["Z16683K1"]["Z16659K1"], "Z16662");
  EXPECT_EQ(time["Z6064K5"]["Z16683K2"]["Z13518K1"], "60");
  EXPECT_EQ(time["Z6064K6"]["Z6063K1"]["Z6091K1"]["Z6K1"], "Q1985727");
}

TEST(WikidataMapping, DiscardedValuesAreReported) {
  std::vector<wd::Discarded> discarded;
  wd::Filter f;
  f.discarded = &discarded;
  auto z = wd::to_zobject(item_q1(), lang, f);
  ASSERT_TRUE(z) << z.error();
  ASSERT_EQ(discarded.size(), 1u);  // P1, whose datavalue type is unknown
  EXPECT_NE(discarded[0].what.find("P1 "), std::string::npos) << discarded[0].what;
  EXPECT_EQ(json::parse(discarded[0].value), item_q1()["claims"]["P1"][0]["mainsnak"]["datavalue"]);
  discarded.clear();
  f.properties = {"P31"};  // a filtered-out statement is not discarded, only not asked for
  ASSERT_TRUE(wd::to_zobject(item_q1(), lang, f));
  EXPECT_TRUE(discarded.empty());
}

TEST(WikidataMapping, FilterByPartsLanguagesProperties) {
  wd::Filter f;
  f.parts = {"Z6033", "Z6036"};
  f.languages = {"en"};
  f.properties = {"P31"};
  auto z = wd::to_zobject(item_q1(), lang, f);
  ASSERT_TRUE(z) << z.error();
  EXPECT_EQ((*z)["Z6001K2"]["Z12K1"].size(), 2u);
  EXPECT_EQ((*z)["Z6001K3"]["Z12K1"], json({"Z11"}));
  EXPECT_EQ((*z)["Z6001K4"]["Z32K1"], json({"Z31"}));
  EXPECT_EQ((*z)["Z6001K5"].size(), 2u);
  EXPECT_EQ((*z)["Z6001K6"], json({"Z6039"}));
}

TEST(WikidataMapping, LexemeFormsAndSenses) {
  json l = json::parse(
      R"({"type": "lexeme", "id": "L7", "lemmas": {"en": {"language": "en", "value": "cat"}},
    "lexicalCategory": "Q1084", "language": "Q1860", "claims": {},
    "forms": [{"id": "L7-F1", "representations": {"en": {"language": "en", "value": "cats"}},
               "grammaticalFeatures": ["Q146786", "bad"], "claims": {}},
              {"id": "junk"}],
    "senses": [{"id": "L7-S1", "glosses": {"en": {"language": "en", "value": "feline"}},
                "claims": {"P5137": [{"mainsnak": {"snaktype": "value", "property": "P5137",
                  "datavalue": {"value": {"id": "Q146"}, "type": "wikibase-entityid"}}, "rank": "normal"}]}}]})");
  auto z = wd::to_zobject(l, lang);
  ASSERT_TRUE(z) << z.error();
  EXPECT_EQ((*z)["Z1K1"], "Z6005");
  EXPECT_EQ((*z)["Z6005K3"], "Z1002");
  EXPECT_EQ((*z)["Z6005K4"], wref("Z6091", "Q1084"));
  const json& forms = (*z)["Z6005K7"];
  ASSERT_EQ(forms.size(), 2u);
  EXPECT_EQ(forms[1]["Z6004K2"], wref("Z6095", "L7"));
  EXPECT_EQ(forms[1]["Z6004K3"]["Z12K1"][1]["Z11K2"], "cats");
  EXPECT_EQ(forms[1]["Z6004K4"], json({"Z6091", wref("Z6091", "Q146786")}));
  const json& sense = (*z)["Z6005K6"][1];
  EXPECT_EQ(sense["Z6006K1"]["Z6096K1"], "L7-S1");
  EXPECT_EQ(sense["Z6006K3"][1]["Z6003K1"]["Z6096K1"], "L7-S1");  // the subject is the sense
  EXPECT_EQ(sense["Z6006K4"], wref("Z6095", "L7"));
  EXPECT_FALSE(wd::to_zobject(json::parse(R"({"id": "Z1"})"), lang));
  EXPECT_FALSE(wd::to_zobject(json::array(), lang));
}

TEST(WikidataMapping, Rationals) {
  auto parts = [](std::string_view d) -> std::vector<std::string> {
    auto r = wd::rational(d);
    if (!r) return {};
    return {(*r)["Z19677K1"]["Z16659K1"], (*r)["Z19677K2"]["Z13518K1"],
            (*r)["Z19677K3"]["Z13518K1"]};
  };
  EXPECT_EQ(parts("+1.5"), (std::vector<std::string>{"Z16660", "3", "2"}));
  EXPECT_EQ(parts("-0.25"), (std::vector<std::string>{"Z16662", "1", "4"}));
  EXPECT_EQ(parts("12"), (std::vector<std::string>{"Z16660", "12", "1"}));
  EXPECT_EQ(parts("1.0E-5"), (std::vector<std::string>{"Z16660", "1", "100000"}));
  EXPECT_EQ(parts("-0.000"), (std::vector<std::string>{"Z16661", "0", "1"}));
  EXPECT_EQ(parts("2e3"), (std::vector<std::string>{"Z16660", "2000", "1"}));
  EXPECT_EQ(parts("0.1234567890123456789"),
            (std::vector<std::string>{"Z16660", "1234567890123456789", "10000000000000000000"}));
  for (const char* bad : {"", "+", ".", "1.2.3", "abc", "1e", "1e9999", "--1", "0x10"}) {
    EXPECT_FALSE(wd::rational(bad)) << bad;
  }
  EXPECT_FALSE(wd::rational(std::string(300, '9')));
}

// ---- the built-ins through the engine ----------------------------------------------------------

class FakeWikidata : public EntitySource {
 public:
  std::map<std::string, json> entities;
  std::map<std::string, std::vector<std::string>> searches;  // "P5137=Q146" -> lexeme ids
  bool fail = false;
  std::atomic<int> entity_requests{0};
  std::vector<std::vector<std::string>> batches;  // the ids of each request
  std::mutex mu;

  void get_entities(const std::vector<std::string>& ids, const CallContext&, Done done) override {
    ++entity_requests;
    {
      std::lock_guard lock(mu);
      batches.push_back(ids);
    }
    if (fail) return done(std::unexpected(FetchError{"Wikidata API at fake answered 500"}));
    std::map<std::string, json> out;
    for (const auto& id : ids) {
      if (auto it = entities.find(id); it != entities.end()) out.emplace(id, it->second);
    }
    done(std::move(out));
  }
  void find_lexemes(const std::string& property, const std::string& value, const CallContext&,
                    IdsDone done) override {
    done(searches[property + "=" + value]);
  }
};

// Z40K1 of a Boolean result, else the whole answer (so a failure shows why).
json bool_of(const json& r) {
  return r["Z22K1"].is_object() && r["Z22K1"].contains("Z40K1") ? r["Z22K1"]["Z40K1"] : r;
}

json item_ref(const std::string& q) {
  return wref("Z6091", q);
}
json call1(const std::string& fn, const json& arg) {
  return {{"Z1K1", "Z7"}, {"Z7K1", fn}, {fn + "K1", arg}};
}

class WikidataBuiltins : public ::testing::Test {
 protected:
  WikidataBuiltins() {
    source_->entities["Q1"] = item_q1();
    source_->entities["Q2"] = json::parse(R"({"type": "item", "id": "Q2", "labels": {}})");
    source_->entities["L7"] = json::parse(R"({"type": "lexeme", "id": "L7",
        "lemmas": {"en-gb": {"language": "en-gb", "value": "colour"}}, "lexicalCategory": "Q1084"})");
    source_->entities["L8"] = json::parse(R"({"type": "lexeme", "id": "L8",
        "lemmas": {"de": {"language": "de", "value": "Farbe"}}, "lexicalCategory": "Q1084"})");
    source_->entities["L7-S1"] = json::parse(R"({"type": "sense", "id": "L7-S1",
        "glosses": {"en": {"language": "en", "value": "hue"}}})");
    source_->searches["P5137=Q1075"] = {"L7", "L8"};
  }
  json run(const json& call, Engine* engine = nullptr) {
    CallContext ctx;
    ctx.deadline = Clock::now() + std::chrono::seconds(10);
    return (engine ? engine : engine_.get())
        ->evaluate({{"zobject", call}, {"doValidate", false}}, ctx);
  }
  static json error_of(const json& r) {
    for (std::size_t i = 1; i < r["Z22K2"]["K1"].size(); ++i) {
      if (r["Z22K2"]["K1"][i]["K1"] == "errors") return r["Z22K2"]["K1"][i]["K2"];
    }
    return nullptr;
  }
  std::shared_ptr<FakeWikidata> source_ = std::make_shared<FakeWikidata>();
  std::unique_ptr<Engine> engine_ = make_engine({}, nullptr, nullptr, nullptr, source_);
};

TEST_F(WikidataBuiltins, FetchItemIsCached) {
  json r = run(call1("Z6821", item_ref("Q1")));
  ASSERT_TRUE(error_of(r).is_null()) << r.dump();
  EXPECT_EQ(r["Z22K1"]["Z1K1"], "Z6001");
  EXPECT_EQ(r["Z22K1"]["Z6001K2"]["Z12K1"][1]["Z11K2"], "universe");
  EXPECT_EQ(source_->entity_requests.load(), 1);
  r = run(call1("Z6821", item_ref("Q1")));
  EXPECT_EQ(r["Z22K1"]["Z1K1"], "Z6001");
  EXPECT_EQ(source_->entity_requests.load(), 1);  // from the object cache
}

TEST_F(WikidataBuiltins, FetchSenseAndKindMismatch) {
  json r = run(call1("Z6826", {{"Z1K1", "Z6096"}, {"Z6096K1", "L7-S1"}}));
  EXPECT_EQ(r["Z22K1"]["Z6006K2"]["Z12K1"][1]["Z11K2"], "hue") << r.dump();
  r = run(call1("Z6826", item_ref("Q1")));  // an item reference where a sense one is declared
  EXPECT_EQ(error_of(r)["Z5K1"], "Z516") << r.dump();
}

TEST_F(WikidataBuiltins, MissingEntityAndNoSourceAndFailure) {
  json r = run(call1("Z6821", item_ref("Q404")));
  EXPECT_EQ(error_of(r)["Z5K1"], "Z550") << r.dump();
  EXPECT_NE(r.dump().find("Q404"), std::string::npos);
  auto bare = make_engine({}, nullptr, nullptr);
  r = run(call1("Z6821", item_ref("Q1")), bare.get());
  EXPECT_EQ(error_of(r)["Z5K1"], "Z500");
  EXPECT_NE(r.dump().find("--wikidata-api-url"), std::string::npos);
  source_->fail = true;
  r = run(call1("Z6821", item_ref("Q2")));
  EXPECT_EQ(error_of(r)["Z5K1"], "Z500");
  EXPECT_NE(r.dump().find("answered 500"), std::string::npos);
}

TEST_F(WikidataBuiltins, FetchEntitiesMap) {
  json call = {{"Z1K1", "Z7"},
               {"Z7K1", "Z6820"},
               {"Z6820K1", json::array({"Z1", item_ref("Q1"), wref("Z6095", "L7")})},
               {"Z6820K2", json::array({"Z6030", "Z6033"})},
               {"Z6820K3", json::array({"Z60", "Z1002"})},
               {"Z6820K4", json::array({"Z6092"})}};
  json r = run(call);
  ASSERT_TRUE(error_of(r).is_null()) << r.dump();
  const json& pairs = r["Z22K1"]["K1"];
  ASSERT_EQ(pairs.size(), 3u) << r.dump();
  EXPECT_EQ(pairs[1]["K1"], zs("Q1"));
  EXPECT_EQ(pairs[1]["K2"]["Z6001K2"]["Z12K1"].size(), 2u);  // English labels only
  EXPECT_EQ(pairs[1]["K2"]["Z6001K5"], json({"Z6003"}));     // statements not asked for
  EXPECT_EQ(pairs[2]["K1"], zs("L7"));
  EXPECT_EQ(source_->batches, (std::vector<std::vector<std::string>>{{"Q1", "L7"}}));  // one batch
}

TEST_F(WikidataBuiltins, Equality) {
  json q1 = call1("Z6821", item_ref("Q1")), q2 = call1("Z6821", item_ref("Q2"));
  auto same = [&](const json& a, const json& b) {
    return bool_of(run({{"Z1K1", "Z7"}, {"Z7K1", "Z6801"}, {"Z6801K1", a}, {"Z6801K2", b}}));
  };
  EXPECT_EQ(same(q1, q1), "Z41");
  EXPECT_EQ(same(q1, q2), "Z42");
  json claim = {{"Z1K1", "Z6007"}, {"Z6007K1", wref("Z6092", "P31")}, {"Z6007K3", "Z6022"}};
  json other = claim;
  other["Z6007K3"] = "Z6023";
  auto same_claim = [&](const json& a, const json& b) {
    return bool_of(run({{"Z1K1", "Z7"}, {"Z7K1", "Z6807"}, {"Z6807K1", a}, {"Z6807K2", b}}));
  };
  EXPECT_EQ(same_claim(claim, claim), "Z41");
  EXPECT_EQ(same_claim(claim, other), "Z42");
}

TEST_F(WikidataBuiltins, SitelinksFiltered) {
  json call = {{"Z1K1", "Z7"},
               {"Z7K1", "Z6839"},
               {"Z6839K1", item_ref("Q1")},
               {"Z6839K2", json::array({"Z6", "wiki"})},
               {"Z6839K3", json::array({"Z60"})}};
  json r = run(call);
  ASSERT_TRUE(error_of(r).is_null()) << r.dump();
  ASSERT_EQ(r["Z22K1"].size(), 2u) << r.dump();
  EXPECT_EQ(r["Z22K1"][1]["Z6039K1"], "enwiki");
  call["Z6839K2"] = json::array({"Z6"});
  call["Z6839K3"] = json::array({"Z60", {{"Z1K1", "Z60"}, {"Z60K1", "zh-min-nan"}}});
  r = run(call);
  ASSERT_EQ(r["Z22K1"].size(), 2u) << r.dump();
  EXPECT_EQ(r["Z22K1"][1]["Z6039K3"], "wikisource");
}

TEST_F(WikidataBuiltins, FindLexemesByLanguage) {
  json call = {{"Z1K1", "Z7"},
               {"Z7K1", "Z6830"},
               {"Z6830K1", item_ref("Q1075")},
               {"Z6830K2", wref("Z6092", "P5137")},
               {"Z6830K3", "Z1002"}};
  json r = run(call);
  ASSERT_TRUE(error_of(r).is_null()) << r.dump();
  EXPECT_EQ(r["Z22K1"], json({"Z6095", wref("Z6095", "L7")}));  // en-gb is English
  call["Z6830K3"] = "Z1430";
  EXPECT_EQ(run(call)["Z22K1"], json({"Z6095", wref("Z6095", "L8")}));
  call["Z6830K1"] = item_ref("Q9");
  EXPECT_EQ(run(call)["Z22K1"], json({"Z6095"}));
}

TEST_F(WikidataBuiltins, Enums) {
  json values = run(call1("Z6896", zs("Z6063")));
  ASSERT_TRUE(error_of(values).is_null()) << values.dump();
  ASSERT_EQ(values["Z22K1"].size(), 3u) << values.dump();
  json gregorian = values["Z22K1"][1];
  ASSERT_TRUE(gregorian.is_object()) << values.dump();
  // The bundled Z6063 writes "Q1985727" bare, which normalisation reads as a reference.
  EXPECT_EQ(gregorian["Z6063K1"], json({{"Z1K1", "Z6091"}, {"Z6091K1", "Q1985727"}}));
  EXPECT_EQ(run(call1("Z6895", gregorian))["Z22K1"], gregorian["Z6063K1"]);
  auto same = [&](const json& a, const json& b) {
    return bool_of(run({{"Z1K1", "Z7"}, {"Z7K1", "Z6894"}, {"Z6894K1", a}, {"Z6894K2", b}}));
  };
  EXPECT_EQ(same(gregorian, gregorian), "Z41");
  EXPECT_EQ(same(gregorian, values["Z22K1"][2]), "Z42");
  json type = run({{"Z1K1", "Z7"},
                   {"Z7K1", "Z6884"},
                   {"Z6884K1", "Z6091"},
                   {"Z6884K2", json::array({"Z1", item_ref("Q1")})},
                   {"Z6884K3", zs("Z10500")}});
  ASSERT_TRUE(type["Z22K1"].is_object()) << type.dump();
  EXPECT_EQ(type["Z22K1"]["Z4K1"], "Z10500") << type.dump();
  EXPECT_EQ(type["Z22K1"]["Z4K4"], "Z6894");
  EXPECT_EQ(error_of(run(call1("Z6896", zs("Z6001"))))["Z5K1"], "Z516");
}

}  // namespace
}  // namespace wf::orchestrator::testing
