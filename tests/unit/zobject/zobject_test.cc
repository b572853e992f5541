// Tests of the ZObject model: identifiers, parse limits, normalize/canonicalize, lists, errors,
// metadata maps and schema error trees.
#include "wf/zobject/zobject.h"

#include <gtest/gtest.h>
#include <pthread.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <regex>
#include <set>
#include <string>
#include <vector>

namespace zo = wf::zobject;
using json = nlohmann::json;

TEST(Identifiers, Patterns) {
  EXPECT_TRUE(zo::is_zid("Z801"));
  EXPECT_FALSE(zo::is_zid("Z0"));
  EXPECT_FALSE(zo::is_zid("Z01"));
  EXPECT_TRUE(zo::is_global_key("Z801K1"));
  EXPECT_FALSE(zo::is_global_key("Z801K0"));
  EXPECT_TRUE(zo::is_local_key("K12"));
  EXPECT_TRUE(zo::is_reference_like("Q42"));
  EXPECT_FALSE(zo::is_reference_like("K1"));
  EXPECT_FALSE(zo::is_reference_like("Z1K1"));
  EXPECT_TRUE(zo::is_builtin_type("Z99"));
  EXPECT_FALSE(zo::is_builtin_type("Z24"));
}

// The one-pass key checks agree with the patterns of zobjects.md §1 on every text of up to six
// characters over an alphabet of the characters that matter.
TEST(Identifiers, KeysMatchThePatterns) {
  const std::regex global("Z[1-9][0-9]*K[1-9][0-9]*");
  const std::regex local("K[1-9][0-9]*");
  const std::string alphabet = "ZK019x";
  std::vector<std::string> texts{""};
  std::size_t checked = 0;
  for (int length = 0; length <= 6; ++length) {
    std::vector<std::string> longer;
    for (const std::string& t : texts) {
      const bool g = std::regex_match(t, global);
      const bool l = std::regex_match(t, local);
      ASSERT_EQ(zo::is_global_key(t), g) << t;
      ASSERT_EQ(zo::is_local_key(t), l) << t;
      ASSERT_EQ(zo::is_key(t), g || l) << t;
      ++checked;
      for (char c : alphabet) longer.push_back(t + c);
    }
    texts = std::move(longer);
  }
  EXPECT_EQ(checked, 55987u);  // 6^0 + ... + 6^6
  EXPECT_TRUE(zo::is_key("Z10001K12"));
  EXPECT_FALSE(zo::is_key("Z1K1 "));
}

// The built-in types, looked up by number: exactly these 29 texts, nothing that resembles them.
TEST(Identifiers, BuiltinTypesAreExactlyTheList) {
  const std::set<std::string> types = {"Z1",  "Z2",  "Z3",  "Z4",  "Z5",  "Z6",  "Z7",  "Z8",
                                       "Z9",  "Z11", "Z12", "Z14", "Z16", "Z17", "Z18", "Z20",
                                       "Z21", "Z22", "Z23", "Z31", "Z32", "Z39", "Z40", "Z50",
                                       "Z60", "Z61", "Z80", "Z86", "Z99"};
  for (int n = 0; n < 1000; ++n) {
    const std::string zid = "Z" + std::to_string(n);
    EXPECT_EQ(zo::is_builtin_type(zid), types.count(zid) == 1) << zid;
  }
  for (const char* other :
       {"", "Z", "Z01", "Z06", "Z006", "z6", "Z6K1", "Q6", "Z 6", "Z6 ", "Z-1"}) {
    EXPECT_FALSE(zo::is_builtin_type(other)) << other;
  }
}

TEST(Parse, DepthLimit) {
  std::string deep(200, '[');
  deep += std::string(200, ']');
  auto r = zo::parse(deep, 100);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("100"), std::string::npos);
  EXPECT_TRUE(zo::parse(deep, 300));
  EXPECT_FALSE(zo::parse("{\"a\":", 10));
  // Brackets inside strings do not count.
  EXPECT_TRUE(zo::parse("\"[[[[[[[[[[[[\"", 2));
}

