// An evaluator's answer read with its metadata map as text pairs
// (orchestrator/engine/code_answer.h) means the same as the answer parsed whole: the same Z22 once
// rebuilt, and the same response.
#include "orchestrator/engine/code_answer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "fakes.h"
#include "orchestrator/engine/engine.h"
#include "wf/zobject/zobject.h"

namespace {

using json = nlohmann::json;
using namespace wf::orchestrator;
namespace zo = wf::zobject;

const std::vector<std::pair<std::string, std::string>> kPairs = {
    {"evaluationMemoryUsage", "12.61 MiB"},
    {"evaluationCpuUsage", "0.041 ms"},
    {"evaluationStartTime", "2026-12-02T15:00:00.123Z"},
    {"evaluationEndTime", "2026-12-02T15:00:00.125Z"},
    {"evaluationDuration", "2 ms"},
    {"evaluationHostname", "wf-bench"},
    {"executionMemoryUsage", "9.88 MiB"},
    {"executionCpuUsage", "0.873 ms"}};

// What wf-evaluator answers: a normal-form Z22 whose map holds `pairs` (built by the engine's own
// map_set, not by the code under test).
json z22_with(const json& value, const std::vector<std::pair<std::string, json>>& pairs) {
  json meta = zo::empty_metadata_map();
  for (const auto& [k, v] : pairs) zo::map_set(meta, k, v);
  return zo::make_envelope(value, meta);
}

json usual_z22(const std::string& value = "HELLO") {
  std::vector<std::pair<std::string, json>> pairs;
  for (const auto& [k, v] : kPairs) pairs.emplace_back(k, zo::z6(v));
  return z22_with(zo::z6(value), pairs);
}

// Reads `text` and checks that it means what nlohmann's parse of it does.
CodeAnswer read_as_parsed(const std::string& text) {
  CodeAnswer answer = read_code_answer(text);
  const json parsed = json::parse(text, nullptr, false);
  if (parsed.is_discarded()) {
    EXPECT_TRUE(answer.z22.is_discarded()) << text;
  } else {
    EXPECT_EQ(whole_z22(answer), parsed) << text;
  }
  return answer;
}

TEST(CodeAnswer, TheUsualAnswerComesWithItsMapAsPairsInOrder) {
  const CodeAnswer answer = read_as_parsed(usual_z22().dump());
  ASSERT_TRUE(answer.meta.has_value());
  EXPECT_EQ(*answer.meta, (MetaPairs(kPairs.begin(), kPairs.end())));
  EXPECT_FALSE(answer.z22.contains("Z22K2"));
  EXPECT_EQ(answer.z22["Z22K1"], zo::z6("HELLO"));
  EXPECT_EQ(answer.z22["Z1K1"], zo::z9("Z22"));
  EXPECT_EQ(metadata_map(*answer.meta), usual_z22()["Z22K2"]);
}

TEST(CodeAnswer, WhitespaceAndKeyOrderDoNotMatter) {
  EXPECT_TRUE(read_as_parsed(usual_z22().dump(2)).meta.has_value());
  // The keys in another order than nlohmann writes them (the map's K1 before Z1K1 in its pairs
  // already; here Z1K1 first everywhere, and the envelope's members reversed).
  std::string text = usual_z22().dump();
  const std::string pair_type = zo::pair_type(zo::z9("Z6"), zo::z9("Z1")).dump();
  for (std::size_t at = 0; (at = text.find(R"({"K1":{"Z1K1":"Z6")", at)) != std::string::npos;) {
    text.replace(at, 1, R"({"Z1K1":)" + pair_type + ",");
    const std::size_t tail = text.find(R"(,"Z1K1":)" + pair_type + "}", at + 8 + pair_type.size());
    ASSERT_NE(tail, std::string::npos);
    text.erase(tail, 8 + pair_type.size());
    at += 8 + pair_type.size();
  }
  const json reordered = json::parse(text);
  ASSERT_EQ(reordered, usual_z22());
  EXPECT_TRUE(read_as_parsed(text).meta.has_value()) << text;
  const std::string reversed = R"({"Z22K2":)" + usual_z22()["Z22K2"].dump() +
                               R"(,"Z22K1":{"Z6K1":"HELLO","Z1K1":"Z6"},"Z1K1":)" +
                               zo::z9("Z22").dump() + "}";
  EXPECT_TRUE(read_as_parsed(reversed).meta.has_value());
}

TEST(CodeAnswer, AnEmptyMapIsNoPairs) {
  const CodeAnswer answer = read_as_parsed(z22_with(zo::z6("x"), {}).dump());
  ASSERT_TRUE(answer.meta.has_value());
  EXPECT_TRUE(answer.meta->empty());
}

// A map whose two pairs have the same key.
std::string twice_the_same_key() {
  std::string text = z22_with(zo::z6("x"), {{"a", zo::z6("1")}, {"b", zo::z6("2")}}).dump();
  const std::size_t at = text.find(R"("Z6K1":"b")");
  EXPECT_NE(at, std::string::npos);
  return text.replace(at, 10, R"("Z6K1":"a")");
}

TEST(CodeAnswer, AnyOtherAnswerIsParsedWhole) {
  const json value = zo::z6("x");
  const std::vector<std::string> others = {
      // "errors" makes an envelope an error: that map stays a map.
      z22_with(zo::z6("Z24"), {{"errors", zo::z6("boom")}}).dump(),
      // A value that is not a Z6, a key twice, a map of another type.
      z22_with(value, {{"a", zo::z9("Z41")}}).dump(),
      twice_the_same_key(),
      zo::make_envelope(
          value, json{{"Z1K1", zo::map_type(zo::z9("Z6"), zo::z9("Z6"))},
                      {"K1", {{"Z1K1", zo::list_type(zo::pair_type(zo::z9("Z6"), zo::z9("Z6")))}}}})
          .dump(),
      // No map at all, a void one, text that needs the full parser (escapes, non-ASCII, numbers,
      // a duplicate member), and text that is not JSON.
      json{{"Z1K1", zo::z9("Z22")}, {"Z22K1", value}}.dump(),
      zo::make_envelope(value, nullptr).dump(),
      z22_with(zo::z6("a\"b\n"), {{"k", zo::z6("v")}}).dump(),
      z22_with(zo::z6("caf\xC3\xA9"), {{"k", zo::z6("v")}}).dump(),
      z22_with(zo::z6("x"), {{"k", zo::z6("v\\w")}}).dump(),
      R"({"Z1K1":"Z22","Z22K1":1.5,"Z22K2":)" + usual_z22()["Z22K2"].dump() + "}",
      R"({"Z1K1":"Z22","Z1K1":"Z22","Z22K1":"x","Z22K2":)" + usual_z22()["Z22K2"].dump() + "}",
      usual_z22().dump() + " x",
      usual_z22().dump().substr(0, 200),
      "",
  };
  for (const std::string& text : others) {
    const CodeAnswer answer = read_as_parsed(text);
    EXPECT_FALSE(answer.meta.has_value()) << text;
  }
}

TEST(CodeAnswer, DeepOrWideValuesAreLeftToTheFullParser) {
  json deep = zo::z6("x");
  for (int i = 0; i < 200; ++i) deep = json{{"Z1K1", "Z6"}, {"K1", deep}};
  EXPECT_FALSE(read_as_parsed(z22_with(deep, {{"k", zo::z6("v")}}).dump()).meta.has_value());
  json wide = json::object();
  for (int i = 0; i < 100; ++i) wide["K" + std::to_string(i + 1)] = "v";
  EXPECT_FALSE(read_as_parsed(z22_with(wide, {{"k", zo::z6("v")}}).dump()).meta.has_value());
}

TEST(CodeAnswer, AnObjectWhoseTextRepeatsIsReadAsTheSameValueAtAnyDepth) {
  // An object of more than 48 bytes (what the reader matches by its text) under other keys, and
  // again near the depth bound, where a copy of its levels would go past it.
  json big = zo::z6("a long enough string value to be remembered by its text");
  for (int i = 0; i < 4; ++i) big = json{{"Z1K1", "Z6"}, {"K1", big}};
  json value = {{"Z1K1", "Z6"}, {"K1", big}, {"K2", big}, {"K3", {{"K1", big}}}};
  EXPECT_TRUE(read_as_parsed(z22_with(value, {{"k", zo::z6("v")}}).dump()).meta.has_value());
  for (int depth : {118, 120, 121, 122, 123, 124, 126}) {
    json deep = big;
    for (int i = 0; i < depth; ++i) deep = json{{"K1", deep}};
    const json both = {{"Z1K1", "Z6"}, {"K1", big}, {"K2", deep}};
    read_as_parsed(z22_with(both, {{"k", zo::z6("v")}}).dump());
  }
}

// ---- the map as wf-evaluator writes it: Z1K1 first, no whitespace -------------------------------

using ordered = nlohmann::ordered_json;

ordered z6_first(const std::string& text) {
  ordered o = ordered::object();
  o["Z1K1"] = "Z6";
  o["Z6K1"] = text;
  return o;
}

// The map of `pairs` with every object's Z1K1 first, then K1 and K2 (the types' own keys are in
// that order already), as evaluator/service/result_text.cc writes it.
ordered evaluator_map(const std::vector<std::pair<std::string, std::string>>& pairs) {
  const ordered pair_type = ordered(zo::pair_type(zo::z9("Z6"), zo::z9("Z1")));
  const ordered list_type = ordered(zo::list_type(zo::pair_type(zo::z9("Z6"), zo::z9("Z1"))));
  ordered node = ordered::object();
  node["Z1K1"] = list_type;
  for (auto it = pairs.rbegin(); it != pairs.rend(); ++it) {
    ordered pair = ordered::object();
    pair["Z1K1"] = pair_type;
    pair["K1"] = z6_first(it->first);
    pair["K2"] = z6_first(it->second);
    ordered outer = ordered::object();
    outer["Z1K1"] = list_type;
    outer["K1"] = std::move(pair);
    outer["K2"] = std::move(node);
    node = std::move(outer);
  }
  ordered map = ordered::object();
  map["Z1K1"] = ordered(zo::map_type(zo::z9("Z6"), zo::z9("Z1")));
  map["K1"] = std::move(node);
  return map;
}

std::string evaluator_answer(const std::vector<std::pair<std::string, std::string>>& pairs,
                             const std::string& value_text = R"({"Z1K1":"Z6","Z6K1":"HELLO"})") {
  return R"({"Z1K1":{"Z1K1":"Z9","Z9K1":"Z22"},"Z22K1":)" + value_text + R"(,"Z22K2":)" +
         evaluator_map(pairs).dump() + "}";
}

TEST(CodeAnswer, TheEvaluatorsOwnTextComesWithItsPairs) {
  const std::string text = evaluator_answer(kPairs);
  ASSERT_NE(text.find(R"({"Z1K1":{"Z1K1":{"Z1K1":"Z9","Z9K1":"Z7"},"Z7K1":)"), std::string::npos);
  const CodeAnswer answer = read_as_parsed(text);
  ASSERT_TRUE(answer.meta.has_value());
  EXPECT_EQ(*answer.meta, (MetaPairs(kPairs.begin(), kPairs.end())));
  EXPECT_EQ(answer.z22["Z22K1"], zo::z6("HELLO"));
  EXPECT_EQ(whole_z22(answer), usual_z22());
  // No pairs; one; other results beside the map; the map first, or between the other members.
  const CodeAnswer none = read_as_parsed(evaluator_answer({}));
  ASSERT_TRUE(none.meta.has_value());
  EXPECT_TRUE(none.meta->empty());
  EXPECT_EQ(read_as_parsed(evaluator_answer({{"k", ""}})).meta, (MetaPairs{{"k", ""}}));
  for (const std::string& value :
       std::vector<std::string>{R"(["Z6","a","b"])", R"({"Z1K1":"Z40","Z40K1":"Z41"})",
                                evaluator_map(kPairs).dump(), R"({"Z1K1":"Z9","Z9K1":"Z24"})"}) {
    EXPECT_EQ(read_as_parsed(evaluator_answer(kPairs, value)).meta,
              (MetaPairs(kPairs.begin(), kPairs.end())))
        << value;
  }
  const std::string map = evaluator_map(kPairs).dump();
  for (const std::string& other : std::vector<std::string>{
           R"({"Z22K2":)" + map + R"(,"Z1K1":{"Z1K1":"Z9","Z9K1":"Z22"},"Z22K1":{}})",
           R"({"Z1K1":{},"Z22K2":)" + map + R"(,"Z22K1":["Z6"]})"}) {
    EXPECT_TRUE(read_as_parsed(other).meta.has_value()) << other;
  }
  // Long maps: read here up to a bound, by the general reader past it, whole past its depth.
  std::vector<std::pair<std::string, std::string>> many;
  for (int i = 0; i < 130; ++i) {
    many.emplace_back("key" + std::to_string(i), "v");
    if (i == 47 || i == 48 || i == 60) {
      EXPECT_EQ(read_as_parsed(evaluator_answer(many)).meta, MetaPairs(many)) << i;
    }
  }
  EXPECT_FALSE(read_as_parsed(evaluator_answer(many)).meta.has_value());
}

TEST(CodeAnswer, TheEvaluatorsTextWithAnythingUnusualIsReadAsParsed) {
  // An error's map, a key twice, escapes and non-ASCII in keys and values: no pairs, as before.
  const std::vector<std::vector<std::pair<std::string, std::string>>> maps = {
      {{"errors", "boom"}},   {{"a", "1"}, {"b", "2"}, {"a", "3"}},
      {{"k", "a\"b"}},        {{"k\n", "v"}},
      {{"k", "caf\xC3\xA9"}}, {{"k", "v\\w"}},
  };
  for (const auto& pairs : maps) {
    const std::string text = evaluator_answer(pairs);
    EXPECT_FALSE(read_as_parsed(text).meta.has_value()) << text;
  }
  // A map in the evaluator's form deeper than the envelope's members is only a value.
  const std::string inner = evaluator_map(kPairs).dump();
  const std::string nested =
      evaluator_answer(kPairs, R"({"Z1K1":"Z6","Z22K2":)" + inner + R"(,"Z6K1":"x"})");
  const CodeAnswer answer = read_as_parsed(nested);
  ASSERT_TRUE(answer.meta.has_value());
  EXPECT_EQ(answer.z22["Z22K1"]["Z22K2"], json::parse(inner));
  // Every cut of the text, a brace too many or too few, a space inside: what the parse gives.
  const std::string text = evaluator_answer({{"a", "1"}, {"b", "2"}});
  for (std::size_t n = 0; n < text.size(); n += 7) read_as_parsed(text.substr(0, n));
  read_as_parsed(text.substr(0, text.size() - 2) + "}}}");
  read_as_parsed(text.substr(0, text.size() - 2) + "}");
  std::string spaced = text;
  spaced.insert(spaced.find(R"("K2":{"Z1K1":"Z6")") + 5, " ");
  EXPECT_TRUE(read_as_parsed(spaced).meta.has_value());
}

// ---- the engine: the same response either way -------------------------------------------------

using wf::orchestrator::testing::z2;
// A function of one argument `arg` returning a String, with one implementation `impl`.
json string_function(const std::string& zid, const json& arg, const std::string& impl) {
  return z2(zid, {{"Z1K1", "Z8"},
                  {"Z8K1", json::array({"Z17", arg})},
                  {"Z8K2", "Z6"},
                  {"Z8K3", json::array({"Z20"})},
                  {"Z8K4", json::array({"Z14", impl})},
                  {"Z8K5", zid}});
}

// Z10001(String) -> String in Python (Z10002), and Z10003(String) -> String, a composition that
// calls Z10001: the same code call outermost and nested.
std::shared_ptr<wf::orchestrator::testing::FakeWiki> objects() {
  json objects = json::object();
  json arg = {{"Z1K1", "Z17"},
              {"Z17K1", "Z6"},
              {"Z17K2", "Z10001K1"},
              {"Z17K3", {{"Z1K1", "Z12"}, {"Z12K1", json::array({"Z11"})}}}};
  objects["Z10001"] = string_function("Z10001", arg, "Z10002");
  objects["Z10002"] = z2("Z10002", {{"Z1K1", "Z14"},
                                    {"Z14K1", "Z10001"},
                                    {"Z14K3",
                                     {{"Z1K1", "Z16"},
                                      {"Z16K1", {{"Z1K1", "Z61"}, {"Z61K1", "python-3"}}},
                                      {"Z16K2", "def Z10001(Z10001K1): return Z10001K1"}}}});
  json arg3 = arg;
  arg3["Z17K2"] = "Z10003K1";
  json body = {
      {"Z1K1", "Z7"}, {"Z7K1", "Z10001"}, {"Z10001K1", {{"Z1K1", "Z18"}, {"Z18K1", "Z10003K1"}}}};
  objects["Z10003"] = string_function("Z10003", arg3, "Z10004");
  objects["Z10004"] = z2("Z10004", {{"Z1K1", "Z14"}, {"Z14K1", "Z10003"}, {"Z14K2", body}});
  return std::make_shared<wf::orchestrator::testing::FakeWiki>(std::move(objects),
                                                               std::filesystem::path{});
}

// Answers every call with the usual Z22 of its argument, read from text or parsed whole.
class TextEvaluator final : public CodeRunner {
 public:
  explicit TextEvaluator(bool split) : split_(split) {}
  void run(const CodeCall& call, const CallContext&, Done done) override {
    const json arg = call.arguments.value("Z10001K1", json());
    const std::string text = usual_z22(arg.value("Z6K1", "?")).dump();
    CodeAnswer answer = split_ ? read_code_answer(text) : CodeAnswer(json::parse(text));
    EXPECT_EQ(answer.meta.has_value(), split_);
    done(std::move(answer));
  }

