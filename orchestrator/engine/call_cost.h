#pragma once
// What one evaluate request cost, by part (docs/operations.md, "Cost per call"): where its
// wall-clock time went (resolve, validate, evaluate, evaluator, cache), written to the Z22
// metadata, to a debug log line, to a slow-call log line above a threshold, and to per-function
// metrics whose label set is bounded (the first N functions called get their own series, every
// other one counts as "other").

#include <prometheus/counter.h>
#include <prometheus/histogram.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "orchestrator/engine/run_metadata.h"

namespace wf::orchestrator::engine_detail {

// Adds the wall-clock time between its construction and its destruction to `sink` (µs).
class Stopwatch {
 public:
  explicit Stopwatch(double& sink) : sink_(sink), start_(std::chrono::steady_clock::now()) {}
  ~Stopwatch() {
    sink_ += std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start_)
                 .count();
  }
  Stopwatch(const Stopwatch&) = delete;
  Stopwatch& operator=(const Stopwatch&) = delete;

 private:
  double& sink_;
  std::chrono::steady_clock::time_point start_;
};

// Wall-clock microseconds of one request, by part. The parts do not overlap and add up to
// total_us (up to the few microseconds of reading the request and writing metadata):
struct CallCost {
  std::string function;     // Z7K1 of the request when it names a function, else empty
  double resolve_us = 0;    // dereferencing ZIDs: built-ins, object cache, objects dir, the wiki
  double validate_us = 0;   // static validation (doValidate), without the resolution it needed
  double evaluate_us = 0;   // the interpreter itself: everything else of the evaluation
  double evaluator_us = 0;  // waiting for evaluators (code implementations, sandboxed)
  double cache_us = 0;      // result cache: lookup (both tiers), identity checks, store
  double total_us = 0;
  // Not a part of the time: the sandbox CPU (ms) the evaluators reported for all the call's code
  // calls, nested ones included (metadata orchestrationEvaluatorCpuUsage when > 0).
  double evaluator_cpu_ms = 0;
  bool error = false;  // the answer carries a Z5
};

// The metadata pairs of the breakdown (Z6 values like "0.125 ms"), in the order they are
// appended after the implementation keys: orchestrationResolveDuration, …ValidateDuration,
// …EvaluateDuration, …EvaluatorDuration, …CacheDuration; then, when code ran in an evaluator,
// orchestrationEvaluatorCpuUsage (their CPU, every code call included: what the caller is charged).
// Appended to `out` in place (no vector of their own to allocate and move out of).
void append_cost_metadata(const CallCost& cost,
                          std::vector<std::pair<std::string, std::string>>& out);

// The same pairs, written into buffers of their own, with their keys as literals (no string
// allocated), for the answer's writer (response.h, StaticPairs). Not copied: it is viewed.
class CostPairs {
 public:
  explicit CostPairs(const CallCost& cost);
  CostPairs(const CostPairs&) = delete;
  CostPairs& operator=(const CostPairs&) = delete;
  std::span<const TextPair> pairs() const { return {pairs_.data(), size_}; }

 private:
  std::array<TextPair, 6> pairs_;
  std::array<std::array<char, 32>, 6> texts_;
  std::unique_ptr<std::array<std::string, 6>> spill_;  // texts fmt writes (rare)
  std::size_t size_ = 0;
};

// "{:.3f} ms" of us / 1000 (fmt's text, byte for byte), the values of cost_metadata.
std::string ms_text(double us);
// The same written by hand at the end of `buf` (its view), or empty where fmt is needed.
std::string_view write_ms(std::array<char, 32>& buf, double us);

// The request-level reports of a finished call: the per-part and per-function metrics, the debug
// log line ("call cost") and, when total_us reaches slow_call_us (> 0), the slow-call warning.
class CallCostReporter {
 public:
  // `top_n`: functions with their own metric series; `slow_call_us`: 0 = no slow-call line.
  CallCostReporter(std::size_t top_n, double slow_call_us);
  void report(const CallCost& cost);
  // The label a call of `function` is counted under: the function itself while fewer than top_n
  // functions have a series, or when it has one already; "other" otherwise.
  std::string label(std::string_view function);

 private:
  struct Series {
    prometheus::Counter* ok;
    prometheus::Counter* error;
    prometheus::Histogram* duration;
  };
  Series& series(std::string_view function);
  Series make_series(const std::string& label);

  std::size_t top_n_;
  double slow_call_us_;
  std::mutex mu_;
  std::unordered_map<std::string, Series> series_;  // at most top_n_ + 1 ("other")
};

}  // namespace wf::orchestrator::engine_detail
