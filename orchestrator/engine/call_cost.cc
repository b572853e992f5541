#include "orchestrator/engine/call_cost.h"

#include <fmt/compile.h>
#include <fmt/format.h>
#include <prometheus/family.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <string_view>

#include "wf/obs/log.h"
#include "wf/obs/metrics.h"
#include "wf/zobject/zobject.h"

namespace wf::orchestrator::engine_detail {

namespace {

constexpr const char* kOther = "other";

struct Part {
  const char* name;           // metric label and log field suffix
  std::string_view meta_key;  // Z22 metadata key
  double CallCost::*us;
};
constexpr std::array<Part, 5> kParts = {{
    {"resolve", "orchestrationResolveDuration", &CallCost::resolve_us},
    {"validate", "orchestrationValidateDuration", &CallCost::validate_us},
    {"evaluate", "orchestrationEvaluateDuration", &CallCost::evaluate_us},
    {"evaluator", "orchestrationEvaluatorDuration", &CallCost::evaluator_us},
    {"cache", "orchestrationCacheDuration", &CallCost::cache_us},
}};

struct Families {
  prometheus::Family<prometheus::Counter>& calls;
  prometheus::Family<prometheus::Histogram>& duration;
  std::array<prometheus::Counter*, kParts.size()> part_seconds;
};

Families& families() {
  static Families f = [] {
    auto& r = wf::obs::registry();
    auto& calls = prometheus::BuildCounter()
                      .Name("wf_orchestrator_function_calls_total")
                      .Help(
                          "Evaluate requests by the function they call (the first "
                          "function_metrics_top_n functions; any other as \"other\") and outcome.")
                      .Register(r);
    auto& duration = prometheus::BuildHistogram()
                         .Name("wf_orchestrator_function_duration_seconds")
                         .Help("Wall-clock time of evaluate requests, by function (as above).")
                         .Register(r);
    auto& parts = prometheus::BuildCounter()
                      .Name("wf_orchestrator_call_part_seconds_total")
                      .Help(
                          "Wall-clock time of evaluate requests by part: resolve, validate, "
                          "evaluate, evaluator, cache.")
                      .Register(r);
    Families out{calls, duration, {}};
    for (std::size_t i = 0; i < kParts.size(); ++i) {
      out.part_seconds[i] = &parts.Add({{"part", kParts[i].name}});
    }
    return out;
  }();
  return f;
}

std::vector<obs::LogField> cost_fields(const CallCost& cost) {
  std::vector<obs::LogField> fields;
  fields.reserve(kParts.size() + 4);
  fields.push_back(obs::field_str("wf.function", cost.function.empty() ? "-" : cost.function));
  fields.push_back(obs::field_str("event.outcome", cost.error ? "failure" : "success"));
  // ECS event.duration is in nanoseconds.
  fields.push_back(obs::field_int("event.duration", static_cast<long long>(cost.total_us * 1000)));
  for (const Part& p : kParts) {
    fields.push_back(obs::field_num(std::string("wf.cost.") + p.name + "_ms", cost.*p.us / 1000.0));
  }
  return fields;
}

}  // namespace

// The thousandths are written by hand when x * 1000 (x = us / 1000, fmt's operand) is not within
// 1e-3 of a half: then the product's rounding error (< 2^-52 of its size, under 1.2e-4 below
// 1e12) cannot change which integer is nearest to the exact value, and fmt, which rounds the exact
// value, writes that integer's digits. Ties, large, negative (-0.0 too) and non-finite values
// take fmt (~500 instructions against ~60).
std::string_view write_ms(std::array<char, 32>& buf, double us) {
  const double ms = us / 1000.0;
  const double scaled = ms * 1000.0;
  if (std::signbit(scaled) || !(scaled < 1e12)) return {};  // -0.0 is fmt's "-0.000"
  const double whole = std::floor(scaled);
  const double frac = scaled - whole;
  if (std::fabs(frac - 0.5) <= 1e-3) return {};
  auto n = static_cast<std::uint64_t>(whole) + (frac > 0.5 ? 1 : 0);
  char* end = buf.data() + buf.size();
  char* p = end;
  *--p = 's';
  *--p = 'm';
  *--p = ' ';
  for (int i = 0; i < 3; ++i) {
    *--p = static_cast<char>('0' + n % 10);
    n /= 10;
  }
  *--p = '.';
  do {
    *--p = static_cast<char>('0' + n % 10);
    n /= 10;
  } while (n != 0);
  return {p, static_cast<std::size_t>(end - p)};
}

std::string ms_text(double us) {
  std::array<char, 32> buf;
  if (const std::string_view text = write_ms(buf, us); !text.empty()) return std::string(text);
  return fmt::format(FMT_COMPILE("{:.3f} ms"), us / 1000.0);
}

CostPairs::CostPairs(const CallCost& cost) {
  const auto add = [this](std::string_view key, double us) {
    std::string_view text = write_ms(texts_[size_], us);
    const bool by_hand = !text.empty();  // digits, '.' and " ms": nothing to escape
    if (!by_hand) {  // fmt's text, in a string of its own (rare: ties, huge, negative)
      if (spill_ == nullptr) spill_ = std::make_unique<std::array<std::string, 6>>();
      text = (*spill_)[size_] = ms_text(us);
    }
    pairs_[size_++] = {key, text, by_hand};
  };
  for (const Part& p : kParts) add(p.meta_key, cost.*p.us);
  if (cost.evaluator_cpu_ms > 0)
    add("orchestrationEvaluatorCpuUsage", cost.evaluator_cpu_ms * 1000);
}

void append_cost_metadata(const CallCost& cost,
                          std::vector<std::pair<std::string, std::string>>& out) {
  const CostPairs cost_pairs(cost);
  out.reserve(out.size() + cost_pairs.pairs().size());
  for (const TextPair& p : cost_pairs.pairs()) out.emplace_back(p.key, p.text);
}

CallCostReporter::CallCostReporter(std::size_t top_n, double slow_call_us)
    : top_n_(top_n), slow_call_us_(slow_call_us) {}

CallCostReporter::Series CallCostReporter::make_series(const std::string& label) {
  auto& f = families();
  static const prometheus::Histogram::BucketBoundaries kBuckets = {
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
      0.1,    0.25,    0.5,    1,     2.5,    5,     10,   30};
  return Series{&f.calls.Add({{"function", label}, {"outcome", "ok"}}),
                &f.calls.Add({{"function", label}, {"outcome", "error"}}),
                &f.duration.Add({{"function", label}}, kBuckets)};
}

// Only a well-formed ZID can become a label (never free text a caller sent), and at most top_n_
// of them: the label set, and so the number of series, is bounded whatever callers send.
CallCostReporter::Series& CallCostReporter::series(std::string_view function) {
  std::lock_guard lock(mu_);
  if (!function.empty() && zobject::is_zid(function)) {
    auto it = series_.find(std::string(function));
    if (it != series_.end()) return it->second;
    const std::size_t named = series_.size() - (series_.count(kOther) != 0 ? 1 : 0);
    if (named < top_n_) {
      std::string label(function);
      return series_.emplace(label, make_series(label)).first->second;
    }
  }
  auto it = series_.find(kOther);
  if (it != series_.end()) return it->second;
  return series_.emplace(kOther, make_series(kOther)).first->second;
}

std::string CallCostReporter::label(std::string_view function) {
  std::lock_guard lock(mu_);
  if (!function.empty() && series_.count(std::string(function)) != 0) return std::string(function);
  return kOther;
}

void CallCostReporter::report(const CallCost& cost) {
  auto& f = families();
  for (std::size_t i = 0; i < kParts.size(); ++i) {
    // A part the call did not spend in (validate, evaluator and cache, for most calls) leaves its
    // counter as it is: no atomic add of zero on a line every thread writes.
    if (const double seconds = cost.*kParts[i].us / 1e6; seconds != 0) {
      f.part_seconds[i]->Increment(seconds);
    }
  }
  Series& s = series(cost.function);
  (cost.error ? s.error : s.ok)->Increment();
  s.duration->Observe(cost.total_us / 1e6);
  if (slow_call_us_ > 0 && cost.total_us >= slow_call_us_) {
    auto fields = cost_fields(cost);
    fields.push_back(obs::field_str("event.action", "slow-call"));
    obs::log_event(spdlog::level::warn,
                   fmt::format("slow call: {} took {:.1f} ms (threshold {:.0f} ms)",
                               cost.function.empty() ? "-" : cost.function, cost.total_us / 1000.0,
                               slow_call_us_ / 1000.0),
                   std::move(fields));
  } else if (obs::current_level() <= spdlog::level::debug) {
    auto fields = cost_fields(cost);
    fields.push_back(obs::field_str("event.action", "call-cost"));
    obs::log_event(spdlog::level::debug, "call cost", std::move(fields));
  }
}

}  // namespace wf::orchestrator::engine_detail