 private:
  bool split_;
};

// The response text with the values that differ between two runs (times, durations, CPU, memory)
// blanked.
json steady(const std::string& text) {
  json z22 = json::parse(text);
  for (auto& pair : z22["Z22K2"]["K1"]) {
    if (!pair.is_object() || !pair.contains("K1") || !pair["K1"].is_string()) continue;
    const std::string key = pair["K1"].get<std::string>();
    if (key.starts_with("orchestration") && key != "orchestrationHostname") pair["K2"] = "-";
  }
  return z22;
}

TEST(CodeAnswer, TheEngineAnswersTheSameForPairsAsForTheWholeMap) {
  EngineOptions o;
  o.result_cache_bytes = 0;
  auto split = make_engine(o, objects(), std::make_shared<TextEvaluator>(true));
  auto whole = make_engine(o, objects(), std::make_shared<TextEvaluator>(false));
  for (const char* fn : {"Z10001", "Z10003"}) {
    for (bool validate : {false, true}) {
      const json request = {
          {"zobject", {{"Z1K1", "Z7"}, {"Z7K1", fn}, {std::string(fn) + "K1", "hi"}}},
          {"doValidate", validate}};
      bool split_error = true;
      bool whole_error = true;
      const std::string a = split->evaluate_text(request, CallContext{}, &split_error);
      const std::string b = whole->evaluate_text(request, CallContext{}, &whole_error);
      EXPECT_EQ(steady(a), steady(b)) << fn;
      EXPECT_FALSE(split_error);
      EXPECT_FALSE(whole_error);
      const json z22 = json::parse(a);
      EXPECT_EQ(z22["Z22K1"], "hi") << a;
      // The outermost code call's: the evaluator's pairs first, then the implementation keys.
      const json& k1 = z22["Z22K2"]["K1"];
      if (std::string(fn) == "Z10001") {
        ASSERT_GT(k1.size(), kPairs.size() + 2) << a;
        for (std::size_t i = 0; i < kPairs.size(); ++i) {
          EXPECT_EQ(k1[i + 1]["K1"], kPairs[i].first) << a;
        }
        EXPECT_EQ(k1[kPairs.size() + 1]["K1"], "implementationId") << a;
      }
      // The JSON API too.
      const json ja = split->evaluate(request, CallContext{});
      const json jb = whole->evaluate(request, CallContext{});
      EXPECT_EQ(steady(ja.dump()), steady(jb.dump())) << fn;
    }
  }
}

}  // namespace
