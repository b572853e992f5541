// parse_plain_json against nlohmann::json::parse: the same value whenever it answers, and no
// answer (the caller's cue to use nlohmann) for everything outside its subset.

#include "wf/codec/plain_json.h"

#include <gtest/gtest.h>

#include <functional>
#include <random>
#include <string>
#include <vector>

namespace wf::codec {
namespace {

using nlohmann::json;

// What a caller of parse_plain_json gets: its value, else nlohmann's (discarded when invalid).
json parse_either(const std::string& text) {
  if (auto plain = parse_plain_json(text)) return *plain;
  return json::parse(text, nullptr, false);
}

// A normal-form Z22 as wf-evaluator writes it (keys not in sorted order, a metadata map of Z6s).
std::string evaluator_answer() {
  const json pair = {{"Z1K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z7"}}},
                     {"Z7K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z882"}}},
                     {"Z882K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z6"}}},
                     {"Z882K2", {{"Z1K1", "Z9"}, {"Z9K1", "Z1"}}}};
  std::string list =
      R"({"Z1K1":{"Z1K1":{"Z1K1":"Z9","Z9K1":"Z7"},"Z7K1":"Z881","Z881K1":)" + pair.dump() + "}}";
  for (const char* key : {"executionCpuUsage", "evaluationHostname", "evaluationDuration"}) {
    list = R"({"Z1K1":{"Z1K1":"Z9","Z9K1":"Z7"},"K1":{"Z1K1":)" + pair.dump() +
           R"(,"K1":{"Z1K1":"Z6","Z6K1":")" + key + R"("},"K2":{"Z1K1":"Z6","Z6K1":"0.873 ms"}},)" +
           R"("K2":)" + list + "}";
  }
  return R"({"Z1K1":{"Z1K1":"Z9","Z9K1":"Z22"},"Z22K1":{"Z1K1":"Z6","Z6K1":"HELLO"},)"
         R"("Z22K2":{"Z1K1":"Z883","K1":)" +
         list + "}}";
}

TEST(PlainJson, AnEvaluatorAnswerParsesAsNlohmannParsesIt) {
  const std::string text = evaluator_answer();
  auto plain = parse_plain_json(text);
  ASSERT_TRUE(plain.has_value());
  EXPECT_EQ(*plain, json::parse(text));
  EXPECT_EQ((*plain)["Z22K1"]["Z6K1"], "HELLO");
}

TEST(PlainJson, FixedCasesGiveNlohmannsValue) {
  for (const std::string text :
       {R"({})", R"([])", R"("")", R"("a b ~")", R"(true)", R"(false)", R"(null)",
        R"( { "a" : [ true , false , null , "x" , { } , [ ] ] } )", "\t\r\n[\"x\"]\n",
        R"({"b":"1","a":"2","Z1K1":"Z6"})", R"([[[["deep"]]]])"}) {
    auto plain = parse_plain_json(text);
    ASSERT_TRUE(plain.has_value()) << text;
    EXPECT_EQ(*plain, json::parse(text)) << text;
  }
}

TEST(PlainJson, AnythingOutsideTheSubsetIsLeftToNlohmann) {
  for (const std::string text : {R"("a\"b")",
                                 R"("\u00e9")",
                                 "\"caf\xc3\xa9\"",
                                 "\"tab\there\"",
                                 "\"del\x7f\"",
                                 R"(1)",
                                 R"([1.5])",
                                 R"({"a":-2})",           // numbers
                                 R"({"a":"1","a":"2"})",  // a duplicate key
                                 R"({"a":)",
                                 R"({"a" "b"})",
                                 R"([,])",
                                 R"([1,])",
                                 R"({"a":"b",})",
                                 R"(tru)",
                                 R"(nul)",
                                 R"({} {})",
                                 R"("open)",
                                 "",
                                 " ",
                                 "\"bad\xff\""}) {
    EXPECT_FALSE(parse_plain_json(text).has_value()) << text;
  }
  std::string deep(kMaxPlainDepth + 1, '[');
  deep += std::string(kMaxPlainDepth + 1, ']');
  EXPECT_FALSE(parse_plain_json(deep).has_value());
  std::string ok(kMaxPlainDepth, '[');
  ok += std::string(kMaxPlainDepth, ']');
  EXPECT_TRUE(parse_plain_json(ok).has_value());
  // A caller's lower bound (a request body's max_json_depth): deeper text is left to its parser;
  // a bound above kMaxPlainDepth counts as kMaxPlainDepth.
  EXPECT_TRUE(parse_plain_json(R"({"a":{"b":["c"]}})", 3).has_value());
  EXPECT_FALSE(parse_plain_json(R"({"a":{"b":["c"]}})", 2).has_value());
  EXPECT_FALSE(parse_plain_json(deep, kMaxPlainDepth * 2).has_value());
}

// Random documents of the subset and mangled copies of them: whenever parse_plain_json answers,
// nlohmann gives the same value; a valid document of the subset is always answered.
TEST(PlainJson, RandomAndMangledTextsAgreeWithNlohmann) {
  std::mt19937 rng(7);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  std::function<json(int)> make = [&](int depth) -> json {
    const int kind = depth > 5 ? pick(4) : pick(6);
    switch (kind) {
      case 0:
        return json(
            std::string(static_cast<std::size_t>(pick(6)), static_cast<char>('a' + pick(26))));
      case 1:
        return json(pick(2) == 0);
      case 2:
        return json(nullptr);
      case 3:
        return json("Z" + std::to_string(pick(20000)));
      case 4: {
        json o = json::object();
        for (int i = pick(5); i > 0; --i) o["K" + std::to_string(pick(9))] = make(depth + 1);
        return o;
      }
      default: {
        json a = json::array();
        for (int i = pick(5); i > 0; --i) a.push_back(make(depth + 1));
        return a;
      }
    }
  };
  const std::string noise = "{}[]\",: \\\x01\xc3tfn1";
  for (int i = 0; i < 3000; ++i) {
    const json doc = make(0);
    const std::string text = doc.dump(pick(2) == 0 ? -1 : 1);
    auto plain = parse_plain_json(text);
    ASSERT_TRUE(plain.has_value()) << text;
    ASSERT_EQ(*plain, doc) << text;
    std::string mangled = text;
    if (!mangled.empty()) {
      const auto at = static_cast<std::size_t>(pick(static_cast<int>(mangled.size())));
      if (pick(2) == 0) {
        mangled.erase(at, 1);
      } else {
        mangled.insert(at, 1,
                       noise[static_cast<std::size_t>(pick(static_cast<int>(noise.size())))]);
      }
    }
    const json reference = json::parse(mangled, nullptr, false);
    if (auto p = parse_plain_json(mangled)) {
      ASSERT_FALSE(reference.is_discarded()) << mangled;
      ASSERT_EQ(*p, reference) << mangled;
    }
    if (reference.is_discarded()) {
      ASSERT_TRUE(parse_either(mangled).is_discarded()) << mangled;
    } else {
      ASSERT_EQ(parse_either(mangled), reference) << mangled;
    }
  }
}

}  // namespace
}  // namespace wf::codec
