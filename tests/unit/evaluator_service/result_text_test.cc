// The pass-through of a runtime's Z22 text (result_text.h) against the DOM path it replaces:
// whenever the fast path answers, its bytes are those of parse + set_metadata + dump; texts that
// are not canonical take the DOM path.

#include "evaluator/service/result_text.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "evaluator_metadata_sample.h"
#include "wf/codec/avro.h"

namespace wf::evaluator {
namespace {

std::string dump(const Json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// What the handler answered before the pass-through: nullopt where it answers "nonsense".
std::optional<std::string> dom_answer(std::string_view text,
                                      const std::vector<MetadataEntry>& entries) {
  auto parsed = codec::parse_json<Json>(text);
  if (!parsed || !parsed->is_object()) return std::nullopt;
  set_metadata(*parsed, entries);
  return dump(*parsed);
}

const char* const kZ22Head = R"({"Z1K1":{"Z1K1":"Z9","Z9K1":"Z22"},"Z22K1":)";
const char* const kVoidTail = R"(,"Z22K2":{"Z1K1":"Z9","Z9K1":"Z24"}})";

std::string success(std::string_view result) {
  return std::string(kZ22Head) + std::string(result) + kVoidTail;
}

// Both paths on the same input: the fast one must answer (`fast`) or decline, and when it
// answers, byte for byte as the DOM path.
void expect_same(std::string_view text, bool fast, const std::vector<MetadataEntry>& entries) {
  const auto passed = pass_through_z22(text, entries);
  EXPECT_EQ(passed.has_value(), fast) << text;
  if (!passed) return;
  const auto reference = dom_answer(text, entries);
  ASSERT_TRUE(reference.has_value()) << "the fast path accepted what the parser refuses: " << text;
  EXPECT_EQ(*passed, *reference) << text;
}

TEST(ResultText, PlainSuccessPassesThroughWithTheSameBytes) {
  for (const char* result :
       {R"({"Z1K1":"Z6","Z6K1":"x"})", R"({"Z1K1":"Z6","Z6K1":""})",
        R"({"Z1K1":{"Z1K1":"Z9","Z9K1":"Z40"},"Z40K1":{"Z1K1":"Z9","Z9K1":"Z41"}})",
        R"({"Z1K1":"Z9","Z9K1":"Z6021"})", R"({"Z1K1":{"Z1K1":"Z9","Z9K1":"Z21"}})",
        R"([{"Z1K1":"Z9","Z9K1":"Z6"},{"Z1K1":"Z6","Z6K1":"a"},{"Z1K1":"Z6","Z6K1":"b"}])",
        R"({"Z1K1":"Z6","Z6K1":"quote \" backslash \\ tab \t nl \n cr \r bs \b ff \f"})",
        R"({"Z1K1":"Z6","Z6K1":"nul \u0000 unit \u001f esc \u001b del )"
        "\x7f"
        R"("})",
        "{\"Z1K1\":\"Z6\",\"Z6K1\":\"\xc3\xa9t\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 "
        "\xed\x9f\xbf \xee\x80\x80 \xf4\x8f\xbf\xbf\"}",
        R"({"a":true,"b":false,"c":null,"d":[],"e":{},"f":[[],[{}]]})"}) {
    SCOPED_TRACE(result);
    expect_same(success(result), true, sample::service_metadata());
    expect_same(success(result), true, sample::service_metadata("printed\n"));
  }
  // The runtime's key order is kept, whatever it is.
  expect_same(
      R"({"Z22K2":{"Z1K1":"Z9","Z9K1":"Z24"},"Z1K1":{"Z1K1":"Z9","Z9K1":"Z22"},"Z22K1":"Z24"})",
      true, sample::service_metadata());
}

TEST(ResultText, MetadataValuesAreEscapedAsTheDomWritesThem) {
  // Printed text is user-controlled: quotes, controls, non-ASCII, and bytes that are not UTF-8
  // (a cut sequence at the 64 KiB limit) all come out as nlohmann writes them.
  for (const std::string& printed :
       {std::string("say \"hi\"\\\n\t\x01\x1f\x7f"), std::string("caf\xc3\xa9 \xf0\x9f\x98\x80"),
        std::string("cut \xe2\x82"), std::string("\xff\xfe bad"), std::string(1, '\0')}) {
    expect_same(success(R"({"Z1K1":"Z6","Z6K1":"x"})"), true, sample::service_metadata(printed));
  }
}

