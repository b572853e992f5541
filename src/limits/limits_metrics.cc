#include "limits_metrics.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "wf/obs/metrics.h"

namespace wf::limits::detail {
namespace {

using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;

struct Families {
  Family<Counter>& refusals =
      prometheus::BuildCounter()
          .Name("wf_limits_refusals_total")
          .Help(
              "Calls refused before they ran, by reason (rate, concurrency, cpu: 429; "
              "queue_full, queue_timeout, too_many_users, draining: 503) and caller class.")
          .Register(obs::registry());
  Family<Counter>& admitted = prometheus::BuildCounter()
                                  .Name("wf_limits_admitted_total")
                                  .Help("Calls admitted to run, by caller class.")
                                  .Register(obs::registry());
  Family<Counter>& cpu = prometheus::BuildCounter()
                             .Name("wf_limits_cpu_charged_seconds_total")
                             .Help(
                                 "CPU time charged to callers' budgets (orchestrator + "
                                 "evaluator CPU of their calls), by caller class.")
                             .Register(obs::registry());
  Family<prometheus::Histogram>& queue_wait =
      prometheus::BuildHistogram()
          .Name("wf_limits_queue_wait_seconds")
          .Help("Time admitted calls waited in the fair queue before they ran.")
          .Register(obs::registry());
  prometheus::Histogram& queue_wait_all = queue_wait.Add({}, fine_buckets());
  Family<prometheus::Histogram>& slot =
      prometheus::BuildHistogram()
          .Name("wf_limits_slot_seconds")
          .Help(
              "Admitted calls: their whole time in their slot, from start to answer (part "
              "\"held\"), and the part of it a downstream service reported waiting for its "
              "capacity (\"downstream_wait\": the evaluator's wait for a sandbox child).")
          .Register(obs::registry());
  prometheus::Histogram& slot_held = slot.Add({{"part", "held"}}, fine_buckets());
  prometheus::Histogram& slot_downstream = slot.Add({{"part", "downstream_wait"}}, fine_buckets());
  Counter& shared_errors = prometheus::BuildCounter()
                               .Name("wf_limits_shared_errors_total")
                               .Help("Failed operations on the shared (memcached) counters.")
                               .Register(obs::registry())
                               .Add({});
  Counter& shared_fallbacks =
      prometheus::BuildCounter()
          .Name("wf_limits_shared_fallbacks_total")
          .Help("Times the limits fell back to per-replica counters because memcached failed.")
          .Register(obs::registry())
          .Add({});
  Gauge& tracked = gauge("wf_limits_tracked_users",
                         "Callers whose limits are tracked now (bounded by limits_max_users).");
  Gauge& limited =
      gauge("wf_limits_users_limited", "Callers refused by a per-user limit in the last minute.");
  Gauge& running = gauge("wf_limits_running", "Admitted calls running now (not parked on I/O).");
  Gauge& parked = gauge("wf_limits_parked",
                        "Adaptive limit: admitted calls parked on I/O now (the evaluator, the "
                        "wiki), outside the running count.");
  Gauge& max_in_flight = gauge("wf_limits_max_in_flight",
                               "Calls allowed in flight (running or parked) now: "
                               "admission_max_concurrency, or the adaptive in-flight bound.");
  Gauge& queued = gauge("wf_limits_queued", "Calls waiting in the fair queue now.");
  Gauge& max_concurrency = gauge("wf_limits_max_concurrency",
                                 "Calls allowed to run at once now: admission_max_concurrency, or "
                                 "the adaptive limit's current value (admission_limit gradient).");
  Gauge& baseline = gauge("wf_limits_concurrency_baseline_seconds",
                          "Adaptive limit: the baselines of what calls report, summed: their "
                          "time running (not parked) and the evaluator's wait for a sandbox "
                          "child.");
  Gauge& recent = gauge("wf_limits_concurrency_recent_seconds",
                        "Adaptive limit: the last window's means of the same two, summed.");
  Gauge& downstream_waiting =
      gauge("wf_limits_downstream_waiting",
            "Adaptive limit: calls that were waiting for a downstream service's capacity (the "
            "evaluator's sandbox children) in the last window, by Little's law (the share of "
            "their time in flight they report waiting, times the calls in flight).");
  Gauge& needed_in_flight =
      gauge("wf_limits_needed_in_flight",
            "Adaptive limit: calls in flight the last window's throughput needed had none of them "
            "waited (its calls per second times a baseline call's time in its slot; Little's "
            "law). Under congestion the in-flight bound is at most this plus one.");
  Family<Counter>& admission_refusals =
      prometheus::BuildCounter()
          .Name("wf_limits_admission_refusals_total")
          .Help(
              "503s of admission control by when they were decided: on_arrival (answered at "
              "once) or after_waiting (a queued call over its wait, or evicted).")
          .Register(obs::registry());
  Counter& refused_on_arrival = admission_refusals.Add({{"when", "on_arrival"}});
  Counter& refused_after_waiting = admission_refusals.Add({{"when", "after_waiting"}});
  Family<prometheus::Histogram>& admission_refusal_time =
      prometheus::BuildHistogram()
          .Name("wf_limits_admission_refusal_seconds")
          .Help(
              "Admission control's 503s: time from the call's arrival at admission control to its "
              "refusal, by when it was decided: on_arrival (the decision) or after_waiting (its "
              "wait in the queue).")
          .Register(obs::registry());
  prometheus::Histogram& refusal_time_on_arrival =
      admission_refusal_time.Add({{"when", "on_arrival"}}, fine_buckets());
  prometheus::Histogram& refusal_time_after_waiting =
      admission_refusal_time.Add({{"when", "after_waiting"}}, fine_buckets());
  Gauge& shared_up = gauge("wf_limits_shared_up",
                           "1 when the shared (memcached) counters answer, 0 when the limits are "
                           "per replica because memcached failed or is not configured.");

