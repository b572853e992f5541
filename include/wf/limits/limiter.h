#pragma once
// Per-user limits: a token bucket on calls per second (with burst), a cap on calls in flight, and
// a CPU-time budget per fixed window charged with the CPU each call really used. State is kept per
// identity key in a sharded table bounded by max_users (least recently seen idle users are evicted
// first); every method is thread-safe, none throws or blocks on I/O.
//
// Shared mode (several replicas): with SharedCounters, calls and CPU milliseconds are also counted
// in fixed windows in memcached. The local table stays authoritative for the decision on the
// request path; a background thread pushes each user's new usage with an atomic increment and
// learns the total of all replicas from its answer, so a replica sees the others' usage at most one
// sync interval late. When memcached fails, the limits fall back to per-replica ones (logged,
// wf_limits_shared_up = 0) until it answers again.

#include <chrono>
#include <expected>
#include <memory>
#include <string>
#include <vector>

#include "wf/limits/clock.h"
#include "wf/limits/identity.h"
#include "wf/limits/refusal.h"
#include "wf/limits/shared_counters.h"

namespace wf::limits {

struct ClassLimits {
  std::string name;
  double rate = 0;      // calls per second refilled into the bucket; 0: no rate limit
  double burst = 0;     // bucket size (calls that may arrive at once); 0: max(1, rate)
  int concurrency = 0;  // calls in flight at once; 0: no cap
  double cpu_ms = 0;    // CPU milliseconds per cpu_window; 0: no budget
  bool pooled = false;  // every caller of the class shares one set of counters
};

struct LimiterOptions {
  std::vector<ClassLimits> classes;  // must name every class the identity resolver can produce
  std::chrono::milliseconds cpu_window{60000};
  std::size_t max_users = 100000;  // identities tracked at once (memory bound)
  // Shared mode: calls of all replicas per window must stay within rate * window + burst.
  std::chrono::milliseconds shared_rate_window{1000};
  std::chrono::milliseconds sync_interval{100};
  std::string shared_prefix = "wf:lim:";  // memcached key prefix (several deployments, one pool)
  std::chrono::seconds offender_log_interval{30};  // top offenders are logged at most this often
  bool background_thread = true;                   // false: the owner calls maintain() (tests)
};

// Names unique and non-empty, numbers in range; the error names the class and the fix.
std::expected<void, std::string> validate(const LimiterOptions& options);

namespace detail {
struct UserState;
struct LimiterCore;
}  // namespace detail

// One admitted call's claim on its user's limits. Destruction (or release()) ends the call for the
// concurrency cap; charge_cpu() adds the CPU the call used to the user's budget (once). It may
// outlive its Limiter.
class Permit {
 public:
  Permit() = default;
  Permit(Permit&& other) noexcept;
  Permit& operator=(Permit&& other) noexcept;
  Permit(const Permit&) = delete;
  Permit& operator=(const Permit&) = delete;
  ~Permit();
  void charge_cpu(double cpu_ms);
  void release();
  // The user's recent CPU per call (milliseconds, moving average; 1 before the first charge):
  // the cost fair queuing uses.
  double cost_estimate() const;
  explicit operator bool() const { return state_ != nullptr; }

 private:
  friend class Limiter;
  Permit(std::shared_ptr<detail::UserState> state, std::shared_ptr<detail::LimiterCore> core);
  std::shared_ptr<detail::UserState> state_;
  std::shared_ptr<detail::LimiterCore> core_;
  bool charged_ = false;
};

struct LimiterStats {
  std::size_t tracked_users = 0;
  std::size_t limited_users = 0;  // users refused in the last minute
  bool shared_configured = false;
  bool shared_up = false;
};

class Limiter {
 public:
  // `shared` null: per-replica limits only. The clock must outlive the limiter and its Permits.
  Limiter(LimiterOptions options, const Clock& clock = system_clock(),
          std::shared_ptr<SharedCounters> shared = nullptr);
  ~Limiter();
  Limiter(const Limiter&) = delete;
  Limiter& operator=(const Limiter&) = delete;

  std::expected<Permit, Refusal> acquire(const Identity& who);

  // New class limits at run time (the admin surface); counters and windows stay. Validated.
  std::expected<void, std::string> reconfigure(std::vector<ClassLimits> classes);
  std::vector<ClassLimits> classes() const;

  // One round of background work: push pending usage to the shared counters, log the top
  // offenders when due. The background thread calls it every sync_interval.
  void maintain();
  LimiterStats stats() const;

 private:
  std::shared_ptr<detail::LimiterCore> impl_;
};

}  // namespace wf::limits
