// The wikilambda_fetch URL and answer, apart from the transport.
#include "orchestrator/wiki_protocol.h"

#include <gtest/gtest.h>

namespace wf::orchestrator {
namespace {

TEST(WikiProtocol, UrlEncodesEveryParameter) {
  auto url = wikilambda_fetch_url("https://wiki.test/w/api.php", {"Z1", "Z10001"});
  ASSERT_TRUE(url) << url.error();
  EXPECT_EQ(*url,
            "https://wiki.test/w/api.php?action=wikilambda_fetch&format=json&zids=Z1%7CZ10001");
  // A query of the configured URL is kept.
  url = wikilambda_fetch_url("http://127.0.0.1:8080/api.php?uselang=en", {"Z801"});
  ASSERT_TRUE(url) << url.error();
  EXPECT_EQ(
      *url,
      "http://127.0.0.1:8080/api.php?uselang=en&action=wikilambda_fetch&format=json&zids=Z801");
}

TEST(WikiProtocol, RefusesWhatIsNotAZid) {
  for (const std::string bad : {"Z1&action=delete", "Z1#x", "Z1 ", "Z0", "", "../Z1"}) {
    SCOPED_TRACE(bad);
    auto url = wikilambda_fetch_url("https://wiki.test/w/api.php", {"Z1", bad});
    ASSERT_FALSE(url);
    EXPECT_NE(url.error().find("not a ZID"), std::string::npos);
  }
  EXPECT_FALSE(wikilambda_fetch_url("not a url", {"Z1"}));
}

TEST(WikiProtocol, DecodesOnlyTheAskedZids) {
  auto out = decode_wikilambda_fetch(
      R"({"Z1":{"wikilambda_fetch":"{\"Z1K1\":\"Z2\"}"},"Z2":{"wikilambda_fetch":"x"},
          "Z3":{"wikilambda_fetch":7},"Z4":"flat"})",
      {"Z1", "Z3", "Z4", "Z5"});
  ASSERT_TRUE(out) << out.error();
  ASSERT_EQ(out->size(), 1u);
  EXPECT_EQ(out->at("Z1"), R"({"Z1K1":"Z2"})");
  EXPECT_FALSE(decode_wikilambda_fetch("[1]", {"Z1"}));
  EXPECT_FALSE(decode_wikilambda_fetch("{", {"Z1"}));
}

}  // namespace
}  // namespace wf::orchestrator
