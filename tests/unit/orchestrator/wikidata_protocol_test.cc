// The Wikibase wbgetentities / lexeme search URLs and answers, apart from the transport.
#include "orchestrator/wikidata_protocol.h"

#include <gtest/gtest.h>

namespace wf::orchestrator {
namespace {

TEST(WikidataProtocol, EntitiesUrlListsTheIds) {
  auto url = wbgetentities_url("http://wd.test/w/api.php", {"Q42", "P31", "L7-F1", "L7-S2"});
  ASSERT_TRUE(url) << url.error();
  EXPECT_EQ(
      *url,
      "http://wd.test/w/api.php?action=wbgetentities&format=json&ids=Q42%7CP31%7CL7-F1%7CL7-S2");
}

TEST(WikidataProtocol, RefusesWhatIsNotAnEntityId) {
  for (const std::string bad :
       {"Q42&action=edit", "Q0", "Z1", "L7-X1", "q42", "", "Q42 ", "L7-F"}) {
    SCOPED_TRACE(bad);
    auto url = wbgetentities_url("http://wd.test/w/api.php", {"Q1", bad});
    ASSERT_FALSE(url);
    EXPECT_NE(url.error().find("not a Wikidata entity id"), std::string::npos);
  }
  auto url = wbgetentities_url("not a url", {"Q1"});
  ASSERT_FALSE(url);
  EXPECT_NE(url.error().find("--wikidata-api-url"), std::string::npos);
}

TEST(WikidataProtocol, DecodesPresentEntitiesOnly) {
  auto out = decode_wbgetentities(
      R"({"entities":{"Q42":{"id":"Q42","type":"item"},"Q9":{"id":"Q9","missing":""},
          "Q8":{"id":"Q8"}},"success":1})",
      {"Q42", "Q9", "Q7"});
  ASSERT_TRUE(out) << out.error();
  ASSERT_EQ(out->size(), 1u);
  EXPECT_EQ(out->at("Q42")["type"], "item");
}

TEST(WikidataProtocol, NoSuchEntityIsNotFoundOtherErrorsFail) {
  auto none =
      decode_wbgetentities(R"({"error":{"code":"no-such-entity","id":"L1-F9"}})", {"L1-F9"});
  ASSERT_TRUE(none) << none.error();
  EXPECT_TRUE(none->empty());
  auto err = decode_wbgetentities(R"({"error":{"code":"maxlag","info":"lagged"}})", {"Q1"});
  ASSERT_FALSE(err);
  EXPECT_NE(err.error().find("maxlag: lagged"), std::string::npos);
  EXPECT_FALSE(decode_wbgetentities("[]", {"Q1"}));
  EXPECT_FALSE(decode_wbgetentities(R"({"success":1})", {"Q1"}));
  EXPECT_FALSE(decode_wbgetentities(R"({"error":{"code":7}})", {"Q1"}));  // never throws
}

TEST(WikidataProtocol, LexemeSearch) {
  auto url = lexeme_search_url("http://wd.test/w/api.php", "P5137", "Q146", 50);
  ASSERT_TRUE(url) << url.error();
  // "=" may stay as it is inside a value: a query pair splits at its first "=".
  EXPECT_EQ(*url,
            "http://wd.test/w/api.php?action=query&format=json&list=search&srnamespace=146&"
            "srlimit=50&srsearch=haswbstatement:P5137=Q146");
  EXPECT_FALSE(lexeme_search_url("http://wd.test/w/api.php", "Q1", "Q146", 50));
  EXPECT_FALSE(lexeme_search_url("http://wd.test/w/api.php", "P1", "Q1 OR x", 50));
  auto ids = decode_lexeme_search(
      R"({"query":{"search":[{"title":"Lexeme:L7"},{"title":"L8"},{"title":"Q1"},{"title":3}]}})");
  ASSERT_TRUE(ids) << ids.error();
  EXPECT_EQ(*ids, (std::vector<std::string>{"L7", "L8"}));
  EXPECT_FALSE(decode_lexeme_search(R"({"error":{"code":"x"}})"));
}

}  // namespace
}  // namespace wf::orchestrator
