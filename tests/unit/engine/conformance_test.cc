// Runs every orchestrator conformance case (shared/conformance/cases/orchestrator) through
// Engine::evaluate with fake ports, and checks `expect` the way shared/conformance/run.py does.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "conformance_expect.h"
#include "fakes.h"
#include "orchestrator/engine/engine.h"

namespace wf::orchestrator::testing {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

std::vector<std::string> case_files() {
  std::vector<std::string> out;
  fs::path dir(WF_CONFORMANCE_CASES);
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return {"<no cases>"};
  for (const auto& e : fs::recursive_directory_iterator(dir, ec)) {
    std::string name = e.path().filename().string();
    if (e.is_regular_file() && e.path().extension() == ".json" && name[0] != '_' &&
        name.rfind("skipped", 0) != 0) {
      out.push_back(e.path().string());
    }
  }
  std::sort(out.begin(), out.end());
  if (out.empty()) out.push_back("<no cases>");
  return out;
}

// Evaluates a case's request and checks its `expect` as run.py does.
void expect_case(Engine& engine, const json& c) {
  CallContext ctx;
  ctx.deadline = Clock::now() + std::chrono::seconds(20);
  json body = engine.evaluate(c["request"], ctx);
  auto fails = wf::testing::check_expect(c["expect"], body);
  std::string joined;
  for (const auto& f : fails) joined += "\n  " + f;
  EXPECT_TRUE(fails.empty()) << c.value("name", "") << joined
                             << "\n  response: " << wf::testing::short_text(body);
}

// The same case read from its text straight into nodes (Engine::evaluate_body, as the service
// does): when the request is the usual one, the same expectations hold. True when it was.
bool expect_case_from_text(Engine& engine, const json& c) {
  CallContext ctx;
  ctx.deadline = Clock::now() + std::chrono::seconds(20);
  const std::string text = c["request"].dump();
  bool has_error = false;
  auto answer = engine.evaluate_body(text, 128, ctx, &has_error);
  if (!answer) return false;
  json body = json::parse(*answer);
  auto fails = wf::testing::check_expect(c["expect"], body);
  std::string joined;
  for (const auto& f : fails) joined += "\n  " + f;
  EXPECT_TRUE(fails.empty()) << c.value("name", "") << " (read into nodes)" << joined
                             << "\n  response: " << wf::testing::short_text(body);
  return true;
}

class Conformance : public ::testing::TestWithParam<std::string> {};

TEST_P(Conformance, Case) {
  if (GetParam() == "<no cases>")
    GTEST_SKIP() << "conformance cases not found at " << WF_CONFORMANCE_CASES;
  std::ifstream in(GetParam());
  json c = json::parse(in);
  if (c.value("kind", "") != "orchestrator") GTEST_SKIP() << "not an orchestrator case";
  std::set<std::string> problems;
  for (const auto& z : c.value("wiki_fetch_problem", json::array()))
    problems.insert(z.get<std::string>());
  auto wiki = std::make_shared<FakeWiki>(c.value("wiki", json::object()), WF_REFERENCE_DEFINITIONS,
                                         problems);
  auto evaluator = std::make_shared<FakeEvaluator>(c.value("evaluator_stub", json::object()));
  EngineOptions options;
  options.cache_ttl = std::chrono::milliseconds(0);
  auto engine = make_engine(options, wiki, evaluator);
  expect_case(*engine, c);
  auto wiki2 = std::make_shared<FakeWiki>(c.value("wiki", json::object()), WF_REFERENCE_DEFINITIONS,
                                          problems);
  auto evaluator2 = std::make_shared<FakeEvaluator>(c.value("evaluator_stub", json::object()));
  auto engine2 = make_engine(options, wiki2, evaluator2);
  expect_case_from_text(*engine2, c);
}

// Cases in the corpus' shape that it lacks (request, expect; checked as run.py checks them).
json local_cases() {
  return json::array({
      {{"name", "echo of a list a built-in made: the item type by its ZID"},
       {"request",
        {{"zobject",
          {{"Z1K1", "Z7"},
           {"Z7K1", "Z801"},
           {"Z801K1", {{"Z1K1", "Z7"}, {"Z7K1", "Z868"}, {"Z868K1", "H"}}}}},
         {"doValidate", true}}},
       {"expect",
        {{"http_status", 200},
         {"result", json::array({"Z86", {{"Z1K1", "Z86"}, {"Z86K1", "H"}}})},
         {"is_error", false}}}},
  });
}

TEST(ConformanceLocal, Cases) {
  for (const json& c : local_cases()) {
    auto engine = make_engine({}, nullptr, nullptr);
    expect_case(*engine, c);
    EXPECT_TRUE(expect_case_from_text(*engine, c));
  }
}

std::string case_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string n = fs::path(info.param).stem().string();
  for (char& ch : n) {
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  }
  return n.empty() ? "none" : n;
}

INSTANTIATE_TEST_SUITE_P(Orchestrator, Conformance, ::testing::ValuesIn(case_files()), case_name);

}  // namespace
}  // namespace wf::orchestrator::testing
