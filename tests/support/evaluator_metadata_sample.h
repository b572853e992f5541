#pragma once
// The metadata entries the evaluator service adds to a runtime's Z22 for one call, with values
// as a real call gives them: the input of the pass-through tests (result_text_test.cc) and of
// bench_evaluator_service, so that both measure and check the same answer.

#include <string>
#include <utility>
#include <vector>

#include "evaluator/service/result_text.h"

namespace wf::evaluator::sample {

// With `printed` (what the code printed) the entry executionOutput is added last.
inline std::vector<MetadataEntry> service_metadata(std::string printed = {}) {
  std::vector<MetadataEntry> entries = {{"evaluationMemoryUsage", "14.15 MiB"},
                                        {"evaluationCpuUsage", "0.063 ms"},
                                        {"evaluationStartTime", "2026-12-02T10:13:07.728Z"},
                                        {"evaluationEndTime", "2026-12-02T10:13:07.737Z"},
                                        {"evaluationDuration", "8 ms"},
                                        {"evaluationHostname", "vm"},
                                        {"executionMemoryUsage", "13.94 MiB"},
                                        {"executionCpuUsage", "1.675 ms"}};
  if (!printed.empty()) entries.push_back({"executionOutput", std::move(printed)});
  return entries;
}

}  // namespace wf::evaluator::sample
