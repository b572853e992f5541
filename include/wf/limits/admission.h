#pragma once
// Admission control in front of the engine: at most max_concurrency calls run at once; the others
// wait in a bounded fair queue and are served by start-time fair queuing across users, by each
// user's CPU cost per call, so that a user with many or heavy calls cannot make the others wait
// behind them. A call waits at most twice max_queue_time (or until its own deadline), and one that
// would certainly wait over half max_queue_time (its place in the queue over the rate the queue
// drains: the slots over how long a call holds one, or the measured interval between starts of
// queued calls, the slower), or would not start and run before its deadline, is refused at once
// rather than after the wait; when the queue is full, the newest call of the user with the longest
// queue makes room for a call of a user with a shorter one, and a call that finds no room is
// refused at once (503). A queued call that waited past the wait it was let in for (fixed: half
// max_queue_time) goes before the fair queue's order. Memory is bounded by max_queue whatever the
// offered load. Thread-safe; callbacks run outside the lock, on the thread that submits, releases,
// cancels or sweeps.
//
// The concurrency limit is fixed (max_concurrency) or adaptive (LimitMode::kGradient): it follows
// the ratio of the calls' baseline time in their slot to their recent time, as a gradient limiter
// does (Netflix concurrency-limits' Gradient2): while recent calls take no more than `tolerance`
// times the baseline the limit grows by one per window; when they take longer it shrinks in
// proportion (by at most 10% per window), between min_concurrency and max_concurrency. Adaptive,
// the queue is short: a call is refused on arrival when its expected wait (also from when the calls
// in flight started) is over half a baseline call, unless its user has nothing ahead and no debt;
// a queued call is served (refused only at twice max_queue_time or its deadline), and one that
// waited past a baseline call goes before the fair queue's order.
//
// Adaptive, a call that waits for I/O holding no thread (Slot::park: a fiber parked on the
// evaluator or the wiki) leaves the count of running calls until it goes on (Slot::resume: it
// counts again at once, never refused mid-call), so calls parked for seconds do not hold the limit
// at its floor; the limit follows the time calls ran (not parked). Calls in flight, parked or not,
// are bounded by a second limit that follows the time a downstream service says they waited for
// capacity (Slot::add_congestion: the evaluator's wait for a sandbox child): at the ceiling while
// that shows no congestion; when it does, the calls the service serves (those in flight less those
// waiting there, by Little's law) plus half as many waiting (so that calls parked in a congested
// evaluator are bounded too, without starving it), and at most what the throughput needs: the
// window's calls per second times a baseline call (a call that ran alone), plus one (CPUs shared by
// the evaluator's children are congested without anyone reporting a wait). A window is also
// congested when its calls' lower quartile is over the tolerance times a baseline call while calls
// are queued. Every 5 s of a sustained overload, one call is let to run alone (a probe), so that
// the baseline follows a slower machine. With `cpus` known, a congested bound is at most the CPUs,
// and while calls are held back it goes past them only as far as calls there are not slower than
// a quarter over a call alone (calls parked on other work than CPU); and while the calls in
// flight serve less than 1.1 times what one call at a time serves (calls that each use most of
// the CPUs alone), the bound is one call, trying two again every 8 windows.
//
// The fair queue: a user's virtual finish time (start plus cost) outlives their queue and counts
// calls that started without queueing, so a user whose calls hold the slots starts their next one
// after a user who has none; a call's place on arrival is counted by virtual start times.

#include <chrono>
#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "wf/limits/clock.h"
#include "wf/limits/refusal.h"

namespace wf::limits {

enum class LimitMode { kFixed, kGradient };

struct AdmissionOptions {
  int max_concurrency = 64;  // calls running at once (kGradient: at most); 0: no admission control
  LimitMode limit = LimitMode::kFixed;
  int min_concurrency = 4;  // kGradient: the limit never falls below it
  double tolerance = 1.5;   // kGradient: recent/baseline call time taken as not congested
  int window_calls = 16;    // kGradient: a window of samples has at least this many calls...
  std::chrono::milliseconds window_time{20};  // ... and lasts at least this long
  // kGradient: a window is congested when its mean (of either signal) is over tolerance *
  // baseline + this (the few milliseconds a call's run varies by on a busy machine are not
  // congestion).
  std::chrono::microseconds congestion_slack{2000};
  // kGradient: the CPUs the calls share (0: not known). Under congestion the in-flight bound is at
  // most these (one call per CPU: a call beyond them only shares a CPU with another and makes both
  // slower); while calls are held back it goes past them only as long as the calls beyond them
  // are not slower (tried again every 8 windows after they were); and it is one call while a
  // second one in flight gains no throughput (calls that each use most of the CPUs alone).
  int cpus = 0;
  std::size_t max_queue = 1024;
  std::chrono::milliseconds max_queue_time{2000};
  double max_cost_ms = 1000;   // a call's cost (its user's CPU per call) counts at most this much
  bool sweeper_thread = true;  // false: the owner calls expire() (tests)
};
std::expected<void, std::string> validate(const AdmissionOptions& options);

namespace detail {
struct AdmissionCore;
}

// A running call's claim on one of the max_concurrency slots; destruction frees it (and starts
// the next queued call on this thread). It may outlive its Admission.
class Slot {
 public:
  Slot() = default;
  Slot(Slot&& other) noexcept;
  Slot& operator=(Slot&& other) noexcept;
  Slot(const Slot&) = delete;
  Slot& operator=(const Slot&) = delete;
  ~Slot();
  void release();
  explicit operator bool() const { return core_ != nullptr; }
  std::chrono::nanoseconds queued_for() const { return queued_for_; }

