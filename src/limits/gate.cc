#include "wf/limits/gate.h"

#include <fmt/format.h>

#include <charconv>
#include <cstring>
#include <set>

#include "wf/obs/log.h"

namespace wf::limits {

std::expected<void, std::string> validate(const GateOptions& o) {
  if (auto ok = validate(o.limiter); !ok) return ok;
  if (auto ok = validate(o.admission); !ok) return ok;
  std::set<std::string, std::less<>> named;
  for (const ClassLimits& c : o.limiter.classes) named.insert(c.name);
  std::vector<std::string> needed = {o.identity.user_class, o.identity.anonymous_class};
  for (const ClassRule& r : o.identity.rules) needed.push_back(r.class_name);
  for (const std::string& n : needed) {
    if (!named.contains(n)) {
      return std::unexpected(
          fmt::format("limits class '{}' is used but has no limits: add it to limits_classes", n));
    }
  }
  return {};
}

void Admitted::finish(double cpu_ms) {
  permit.charge_cpu(cpu_ms);
  permit.release();
  slot.release();
}

std::expected<std::unique_ptr<Gate>, std::string> Gate::create(
    GateOptions options, const Clock& clock, std::shared_ptr<SharedCounters> shared) {
  if (auto ok = validate(options); !ok) return std::unexpected(ok.error());
  if (!shared && options.enabled && !options.memcached.servers.empty()) {
    auto counters = make_memcached_counters(options.memcached);
    if (!counters) return std::unexpected(counters.error());
    shared = std::move(*counters);
  }
  std::unique_ptr<Gate> gate(new Gate(clock));
  gate->enabled_ = options.enabled;
  gate->resolver_ = std::make_unique<IdentityResolver>(options.identity);
  if (!options.enabled) {
    options.admission.max_concurrency = 0;
    options.admission.sweeper_thread = false;
    options.limiter.background_thread = false;
    shared = nullptr;
  }
  gate->limiter_ = std::make_unique<Limiter>(options.limiter, clock, shared);
  gate->admission_ = std::make_unique<Admission>(options.admission, clock);
  if (shared) gate->limiter_->maintain();  // learn at start-up whether memcached answers
  return gate;
}

Gate::~Gate() {
  // Queued work is refused before the limiter (which its permits point to) goes away.
  if (admission_) admission_->drain();
  admission_.reset();
}

Identity Gate::identify(const CallerInfo& caller) const {
  return resolver_->resolve(caller);
}

std::uint64_t Gate::admit(const Identity& who, SteadyTime deadline,
                          std::function<void(Admitted)> start,
                          std::function<void(const Refusal&)> refuse) {
  if (!enabled_) {
    start(Admitted{});
    return 0;
  }
  auto permit = limiter_->acquire(who);
  if (!permit) {
    refuse(permit.error());
    return 0;
  }
  Work work;
  work.user_key = who.key;
  work.class_name = who.class_name;
  work.cost = permit->cost_estimate();
  work.deadline = deadline;
  // The permit travels with the work: a refused or cancelled call gives its place back.
  auto held = std::make_shared<Permit>(std::move(*permit));
  work.start = [held, start = std::move(start)](Slot slot) mutable {
    start(Admitted{std::move(*held), std::move(slot)});
  };
  work.refuse = [held, refuse = std::move(refuse)](const Refusal& r) {
    held->release();
    refuse(r);
  };
  return admission_->submit(std::move(work));
}

std::expected<Admitted, Refusal> Gate::admit_now(const Identity& who) {
  if (!enabled_) return Admitted{};
  auto permit = limiter_->acquire(who);
  if (!permit) return std::unexpected(permit.error());
  auto slot = admission_->try_start(who.class_name);
  if (!slot) {
    Refusal r;
    r.reason = slot.error();
    r.class_name = who.class_name;
    r.limit = admission_->stats().max_concurrency;
    r.retry_after = std::chrono::milliseconds(1000);
    r.resets_at = clock_->wall() + r.retry_after;
    return std::unexpected(r);
  }
  return Admitted{std::move(*permit), std::move(*slot)};
}

bool Gate::cancel(std::uint64_t ticket) {
  return ticket != 0 && admission_->cancel(ticket);
}

void Gate::drain() {
  admission_->drain();
}

nlohmann::json Gate::describe() const {
  nlohmann::json classes = nlohmann::json::array();
  for (const ClassLimits& c : limiter_->classes()) {
    classes.push_back({{"name", c.name},
                       {"rate", c.rate},
                       {"burst", c.burst},
                       {"concurrency", c.concurrency},
                       {"cpu_ms", c.cpu_ms},
                       {"pooled", c.pooled}});
  }
  const AdmissionStats a = admission_->stats();
  const LimiterStats l = limiter_->stats();
  return {{"enabled", enabled_},
          {"classes", classes},
          {"admission",
           {{"max_concurrency", a.ceiling},
            {"limit", a.adaptive ? "gradient" : "fixed"},
            {"current_limit", a.max_concurrency},
            {"max_in_flight", a.max_in_flight},
            {"call_ms", a.call_s * 1000},
            {"baseline_ms", a.baseline_rtt_s * 1000},
            {"recent_ms", a.recent_rtt_s * 1000},
            {"downstream_waiting", a.downstream_waiting},
            {"needed_in_flight", a.needed_in_flight},
            {"refused_on_arrival", a.refused_on_arrival},
            {"refused_after_waiting", a.refused_after_wait}}},
          {"state",
           {{"running", a.running},
            {"parked", a.parked},
            {"queued", a.queued},
            {"tracked_users", l.tracked_users},
            {"limited_users", l.limited_users},
            {"shared_configured", l.shared_configured},
            {"shared_up", l.shared_up}}}};
}

namespace {

// One class's limits from JSON, over `c`'s current values: only the keys given change.
std::expected<void, std::string> apply_class(const nlohmann::json& j, ClassLimits& c) {
  static const std::set<std::string, std::less<>> kKeys = {"name",        "rate",   "burst",
                                                           "concurrency", "cpu_ms", "pooled"};
  for (const auto& [key, value] : j.items()) {
    if (!kKeys.contains(key)) {
      return std::unexpected(fmt::format(
          "unknown key '{}' in class '{}': use name, rate, burst, concurrency, cpu_ms, pooled", key,
          c.name));
    }
    const bool number = value.is_number() && value.get<double>() >= 0;
    if (key == "pooled") {
      if (!value.is_boolean()) return std::unexpected("'pooled' must be true or false");
      c.pooled = value.get<bool>();
    } else if (key != "name" && !number) {
      return std::unexpected(
          fmt::format("'{}' of class '{}' must be a number ≥ 0 (0: no limit)", key, c.name));
    } else if (key == "rate") {
      c.rate = value.get<double>();
    } else if (key == "burst") {
      c.burst = value.get<double>();
    } else if (key == "concurrency") {
      c.concurrency = static_cast<int>(value.get<double>());
    } else if (key == "cpu_ms") {
      c.cpu_ms = value.get<double>();
    }
  }
  return {};
}

}  // namespace

std::expected<void, std::string> Gate::apply(const nlohmann::json& change) {
  if (!change.is_object()) {
    return std::unexpected(
        R"(send a JSON object: {"classes": [{"name": "user", "concurrency": 4}], "admission": {"max_concurrency": 32}})");
  }
  std::vector<ClassLimits> classes = limiter_->classes();
  int max_concurrency = admission_->stats().ceiling;
  for (const auto& [key, value] : change.items()) {
    if (key == "classes" && value.is_array()) {
      for (const auto& jc : value) {
        if (!jc.is_object() || !jc.contains("name") || !jc["name"].is_string())
          return std::unexpected("each entry of 'classes' needs a \"name\" of a known class");
        const std::string name = jc["name"].get<std::string>();
        auto it = std::find_if(classes.begin(), classes.end(),
                               [&](const ClassLimits& c) { return c.name == name; });
        if (it == classes.end()) {
          return std::unexpected(fmt::format(
              "no class '{}': classes are declared in the configuration (limits_classes)", name));
        }
        if (auto ok = apply_class(jc, *it); !ok) return ok;
      }
    } else if (key == "admission" && value.is_object() && value.contains("max_concurrency") &&
               value.size() == 1 && value["max_concurrency"].is_number_unsigned()) {
      max_concurrency = value["max_concurrency"].get<int>();
    } else {
      return std::unexpected(
          fmt::format("cannot change '{}': send \"classes\" (a list) and/or \"admission\": "
                      "{{\"max_concurrency\": N}}",
                      key));
    }
  }
  if (auto ok = limiter_->reconfigure(classes); !ok) return ok;
  if (enabled_) admission_->set_max_concurrency(max_concurrency);
  obs::log_event(spdlog::level::info, "limits changed at run time",
                 {obs::field_str("wf.limits.change", change.dump())});
  return {};
}

namespace {
// Where `key` next occurs in `text` from `pos` (npos: nowhere). memmem, not string_view::find:
// an answer has a '"' every few bytes, and find() compares the key at each of them.
std::size_t find_key(std::string_view text, std::string_view key, std::size_t pos) {
  if (pos > text.size()) return std::string_view::npos;
  const void* at = memmem(text.data() + pos, text.size() - pos, key.data(), key.size());
  return at == nullptr ? std::string_view::npos
                       : static_cast<std::size_t>(static_cast<const char*>(at) - text.data());
}
}  // namespace

namespace {
// The milliseconds of the first "N ms" string value after `pos` (within a few keys), or 0.
double ms_value_after(std::string_view text, std::size_t pos) {
  const std::string_view window = text.substr(pos, 160);
  for (std::size_t q = window.find('"'); q != std::string_view::npos; q = window.find('"', q + 1)) {
    if (q + 1 < window.size() && window[q + 1] >= '0' && window[q + 1] <= '9') {
      double v = 0;
      const auto [end, ec] =
          std::from_chars(window.data() + q + 1, window.data() + window.size(), v);
      const std::string_view unit(end, window.data() + window.size() - end);
      return ec == std::errc() && unit.starts_with(" ms") && v >= 0 && v < 1e9 ? v : 0;
    }
  }
  return 0;
}

// The sum of the values of every occurrence of `key`.
double sum_of(std::string_view text, std::string_view key) {
  double total = 0;
  std::size_t pos = 0;
  for (int guard = 0; guard < 10000; ++guard) {
    pos = find_key(text, key, pos);
    if (pos == std::string_view::npos) break;
    pos += key.size();
    total += ms_value_after(text, pos);
  }
  return total;
}
}  // namespace

double reported_cpu_ms(std::string_view text) {
  const double orchestration = sum_of(text, "\"orchestrationCpuUsage\"");
  // An answer served from the result cache carries the metadata of the run that computed it: its
  // executionCpuUsage was spent then, not now, so only this request's orchestration is charged.
  if (find_key(text, "\"resultCache\"", 0) != std::string_view::npos) return orchestration;
  // The orchestrator's total of the evaluators' CPU, code nested in compositions included; an
  // answer without it (the evaluator's own, or no code ran) reports executionCpuUsage at most.
  constexpr std::string_view kTotal = "\"orchestrationEvaluatorCpuUsage\"";
  if (const std::size_t at = find_key(text, kTotal, 0); at != std::string_view::npos) {
    return orchestration + ms_value_after(text, at + kTotal.size());
  }
  return orchestration + sum_of(text, "\"executionCpuUsage\"");
}

}  // namespace wf::limits
