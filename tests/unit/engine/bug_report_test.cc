// An exception inside the engine is a bug: answered as a Z507, and also counted in wf_bugs_total
// and logged with the trace id (issue 11 item 7: it used to vanish without a trace).
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <regex>
#include <sstream>
#include <stdexcept>

#include "fakes.h"
#include "orchestrator/engine/engine.h"
#include "wf/obs/log.h"
#include "wf/obs/metrics.h"

namespace wf::orchestrator::testing {
namespace {

using json = nlohmann::json;

// An evaluator port with a bug: it throws instead of answering.
class ThrowingRunner : public CodeRunner {
 public:
  void run(const CodeCall&, const CallContext&, Done) override {
    throw std::runtime_error("the fake evaluator port is broken");
  }
};

double engine_bugs() {
  const std::string text = obs::render_metrics();
  std::smatch m;
  static const std::regex kSeries(R"re(wf_bugs_total\{where="orchestrator\.engine"\} (\S+))re");
  return std::regex_search(text, m, kSeries) ? std::stod(m[1].str()) : 0.0;
}

TEST(EngineBugs, AnExceptionIsAZ507CountedAndLoggedWithTheTraceId) {
  obs::install_ecs_logger("engine-test", "0", spdlog::level::info);
  const json z8 = code_function("Z10001", "python-3", "def Z10001():\n    return 'x'");
  auto engine = make_engine({}, nullptr, std::make_shared<ThrowingRunner>());
  CallContext ctx;
  ctx.trace_id = "0af7651916cd43dd8448eb211c80319c";
  ctx.span_id = "b7ad6b7169203331";
  ctx.request_id = "bug-report-test";
  const double before = engine_bugs();
  ::testing::internal::CaptureStdout();
  json r = engine->evaluate({{"zobject", {{"Z1K1", "Z7"}, {"Z7K1", z8}}}}, ctx);
  spdlog::default_logger()->flush();
  const std::string logged = ::testing::internal::GetCapturedStdout();
  EXPECT_NE(r.dump().find("Z507"), std::string::npos) << r.dump();
  EXPECT_NE(r.dump().find("the fake evaluator port is broken"), std::string::npos) << r.dump();
  EXPECT_EQ(engine_bugs(), before + 1);
  bool found = false;
  std::istringstream lines(logged);
  for (std::string line; std::getline(lines, line);) {
    if (line.find("the fake evaluator port is broken") == std::string::npos) continue;
    auto j = json::parse(line, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << line;
    EXPECT_EQ(j.value("trace.id", ""), ctx.trace_id) << line;
    EXPECT_EQ(j.value("error.type", ""), "bug") << line;
    EXPECT_EQ(j.value("log.level", ""), "error") << line;
    found = true;
  }
  EXPECT_TRUE(found) << "no log line names the exception; stdout was:\n" << logged;
}

}  // namespace
}  // namespace wf::orchestrator::testing
