#include "wf/limits/limiter.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <list>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "limits_metrics.h"
#include "wf/obs/log.h"
#include "wf/obs/metrics.h"
#include "wf/obs/process_stats.h"

namespace wf::limits {
namespace detail {

// One caller's counters. Guarded by its shard's mutex.
struct UserState {
  std::string key;
  std::size_t shard = 0;
  std::string class_name;
  std::list<std::string>::iterator lru;
  // Token bucket (tokens < 0: not used yet, starts full).
  double tokens = -1;
  SteadyTime refilled{};
  int in_flight = 0;
  // CPU budget of the current fixed window.
  long long cpu_window = -1;
  double cpu_used_ms = 0;
  double cost_ms = 1;  // moving average of CPU per call
  // Shared mode: what all replicas used in the current windows (as of the last sync) and what
  // this replica used since.
  long long rate_window = -1;
  std::uint64_t rate_global = 0;
  std::uint64_t rate_pending = 0;
  long long shared_cpu_window = -1;
  std::uint64_t cpu_global_ms = 0;
  double cpu_pending_ms = 0;
  bool dirty = false;
  // Refusals, for the users-limited gauge and the top-offenders log.
  SteadyTime last_refused{};
  bool refused_ever = false;
  std::uint32_t refusals_since_log = 0;
  Reason last_reason = Reason::kRate;
};

}  // namespace detail

using detail::UserState;
using Ms = std::chrono::milliseconds;

namespace {

constexpr std::size_t kShards = 16;
constexpr int kEvictionScan = 16;  // idle candidates looked at from the LRU end
constexpr auto kLimitedHorizon = std::chrono::seconds(60);

long long window_index(WallTime wall, Ms window) {
  const long long ms = std::chrono::duration_cast<Ms>(wall.time_since_epoch()).count();
  return ms / std::max<long long>(1, window.count());
}

WallTime window_end(long long index, Ms window) {
  return WallTime{} + Ms((index + 1) * window.count());
}

Ms until(WallTime from, WallTime to) {
  return std::max(Ms(1), std::chrono::ceil<Ms>(to - from));
}

// Stable across processes and hosts (std::hash is not), for memcached keys.
std::uint64_t fnv1a(std::string_view s) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

std::chrono::seconds expiry_for(Ms window) {
  return std::chrono::seconds(std::max<long long>(2, 2 * window.count() / 1000 + 1));
}

double burst_of(const ClassLimits& c) {
  return c.burst > 0 ? c.burst : std::max(1.0, c.rate);
}

}  // namespace

std::expected<void, std::string> validate(const LimiterOptions& o) {
  for (std::size_t i = 0; i < o.classes.size(); ++i) {
    const ClassLimits& c = o.classes[i];
    if (c.name.empty()) return std::unexpected("a limits class has no name: give every class one");
    for (std::size_t j = 0; j < i; ++j) {
      if (o.classes[j].name == c.name)
        return std::unexpected(fmt::format("limits class '{}' is defined twice", c.name));
    }
    if (c.rate < 0 || c.burst < 0 || c.concurrency < 0 || c.cpu_ms < 0 || !std::isfinite(c.rate) ||
        !std::isfinite(c.burst) || !std::isfinite(c.cpu_ms)) {
      return std::unexpected(fmt::format(
          "limits class '{}' has a negative or invalid limit: use 0 for no limit", c.name));
    }
    if (c.burst > 0 && c.burst < 1) {
      return std::unexpected(fmt::format(
          "limits class '{}': burst {} lets no call through; use at least 1", c.name, c.burst));
    }
  }
  if (o.cpu_window < Ms(1000)) return std::unexpected("limits_cpu_window_ms must be at least 1000");
  if (o.max_users < kShards)
    return std::unexpected(fmt::format("limits_max_users must be at least {}", kShards));
  if (o.shared_rate_window < Ms(100) || o.sync_interval < Ms(1))
    return std::unexpected("the shared rate window must be ≥ 100 ms and the sync interval ≥ 1 ms");
  return {};
}

namespace detail {

struct LimiterCore {
  struct Shard {
    std::mutex mu;
    std::unordered_map<std::string, std::shared_ptr<UserState>> users;
    std::list<std::string> lru;  // front: most recently seen
    std::vector<std::shared_ptr<UserState>> dirty;
  };
  struct Classes {
    std::vector<ClassLimits> list;
    const ClassLimits* find(std::string_view name) const {
      for (const ClassLimits& c : list)
        if (c.name == name) return &c;
      return nullptr;
    }
  };