  // The adaptive limit (no-ops for the fixed one, and once released). The call waits for I/O
  // holding no thread: it leaves the running calls (it stays in flight) and the next queued call
  // may start. resume(): it runs again and counts at once, even over the limit. Both idempotent.
  // A Slot is not thread-safe: its owner orders these calls and release().
  void park();
  void resume();
  bool parked() const { return parked_; }
  // Time a downstream service reports the call waited for capacity (the evaluator's wait for a
  // sandbox child): congestion, added to the time the call ran in what it reports.
  void add_congestion(std::chrono::nanoseconds waited);

 private:
  friend struct detail::AdmissionCore;
  friend class Admission;
  Slot(std::shared_ptr<detail::AdmissionCore> core, std::chrono::nanoseconds queued_for,
       SteadyTime started, int running_at_start, int in_flight_at_start);
  std::shared_ptr<detail::AdmissionCore> core_;
  std::chrono::nanoseconds queued_for_{0};
  SteadyTime started_{};
  SteadyTime running_since_{};       // start of the current run (not parked)
  std::chrono::nanoseconds ran_{0};  // time run before it, over all runs
  std::chrono::nanoseconds congestion_{0};
  int running_at_start_ = 0;    // calls running when it started, itself included
  int in_flight_at_start_ = 0;  // calls running or parked then, itself included
  bool parked_ = false;
};

struct Work {
  std::string user_key;                     // queue of this user
  std::string class_name;                   // for refusal metrics
  double cost = 1;                          // expected CPU ms (Permit::cost_estimate())
  SteadyTime deadline = SteadyTime::max();  // the request's own deadline
  std::function<void(Slot)> start;
  std::function<void(const Refusal&)> refuse;
};

struct AdmissionStats {
  int running = 0;  // calls admitted and not parked
  int parked = 0;   // kGradient: calls admitted and parked on I/O
  std::size_t queued = 0;
  int max_concurrency = 0;  // the limit now (adaptive: its current value)
  std::size_t users_queued = 0;
  bool adaptive = false;          // LimitMode::kGradient
  int ceiling = 0;                // max_concurrency as configured (adaptive: the most it may reach)
  double baseline_rtt_s = 0;      // kGradient: the baselines of what calls report (run + wait)
  double recent_rtt_s = 0;        // kGradient: the last window's means (run + wait)
  int max_in_flight = 0;          // kGradient: the bound on calls running or parked
  double call_s = 0;              // kGradient: the baseline time a call holds its slot in all
  double downstream_waiting = 0;  // kGradient: calls waiting downstream (last window, Little)
  double needed_in_flight = 0;    // kGradient: the last window's calls/s x call_s (Little)
  std::uint64_t refused_on_arrival = 0;  // 503s decided when the call arrived
  std::uint64_t refused_after_wait = 0;  // 503s of calls that had waited (queue time, eviction)
};
std::expected<LimitMode, std::string> parse_limit_mode(std::string_view name);

class Admission {
 public:
  explicit Admission(AdmissionOptions options, const Clock& clock = system_clock());
  // Refuses what is still queued (kDraining).
  ~Admission();
  Admission(const Admission&) = delete;
  Admission& operator=(const Admission&) = delete;

  // Starts the work now, queues it, or refuses it (each callback exactly once, unless cancelled
  // while queued). Returns a ticket for cancel(); 0 when the work was started or refused already.
  std::uint64_t submit(Work work);
  // For synchronous callers that must not wait: a slot now, or the reason there is none
  // (kQueueFull when all slots are taken or work is waiting, kDraining). Counts the refusal.
  std::expected<Slot, Reason> try_start(std::string_view class_name);
  // Takes queued work out without calling either callback (the client went away). False when it
  // is no longer queued.
  bool cancel(std::uint64_t ticket);
  // Refuses queued work over its queue time or deadline (the sweeper thread calls it).
  void expire();
  // Refuses everything queued and everything submitted from now on (kDraining).
  void drain();
  // Fixed: the limit; adaptive: its ceiling (the limit is brought under it at once).
  void set_max_concurrency(int max_concurrency);
  AdmissionStats stats() const;

 private:
  std::shared_ptr<detail::AdmissionCore> impl_;
};

}  // namespace wf::limits