TEST(Normalize, StringsAndReferences) {
  auto n = zo::normalize(json("Z40"));
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, zo::z9("Z40"));
  EXPECT_EQ(*zo::normalize(json("hello")), zo::z6("hello"));
  EXPECT_EQ(*zo::normalize(json("Z1K1")), zo::z6("Z1K1"));
}

TEST(Normalize, ObjectKeepsTerminalStrings) {
  json in = {{"Z1K1", "Z11"}, {"Z11K1", "Z1002"}, {"Z11K2", "hello"}};
  json want = {{"Z1K1", zo::z9("Z11")}, {"Z11K1", zo::z9("Z1002")}, {"Z11K2", zo::z6("hello")}};
  EXPECT_EQ(*zo::normalize(in), want);
  json z6 = {{"Z1K1", "Z6"}, {"Z6K1", "Z902"}};
  EXPECT_EQ(*zo::normalize(z6), z6);
}

TEST(Normalize, BenjaminArrays) {
  auto n = zo::normalize(json::array({"Z6", "a", "b"}));
  ASSERT_TRUE(n);
  EXPECT_TRUE(zo::is_list(*n));
  auto items = zo::list_items(*n);
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items[1], zo::z6("b"));
  EXPECT_EQ(zo::list_item_type(*n), zo::z9("Z6"));
  auto empty = zo::normalize(json::array());
  EXPECT_EQ(zo::list_item_type(*empty), zo::z9("Z1"));
  EXPECT_TRUE(zo::list_items(*empty).empty());
}

TEST(Normalize, Idempotent) {
  json in = {{"Z1K1", "Z7"}, {"Z7K1", "Z801"}, {"Z801K1", json::array({"Z6", "x"})}};
  auto once = zo::normalize(in);
  auto twice = zo::normalize(*once);
  EXPECT_EQ(*once, *twice);
}

TEST(Normalize, RejectsNumbersWithZ502Z521) {
  json in = {{"Z1K1", "Z2"}, {"Z2K1", 2}};
  auto n = zo::normalize(in);
  ASSERT_FALSE(n);
  EXPECT_EQ(zo::error_type(n.error()), "Z502");
  std::string text = n.error().dump();
  EXPECT_NE(text.find("Z521"), std::string::npos);
  EXPECT_NE(text.find("Z526"), std::string::npos);  // under the Z2K1 key
}

TEST(Normalize, MissingZ1K1IsZ523) {
  json in = {{"Z1K1", "Z8"}, {"Z2K1", {{"K2", "Test"}}}};
  auto n = zo::normalize(in);
  ASSERT_FALSE(n);
  EXPECT_NE(n.error().dump().find("Z523"), std::string::npos);
}

TEST(Normalize, BadKeyIsZ525) {
  auto n = zo::normalize(json{{"Z1K1", "Z6"}, {"foo", "x"}});
  ASSERT_FALSE(n);
  EXPECT_NE(n.error().dump().find("Z525"), std::string::npos);
}

TEST(Canonicalize, RoundTrip) {
  json canonical = {{"Z1K1", "Z7"},
                    {"Z7K1", "Z801"},
                    {"Z801K1", json::array({"Z6", "a", {{"Z1K1", "Z6"}, {"Z6K1", "Z41"}}})}};
  auto normal = zo::normalize(canonical);
  ASSERT_TRUE(normal);
  auto back = zo::canonicalize(*normal);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, canonical);
}

TEST(Canonicalize, ListItemTypeFromExpandedZ4) {
  json z4 = {{"Z1K1", zo::z9("Z4")}, {"Z4K1", zo::list_type(zo::z9("Z6"))}};
  json list = {{"Z1K1", z4}, {"K1", zo::z6("a")}, {"K2", {{"Z1K1", zo::list_type(zo::z9("Z6"))}}}};
  EXPECT_EQ(zo::to_canonical(list), json::array({"Z6", "a"}));
}

