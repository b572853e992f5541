#pragma once
// main() of a GoogleTest binary that starts sandboxes. Sandboxes re-execute the running program
// as their supervisor (a fresh image, see evaluator/sandbox/sandbox.h), so the test binary is
// also the supervisor image and must know the runtimes its tests start.

#include <gtest/gtest.h>

#include <span>

#include "evaluator/sandbox/sandbox.h"

namespace wf::evaluator::testing {

inline int sandbox_test_main(int argc, char** argv, std::span<const RuntimeEntry> runtimes) {
  if (auto code = run_sandbox_supervisor_if_requested(argc, argv, runtimes)) return *code;
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}

}  // namespace wf::evaluator::testing