  LimiterOptions options;
  const Clock& clock;
  std::shared_ptr<SharedCounters> shared;
  std::atomic<std::shared_ptr<const Classes>> classes;
  std::array<Shard, kShards> shards;
  std::atomic<bool> shared_up{false};
  SteadyTime next_probe{};  // while memcached is down, retried at most once a second
  SteadyTime next_offender_log{};
  std::mutex maintain_mu;
  std::uint64_t gauge_id = 0;
  // Background thread.
  std::mutex stop_mu;
  std::condition_variable stop_cv;
  bool stopping = false;
  std::thread thread;

  LimiterCore(LimiterOptions o, const Clock& c, std::shared_ptr<SharedCounters> s)
      : options(std::move(o)), clock(c), shared(std::move(s)) {
    classes.store(std::make_shared<const Classes>(Classes{options.classes}));
    shared_up.store(shared != nullptr);
  }

  std::shared_ptr<UserState> find_or_add(Shard& shard, const std::string& key);
  std::optional<Refusal> check(UserState& s, const ClassLimits& c);
  std::optional<Refusal> check_shared(UserState& s, const ClassLimits& c, WallTime wall);
  void take(UserState& s, const ClassLimits& c);
  void push_shared();
  bool push_one(UserState& s, std::unique_lock<std::mutex>& lock);
  void log_offenders();
  void release(UserState& s);
  void charge(UserState& s, double cpu_ms);
  void maintain();
  void mark_dirty(Shard& shard, const std::shared_ptr<UserState>& s) {
    if (s->dirty) return;
    s->dirty = true;
    shard.dirty.push_back(s);
  }
};

std::shared_ptr<UserState> LimiterCore::find_or_add(Shard& shard, const std::string& key) {
  if (auto it = shard.users.find(key); it != shard.users.end()) {
    shard.lru.splice(shard.lru.begin(), shard.lru, it->second->lru);
    return it->second;
  }
  if (shard.users.size() >= options.max_users / kShards) {
    // Evict the least recently seen caller that has nothing in flight.
    auto victim = shard.lru.end();
    int looked = 0;
    for (auto it = shard.lru.end(); it != shard.lru.begin() && looked < kEvictionScan; ++looked) {
      --it;
      if (shard.users.at(*it)->in_flight == 0) {
        victim = it;
        break;
      }
    }
    if (victim == shard.lru.end()) return nullptr;
    shard.users.erase(*victim);
    shard.lru.erase(victim);
  }
  auto s = std::make_shared<UserState>();
  s->key = key;
  s->shard = static_cast<std::size_t>(&shard - shards.data());
  shard.lru.push_front(key);
  s->lru = shard.lru.begin();
  shard.users.emplace(key, s);
  return s;
}

std::optional<Refusal> LimiterCore::check(UserState& s, const ClassLimits& c) {
  const SteadyTime now = clock.steady();
  const WallTime wall = clock.wall();
  Refusal r;
  r.class_name = c.name;
  if (c.concurrency > 0 && s.in_flight >= c.concurrency) {
    r.reason = Reason::kConcurrency;
    r.limit = c.concurrency;
    r.retry_after = Ms(1000);  // unknown: when one of the caller's calls ends
    r.resets_at = wall + r.retry_after;
    return r;
  }
  const long long window = window_index(wall, options.cpu_window);
  if (s.cpu_window != window) {
    s.cpu_window = window;
    s.cpu_used_ms = 0;
  }
  if (c.cpu_ms > 0 && s.cpu_used_ms >= c.cpu_ms) {
    r.reason = Reason::kCpu;
    r.limit = c.cpu_ms;
    r.resets_at = window_end(window, options.cpu_window);
    r.retry_after = until(wall, r.resets_at);
    return r;
  }
  if (c.rate > 0) {
    const double burst = burst_of(c);
    if (s.tokens < 0) {
      s.tokens = burst;
    } else {
      const double elapsed = std::chrono::duration<double>(now - s.refilled).count();
      s.tokens = std::min(burst, s.tokens + std::max(0.0, elapsed) * c.rate);
    }
    s.refilled = now;
    if (s.tokens < 1) {
      r.reason = Reason::kRate;
      r.limit = c.rate;
      r.retry_after = std::max(
          Ms(1), std::chrono::ceil<Ms>(std::chrono::duration<double>((1 - s.tokens) / c.rate)));
      r.resets_at = wall + r.retry_after;
      return r;
    }
  }
  if (shared && shared_up.load(std::memory_order_relaxed)) return check_shared(s, c, wall);
  return std::nullopt;
}

std::optional<Refusal> LimiterCore::check_shared(UserState& s, const ClassLimits& c,
                                                 WallTime wall) {
  Refusal r;
  r.class_name = c.name;
  r.shared = true;
  const long long cpu_window = window_index(wall, options.cpu_window);
  if (s.shared_cpu_window != cpu_window) {
    s.shared_cpu_window = cpu_window;
    s.cpu_global_ms = 0;
    s.cpu_pending_ms = 0;
  }
  if (c.cpu_ms > 0 && static_cast<double>(s.cpu_global_ms) + s.cpu_pending_ms >= c.cpu_ms) {
    r.reason = Reason::kCpu;
    r.limit = c.cpu_ms;
    r.resets_at = window_end(cpu_window, options.cpu_window);
    r.retry_after = until(wall, r.resets_at);
    return r;
  }
  const long long rate_window = window_index(wall, options.shared_rate_window);
  if (s.rate_window != rate_window) {
    s.rate_window = rate_window;
    s.rate_global = 0;
    s.rate_pending = 0;
  }
  const double per_window =
      c.rate * std::chrono::duration<double>(options.shared_rate_window).count() + burst_of(c);
  if (c.rate > 0 && static_cast<double>(s.rate_global + s.rate_pending) + 1 > per_window) {
    r.reason = Reason::kRate;
    r.limit = c.rate;
    r.resets_at = window_end(rate_window, options.shared_rate_window);
    r.retry_after = until(wall, r.resets_at);
    return r;
  }
  return std::nullopt;
}

void LimiterCore::take(UserState& s, const ClassLimits& c) {
  if (c.rate > 0) s.tokens -= 1;
  ++s.in_flight;
  if (shared) {
    const long long rate_window = window_index(clock.wall(), options.shared_rate_window);
    if (s.rate_window != rate_window) {
      s.rate_window = rate_window;
      s.rate_global = 0;
      s.rate_pending = 0;
    }
    ++s.rate_pending;
  }
}

}  // namespace detail

using detail::LimiterCore;

Limiter::Limiter(LimiterOptions options, const Clock& clock, std::shared_ptr<SharedCounters> shared)
    : impl_(std::make_shared<LimiterCore>(std::move(options), clock, std::move(shared))) {
  LimiterCore* impl = impl_.get();
  impl_->gauge_id = detail::add_gauge_source([this] {
    const LimiterStats s = stats();
    detail::GaugeValues v;
    v.tracked_users = static_cast<double>(s.tracked_users);
    v.limited_users = static_cast<double>(s.limited_users);
    v.shared_up = s.shared_up ? 1 : 0;
    return v;
  });
  if (impl->options.background_thread) {
    impl->thread = std::thread([this, impl] {
      obs::name_this_thread("wf-limits-sync");
      std::unique_lock lock(impl->stop_mu);
      while (!impl->stopping) {
        impl->stop_cv.wait_for(lock, impl->options.sync_interval);
        if (impl->stopping) break;
        lock.unlock();
        impl->maintain();
        lock.lock();
      }
    });
  }
}

Limiter::~Limiter() {
  detail::remove_gauge_source(impl_->gauge_id);
  {
    std::lock_guard lock(impl_->stop_mu);
    impl_->stopping = true;
  }
  impl_->stop_cv.notify_all();
  if (impl_->thread.joinable()) impl_->thread.join();
}

std::expected<Permit, Refusal> Limiter::acquire(const Identity& who) {
  const auto classes = impl_->classes.load();
  const ClassLimits* c = classes->find(who.class_name);
  static const ClassLimits kUnlimited;
  if (c == nullptr) {
    // validate() makes every class the resolver names exist; a class removed at run time ends
    // up here. Serve it without limits rather than refuse everyone in it.
    obs::count_bug("limits", "caller class without limits: " + who.class_name);
    c = &kUnlimited;
  }
  const std::string key = c->pooled ? "class:" + c->name : who.key;
  LimiterCore::Shard& shard = impl_->shards[fnv1a(key) % kShards];
  std::lock_guard lock(shard.mu);
  std::shared_ptr<UserState> s = impl_->find_or_add(shard, key);
  if (!s) {
    Refusal r{Reason::kTooManyUsers, c->name, static_cast<double>(impl_->options.max_users),
              Ms(1000), impl_->clock.wall() + Ms(1000)};
    detail::count_refusal(r.reason, r.class_name);
    return std::unexpected(r);
  }
  s->class_name = c->name;
  if (auto refusal = impl_->check(*s, *c)) {
    const SteadyTime now = impl_->clock.steady();
    refusal->repeated = s->refused_ever && now - s->last_refused < std::chrono::seconds(1);
    s->last_refused = now;
    s->refused_ever = true;
    ++s->refusals_since_log;
    s->last_reason = refusal->reason;
    detail::count_refusal(refusal->reason, c->name);
    return std::unexpected(*refusal);
  }
  impl_->take(*s, *c);
  if (impl_->shared) impl_->mark_dirty(shard, s);
  detail::count_admitted(c->name);
  return Permit(std::move(s), impl_);
}

void LimiterCore::release(UserState& s) {
  std::lock_guard lock(shards[s.shard].mu);
  if (s.in_flight > 0) --s.in_flight;
}

void LimiterCore::charge(UserState& s, double cpu_ms) {
  if (!(cpu_ms > 0) || !std::isfinite(cpu_ms)) return;
  Shard& shard = shards[s.shard];
  const WallTime wall = clock.wall();
  std::string class_name;
  {
    std::lock_guard lock(shard.mu);
    const long long window = window_index(wall, options.cpu_window);
    if (s.cpu_window != window) {
      s.cpu_window = window;
      s.cpu_used_ms = 0;
    }
    s.cpu_used_ms += cpu_ms;
    s.cost_ms = 0.8 * s.cost_ms + 0.2 * cpu_ms;
    if (shared) {
      if (s.shared_cpu_window != window) {
        s.shared_cpu_window = window;
        s.cpu_global_ms = 0;
        s.cpu_pending_ms = 0;
      }
      s.cpu_pending_ms += cpu_ms;
      if (auto it = shard.users.find(s.key); it != shard.users.end()) mark_dirty(shard, it->second);
    }
    class_name = s.class_name;
  }
  detail::count_cpu(class_name, cpu_ms);
}

std::expected<void, std::string> Limiter::reconfigure(std::vector<ClassLimits> classes) {
  LimiterOptions o = impl_->options;
  o.classes = classes;
  if (auto ok = validate(o); !ok) return ok;
  impl_->classes.store(
      std::make_shared<const LimiterCore::Classes>(LimiterCore::Classes{std::move(classes)}));
  return {};
}

std::vector<ClassLimits> Limiter::classes() const {
  return impl_->classes.load()->list;
}

LimiterStats Limiter::stats() const {
  LimiterStats out;
  const SteadyTime now = impl_->clock.steady();
  for (LimiterCore::Shard& shard : impl_->shards) {
    std::lock_guard lock(shard.mu);
    out.tracked_users += shard.users.size();
    for (const auto& [key, s] : shard.users) {
      if (s->refused_ever && now - s->last_refused < kLimitedHorizon) ++out.limited_users;
    }
  }
  out.shared_configured = impl_->shared != nullptr;
  out.shared_up = out.shared_configured && impl_->shared_up.load();
  return out;
}

void Limiter::maintain() {
  impl_->maintain();
}

void LimiterCore::maintain() {
  std::lock_guard lock(maintain_mu);
  if (shared) push_shared();
  const SteadyTime now = clock.steady();
  if (now >= next_offender_log) {
    next_offender_log = now + options.offender_log_interval;
    log_offenders();
  }
}

void LimiterCore::push_shared() {
  const SteadyTime now = clock.steady();
  const bool was_up = shared_up.load();
  if (!was_up && now < next_probe) {
    // Per-replica limits meanwhile: what was used while memcached was away is not pushed.
    for (Shard& shard : shards) {
      std::lock_guard lock(shard.mu);
      for (auto& s : shard.dirty) s->dirty = false;
      shard.dirty.clear();
    }
    return;
  }
  bool ok = true;
  bool pushed = false;
  for (Shard& shard : shards) {
    std::vector<std::shared_ptr<UserState>> batch;
    std::unique_lock lock(shard.mu);
    batch.swap(shard.dirty);
    for (auto& s : batch) s->dirty = false;
    for (auto& s : batch) {
      if (!ok) break;
      ok = push_one(*s, lock);
      pushed = true;
    }
  }
  if (ok && !pushed && !was_up) {
    ok = shared->add(options.shared_prefix + "probe", 0, std::chrono::seconds(60)).has_value();
  }
  if (!ok) {
    detail::count_shared_error();
    next_probe = now + std::chrono::seconds(1);
    if (was_up) {
      shared_up.store(false);
      detail::count_shared_fallback();
      obs::log_event(spdlog::level::warn,
                     "shared limit counters unreachable: limits are per replica until they answer",
                     {obs::field_str("wf.limits.shared", shared->describe())});
    }
  } else if (!was_up) {
    shared_up.store(true);
    obs::log_event(spdlog::level::info,
                   "shared limit counters answer again: limits hold across "
                   "replicas",
                   {obs::field_str("wf.limits.shared", shared->describe())});
  }
}

// Pushes one caller's new usage; `lock` holds its shard's mutex and is released during I/O.
bool LimiterCore::push_one(UserState& s, std::unique_lock<std::mutex>& lock) {
  const std::string id = fmt::format("{:016x}", fnv1a(s.key));
  const long long rate_window = s.rate_window;
  const std::uint64_t calls = s.rate_pending;
  const long long cpu_window = s.shared_cpu_window;
  const auto cpu = static_cast<std::uint64_t>(std::floor(s.cpu_pending_ms));
  lock.unlock();
  std::expected<std::uint64_t, std::string> rate_total = 0, cpu_total = 0;
  if (calls > 0 && rate_window >= 0) {
    rate_total = shared->add(fmt::format("{}r:{}:{}", options.shared_prefix, id, rate_window),
                             calls, expiry_for(options.shared_rate_window));
  }
  if (rate_total && cpu > 0 && cpu_window >= 0) {
    cpu_total = shared->add(fmt::format("{}c:{}:{}", options.shared_prefix, id, cpu_window), cpu,
                            expiry_for(options.cpu_window));
  }
  lock.lock();
  if (rate_total && calls > 0 && s.rate_window == rate_window) {
    s.rate_pending -= std::min(s.rate_pending, calls);
    s.rate_global = std::max(s.rate_global, *rate_total);
  }
  if (cpu_total && cpu > 0 && s.shared_cpu_window == cpu_window) {
    s.cpu_pending_ms = std::max(0.0, s.cpu_pending_ms - static_cast<double>(cpu));
    s.cpu_global_ms = std::max(s.cpu_global_ms, *cpu_total);
  }
  return rate_total.has_value() && cpu_total.has_value();
}

// One log line with the callers refused most since the last one: offenders by name stay out of
// the metrics (one series per user would be unbounded).
void LimiterCore::log_offenders() {
  struct Offender {
    std::string key;
    std::string class_name;
    std::uint32_t refusals;
    Reason reason;
  };
  std::vector<Offender> top;
  std::size_t users = 0;
  for (Shard& shard : shards) {
    std::lock_guard lock(shard.mu);
    for (auto& [key, s] : shard.users) {
      if (s->refusals_since_log == 0) continue;
      ++users;
      top.push_back({key, s->class_name, s->refusals_since_log, s->last_reason});
      s->refusals_since_log = 0;
      if (top.size() > 5) {
        std::sort(top.begin(), top.end(),
                  [](const Offender& a, const Offender& b) { return a.refusals > b.refusals; });
        top.pop_back();
      }
    }
  }
  if (top.empty()) return;
  std::sort(top.begin(), top.end(),
            [](const Offender& a, const Offender& b) { return a.refusals > b.refusals; });
  std::string list;
  for (const Offender& o : top) {
    list += fmt::format("{}{} ({}, {}): {}", list.empty() ? "" : "; ", o.key, o.class_name,
                        reason_name(o.reason), o.refusals);
  }
  obs::log_event(spdlog::level::info, "callers refused by per-user limits",
                 {obs::field_int("wf.limits.refused_users", static_cast<long long>(users)),
                  obs::field_str("wf.limits.top_offenders", list)});
}

Permit::Permit(std::shared_ptr<UserState> state, std::shared_ptr<LimiterCore> core)
    : state_(std::move(state)), core_(std::move(core)) {}

Permit::Permit(Permit&& other) noexcept
    : state_(std::move(other.state_)), core_(std::move(other.core_)), charged_(other.charged_) {}

Permit& Permit::operator=(Permit&& other) noexcept {
  if (this != &other) {
    release();
    state_ = std::move(other.state_);
    core_ = std::move(other.core_);
    charged_ = other.charged_;
  }
  return *this;
}

Permit::~Permit() {
  release();
}

void Permit::release() {
  if (state_ && core_) core_->release(*state_);
  state_.reset();
  core_.reset();
}

void Permit::charge_cpu(double cpu_ms) {
  if (!state_ || !core_ || charged_) return;
  charged_ = true;
  core_->charge(*state_, cpu_ms);
}

double Permit::cost_estimate() const {
  if (!state_ || !core_) return 1;
  std::lock_guard lock(core_->shards[state_->shard].mu);
  return std::max(0.01, state_->cost_ms);
}

}  // namespace wf::limits