  // Finer than obs::latency_buckets() below 100 ms, where a Python call's few milliseconds and
  // its waits are (a p99 interpolated in a 25-100 ms bucket says little).
  static const prometheus::Histogram::BucketBoundaries& fine_buckets() {
    static const prometheus::Histogram::BucketBoundaries b{
        0.00025, 0.0005, 0.001,  0.0015, 0.002, 0.003, 0.004, 0.005, 0.0065,
        0.008,   0.01,   0.0125, 0.015,  0.02,  0.025, 0.03,  0.04,  0.05,
        0.075,   0.1,    0.25,   0.5,    1,     2.5,   5,     10,    30};
    return b;
  }
  static Gauge& gauge(const char* name, const char* help) {
    return prometheus::BuildGauge().Name(name).Help(help).Register(obs::registry()).Add({});
  }
};

Families& families() {
  static Families f;
  return f;
}

struct Sources {
  std::mutex mu;
  std::uint64_t next = 1;
  std::map<std::uint64_t, std::function<GaugeValues()>> live;
};

Sources& sources() {
  static Sources s;
  return s;
}

void refresh_gauges() {
  GaugeValues sum;
  {
    std::lock_guard lock(sources().mu);
    for (const auto& [id, source] : sources().live) {
      const GaugeValues v = source();
      sum.tracked_users += v.tracked_users;
      sum.limited_users += v.limited_users;
      sum.running += v.running;
      sum.parked += v.parked;
      sum.max_in_flight += v.max_in_flight;
      sum.queued += v.queued;
      sum.max_concurrency += v.max_concurrency;
      sum.baseline_rtt_s = std::max(sum.baseline_rtt_s, v.baseline_rtt_s);
      sum.recent_rtt_s = std::max(sum.recent_rtt_s, v.recent_rtt_s);
      sum.downstream_waiting += v.downstream_waiting;
      sum.needed_in_flight += v.needed_in_flight;
      sum.shared_up += v.shared_up;
    }
  }
  Families& f = families();
  f.tracked.Set(sum.tracked_users);
  f.limited.Set(sum.limited_users);
  f.running.Set(sum.running);
  f.parked.Set(sum.parked);
  f.max_in_flight.Set(sum.max_in_flight);
  f.queued.Set(sum.queued);
  f.max_concurrency.Set(sum.max_concurrency);
  f.baseline.Set(sum.baseline_rtt_s);
  f.recent.Set(sum.recent_rtt_s);
  f.downstream_waiting.Set(sum.downstream_waiting);
  f.needed_in_flight.Set(sum.needed_in_flight);
  f.shared_up.Set(sum.shared_up);
}

template <typename Key>
Counter& cached(std::map<Key, Counter*, std::less<>>& cache, std::mutex& mu,
                Family<Counter>& family, const Key& key,
                const std::map<std::string, std::string>& labels) {
  std::lock_guard lock(mu);
  auto it = cache.find(key);
  if (it == cache.end()) it = cache.emplace(key, &family.Add(labels)).first;
  return *it->second;
}

}  // namespace

void count_refusal(Reason reason, std::string_view class_name) {
  static std::mutex mu;
  static std::map<std::pair<int, std::string>, Counter*, std::less<>> cache;
  const std::pair<int, std::string> key{static_cast<int>(reason), std::string(class_name)};
  cached(cache, mu, families().refusals, key,
         {{"reason", std::string(reason_name(reason))}, {"class", key.second}})
      .Increment();
}

void count_admitted(std::string_view class_name) {
  static std::mutex mu;
  static std::map<std::string, Counter*, std::less<>> cache;
  cached(cache, mu, families().admitted, std::string(class_name),
         {{"class", std::string(class_name)}})
      .Increment();
}

void count_cpu(std::string_view class_name, double cpu_ms) {
  if (cpu_ms <= 0) return;
  static std::mutex mu;
  static std::map<std::string, Counter*, std::less<>> cache;
  cached(cache, mu, families().cpu, std::string(class_name), {{"class", std::string(class_name)}})
      .Increment(cpu_ms / 1000.0);
}

std::uint64_t add_gauge_source(std::function<GaugeValues()> source) {
  static std::once_flag hooked;
  std::call_once(hooked, [] {
    families();
    obs::add_scrape_hook(refresh_gauges);
  });
  std::lock_guard lock(sources().mu);
  const std::uint64_t id = sources().next++;
  sources().live.emplace(id, std::move(source));
  return id;
}

void remove_gauge_source(std::uint64_t id) {
  std::lock_guard lock(sources().mu);
  sources().live.erase(id);
}

void count_admission_refusal(bool waited, double seconds) {
  Families& f = families();
  (waited ? f.refused_after_waiting : f.refused_on_arrival).Increment();
  (waited ? f.refusal_time_after_waiting : f.refusal_time_on_arrival).Observe(seconds);
}

void observe_queue_wait(double seconds) {
  families().queue_wait_all.Observe(seconds);
}
void observe_slot(double held_s, double downstream_wait_s) {
  families().slot_held.Observe(held_s);
  families().slot_downstream.Observe(downstream_wait_s);
}
void count_shared_error() {
  families().shared_errors.Increment();
}
void count_shared_fallback() {
  families().shared_fallbacks.Increment();
}

}  // namespace wf::limits::detail
