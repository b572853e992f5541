#include "wf/obs/metrics.h"

#include <fmt/format.h>
#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>
#include <spdlog/spdlog.h>

#include <memory>
#include <mutex>

#include "wf/obs/log.h"
#include "wf/obs/process_stats.h"

namespace wf::obs {
namespace {

prometheus::MetricFamily gauge_family(std::string name, std::string help, double value,
                                      prometheus::MetricType type = prometheus::MetricType::Gauge) {
  prometheus::MetricFamily family;
  family.name = std::move(name);
  family.help = std::move(help);
  family.type = type;
  prometheus::ClientMetric metric;
  if (type == prometheus::MetricType::Counter) {
    metric.counter.value = value;
  } else {
    metric.gauge.value = value;
  }
  family.metric.push_back(std::move(metric));
  return family;
}

// The standard process_* metrics (same names as the official Prometheus clients), read at scrape
// time.
class ProcessCollector : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override {
    const ProcessStats s = read_process_stats();
    std::vector<prometheus::MetricFamily> out;
    out.push_back(gauge_family("process_cpu_seconds_total",
                               "Total user and system CPU time spent in seconds.", s.cpu_seconds,
                               prometheus::MetricType::Counter));
    out.push_back(gauge_family("process_resident_memory_bytes", "Resident memory size in bytes.",
                               static_cast<double>(s.resident_bytes)));
    out.push_back(gauge_family("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                               static_cast<double>(s.virtual_bytes)));
    out.push_back(gauge_family("process_open_fds", "Number of open file descriptors.",
                               static_cast<double>(s.open_fds)));
    out.push_back(gauge_family("process_max_fds", "Maximum number of open file descriptors.",
                               static_cast<double>(s.max_fds)));
    out.push_back(gauge_family("process_start_time_seconds",
                               "Start time of the process since unix epoch in seconds.",
                               process_start_time_seconds()));
    out.push_back(gauge_family("process_threads", "Number of OS threads in the process.",
                               static_cast<double>(s.threads)));
    return out;
  }
};

struct State {
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  ProcessCollector process;
  prometheus::Family<prometheus::Counter>* bugs = nullptr;
  std::mutex hooks_mu;
  std::vector<std::function<void()>> hooks;
};

State& state() {
  static State* s = [] {
    auto* st = new State();
    st->bugs = &prometheus::BuildCounter()
                    .Name("wf_bugs_total")
                    .Help(
                        "Internal invariants that failed but were survived; any increase is a bug "
                        "to report.")
                    .Register(*st->registry);
    return st;
  }();
  return *s;
}

}  // namespace

prometheus::Registry& registry() {
  return *state().registry;
}

void set_build_info(std::string_view service, std::string_view version, std::string_view commit) {
  prometheus::BuildGauge()
      .Name("wf_build_info")
      .Help("Build information of this service; the value is always 1.")
      .Register(registry())
      .Add({{"service", std::string(service)},
            {"version", std::string(version)},
            {"commit", std::string(commit)}})
      .Set(1);
}

void add_scrape_hook(std::function<void()> hook) {
  std::lock_guard lock(state().hooks_mu);
  state().hooks.push_back(std::move(hook));
}

std::string render_metrics() {
  {
    std::lock_guard lock(state().hooks_mu);
    for (const auto& hook : state().hooks) hook();
  }
  auto families = registry().Collect();
  auto process = state().process.Collect();
  families.insert(families.end(), std::make_move_iterator(process.begin()),
                  std::make_move_iterator(process.end()));
  return prometheus::TextSerializer().Serialize(families);
}

void count_bug(std::string_view where, std::string_view what) {
  state().bugs->Add({{"where", std::string(where)}}).Increment();
  log_event(spdlog::level::err, fmt::format("bug in {}: {}", where, what),
            {field_str("error.type", "bug"), field_str("error.message", what),
             field_str("log.origin.function", where)});
}

const prometheus::Histogram::BucketBoundaries& latency_buckets() {
  static const prometheus::Histogram::BucketBoundaries b{
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30};
  return b;
}

const prometheus::Histogram::BucketBoundaries& size_buckets() {
  static const prometheus::Histogram::BucketBoundaries b{64,    256,    1024,    4096,    16384,
                                                         65536, 262144, 1048576, 4194304, 16777216};
  return b;
}

}  // namespace wf::obs
