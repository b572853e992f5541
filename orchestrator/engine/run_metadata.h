#pragma once
// The orchestration* metadata of orchestrator-api.md §3: memory (RSS MiB), CPU time, start/end
// times, duration and hostname of one evaluation.

#include <array>
#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>

namespace wf::orchestrator::engine_detail {

struct RunStart {
  std::chrono::system_clock::time_point wall;
  std::chrono::steady_clock::time_point mono;
  double cpu_us = 0;  // CPU time of the evaluation (fiber_cpu_us) at the start
};

RunStart run_start();
// The six orchestration* keys and their string values, in the order they are appended.
std::array<std::pair<const char*, std::string>, 6> orchestration_values(const RunStart& start);
// Appends the six orchestration* keys to the envelope's metadata map (creating it if void).
void add_orchestration_metadata(nlohmann::json& envelope, const RunStart& start);
double thread_cpu_us();
double rss_mib();

}  // namespace wf::orchestrator::engine_detail