TEST(Canonicalize, FailsOnNumbers) {
  json bad = {{"Z1K1", "Z99"}, {"Z99K1", 5}};
  EXPECT_FALSE(zo::canonicalize(bad));
}

TEST(Errors, StandardShape) {
  json e = zo::make_error_msg("Z507", "boom");
  EXPECT_EQ(zo::error_type(e), "Z507");
  EXPECT_EQ(e["Z5K2"]["Z507K1"], zo::z6("boom"));
  EXPECT_EQ(e["Z5K2"]["Z1K1"]["Z885K1"], zo::z9("Z507"));
  json c = zo::to_canonical(e);
  EXPECT_EQ(c["Z5K2"]["Z1K1"], json({{"Z1K1", "Z7"}, {"Z7K1", "Z885"}, {"Z885K1", "Z507"}}));
}

TEST(Metadata, SetGetReplace) {
  json env = zo::make_envelope(zo::z6("x"), nullptr);
  EXPECT_FALSE(zo::has_error(env));
  zo::envelope_set_metadata(env, "a", zo::z6("1"));
  zo::envelope_set_metadata(env, "b", zo::z6("2"));
  zo::envelope_set_metadata(env, "a", zo::z6("3"));
  ASSERT_NE(zo::map_get(env["Z22K2"], "a"), nullptr);
  EXPECT_EQ(*zo::map_get(env["Z22K2"], "a"), zo::z6("3"));
  EXPECT_EQ(zo::list_items(env["Z22K2"]["K1"]).size(), 2u);
  json err = zo::error_envelope(zo::make_error_msg("Z500", "x"));
  EXPECT_TRUE(zo::has_error(err));
  EXPECT_TRUE(zo::is_void(err["Z22K1"]));
}

TEST(SchemaTree, SiblingsBecomeZ509) {
  std::vector<zo::SchemaViolation> v = {{{"Z2K1"}, zo::make_error("Z521", {zo::z99(1)})},
                                        {{"Z2K2"}, zo::make_error("Z521", {zo::z99(2)})}};
  json tree = zo::schema_error_tree(v);
  EXPECT_EQ(zo::error_type(tree), "Z502");
  EXPECT_EQ(zo::ref_id(tree["Z5K2"]["Z502K1"]), "Z509");
}

TEST(ValidateNormal, TerminalShapes) {
  EXPECT_TRUE(zo::validate_normal(zo::z6("x")).is_null());
  json bad9 = {{"Z1K1", "Z9"}, {"Z9K1", "nope"}};
  json r = zo::validate_normal(bad9);
  ASSERT_FALSE(r.is_null());
  EXPECT_NE(r.dump().find("Z537"), std::string::npos);
}

