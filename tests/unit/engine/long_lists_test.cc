// Lists of any length (issue 10 item 5): eager evaluation walks a typed list's spine (its K2
// links) as siblings, so lists of 30, 1,000 and 10,000 elements reach built-ins and code; real
// cycles (an element or a tail that refers back to the list) still end in Z516.
#include <gtest/gtest.h>

#include <mutex>

#include "fakes.h"
#include "orchestrator/engine/engine.h"

namespace wf::orchestrator::testing {
namespace {

using json = nlohmann::json;

json strings(std::size_t n) {
  json list = json::array({"Z6"});
  for (std::size_t i = 0; i < n; ++i) list.push_back("s" + std::to_string(i));
  return list;
}

std::string error_type(const json& r) {
  const json& k1 = r["Z22K2"]["K1"];
  for (std::size_t i = 1; k1.is_array() && i < k1.size(); ++i) {
    if (k1[i]["K1"] == "errors") {
      const json& t = k1[i]["K2"]["Z5K1"];
      return t.is_string() ? t.get<std::string>() : t.dump();
    }
  }
  return "";
}

// Counts the elements of the list argument of the one code call it gets.
class ListRunner : public CodeRunner {
 public:
  void run(const CodeCall& call, const CallContext&, Done done) override {
    // By reference: json::value() would copy the list's 10,000-deep normal form recursively,
    // which overflows the calling thread's stack under ASan's larger frames.
    const auto it = call.arguments.find("Z10001K1");
    const std::size_t items = it != call.arguments.end() && it->is_object() ? count(*it) : 0;
    done(json{{"Z1K1", "Z22"}, {"Z22K1", std::to_string(items)}, {"Z22K2", "Z24"}});
  }
  static std::size_t count(const json& list) {
    std::size_t n = 0;
    for (const json* node = &list; node->is_object() && node->contains("K1");
         node = &(*node)["K2"]) {
      ++n;
    }
    return n;
  }
};

json python_list_function() {
  json list_type = {{"Z1K1", "Z7"}, {"Z7K1", "Z881"}, {"Z881K1", "Z6"}};
  json impl = code_implementation("Z10001", "python-3",
                                  "def Z10001(Z10001K1):\n    return str(len(Z10001K1))");
  return {{"Z1K1", "Z8"},
          {"Z8K1", json::array({"Z17",
                                {{"Z1K1", "Z17"},
                                 {"Z17K1", list_type},
                                 {"Z17K2", "Z10001K1"},
                                 {"Z17K3", {{"Z1K1", "Z12"}, {"Z12K1", json::array({"Z11"})}}}}})},
          {"Z8K2", "Z6"},
          {"Z8K3", json::array({"Z20"})},
          {"Z8K4", json::array({"Z14", impl})},
          {"Z8K5", "Z10001"}};
}

class LongLists : public ::testing::TestWithParam<std::size_t> {};

TEST_P(LongLists, ReachTheBuiltinZ812) {
  auto engine = make_engine({}, std::make_shared<FakeWiki>(json::object(), ""), nullptr);
  const std::size_t n = GetParam();
  json r = engine->evaluate(
      {{"zobject", {{"Z1K1", "Z7"}, {"Z7K1", "Z812"}, {"Z812K1", strings(n)}}}}, CallContext{});
  ASSERT_TRUE(r["Z22K1"].is_array()) << r.dump().substr(0, 1500);
  EXPECT_EQ(r["Z22K1"].size(), n);  // the element type, then n - 1 elements
  EXPECT_EQ(r["Z22K1"].back(), "s" + std::to_string(n - 1));
}

TEST_P(LongLists, ReachCode) {
  auto runner = std::make_shared<ListRunner>();
  auto engine = make_engine({}, std::make_shared<FakeWiki>(json::object(), ""), runner);
  const std::size_t n = GetParam();
  json r = engine->evaluate(
      {{"zobject", {{"Z1K1", "Z7"}, {"Z7K1", python_list_function()}, {"Z10001K1", strings(n)}}}},
      CallContext{});
  EXPECT_EQ(r["Z22K1"], std::to_string(n)) << r.dump().substr(0, 1500);
}

INSTANTIATE_TEST_SUITE_P(Lengths, LongLists, ::testing::Values(30, 1000, 10000));

json persisted(const std::string& zid, json value) {
  return {{"Z1K1", "Z2"}, {"Z2K1", {{"Z1K1", "Z6"}, {"Z6K1", zid}}}, {"Z2K2", std::move(value)}};
}

json list_type_of(const std::string& t) {
  return {{"Z1K1", "Z7"}, {"Z7K1", "Z881"}, {"Z881K1", t}};
}

TEST(ListCycles, AListThatContainsItselfIsZ516) {
  // Z10020 = [Z10020]: its element is the list itself, for ever.
  json z10020 = {
      {"Z1K1", list_type_of("Z1")}, {"K1", "Z10020"}, {"K2", {{"Z1K1", list_type_of("Z1")}}}};
  auto wiki = std::make_shared<FakeWiki>(json{{"Z10020", persisted("Z10020", z10020)}}, "");
  auto engine = make_engine({}, wiki, nullptr);
  json r = engine->evaluate({{"zobject", {{"Z1K1", "Z7"}, {"Z7K1", "Z811"}, {"Z811K1", "Z10020"}}}},
                            CallContext{});
  EXPECT_EQ(error_type(r), "Z516") << r.dump().substr(0, 1500);
}

TEST(ListCycles, AListWhoseTailIsItselfIsZ516) {
  // Z10021 = "a" followed by Z10021: an endless spine.
  json z10021 = {{"Z1K1", list_type_of("Z6")}, {"K1", "a"}, {"K2", "Z10021"}};
  auto wiki = std::make_shared<FakeWiki>(json{{"Z10021", persisted("Z10021", z10021)}}, "");
  auto engine = make_engine({}, wiki, nullptr);
  json r = engine->evaluate({{"zobject", {{"Z1K1", "Z7"}, {"Z7K1", "Z811"}, {"Z811K1", "Z10021"}}}},
                            CallContext{});
  EXPECT_EQ(error_type(r), "Z516") << r.dump().substr(0, 1500);
}

// Past the longest list a value may hold, a call and a string's code points answer a Z5 (a list of
// 100,000 elements, or Z868 of a 100,000-character string, overflowed the evaluation's stack).
TEST(ListLength, TooLongListsAreAZ5NotACrash) {
  auto engine = make_engine({}, std::make_shared<FakeWiki>(json::object(), ""), nullptr);
  json r = engine->evaluate(
      {{"zobject", {{"Z1K1", "Z7"}, {"Z7K1", "Z812"}, {"Z812K1", strings(100001)}}}},
      CallContext{});
  EXPECT_EQ(error_type(r), "Z502") << r.dump().substr(0, 1500);
  r = engine->evaluate(
      {{"zobject", {{"Z1K1", "Z7"}, {"Z7K1", "Z868"}, {"Z868K1", std::string(100000, 'a')}}}},
      CallContext{});
  EXPECT_EQ(error_type(r), "Z500") << r.dump().substr(0, 1500);
  EXPECT_NE(r.dump().find("code points"), std::string::npos);
}

}  // namespace
}  // namespace wf::orchestrator::testing
