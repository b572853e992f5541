#pragma once
// The front door of a service's expensive route: who is calling (identity.h), may they (per-user
// limits, limiter.h), and is there room (admission control and fair queuing, admission.h). A route
// calls identify() then admit(); the call runs when `start` gets its Admitted, and reports its CPU
// with Admitted::finish(). Refusals arrive at `refuse`, already counted in the metrics.

#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "wf/limits/admission.h"
#include "wf/limits/clock.h"
#include "wf/limits/identity.h"
#include "wf/limits/limiter.h"
#include "wf/limits/refusal.h"
#include "wf/limits/shared_counters.h"

namespace wf::limits {

struct GateOptions {
  bool enabled = true;  // false: every call is admitted at once, nothing is counted
  IdentityOptions identity;
  LimiterOptions limiter;
  AdmissionOptions admission;
  MemcachedOptions memcached;  // servers empty: per-replica limits
};
// Every class a rule names has limits, the built-in classes too; the error names the fix.
std::expected<void, std::string> validate(const GateOptions& options);

// What a started call holds until it ends: its user's permit and its admission slot.
struct Admitted {
  Permit permit;
  Slot slot;
  // Charges the CPU the call used (orchestrator + evaluator, milliseconds) and ends the call.
  void finish(double cpu_ms);
  // Whether finish() charges the CPU to a user (false with limits off): if not, nobody needs
  // the figure.
  bool charges_cpu() const { return static_cast<bool>(permit); }
};

class Gate {
 public:
  // Validates the options and connects the shared counters (when configured; a memcached that is
  // down at start-up is not fatal: per-replica limits until it answers).
  static std::expected<std::unique_ptr<Gate>, std::string> create(
      GateOptions options, const Clock& clock = system_clock(),
      std::shared_ptr<SharedCounters> shared = nullptr);
  ~Gate();

  bool enabled() const { return enabled_; }
  // The header that names the user ("" when the header is not used).
  const std::string& user_header() const { return resolver_->options().user_header; }
  Identity identify(const CallerInfo& caller) const;
  // Exactly one of the callbacks runs, perhaps before admit() returns (unless cancelled while
  // queued). Returns a ticket for cancel(), 0 when already decided.
  std::uint64_t admit(const Identity& who, SteadyTime deadline, std::function<void(Admitted)> start,
                      std::function<void(const Refusal&)> refuse);
  bool cancel(std::uint64_t ticket);
  // For synchronous handlers that must not wait (their own worker pool is the queue): the
  // per-user limits, then a free slot or a 503 refusal, never a queued call.
  std::expected<Admitted, Refusal> admit_now(const Identity& who);
  void drain();

  // The limits in force, as JSON (the admin surface's GET), and a change to them (its PUT):
  // {"classes": [{"name", "rate", "burst", "concurrency", "cpu_ms", "pooled"}...],
  //  "admission": {"max_concurrency"}}. Unknown keys and bad values are refused with a message.
  nlohmann::json describe() const;
  std::expected<void, std::string> apply(const nlohmann::json& change);

  Limiter& limiter() { return *limiter_; }
  Admission& admission() { return *admission_; }

 private:
  explicit Gate(const Clock& clock) : clock_(&clock) {}
  const Clock* clock_;
  bool enabled_ = true;
  std::unique_ptr<IdentityResolver> resolver_;
  std::unique_ptr<Limiter> limiter_;
  std::unique_ptr<Admission> admission_;
};

// CPU milliseconds a Z22 reports (orchestrationCpuUsage plus every executionCpuUsage), read from
// the response text without parsing all of it; 0 when it reports none.
double reported_cpu_ms(std::string_view z22_text);

}  // namespace wf::limits