TEST(ResultText, RuntimeMapsAndOddMetadataTakeTheDomPathForThatMemberOnly) {
  const std::string pair =
      R"({"Z1K1":{"Z1K1":"Z9","Z9K1":"Z7"},"Z7K1":{"Z1K1":"Z9","Z9K1":"Z882"},)"
      R"("Z882K1":{"Z1K1":"Z9","Z9K1":"Z6"},"Z882K2":{"Z1K1":"Z9","Z9K1":"Z1"}})";
  const std::string list =
      R"({"Z1K1":{"Z1K1":"Z9","Z9K1":"Z7"},"Z7K1":{"Z1K1":"Z9","Z9K1":"Z881"},)"
      R"("Z881K1":)" +
      pair + "}";
  const std::string map_type =
      R"({"Z1K1":{"Z1K1":"Z9","Z9K1":"Z7"},"Z7K1":{"Z1K1":"Z9","Z9K1":"Z883"},)"
      R"("Z883K1":{"Z1K1":"Z9","Z9K1":"Z6"},"Z883K2":{"Z1K1":"Z9","Z9K1":"Z1"}})";
  const std::string error =
      R"({"Z1K1":{"Z1K1":"Z9","Z9K1":"Z5"},"Z5K2":{"Z1K1":"Z6","Z6K1":"boom"}})";
  const std::string errors_map =
      R"({"Z1K1":)" + map_type + R"(,"K1":{"Z1K1":)" + list + R"(,"K1":{"Z1K1":)" + pair +
      R"(,"K1":{"Z1K1":"Z6","Z6K1":"errors"},"K2":)" + error + R"(},"K2":{"Z1K1":)" + list + "}}}";
  const std::string head = std::string(kZ22Head) + R"({"Z1K1":"Z9","Z9K1":"Z24"},"Z22K2":)";
  expect_same(head + errors_map + "}", true, sample::service_metadata());
  // A runtime map that already has one of the service's keys: replaced in place, as map_set does.
  const std::string with_cpu = R"({"Z1K1":)" + map_type + R"(,"K1":{"Z1K1":)" + list +
                               R"(,"K1":{"Z1K1":)" + pair +
                               R"(,"K1":{"Z1K1":"Z6","Z6K1":"executionCpuUsage"},"K2":"forged"},)"
                               R"("K2":{"Z1K1":)" +
                               list + "}}}";
  expect_same(head + with_cpu + "}", true, sample::service_metadata());
  // Other void forms become a map; a Z22K2 that is neither void nor a map is left alone.
  expect_same(head + R"("Z24"})", true, sample::service_metadata());
  expect_same(head + R"({"Z1K1":{"Z1K1":"Z9","Z9K1":"Z21"}}})", true, sample::service_metadata());
  expect_same(head + R"(null})", true, sample::service_metadata());
  expect_same(head + R"({"Z1K1":"Z6","Z6K1":"not a map"}})", true, sample::service_metadata());
}

TEST(ResultText, TextThatIsNotCanonicalTakesTheDomPath) {
  const std::vector<std::string> declined = {
      // whitespace, numbers, escapes dump writes differently
      R"({ "Z1K1":"Z6","Z6K1":"x"})", R"({"Z1K1":"Z6","Z6K1":"x"} )", R"({"n":1})", R"({"n":-1})",
      R"({"n":1.5e3})", R"({"Z6K1":"a\/b"})", R"({"Z6K1":"\u00e9"})", R"({"Z6K1":"\u001F"})",
      R"({"Z6K1":"\u000a"})", R"({"Z6K1":"\u0009"})", R"({"Z6K1":"\ud83d\ude00"})",
      // duplicate keys (the DOM keeps one)
      R"({"a":"1","a":"2"})", R"({"a":{"b":"1","b":"1"}})",
      // what the parser refuses
      "{\"Z6K1\":\"\xc0\x80\"}", "{\"Z6K1\":\"\xed\xa0\x80\"}", "{\"Z6K1\":\"\xf5\x80\x80\x80\"}",
      "{\"Z6K1\":\"\xe2\x82\"}", "{\"Z6K1\":\"tab\there\"}", R"({"Z6K1":"open)", R"({"a":tru})",
      R"({"a":"1",})", R"({"a":"1"}x)", R"({"a":"\x"})", R"({"a":"\u00"})"};
  for (const std::string& result : declined) {
    SCOPED_TRACE(result);
    expect_same(success(result), false, sample::service_metadata());
  }
  // Not an object with Z22K2 at the top.
  for (const char* text : {"[]", R"("Z22")", R"({"Z1K1":"Z9"})", "", "  ", "not json"}) {
    expect_same(text, false, sample::service_metadata());
  }
}

