#include "wf/obs/metrics.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

namespace {

TEST(Metrics, ExpositionHasProcessAndBuildMetrics) {
  wf::obs::set_build_info("svc", "1.0.0", "abc123");
  const std::string text = wf::obs::render_metrics();
  for (const char* needle :
       {"# TYPE process_cpu_seconds_total counter", "process_resident_memory_bytes ",
        "process_open_fds ", "process_max_fds ", "process_start_time_seconds ", "process_threads ",
        R"(wf_build_info{commit="abc123",service="svc",version="1.0.0"} 1)"}) {
    EXPECT_NE(text.find(needle), std::string::npos) << needle << "\n" << text;
  }
}

TEST(Metrics, BugCounterCounts) {
  wf::obs::count_bug("metrics_test", "deliberate");
  const std::string text = wf::obs::render_metrics();
  EXPECT_NE(text.find(R"(wf_bugs_total{where="metrics_test"} 1)"), std::string::npos) << text;
}

// promtool (Debian package prometheus) is the authority on the exposition format and naming rules.
TEST(Metrics, PromtoolAcceptsTheExposition) {
  if (std::system("test -x " PROMTOOL) != 0) GTEST_SKIP() << "promtool not installed";
  auto& h = prometheus::BuildHistogram()
                .Name("wf_test_duration_seconds")
                .Help("A test histogram.")
                .Register(wf::obs::registry());
  h.Add({{"route", "x"}}, wf::obs::latency_buckets()).Observe(0.003);
  prometheus::BuildCounter()
      .Name("wf_test_events_total")
      .Help("Test events.")
      .Register(wf::obs::registry())
      .Add({{"label", "va\"lue\\"}})
      .Increment();
  const std::string path = ::testing::TempDir() + "metrics.txt";
  std::ofstream(path) << wf::obs::render_metrics();
  const std::string cmd =
      std::string(PROMTOOL) + " check metrics < " + path + " > " + path + ".out 2>&1";
  const int rc = std::system(cmd.c_str());
  std::ifstream out(path + ".out");
  std::string report((std::istreambuf_iterator<char>(out)), std::istreambuf_iterator<char>());
  EXPECT_EQ(rc, 0) << report;
}

}  // namespace

namespace {
TEST(Metrics, ScrapeHooksRunBeforeEachScrape) {
  auto& gauge = prometheus::BuildGauge()
                    .Name("wf_test_hooked")
                    .Help("Set by a scrape hook.")
                    .Register(wf::obs::registry())
                    .Add({});
  // Hooks live for the whole process: state the hook uses must too.
  static int calls = 0;
  wf::obs::add_scrape_hook([&gauge] { gauge.Set(++calls); });
  EXPECT_NE(wf::obs::render_metrics().find("wf_test_hooked 1"), std::string::npos);
  EXPECT_NE(wf::obs::render_metrics().find("wf_test_hooked 2"), std::string::npos);
}
}  // namespace
