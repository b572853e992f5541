#include "evaluator/sandbox/sandbox_metrics.h"

#include <algorithm>

#include "wf/obs/metrics.h"

namespace wf::evaluator::sandbox_internal {
namespace {

using Labels = std::map<std::string, std::string>;

prometheus::Counter& counter(const char* name, const char* help, const Labels& labels) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(obs::registry()).Add(labels);
}

prometheus::Gauge& gauge(const char* name, const char* help, const Labels& labels) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(obs::registry()).Add(labels);
}

prometheus::Histogram& histogram(const char* name, const char* help, const Labels& labels,
                                 prometheus::Histogram::BucketBoundaries buckets) {
  return prometheus::BuildHistogram()
      .Name(name)
      .Help(help)
      .Register(obs::registry())
      .Add(labels, std::move(buckets));
}

}  // namespace

SandboxMetrics::SandboxMetrics(const std::string& language) {
  const Labels of_language = {{"language", language}};
  for (std::size_t i = 0; i < kOutcomeNames.size(); ++i) {
    outcome[i] = &counter("wf_evaluator_sandbox_calls_total",
                          "Calls run in a sandbox child, by language and outcome.",
                          {{"language", language}, {"outcome", kOutcomeNames[i]}});
  }
  for (std::size_t i = 0; i < kKillReasons; ++i) {
    kill[i] = &counter(
        "wf_evaluator_sandbox_kills_total",
        "Sandbox children that ended by a signal instead of answering, by language and reason.",
        {{"language", language}, {"reason", kKillNames[i]}});
  }
  for (std::size_t i = 0; i < kCancelNames.size(); ++i) {
    cancelled[i] = &counter(
        "wf_evaluator_sandbox_cancelled_total",
        "Sandbox calls cancelled by their caller (the child is killed at once), by reason.",
        {{"language", language}, {"reason", kCancelNames[i]}});
  }
  restarts =
      &counter("wf_evaluator_sandbox_zygote_restarts_total",
               "Zygotes the supervisor forked again after the previous one died.", of_language);
  zygote_kills =
      &counter("wf_evaluator_sandbox_zygote_kills_total",
               "Zygotes the service killed because they did not answer in time (then replaced).",
               of_language);
  supervisor_restarts =
      &counter("wf_evaluator_sandbox_supervisor_restarts_total",
               "Supervisors the service started again (from a fresh image) after one died or hung.",
               of_language);
  pool_ready = &gauge("wf_evaluator_sandbox_pool_ready",
                      "Children forked, locked down and warm, waiting for a call (as of the last "
                      "background refresh).",
                      of_language);
  child_cpu =
      &histogram("wf_evaluator_sandbox_child_cpu_seconds",
                 "User+system CPU of a sandbox child from fork to its answer.", of_language,
                 {0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10});
  child_rss = &histogram("wf_evaluator_sandbox_child_peak_rss_bytes",
                         "Peak resident set size of a sandbox child (ru_maxrss).", of_language,
                         {8u << 20, 16u << 20, 32u << 20, 64u << 20, 128u << 20, 256u << 20,
                          512u << 20, 1024.0 * (1u << 20)});
  fork_to_ready =
      &histogram("wf_evaluator_sandbox_fork_to_ready_seconds",
                 "Time from fork to a locked-down, warm child (off the request path).", of_language,
                 {0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1});
  for (const bool warm : {false, true}) {
    children_started[warm ? 1 : 0] =
        &counter("wf_evaluator_sandbox_children_started_total",
                 "Sandbox children handed to the service ready for a call, by whether they were "
                 "warmed up first (warm=\"true\": a trivial call before ready; cold while calls "
                 "come in a steady stream, sandbox_warm_idle_ms).",
                 {{"language", language}, {"warm", warm ? "true" : "false"}});
  }
  for (std::size_t i = 0; i < kQueueReasons; ++i) {
    const Labels labels = {{"language", language}, {"reason", kQueueReasonNames[i]}};
    queued[i] = &gauge("wf_evaluator_sandbox_queued_calls",
                       "Calls waiting for a sandbox child, by why they wait: flow_cap (their "
                       "code's calls hold all the children a flow may) or no_child (none ready "
                       "in the pool). As of the last background refresh.",
                       labels);
    queue_wait[i] = &histogram("wf_evaluator_sandbox_queue_wait_seconds",
                               "Time from a call's request for a sandbox child to the child, by "
                               "why it waited when it was queued.",
                               labels, {0.0005, 0.001, 0.005, 0.025, 0.1, 0.5, 1, 2.5, 5, 10});
  }
  for (std::size_t i = 0; i < kRefusals; ++i) {
    refused[i] = &counter(
        "wf_evaluator_sandbox_queue_refused_total",
        "Calls that got no sandbox child: their flow's queue was full (429), the whole queue was "
        "full (503), or they waited longer than the queue-time budget (wait_budget).",
        {{"language", language}, {"reason", kQueueRefusalNames[i]}});
  }
  children_held = &gauge("wf_evaluator_sandbox_children_held",
                         "Sandbox children running a call (as of the last refresh).", of_language);
  flows_at_cap = &gauge("wf_evaluator_sandbox_flows_at_cap",
                        "Flows (one caller's calls of one code string) holding all the children a "
                        "flow may (sandbox_children_per_flow), as of the last refresh.",
                        of_language);
  flows = &gauge("wf_evaluator_sandbox_flows",
                 "Flows (one caller's calls of one code string) with calls waiting for or holding "
                 "sandbox children, as of the last refresh.",
                 of_language);
  callers = &gauge("wf_evaluator_sandbox_callers",
                   "Callers with calls waiting for or holding sandbox children, as of the last "
                   "refresh: orchestrators, or the users they name in X-Wikifunctions-Caller "
                   "(caller_trusted_peers).",
                   of_language);
}

void SandboxMetrics::record(const CallOutcome& result, int kill_reason) {
  const auto index = std::min(static_cast<std::size_t>(result.status), kOutcomeNames.size() - 1);
  outcome[index]->Increment();
  if (kill_reason >= 0 && kill_reason < kKillReasons) {
    kill[static_cast<std::size_t>(kill_reason)]->Increment();
  }
  if (result.cpu_ms > 0) child_cpu->Observe(result.cpu_ms / 1000.0);
  if (result.peak_rss_bytes > 0) child_rss->Observe(static_cast<double>(result.peak_rss_bytes));
}

}  // namespace wf::evaluator::sandbox_internal