TEST(ResultText, DepthAndKeyCountAreBounded) {
  std::string deep = R"({"Z1K1":"Z6","Z6K1":"x"})";
  for (std::size_t i = 1; i < kMaxPassThroughDepth - 1; ++i) deep = "[" + deep + "]";
  expect_same(success(deep), true, sample::service_metadata());  // at the bound
  expect_same(success("[" + deep + "]"), false, sample::service_metadata());
  std::string wide = "{";
  for (std::size_t i = 0; i < kMaxPassThroughKeys; ++i) {
    wide += (i == 0 ? "" : ",") + std::string("\"K") + std::to_string(i) + "\":\"v\"";
  }
  expect_same(success(wide + "}"), true, sample::service_metadata());
  expect_same(success(wide + R"(,"Kx":"v"})"), false, sample::service_metadata());
  // Very deep input is declined at the bound, without recursing further.
  expect_same(success(std::string(100000, '[') + std::string(100000, ']')), false,
              sample::service_metadata());
}

// Random values written by nlohmann (canonical by construction), then random byte changes: the
// fast path takes every untouched text and never answers differently from the DOM path.
Json random_value(std::mt19937& rng, int depth) {
  const auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  static const std::vector<std::string> pieces = {"Z6",
                                                  "Z1K1",
                                                  "a",
                                                  "\"",
                                                  "\\",
                                                  "\n",
                                                  "\t",
                                                  "\x01",
                                                  "\x1f",
                                                  "\x7f",
                                                  "\xc3\xa9",
                                                  "\xe2\x82\xac",
                                                  "\xf0\x9f\x98\x80",
                                                  "/",
                                                  " ",
                                                  "Z22K2",
                                                  ""};
  const auto text = [&] {
    std::string s;
    for (int n = pick(4); n > 0; --n)
      s += pieces[static_cast<std::size_t>(pick(static_cast<int>(pieces.size())))];
    return s;
  };
  switch (depth > 5 ? pick(3) : pick(6)) {
    case 0:
      return text();
    case 1:
      return pick(2) == 0;
    case 2:
      return nullptr;
    case 3: {
      Json a = Json::array();
      for (int n = pick(4); n > 0; --n) a.push_back(random_value(rng, depth + 1));
      return a;
    }
    default: {
      Json o = Json::object();
      for (int n = pick(5); n > 0; --n) o[text()] = random_value(rng, depth + 1);
      return o;
    }
  }
}

TEST(ResultText, RandomTextsAndMutationsAgreeWithTheDomPath) {
  std::mt19937 rng(20261202);
  const auto entries = sample::service_metadata("out \xc3\xa9\n");
  int fast = 0;
  for (int i = 0; i < 3000; ++i) {
    Json z22 = Json::object();
    z22["Z1K1"] = Json{{"Z1K1", "Z9"}, {"Z9K1", "Z22"}};
    z22["Z22K1"] = random_value(rng, 0);
    z22["Z22K2"] = rng() % 3 == 0 ? random_value(rng, 0) : Json{{"Z1K1", "Z9"}, {"Z9K1", "Z24"}};
    const std::string text = dump(z22);
    const auto passed = pass_through_z22(text, entries);
    ASSERT_TRUE(passed.has_value()) << text;  // dump's own text is canonical
    EXPECT_EQ(*passed, *dom_answer(text, entries)) << text;
    ++fast;
    std::string mutated = text;
    for (int n = 1 + static_cast<int>(rng() % 3); n > 0; --n) {
      const std::size_t at = rng() % mutated.size();
      switch (rng() % 3) {
        case 0:
          mutated[at] = static_cast<char>(rng() % 256);
          break;
        case 1:
          mutated.erase(at, 1);
          break;
        default:
          mutated.insert(at, 1, "\"\\{}[],: 0\x80"[rng() % 12]);
      }
    }
    const auto mutated_passed = pass_through_z22(mutated, entries);
    if (!mutated_passed) continue;
    const auto reference = dom_answer(mutated, entries);
    ASSERT_TRUE(reference.has_value()) << "accepted what the parser refuses: " << mutated;
    EXPECT_EQ(*mutated_passed, *reference) << mutated;
  }
  EXPECT_EQ(fast, 3000);
}

}  // namespace
}  // namespace wf::evaluator
