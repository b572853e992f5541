#include "orchestrator/orchestrator_config.h"

#include <gtest/gtest.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <string_view>

namespace wf::orchestrator {
namespace {

TEST(EvaluatorRoutes, LegacyDefaultSendsKnownLanguagesToOneUrl) {
  auto routes = evaluator_routes("http://e/v1/evaluate/", "");
  EXPECT_EQ(routes.url_by_language.at("python-3"), "http://e/v1/evaluate/");
  EXPECT_EQ(routes.url_by_language.at("javascript-es2020"), "http://e/v1/evaluate/");
  EXPECT_FALSE(routes.url_by_language.contains("javascript-es5"));
  EXPECT_FALSE(routes.url_by_language.contains("lua"));
  EXPECT_TRUE(evaluator_routes("", "").url_by_language.empty());
}

TEST(EvaluatorRoutes, OrchestratorConfigReplacesTheDefaultAndLastWins) {
  auto routes = evaluator_routes("http://legacy/", R"({"evaluatorConfigs":[
        {"programmingLanguages":["python-3","lua"],"evaluatorUri":"http://py/"},
        {"programmingLanguages":["lua"],"evaluatorUri":"http://lua/"}]})");
  EXPECT_EQ(routes.url_by_language.at("python-3"), "http://py/");
  EXPECT_EQ(routes.url_by_language.at("lua"), "http://lua/");
  EXPECT_FALSE(routes.url_by_language.contains("javascript"));
}

TEST(EvaluatorRoutes, BadConfigNamesTheFix) {
  EXPECT_THROW(evaluator_routes("", "not json"), std::runtime_error);
  EXPECT_THROW(evaluator_routes("", R"({"evaluatorConfigs":{}})"), std::runtime_error);
  try {
    evaluator_routes("", R"({"evaluatorConfigs":[{"programmingLanguages":["python"]}]})");
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("evaluatorUri"), std::string::npos);
  }
}

// The default io_threads is one loop per CPU this process may run on (its affinity, which the
// calling thread's is at start-up), at most 4: not the machine's cores.
TEST(OrchestratorOptions, DefaultIoThreadsFollowTheAffinity) {
  const auto io_threads = [] {
    auto cfg = config::load(orchestrator_options(), {},
                            [](const char*) -> const char* { return nullptr; });
    EXPECT_TRUE(cfg) << cfg.error();
    return cfg ? server_options(*cfg).io_threads : -1;
  };
  cpu_set_t all;
  CPU_ZERO(&all);
  ASSERT_EQ(sched_getaffinity(0, sizeof all, &all), 0);
  EXPECT_EQ(io_threads(), std::clamp(CPU_COUNT(&all), 1, 4));
  // One CPU of those allowed (on a machine of one, the same).
  cpu_set_t one;
  CPU_ZERO(&one);
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &all)) {
      CPU_SET(cpu, &one);
      break;
    }
  }
  ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
  const int pinned = io_threads();
  ASSERT_EQ(sched_setaffinity(0, sizeof all, &all), 0);
  EXPECT_EQ(pinned, 1);
}

TEST(OrchestratorOptions, ContractFlagsAndEnvironmentExist) {
  std::map<std::string, std::string> env = {{"WIKI_API_URL", "http://w/api.php"},
                                            {"FUNCTION_EVALUATOR_URL", "http://e/"},
                                            {"PORT", "7000"}};
  auto cfg = config::load(orchestrator_options(), {}, [&](const char* n) -> const char* {
    auto it = env.find(n);
    return it == env.end() ? nullptr : it->second.c_str();
  });
  ASSERT_TRUE(cfg) << cfg.error();
  EXPECT_EQ(cfg->str("wiki_api_url"), "http://w/api.php");
  EXPECT_EQ(cfg->str("evaluator_url"), "http://e/");
  EXPECT_EQ(server_options(*cfg).port, 7000);
  auto flags =
      config::load(orchestrator_options(),
                   {"--port", "0", "--wiki-api-url", "http://x/", "--evaluator-url", "http://y/"},
                   [](const char*) -> const char* { return nullptr; });
  ASSERT_TRUE(flags) << flags.error();
  EXPECT_EQ(server_options(*flags).port, 0);
  EXPECT_EQ(engine_options(*flags).cache_ttl, std::chrono::milliseconds(300000));
}

// retire_parked_after_ms (EngineOptions::retire_parked_after): file, environment and flag, 0 to
// never retire, and values out of its range refused with the key's flag in the message.
TEST(OrchestratorOptions, RetireParkedAfterIsASettingFromEverySource) {
  const auto no_env = [](const char*) -> const char* { return nullptr; };
  auto defaults = config::load(orchestrator_options(), {}, no_env);
  ASSERT_TRUE(defaults) << defaults.error();
  EXPECT_EQ(engine_options(*defaults).retire_parked_after, std::chrono::milliseconds(100));

  auto flag = config::load(orchestrator_options(), {"--retire-parked-after-ms", "0"}, no_env);
  ASSERT_TRUE(flag) << flag.error();
  EXPECT_EQ(engine_options(*flag).retire_parked_after, std::chrono::milliseconds(0));

  auto env = config::load(orchestrator_options(), {}, [](const char* n) -> const char* {
    return std::string_view(n) == "WF_RETIRE_PARKED_AFTER_MS" ? "250" : nullptr;
  });
  ASSERT_TRUE(env) << env.error();
  EXPECT_EQ(engine_options(*env).retire_parked_after, std::chrono::milliseconds(250));

  for (const char* bad : {"-1", "3600001", "soon"}) {
    auto refused = config::load(orchestrator_options(), {"--retire-parked-after-ms", bad}, no_env);
    ASSERT_FALSE(refused) << bad;
    EXPECT_NE(refused.error().find("retire-parked-after-ms"), std::string::npos) << refused.error();
  }
}

}  // namespace
}  // namespace wf::orchestrator
