#pragma once
// The engine's Prometheus metrics (docs/metrics.md), registered once in wf::obs::registry().
// Every series is created up front, so the request path only increments atomics. No label
// carries a ZID or anything else a caller controls (the per-function metrics of call_cost.h are
// the one exception: a bounded set of ZIDs, opted into with function_metrics_top_n).

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>

#include <array>
#include <string_view>

#include "orchestrator/engine/ports.h"

namespace wf::orchestrator::engine_detail {

struct EngineMetrics {
  prometheus::Counter& cache_hits;
  prometheus::Counter& cache_misses;
  prometheus::Counter& cache_evictions;
  prometheus::Gauge& cache_bytes;
  prometheus::Gauge& cache_entries;
  prometheus::Counter& impl_builtin;
  prometheus::Counter& impl_composition;
  prometheus::Counter& impl_evaluated;
  prometheus::Histogram& steps;
  prometheus::Counter& breach_steps;
  prometheus::Counter& breach_call_depth;
  prometheus::Counter& breach_zobject_depth;
  prometheus::Counter& breach_deadline;
  prometheus::Counter& breach_stack;
  // wf_orchestrator_evaluations_cancelled_total by Cancellation::Reason (kNone unused).
  std::array<prometheus::Counter*, 5> cancelled;
  prometheus::Gauge& in_flight;
  prometheus::Counter& result_hits_local;      // wf_orchestrator_result_cache_hits_total
  prometheus::Counter& result_hits_memcached;  //   {tier="local|memcached"}
  prometheus::Counter& result_misses;          // wf_orchestrator_result_cache_misses_total
  prometheus::Counter& result_stale;
  prometheus::Counter& code_call_memo_hits;  // wf_orchestrator_code_call_memo_hits_total
  prometheus::Counter& fetches_joined;       // wf_orchestrator_object_fetches_joined_total
  prometheus::Counter& slices_loop;          // wf_orchestrator_evaluation_slices_total
  prometheus::Counter& slices_pool;          //   {thread="loop|pool"}
  prometheus::Counter& fibers_retired;       // wf_orchestrator_fibers_retired_total

  void implementation(std::string_view type);
};

EngineMetrics& metrics();

}  // namespace wf::orchestrator::engine_detail
