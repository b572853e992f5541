#pragma once
// The wf_limits_* metrics (docs/metrics.md). Labels are bounded: `reason` is one of Reason's
// names, `class` one of the configured classes; never a user.

#include <cstdint>
#include <functional>
#include <string_view>

#include "wf/limits/refusal.h"

namespace wf::limits::detail {

void count_refusal(Reason reason, std::string_view class_name);
void count_admitted(std::string_view class_name);
void count_cpu(std::string_view class_name, double cpu_ms);
void observe_queue_wait(double seconds);
// An admitted call ended: its whole time in its slot, and what it reported waiting downstream.
void observe_slot(double held_s, double downstream_wait_s);
// A 503 of admission control: decided on arrival, or after the call had waited in the queue;
// `seconds` from the call's arrival at admission control to the refusal.
void count_admission_refusal(bool waited, double seconds);
void count_shared_error();
void count_shared_fallback();

// Gauges read at scrape time from the live gates (several in tests: their values are summed).
struct GaugeValues {
  double tracked_users = 0;
  double limited_users = 0;
  double running = 0;
  double parked = 0;
  double max_in_flight = 0;
  double queued = 0;
  double max_concurrency = 0;
  double baseline_rtt_s = 0;  // adaptive limit (the largest of the sources)
  double recent_rtt_s = 0;
  double downstream_waiting = 0;
  double needed_in_flight = 0;  // adaptive limit: the last window's rate x a baseline call
  double shared_up = 0;
};
std::uint64_t add_gauge_source(std::function<GaugeValues()> source);
void remove_gauge_source(std::uint64_t id);

}  // namespace wf::limits::detail
