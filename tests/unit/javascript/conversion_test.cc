// evaluator-api.md §5.3: every ZObject -> JavaScript and JavaScript -> ZObject conversion.
#include <gtest/gtest.h>

#include "runtime_harness.h"

namespace wf::evaluator::testing {
namespace {

using nlohmann::json;

// Runs `body` as the function Z1(Z1K1) with Z1K1 = value and returns Z22K1 (checking no error).
json roundtrip(const std::string& body, const json& value) {
  CallOutput out = call("function Z1(Z1K1) { " + body + " }", "Z1", json{{"Z1K1", value}}.dump());
  EXPECT_TRUE(out.ok) << out.error_message;
  EXPECT_EQ(error_message_of(out), "") << out.z22_json;
  return result_of(out);
}

TEST(JsConversion, Z6BecomesStringAndBack) {
  EXPECT_EQ(roundtrip("return typeof Z1K1 + ':' + Z1K1;", z6("héllo")), z6("string:héllo"));
  const std::string persian = "سر دوراهی یک قلعه بود";
  EXPECT_EQ(roundtrip("return Z1K1;", z6(persian)), z6(persian));
  EXPECT_EQ(roundtrip("return Z1K1 + '😀';", z6("")), z6("😀"));
  EXPECT_EQ(roundtrip("return new String('boxed');", z6("")), z6("boxed"));
}

TEST(JsConversion, Z40BecomesBooleanAndBack) {
  EXPECT_EQ(roundtrip("return String(Z1K1 === true);", z40(true)), z6("true"));
  EXPECT_EQ(roundtrip("return String(Z1K1 === false);", z40(false)), z6("true"));
  EXPECT_EQ(roundtrip("return !Z1K1;", z40(true)), z40(false));
  EXPECT_EQ(roundtrip("return Z1K1;", z40(true)), z40(true));
  // Canonical reference inside Z40K1 is accepted too.
  EXPECT_EQ(roundtrip("return Z1K1;", json{{"Z1K1", "Z40"}, {"Z40K1", "Z41"}}), z40(true));
}

TEST(JsConversion, Z21BecomesNullAndNullBecomesUnit) {
  const json unit = {{"Z1K1", z9("Z21")}};
  EXPECT_EQ(roundtrip("return String(Z1K1 === null);", unit), z6("true"));
  EXPECT_EQ(roundtrip("return null;", z6("")), unit);
}

TEST(JsConversion, Z881ListBecomesArray) {
  const json input = typed_list(z9("Z6"), {z6("a"), z6("b"), z6("c")});
  EXPECT_EQ(roundtrip("return Array.isArray(Z1K1) + ':' + Z1K1.join(',');", input),
            z6("true:a,b,c"));
  EXPECT_EQ(roundtrip("return String(Z1K1.length);", typed_list(z9("Z6"), {})), z6("0"));
}

TEST(JsConversion, ArrayBecomesTypedListWithInferredItemType) {
  EXPECT_EQ(roundtrip("return ['a', 'b'];", z6("")), typed_list(z9("Z6"), {z6("a"), z6("b")}));
  EXPECT_EQ(roundtrip("return [];", z6("")), typed_list(z9("Z1"), {}));
  EXPECT_EQ(roundtrip("return ['a', true];", z6("")), typed_list(z9("Z1"), {z6("a"), z40(true)}));
  EXPECT_EQ(roundtrip("return [true, false];", z6("")),
            typed_list(z9("Z40"), {z40(true), z40(false)}));
  // Nested lists: the inner list type is the item type.
  EXPECT_EQ(roundtrip("return [['x']];", z6("")),
            typed_list(list_type(z9("Z6")), {typed_list(z9("Z6"), {z6("x")})}));
}

TEST(JsConversion, Z882PairBecomesZPairAndKeepsItsType) {
  const json type = pair_type(z9("Z6"), z9("Z40"));
  const json input = {{"Z1K1", type}, {"K1", z6("k")}, {"K2", z40(true)}};
  EXPECT_EQ(roundtrip("return (Z1K1 instanceof ZPair) + ':' + Z1K1.K1 + ':' + Z1K1.K2;", input),
            z6("true:k:true"));
  EXPECT_EQ(roundtrip("return Z1K1;", input), input);
  EXPECT_EQ(roundtrip("return JSON.stringify(Z1K1.Z1K1.Z7K1);", input),
            z6(R"({"Z1K1":"Z9","Z9K1":"Z882"})"));
}

TEST(JsConversion, NewZPairGetsZ882TypeOfItsValues) {
  const json expected = {
      {"Z1K1", pair_type(z9("Z6"), z9("Z40"))}, {"K1", z6("a")}, {"K2", z40(false)}};
  EXPECT_EQ(roundtrip("return new ZPair('a', false);", z6("")), expected);
}

TEST(JsConversion, Z883MapBecomesMapAndBack) {
  const json ptype = pair_type(z9("Z6"), z9("Z40"));
  const json mtype = {
      {"Z1K1", z9("Z7")}, {"Z7K1", z9("Z883")}, {"Z883K1", z9("Z6")}, {"Z883K2", z9("Z40")}};
  const json input = {
      {"Z1K1", mtype},
      {"K1", typed_list(ptype, {json{{"Z1K1", ptype}, {"K1", z6("yes")}, {"K2", z40(true)}},
                                json{{"Z1K1", ptype}, {"K1", z6("no")}, {"K2", z40(false)}}})}};
  EXPECT_EQ(
      roundtrip("return (Z1K1 instanceof Map) + ':' + Z1K1.size + ':' + Z1K1.get('no');", input),
      z6("true:2:false"));
  // Map -> Z883(K,V) with a list of Z882(K,V) pairs: the same object back.
  EXPECT_EQ(roundtrip("return Z1K1;", input), input);
  const json empty_type = {
      {"Z1K1", z9("Z7")}, {"Z7K1", z9("Z883")}, {"Z883K1", z9("Z1")}, {"Z883K2", z9("Z1")}};
  EXPECT_EQ(roundtrip("return new Map();", z6("")),
            (json{{"Z1K1", empty_type}, {"K1", typed_list(pair_type(z9("Z1"), z9("Z1")), {})}}));
}

TEST(JsConversion, OtherTypesBecomeZObjectAndBack) {
  const json user_type = {{"Z1K1", z9("Z4")}, {"Z4K1", z9("Z10000")}};
  const json input = {{"Z1K1", user_type}, {"Z10000K1", z6("cerebellum")}, {"Z10000K2", z40(true)}};
  EXPECT_EQ(
      roundtrip(
          "return (Z1K1 instanceof ZObject) + ':' + Z1K1.Z10000K1 + ':' + Z1K1.Z10000K2 + ':' +"
          " Z1K1.Z1K1.Z4K1.Z9K1;",
          input),
      z6("true:cerebellum:true:Z10000"));
  EXPECT_EQ(roundtrip("return Z1K1;", input), input);
  // Z86 (code point) and Z39 (key reference) are ordinary ZObjects in JavaScript.
  const json z86 = {{"Z1K1", z9("Z86")}, {"Z86K1", z6("%")}};
  EXPECT_EQ(roundtrip("return Z1K1.Z86K1;", z86), z6("%"));
  EXPECT_EQ(roundtrip("return new ZObject(new Map([['Z86K1', 'x']]), {Z1K1: 'Z9', Z9K1: 'Z86'});",
                      z6("")),
            (json{{"Z1K1", z9("Z86")}, {"Z86K1", z6("x")}}));
  EXPECT_EQ(roundtrip("return new ZObject({Z86K1: 'y'}, 'Z86');", z6("")),
            (json{{"Z1K1", "Z86"}, {"Z86K1", z6("y")}}));
}

TEST(JsConversion, Z7TypedArgumentUsesTheFunctionZid) {
  // Z1K1 is the function call Z881(Z6): a list.
  const json input = typed_list(z9("Z6"), {z6("only")});
  EXPECT_EQ(roundtrip("return Z1K1[0];", input), z6("only"));
}

// Issue 10: the original failed here (Maximum call stack size exceeded); a reference is now a
// ZObject {Z1K1: 'Z9', Z9K1} that stays a reference when returned.
TEST(JsConversion, ReferenceInsideAnArgumentReachesTheCode) {
  const json input = {{"Z1K1", z9("Z4")}, {"Z4K1", z9("Z6")}};
  CallOutput out =
      call("function Z1(Z1K1) { return Z1K1.Z4K1; }", "Z1", json{{"Z1K1", input}}.dump());
  EXPECT_EQ(result_of(out), z9("Z6"));
  out = call("function Z1(r) { return r.Z9K1; }", "Z1", json{{"Z1K1", z9("Z6021")}}.dump());
  EXPECT_EQ(result_of(out), z6("Z6021"));
}

TEST(JsConversion, UnserializableValuesNameTheValue) {
  struct Case {
    std::string body;
    std::string message;
  } cases[] = {
      {"return 5;", "Could not serialize input JS object: 5"},
      {"return 1.5;", "Could not serialize input JS object: 1.5"},
      {"return 5n;", "Could not serialize input JS object: 5n"},
      {"return undefined;", "Could not serialize input JS object: undefined"},
      {"return {a: 1, b: 'x'};", "Could not serialize input JS object: { a: 1, b: 'x' }"},
      {"class A {}; return new A();", "Could not serialize input JS object: A {}"},
      {"return new ZObject(new Map([['Z10101K1', 'tRue'], ['Z10101K2', 'trUe']]));",
       "Could not serialize input JS object: ZObject { Z1K1: null, Z10101K1: 'tRue', Z10101K2: "
       "'trUe' }"},
      {"return ['a', 7];", "Could not serialize input JS object: 7"},
      {"return function f() {};", "Could not serialize input JS object: [Function: f]"},
  };
  for (const auto& c : cases) {
    CallOutput out = call("function Z1() { " + c.body + " }", "Z1");
    ASSERT_TRUE(out.ok) << out.error_message;
    EXPECT_EQ(error_message_of(out), c.message) << c.body;
    EXPECT_EQ(result_of(out), z9("Z24")) << c.body;
  }
}

TEST(JsConversion, ArgumentsArePositionalInLexicographicKeyOrder) {
  json arguments;
  for (int i = 1; i <= 10; ++i) {
    arguments["Z5K" + std::to_string(i)] = z6("v" + std::to_string(i));
  }
  // Sorted as strings: Z5K1, Z5K10, Z5K2, ..., Z5K9.
  CallOutput out = call("function Z5(...a) { return a.join(','); }", "Z5", arguments.dump());
  EXPECT_EQ(result_of(out), z6("v1,v10,v2,v3,v4,v5,v6,v7,v8,v9"));
}

}  // namespace
}  // namespace wf::evaluator::testing
