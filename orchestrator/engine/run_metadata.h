#pragma once
// The orchestration* metadata of orchestrator-api.md §3: memory (RSS MiB), CPU time, start/end
// times, duration and hostname of one evaluation.

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>

namespace wf::orchestrator::engine_detail {

struct RunStart {
  std::chrono::system_clock::time_point wall;
  std::chrono::steady_clock::time_point mono;
  double cpu_us = 0;  // CPU time of the evaluation (fiber_cpu_us) at the start
};

RunStart run_start();

// A metadata pair of two texts, viewed, for the answer's writer (response.h, StaticPairs): a key
// that needs no escape and is not reference-like (a literal), its text, and whether the text is
// known to be so too (then the writer does not look at it).
struct TextPair {
  std::string_view key;
  std::string_view text;
  bool bare_text = false;
};

// The six orchestration* keys and their texts at the end of an evaluation, written into buffers
// of its own (no string allocated for them): what the answer's writer reads, in place.
class OrchestrationTexts {
 public:
  static constexpr std::size_t kCount = 6;
  static constexpr std::size_t kHostname = 5;  // the one text not written here
  // The keys, in the order they are appended.
  // Their sizes are known: a comparison with another key is mostly one of sizes.
  static constexpr std::array<std::string_view, kCount> kKeys = {
      "orchestrationMemoryUsage", "orchestrationCpuUsage", "orchestrationStartTime",
      "orchestrationEndTime",     "orchestrationDuration", "orchestrationHostname"};
  explicit OrchestrationTexts(const RunStart& start);
  std::string_view value(std::size_t i) const;

 private:
  std::string memory_;  // "12.34 MiB": within the small-string buffer
  std::array<char, 40> cpu_{};
  std::array<char, 48> start_{};
  std::array<char, 48> end_{};
  std::array<char, 32> duration_{};
  std::array<std::uint8_t, 4> sizes_{};  // of cpu_, start_, end_, duration_
};

// The text of orchestrationCpuUsage for `rounded_us` (a whole number of µs, as std::round gives
// it): fmt's "{} ms" of rounded_us / 1000, written to `out` (at least 40 bytes); its size.
std::size_t write_cpu_ms(char* out, double rounded_us);
// Appends the six orchestration* keys to the envelope's metadata map (creating it if void).
void add_orchestration_metadata(nlohmann::json& envelope, const RunStart& start);
double thread_cpu_us();
double rss_mib();

}  // namespace wf::orchestrator::engine_detail
