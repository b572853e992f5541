#pragma once
// One Python sandbox per test process (started before any thread exists), a probe that keeps
// calling it during every test, and a check after every test that the sandbox still serves a
// trivial call and nothing leaked into it.

#include <cstdlib>
#include <memory>
#include <string>

#include "evaluator/executors/python/python_runtime.h"
#include "hostile_support.h"

namespace wf::evaluator::hostile {

class HostilePython : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ::setenv("WF_HOSTILE_SECRET", "do-not-leak", 1);
    sandbox_ = start_sandbox("python", hostile_limits()).release();
  }
  static void TearDownTestSuite() {
    delete sandbox_;
    sandbox_ = nullptr;
  }
  void SetUp() override {
    CallInput probe;
    probe.code = "def Z1():\n  return 'probe'";
    probe.function_name = "Z1";
    probe.arguments_json = "{}";
    probe_ = std::make_unique<ServingProbe>(*sandbox_, probe, "\"probe\"");
  }
  void TearDown() override {
    probe_->stop();
    EXPECT_EQ(probe_->failures(), "") << "the sandbox stopped serving during the test";
    EXPECT_GT(probe_->calls(), 0);
    probe_.reset();
    CallOutcome after = run("def Z1():\n  return 'alive'");
    EXPECT_EQ(after.status, Status::kOk) << "sandbox stopped serving: " << after.detail;
    EXPECT_EQ(z22_string(after.output.z22_json), "alive");
  }

  static CallOutcome run(const std::string& code, std::chrono::milliseconds budget = 60000ms,
                         const std::string& arguments = "{}") {
    CallInput input;
    input.code = code;
    input.function_name = "Z1";
    input.arguments_json = arguments;
    return sandbox_->run(input, Clock::now() + budget);
  }

  static Sandbox* sandbox_;
  std::unique_ptr<ServingProbe> probe_;
};

inline Sandbox* HostilePython::sandbox_ = nullptr;

#define EXPECT_STATUS(outcome, expected)                                           \
  EXPECT_EQ((outcome).status, (expected))                                          \
      << "got " << ::wf::evaluator::hostile::status_name((outcome).status) << ": " \
      << (outcome).detail << " | z22: " << (outcome).output.z22_json.substr(0, 400)

}  // namespace wf::evaluator::hostile
