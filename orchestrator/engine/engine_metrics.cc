#include "orchestrator/engine/engine_metrics.h"

#include <prometheus/family.h>

#include "wf/obs/metrics.h"

namespace wf::orchestrator::engine_detail {

namespace {

EngineMetrics make() {
  auto& r = wf::obs::registry();
  auto& hits = prometheus::BuildCounter()
                   .Name("wf_orchestrator_object_cache_hits_total")
                   .Help("Persisted-object lookups answered by the in-process object cache.")
                   .Register(r);
  auto& misses = prometheus::BuildCounter()
                     .Name("wf_orchestrator_object_cache_misses_total")
                     .Help("Persisted-object lookups the object cache could not answer.")
                     .Register(r);
  auto& evictions = prometheus::BuildCounter()
                        .Name("wf_orchestrator_object_cache_evictions_total")
                        .Help("Objects removed from the object cache for size or age.")
                        .Register(r);
  auto& bytes = prometheus::BuildGauge()
                    .Name("wf_orchestrator_object_cache_bytes")
                    .Help("Estimated serialised size of the objects in the object cache.")
                    .Register(r);
  auto& entries = prometheus::BuildGauge()
                      .Name("wf_orchestrator_object_cache_entries")
                      .Help("Objects held in the object cache.")
                      .Register(r);
  auto& impls = prometheus::BuildCounter()
                    .Name("wf_orchestrator_implementations_total")
                    .Help("Implementations selected and run, by implementation type.")
                    .Register(r);
  auto& steps = prometheus::BuildHistogram()
                    .Name("wf_orchestrator_evaluation_steps")
                    .Help("Evaluation steps one request needed.")
                    .Register(r);
  auto& breaches = prometheus::BuildCounter()
                       .Name("wf_orchestrator_limit_breaches_total")
                       .Help("Requests stopped by an engine limit, by limit.")
                       .Register(r);
  auto& cancelled = prometheus::BuildCounter()
                        .Name("wf_orchestrator_evaluations_cancelled_total")
                        .Help(
                            "Evaluations stopped before their answer, by reason: client_gone (the "
                            "caller hung up), deadline (the request timeout passed), shutdown.")
                        .Register(r);
  auto& in_flight = prometheus::BuildGauge()
                        .Name("wf_orchestrator_evaluations_in_flight")
                        .Help(
                            "Evaluations running or parked waiting for the wiki or an "
                            "evaluator.")
                        .Register(r);
  auto& result_hits = prometheus::BuildCounter()
                          .Name("wf_orchestrator_result_cache_hits_total")
                          .Help("Evaluate requests answered from the result cache, by tier.")
                          .Register(r);
  auto& result_misses = prometheus::BuildCounter()
                            .Name("wf_orchestrator_result_cache_misses_total")
                            .Help("Evaluate requests the result cache could not answer.")
                            .Register(r);
  auto& result_stale =
      prometheus::BuildCounter()
          .Name("wf_orchestrator_result_cache_stale_total")
          .Help("Result cache entries found but not served: an object they used has changed.")
          .Register(r);
  auto& joined = prometheus::BuildCounter()
                     .Name("wf_orchestrator_object_fetches_joined_total")
                     .Help(
                         "Object lookups that waited for another request's wiki fetch of the "
                         "same ZID instead of fetching it again (single flight).")
                     .Register(r);
  auto& memo_hits = prometheus::BuildCounter()
                        .Name("wf_orchestrator_code_call_memo_hits_total")
                        .Help(
                            "Code calls answered from an earlier identical call of the same "
                            "request instead of the evaluator.")
                        .Register(r);
  auto& slices = prometheus::BuildCounter()
                     .Name("wf_orchestrator_evaluation_slices_total")
                     .Help(
                         "Stretches of evaluation work between waits, by thread: loop (an I/O "
                         "thread: a small call started there, or resumed where its evaluator "
                         "answer arrived) or pool (the CPU threads).")
                     .Register(r);
  auto& retired = prometheus::BuildCounter()
                      .Name("wf_orchestrator_fibers_retired_total")
                      .Help(
                          "Evaluations that gave their fiber back while they waited long on an "
                          "evaluator and ran again from their start once it answered (fiber.h, "
                          "await_retirable).")
                      .Register(r);
  return EngineMetrics{
      hits.Add({}),
      misses.Add({}),
      evictions.Add({}),
      bytes.Add({}),
      entries.Add({}),
      impls.Add({{"type", "BuiltIn"}}),
      impls.Add({{"type", "Composition"}}),
      impls.Add({{"type", "Evaluated"}}),
      steps.Add({}, prometheus::Histogram::BucketBoundaries{1, 10, 30, 100, 300, 1000, 3000, 10000,
                                                            100000, 1000000}),
      breaches.Add({{"kind", "steps"}}),
      breaches.Add({{"kind", "call_depth"}}),
      breaches.Add({{"kind", "zobject_depth"}}),
      breaches.Add({{"kind", "deadline"}}),
      breaches.Add({{"kind", "stack"}}),
      {nullptr, &cancelled.Add({{"reason", "client_gone"}}),
       &cancelled.Add({{"reason", "deadline"}}), &cancelled.Add({{"reason", "shutdown"}}),
       &cancelled.Add({{"reason", "abandoned"}})},
      in_flight.Add({}),
      result_hits.Add({{"tier", "local"}}),
      result_hits.Add({{"tier", "memcached"}}),
      result_misses.Add({}),
      result_stale.Add({}),
      memo_hits.Add({}),
      joined.Add({}),
      slices.Add({{"thread", "loop"}}),
      slices.Add({{"thread", "pool"}}),
      retired.Add({}),
  };
}

}  // namespace

void EngineMetrics::implementation(std::string_view type) {
  if (type == "BuiltIn") {
    impl_builtin.Increment();
  } else if (type == "Composition") {
    impl_composition.Increment();
  } else if (type == "Evaluated") {
    impl_evaluated.Increment();
  }
}

EngineMetrics& metrics() {
  static EngineMetrics m = make();
  return m;
}

}  // namespace wf::orchestrator::engine_detail