// canonicalize() converts mixed input directly; it must agree with the two-step definition
// (normalize, then convert the normal form) on every input of the conformance corpus and on
// every bundled definition.
TEST(Canonicalize, DirectEqualsNormalizeThenConvert) {
  namespace fs = std::filesystem;
  std::size_t checked = 0;
  if (!fs::exists(WF_CONFORMANCE_CASES) && !fs::exists(WF_REFERENCE_DEFINITIONS)) {
    GTEST_SKIP() << "neither " << WF_CONFORMANCE_CASES << " nor " << WF_REFERENCE_DEFINITIONS
                 << " exists (a clone without ../shared beside it): corpus check skipped";
  }
  for (const char* root : {WF_CONFORMANCE_CASES, WF_REFERENCE_DEFINITIONS}) {
    if (!fs::exists(root)) continue;
    for (const auto& entry : fs::recursive_directory_iterator(root)) {
      if (entry.path().extension() != ".json") continue;
      std::ifstream in(entry.path());
      json doc = json::parse(in, nullptr, false);
      if (doc.is_discarded()) continue;
      std::vector<json> inputs = {doc};
      if (doc.contains("request") && doc["request"].contains("zobject")) {
        inputs = {doc["request"]["zobject"]};
      }
      for (const json& input : inputs) {
        auto normal = zo::normalize(input);
        auto direct = zo::canonicalize(input);
        ASSERT_EQ(normal.has_value(), direct.has_value()) << entry.path();
        if (!normal) continue;
        EXPECT_EQ(*direct, zo::to_canonical(*normal)) << entry.path();
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 100u);
}

TEST(Canonicalize, EmptyArrayIsUntypedList) {
  EXPECT_EQ(*zo::canonicalize(json::array()), json::array({"Z1"}));
  json nested = {{"Z1K1", "Z7"}, {"Z7K1", "Z801"}, {"Z801K1", json::array()}};
  EXPECT_EQ((*zo::canonicalize(nested))["Z801K1"], json::array({"Z1"}));
}

namespace {

// Runs `body` on a new thread with a stack of `bytes` and waits for it.
void run_on_stack(std::size_t bytes, const std::function<void()>& body) {
  pthread_attr_t attr;
  ASSERT_EQ(pthread_attr_init(&attr), 0);
  ASSERT_EQ(pthread_attr_setstacksize(&attr, bytes), 0);
  pthread_t thread;
  auto run = [](void* arg) -> void* {
    (*static_cast<const std::function<void()>*>(arg))();
    return nullptr;
  };
  const int created =
      pthread_create(&thread, &attr, run, const_cast<std::function<void()>*>(&body));
  pthread_attr_destroy(&attr);
  ASSERT_EQ(created, 0);
  pthread_join(thread, nullptr);
}

}  // namespace

TEST(Canonicalize, BrokenLongListStaysLinear) {
  // A 5000-node chain whose last node is malformed: not a list, converted as plain objects.
  json type = zo::list_type(zo::z9("Z6"));
  json tail = {{"Z1K1", type}, {"K2", "dangling"}};
  // Moved, not copied, into each new node: building the chain stays linear (copying it would
  // be quadratic, and recursive, in its length).
  for (int i = 0; i < 5000; ++i) {
    tail = {{"Z1K1", type}, {"K1", zo::z6("x")}, {"K2", std::move(tail)}};
  }
  // On a 256 KiB stack: converting the chain must not recurse once per node (it did, and
  // crashed under ASan's larger frames even on the 8 MiB main thread).
  json out;
  run_on_stack(256u << 10, [&] { out = zo::to_canonical(tail); });
  EXPECT_TRUE(out.is_object());
  EXPECT_EQ(out["K1"], "x");
  // The last node, 5000 K2 levels down, is converted too.
  const json* node = &out;
  for (int i = 0; i < 5000 && node->is_object(); ++i) node = &(*node)["K2"];
  ASSERT_TRUE(node->is_object());
  EXPECT_EQ((*node)["K2"], "dangling");
}

// A list longer than kMaxListElements is a schema violation naming its length, not a nesting that
// later operations overflow the stack on (a 100,000-element list crashed the orchestrator).
TEST(ListLength, LongestAcceptedListIsValidOneMoreIsAViolation) {
  json list = json::array({"Z6"});
  for (std::size_t i = 0; i < zo::kMaxListElements; ++i) list.push_back("s");
  EXPECT_TRUE(zo::check_mixed(list).empty());
  list.push_back("s");
  const auto violations = zo::check_mixed(list);
  ASSERT_EQ(violations.size(), 1u);
  EXPECT_NE(violations[0].error.dump().find(std::to_string(zo::kMaxListElements + 1) + " elements"),
            std::string::npos)
      << violations[0].error.dump();
  EXPECT_FALSE(zo::normalize(list).has_value());
}
