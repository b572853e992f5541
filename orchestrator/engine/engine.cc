// Engine: the request pipeline around the Interpreter (orchestrator-api.md §2-§4, §8).
#include "orchestrator/engine/engine.h"

#include <algorithm>
#include <exception>
#include <utility>

#include "orchestrator/engine/call_cost.h"
#include "orchestrator/engine/definitions.h"
#include "orchestrator/engine/engine_metrics.h"
#include "orchestrator/engine/fiber.h"
#include "orchestrator/engine/interpreter.h"
#include "orchestrator/engine/object_cache.h"
#include "orchestrator/engine/resolver.h"
#include "orchestrator/engine/response.h"
#include "orchestrator/engine/result_cache.h"
#include "orchestrator/engine/run_metadata.h"
#include "wf/obs/log.h"
#include "wf/obs/metrics.h"
#include "wf/zobject/zobject.h"

namespace wf::orchestrator {

namespace {

namespace zo = wf::zobject;
using engine_detail::CachedResult;
using engine_detail::Definitions;
using engine_detail::FiberLogContext;
using engine_detail::FiberPool;
using engine_detail::Interpreter;
using engine_detail::ObjectCache;
using engine_detail::ParsedCall;
using engine_detail::Resolver;
using engine_detail::ResultCache;

bool truthy(const nlohmann::json& v) {
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_number()) return v != 0;
  if (v.is_string()) return !v.get_ref<const std::string&>().empty();
  return v.is_object() || v.is_array();
}

// orchestrator-api.md §4: normal form, no metadata but the error.
// A request as the engine takes it: its JSON tree, or its nodes read from its text.
struct Input {
  const nlohmann::json* request = nullptr;
  const ParsedCall* call = nullptr;
  // The JSON request, for the rare paths that quote it (an internal error).
  nlohmann::json json() const {
    return call != nullptr ? engine_detail::request_json(*call) : *request;
  }
};

nlohmann::json timeout_response() {
  nlohmann::json err = {{"Z1K1", zo::z9("Z5")},
                        {"Z5K1", zo::z9("Z558")},
                        {"Z5K2", zo::z6("Function call timed out")}};
  return zo::error_envelope(err);
}

EngineOptions with_stack(EngineOptions o) {
  if (o.stack_bytes == 0) o.stack_bytes = stack_bytes_for(o.max_call_depth);
  return o;
}

// Views of `ctx`'s ids: for a fiber that ends before `ctx` does (run_here).
FiberLogContext log_context(const CallContext& ctx) {
  return FiberLogContext{ctx.trace_id, ctx.span_id, ctx.request_id, nullptr, ctx.io_wait};
}

// The same, keeping `ctx` (shared with the request's work) for as long as the fiber, or its
// retired wait, needs the ids: one copy of them per call.
FiberLogContext log_context(std::shared_ptr<const CallContext> ctx) {
  FiberLogContext log = log_context(*ctx);
  log.owner = std::move(ctx);
  return log;
}

// Counts and logs an evaluation stopped before its answer (the log line carries the trace id).
void count_cancelled(const CallContext& ctx) {
  // On a replay that stops here its retired run had not got so far: this line is new.
  engine_detail::end_replay();
  const auto reason = ctx.cancel && ctx.cancel->cancelled() ? ctx.cancel->reason()
                                                            : Cancellation::Reason::kDeadline;
  const std::string why(http::to_string(reason));
  engine_detail::metrics().cancelled.at(static_cast<std::size_t>(reason))->Increment();
  obs::log_event(spdlog::level::info, "evaluation stopped before its answer: " + why,
                 {obs::field_str("event.action", "evaluation-cancelled"),
                  obs::field_str("event.reason", why)});
}

// A body read by EngineImpl::read_body: its nodes, until an evaluation takes them.
struct ReadCall final : ReadBody {
  std::string_view body;
  int max_json_depth = 0;
  std::optional<ParsedCall> call;  // null once an evaluation took it
};

class EngineImpl final : public Engine {
 public:
  EngineImpl(const EngineOptions& options, std::shared_ptr<ObjectFetcher> fetcher,
             std::shared_ptr<CodeRunner> runner, std::shared_ptr<SharedResultStore> shared,
             std::shared_ptr<EntitySource> wikidata)
      : options_(with_stack(options)),
        fetcher_(std::move(fetcher)),
        wikidata_(std::move(wikidata)),
        runner_(std::move(runner)),
        shared_(options.result_cache_bytes > 0 ? std::move(shared) : nullptr),
        defs_(Definitions::instance()),
        cache_(options.cache_ttl, options.cache_bytes),
        converters_(options.cache_ttl, 4096),
        results_(options.result_cache_bytes),
        costs_(options.function_metrics_top_n,
               std::chrono::duration<double, std::micro>(options.slow_call).count()),
        fibers_({options_.cpu_threads, options_.stack_bytes, 32, options_.event_loop, 8,
                 options_.retire_parked_after}) {}

  bool serves_locally(std::string_view zid) const override {
    return defs_.served_json(zid) != nullptr;
  }

  void spawn(std::shared_ptr<const CallContext> ctx, std::function<void()> work,
             bool replayable = false) override {
    fibers_.spawn(log_context(std::move(ctx)), counted(std::move(work)), replayable);
  }

  void spawn_here(std::shared_ptr<const CallContext> ctx, std::function<void()> work,
                  bool replayable = false) override {
    fibers_.start_here(log_context(std::move(ctx)), counted(std::move(work)), replayable);
  }

  nlohmann::json evaluate(const nlohmann::json& request, const CallContext& ctx) override {
    nlohmann::json out;
    on_fiber(ctx, [&] { out = evaluate_here(request, ctx); });
    return out;
  }

  std::string evaluate_text(const nlohmann::json& request, const CallContext& ctx,
                            bool* has_error) override {
    return evaluate_text(request, {}, ctx, has_error);
  }

  std::string evaluate_text(const nlohmann::json& request, std::string_view body,
                            const CallContext& ctx, bool* has_error) override {
    std::string out;
    on_fiber(ctx, [&] { out = evaluate_text_here(Input{&request}, body, ctx, has_error); });
    return out;
  }

  std::optional<std::string> evaluate_body(std::string_view body, int max_json_depth,
                                           const CallContext& ctx, bool* has_error) override {
    std::optional<std::string> out;
    on_fiber(ctx, [&] {
      auto call = read_call(body, max_json_depth);
      if (call) out = evaluate_text_here(Input{nullptr, &*call}, body, ctx, has_error);
    });
    return out;
  }

  std::shared_ptr<ReadBody> read_body(std::string_view body, int max_json_depth) override {
    auto read = std::make_shared<ReadCall>();
    read->reader = this;
    read->body = body;
    read->max_json_depth = max_json_depth;
    read->call = read_call(body, max_json_depth);
    if (read->call) {
      const engine_detail::BodyLiterals& l = read->call->literals;
      read->usual = true;
      read->calls = l.calls;
      read->not_local = l.not_local;
      read->unusual = l.unusual;
    }
    return read;
  }

  std::optional<std::string> evaluate_read(std::shared_ptr<ReadBody> read, const CallContext& ctx,
                                           bool* has_error) override {
    // Only this engine's read_body() sets `reader` to it, and it makes ReadCalls.
    if (read == nullptr || read->reader != this || !read->usual) return std::nullopt;
    auto* mine = static_cast<ReadCall*>(read.get());
    const std::string_view body = mine->body;
    const int max_json_depth = mine->max_json_depth;
    std::optional<ParsedCall> call = std::exchange(mine->call, std::nullopt);
    read.reset();  // the caller's reference: gone before the evaluation may park
    if (!call) return evaluate_body(body, max_json_depth, ctx, has_error);  // taken before
    std::optional<std::string> out;
    on_fiber(ctx, [&] { out = evaluate_text_here(Input{nullptr, &*call}, body, ctx, has_error); });
    return out;
  }

  std::optional<std::string> answer_cached(std::string_view body, const CallContext& ctx,
                                           bool* has_error) override {
    if (!results_.enabled() || body.empty() || body.size() > ResultCache::kMaxBodyBytes) {
      return std::nullopt;
    }
    auto hit = results_.find_body(body);
    if (!hit || hit->head.empty()) return std::nullopt;
    // After the lookup: most requests miss (every call that opts out of the cache), and the
    // clocks of run_start() cost them three system-clock reads for nothing.
    const auto start = engine_detail::run_start();
    if (Clock::now() >= ctx.deadline) return std::nullopt;
    // The resolver's chain, without its I/O: a used object is the same while the object cache
    // holds it with the same identity (the cache comes first in the chain; built-ins, fixed for a
    // build, are not in `used`). Anything else is left to the full check.
    for (const auto& [zid, hash] : hit->used) {
      std::uint64_t now = 0;
      if (hash == 0 || !cache_.get(zid, &now) || now != hash) return std::nullopt;
    }
    engine_detail::metrics().result_hits_local.Increment();
    if (has_error != nullptr) *has_error = false;  // only answers without errors are stored
    // The call's cost, as a hit of the general path reports it: all of it is the cache's.
    engine_detail::CallCost cost;
    cost.function = hit->function;
    cost.cache_us = cost.total_us =
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start.mono)
            .count();
    costs_.report(cost);
    engine_detail::TrailingMeta added = {{std::string(engine_detail::kResultCacheKey), "local"}};
    engine_detail::append_cost_metadata(cost, added);
    return engine_detail::cached_answer(hit->head, added, start);
  }

 private:
  // `work`, counted in wf_orchestrator_evaluations_in_flight while it runs.
  static std::function<void()> counted(std::function<void()> work) {
    auto& in_flight = engine_detail::metrics().in_flight;
    in_flight.Increment();
    return [work = std::move(work), &in_flight] {
      work();
      in_flight.Decrement();
    };
  }

  // Runs `f` on an evaluation fiber: the current one, or a new one on this thread.
  template <typename F>
  void on_fiber(const CallContext& ctx, F&& f) {
    if (engine_detail::on_fiber()) {
      f();
    } else {
      on_new_fiber(ctx, std::forward<F>(f));
    }
  }

  // Out of line: the fiber's log context and work are not built in on_fiber's callers' frames,
  // which stay on the stack of a call parked on the evaluator (bench/slow_calls).
  [[gnu::noinline]] void on_new_fiber(const CallContext& ctx, std::function<void()> f) {
    fibers_.run_here(log_context(ctx), std::move(f));
  }

  // The start of the evaluation: now, or on a replay (fiber.h, await_retirable), its first run's.
  static engine_detail::RunStart evaluation_start() {
    const auto now = engine_detail::run_start();
    const auto kept = engine_detail::evaluation_start({now.wall, now.mono, now.cpu_us});
    return {kept.wall, kept.mono, kept.cpu_us};
  }

  // Out of line: the reader's frames are gone before the evaluation starts (a parked call's
  // stack, bench/slow_calls).
  [[gnu::noinline]] std::optional<ParsedCall> read_call(std::string_view body,
                                                        int max_json_depth) const {
    engine_detail::RequestLimits limits;
    limits.max_json_depth = max_json_depth;
    limits.max_zobject_depth = options_.max_zobject_depth;
    return engine_detail::parse_call(body, limits);
  }

  // A retired run (fiber.h, await_staged_or_return) returns here with no answer, and ends after
  // the try block, where nothing of this frame is alive: the unwinding of the frames above does
  // not stop here.
  nlohmann::json evaluate_here(const nlohmann::json& request, const CallContext& ctx) {
    auto start = evaluation_start();
    try {
      engine_detail::Answer answer;
      engine_detail::TrailingMeta trailing;
      engine_detail::CallCost cost;
      if (run(Input{&request}, ctx, answer, trailing, cost, start.mono)) {
        return engine_detail::finish_response(std::move(answer.as_envelope()), trailing, start);
      }
      if (!engine_detail::retired_run()) return timeout_response();
    } catch (const std::exception& e) {
      if (!engine_detail::retired_run()) return internal_error(request, e.what(), start);
    } catch (...) {
      if (engine_detail::being_retired()) throw;  // fiber.h: its fiber's top ends it
      if (!engine_detail::retired_run()) return internal_error(request, "unknown failure", start);
    }
    engine_detail::end_retired_run();
  }

  std::string evaluate_text_here(const Input& in, std::string_view body, const CallContext& ctx,
                                 bool* has_error) {
    auto start = evaluation_start();
    try {
      engine_detail::Answer answer;
      engine_detail::TrailingMeta trailing;
      engine_detail::CallCost cost;
      bool with_cost = false;  // its pairs are written after `trailing` (answer_text)
      if (run(in, ctx, answer, trailing, cost, start.mono, body, &with_cost)) {
        return answer_text(answer, trailing, start, has_error, with_cost ? &cost : nullptr);
      }
      if (!engine_detail::retired_run()) {
        return engine_detail::dump_response(timeout_response(), has_error);
      }
    } catch (const std::exception& e) {
      if (!engine_detail::retired_run()) {
        return engine_detail::dump_response(internal_error(in.json(), e.what(), start), has_error);
      }
    } catch (...) {
      if (engine_detail::being_retired()) throw;  // fiber.h: its fiber's top ends it
      if (!engine_detail::retired_run()) {
        return engine_detail::dump_response(internal_error(in.json(), "unknown failure", start),
                                            has_error);
      }
    }
    engine_detail::end_retired_run();
  }

  // The answer's text, the cost breakdown's pairs (when `cost`) written after `trailing`. Out of
  // line: the pairs' texts (CostPairs) are not in evaluate_text_here's frame, which stays on a
  // parked call's stack.
  [[gnu::noinline]] static std::string answer_text(engine_detail::Answer& answer,
                                                   const engine_detail::TrailingMeta& trailing,
                                                   const engine_detail::RunStart& start,
                                                   bool* has_error,
                                                   const engine_detail::CallCost* cost) {
    if (cost == nullptr)
      return engine_detail::finish_answer_text(answer, trailing, start, has_error);
    const engine_detail::CostPairs pairs(*cost);
    return engine_detail::finish_answer_text(answer, trailing, start, has_error, pairs.pairs());
  }

  // Steps 1-6 of orchestrator-api.md §8: the normal-form Z22 in `answer` plus the metadata
  // pairs that follow its map (`trailing`, ending with the call's cost by part, `cost`); false
  // when the deadline passed (the answer is then timeout_response()). `body` (may be empty): the
  // request's JSON text, indexed to its cache entry. With `cost_kept`, the cost's pairs are not
  // appended to `trailing`: *cost_kept says whether the answer has them.
  bool run(const Input& in, const CallContext& ctx, engine_detail::Answer& answer,
           engine_detail::TrailingMeta& trailing, engine_detail::CallCost& cost,
           std::chrono::steady_clock::time_point start, std::string_view body = {},
           bool* cost_kept = nullptr) {
    bool evaluated = false;
    const bool answered = run_call(in, ctx, answer, trailing, cost, evaluated, body);
    if (engine_detail::retired_run()) return false;  // its replay reports the call
    // A replay that did not take its answer (it stopped before its code call) is over: what its
    // work does from here on, the retired run did not do.
    engine_detail::end_replay();
    if (evaluated) report_cost(cost, start, answered, answer, trailing, cost_kept);
    return answered;
  }

  // Out of line: its temporaries are not in run()'s frame, which stays on a parked call's stack.
  [[gnu::noinline]] void report_cost(engine_detail::CallCost& cost,
                                     std::chrono::steady_clock::time_point start, bool answered,
                                     const engine_detail::Answer& answer,
                                     engine_detail::TrailingMeta& trailing, bool* cost_kept) {
    cost.total_us =
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
    cost.error = !answered || answer.has_error();
    costs_.report(cost);
    if (!answered) return;
    if (cost_kept != nullptr) {
      *cost_kept = true;
    } else {
      engine_detail::append_cost_metadata(cost, trailing);
    }
  }

  // The function a request calls by reference (canonical or normal Z7K1), else "".
  [[gnu::noinline]] static std::string called_function(const nlohmann::json& zobject) {
    if (!zobject.is_object()) return {};
    auto f = zobject.find("Z7K1");
    if (f == zobject.end()) return {};
    const nlohmann::json* ref = &*f;
    if (ref->is_object() && ref->contains("Z9K1")) ref = &(*ref)["Z9K1"];
    return ref->is_string() ? ref->get<std::string>() : std::string();
  }

  // run() without the cost reports; `evaluated` says whether the request named a call.
  bool run_call(const Input& in, const CallContext& ctx, engine_detail::Answer& answer,
                engine_detail::TrailingMeta& trailing, engine_detail::CallCost& cost,
                bool& evaluated, std::string_view body) {
    if (Clock::now() >= ctx.deadline) {
      count_cancelled(ctx);
      return false;
    }
    static const nlohmann::json kNull;
    const nlohmann::json* zobject = &kNull;
    bool do_validate = false;
    bool use_results = results_.enabled();
    const ParsedCall* call = in.call;
    if (call != nullptr) {
      do_validate = call->do_validate;
      if (!call->result_cache) use_results = false;
    } else if (const nlohmann::json& request = *in.request; request.is_object()) {
      auto it = request.find("zobject");
      if (it != request.end()) zobject = &*it;
      auto v = request.find("doValidate");
      if (v != request.end()) do_validate = truthy(*v);
      // The per-request opt-out (the wiki's "run again"): {"resultCache": false}.
      auto rc = request.find("resultCache");
      if (rc != request.end() && !truthy(*rc)) use_results = false;
    }
    if (call == nullptr && zobject->is_null()) {
      answer.envelope = zo::make_envelope(nullptr, zo::empty_metadata_map());
      return true;
    }
    evaluated = true;
    cost.function = call != nullptr ? call->function : called_function(*zobject);
    Resolver resolver(defs_, cache_, options_.objects_dir, fetcher_.get(), ctx,
                      options_.max_zobject_depth);
    resolver.set_entity_source(wikidata_.get());
    // The nodes' JSON is the zobject's normal form, which call_key makes of the JSON.
    const std::string key = !use_results ? ""
                            : call != nullptr
                                ? engine_detail::call_key(call->zobject->to_json(), do_validate)
                                : engine_detail::call_key(*zobject, do_validate);
    const bool shared =
        shared_ != nullptr &&
        !(call != nullptr ? defs_.served_json(call->function) != nullptr : calls_builtin(*zobject));
    // A replay (fiber.h, await_retirable) missed the cache on its first run, which the fiber
    // path does not look at again either.
    if (!key.empty() && !engine_detail::replaying()) {
      engine_detail::Stopwatch watch(cost.cache_us);
      if (serve_cached(key, shared, resolver, answer.envelope, trailing, cost.function)) {
        results_.alias(body, key);
        return true;
      }
    }
    Interpreter interpreter(resolver, runner_.get(), ctx, options_, &converters_);
    const double resolved_before = resolver.spent_us();
    double interpreter_us = 0;
    {
      engine_detail::Stopwatch watch(interpreter_us);
      answer = call != nullptr ? interpreter.orchestrate_answer(*call, &trailing)
                               : interpreter.orchestrate_answer(*zobject, do_validate, &trailing);
    }
    // Retired (fiber.h, await_staged_or_return): nothing is counted; the replay does it.
    if (engine_detail::retired_run()) return false;
    cost.resolve_us = resolver.spent_us() - resolved_before;
    cost.validate_us = interpreter.validate_us();
    cost.evaluator_us = interpreter.evaluator_us();
    cost.evaluator_cpu_ms = interpreter.evaluator_cpu_ms();
    cost.evaluate_us =
        std::max(0.0, interpreter_us - cost.resolve_us - cost.validate_us - cost.evaluator_us);
    engine_detail::metrics().steps.Observe(static_cast<double>(interpreter.steps()));
    if (interpreter.deadline_hit() || Clock::now() >= ctx.deadline) {
      count_cancelled(ctx);
      return false;
    }
    if (!key.empty() && !(ctx.cancel && ctx.cancel->cancelled())) {
      engine_detail::Stopwatch watch(cost.cache_us);
      if (remember(key, shared, resolver, answer.as_envelope(), trailing, cost.function)) {
        results_.alias(body, key);
      }
    }
    return true;
  }

  // A call whose outer function is a built-in (Z7K1 a reference to one) uses the local tier only:
  // a memcached round trip costs more than built-ins do, and would move a call that runs on the
  // event loop to the CPU threads.
  [[gnu::noinline]] bool calls_builtin(const nlohmann::json& zobject) const {
    if (!zobject.is_object()) return false;
    auto f = zobject.find("Z7K1");
    if (f == zobject.end()) return false;
    const nlohmann::json* ref = &*f;
    if (ref->is_object() && ref->contains("Z9K1")) ref = &(*ref)["Z9K1"];
    return ref->is_string() && defs_.served_json(ref->get_ref<const std::string&>()) != nullptr;
  }

  // What an entry costs in memory (the bound of result_cache_bytes), as the object cache counts.
  static std::size_t entry_bytes(const std::string& key, const CachedResult& entry) {
    std::size_t n = key.size() + 128 + zo::approx_size(entry.envelope) + entry.head.size();
    for (const auto& [zid, hash] : entry.used) n += zid.size() + 48;
    for (const auto& [k, v] : entry.trailing) n += k.size() + v.size() + 64;
    return n;
  }

  // A cached answer for `key` whose every used object still resolves to the same content: the
  // local tier first, then the shared one (the fiber parks; the store answers within its own
  // short timeout). A hit's metadata says which tier served it ("resultCache").
  // Out of line, as is remember(): their frames (the decoded entry, the shared store's wait) are
  // not part of run_call's, which stays on the stack of a call parked on the evaluator.
  [[gnu::noinline]] bool serve_cached(const std::string& key, bool shared, Resolver& resolver,
                                      nlohmann::json& envelope,
                                      engine_detail::TrailingMeta& trailing,
                                      const std::string& function) {
    auto& m = engine_detail::metrics();
    auto hit = results_.get(key);
    const char* tier = "local";
    bool from_shared = false;
    if (!hit && shared) {
      auto text = engine_detail::await<std::optional<std::string>>(
          [shared = shared_, key](SharedResultStore::Done done) {
            shared->get(key, std::move(done));
          });
      if (text) {
        if (auto decoded = engine_detail::decode(*text)) {
          decoded->head = engine_detail::cached_answer_head(decoded->envelope, decoded->trailing)
                              .value_or(std::string());
          decoded->function = function;
          hit = std::make_shared<const CachedResult>(std::move(*decoded));
          tier = "memcached";
          from_shared = true;
        }
      }
    }
    if (!hit) {
      m.result_misses.Increment();
      return false;
    }
    for (const auto& [zid, hash] : hit->used) {
      const auto now = resolver.identity(zid);
      if (!now || *now != hash) {
        m.result_stale.Increment();
        m.result_misses.Increment();
        return false;
      }
    }
    if (from_shared) results_.put(key, hit, entry_bytes(key, *hit));
    (from_shared ? m.result_hits_memcached : m.result_hits_local).Increment();
    envelope = hit->envelope;
    trailing = hit->trailing;
    trailing.emplace_back("resultCache", tier);
    return true;
  }

  // Keeps a cacheable outcome (docs/result-cache.md): a value without errors, every object it
  // used resolved without a transport failure; timeouts and cancellations never get here.
  // True when it was kept.
  [[gnu::noinline]] bool remember(const std::string& key, bool shared, const Resolver& resolver,
                                  const nlohmann::json& envelope,
                                  const engine_detail::TrailingMeta& trailing,
                                  const std::string& function) {
    if (zo::has_error(envelope)) return false;
    auto used = resolver.used();
    if (!used) return false;
    auto entry = std::make_shared<CachedResult>();
    entry->used = std::move(*used);
    entry->envelope = envelope;
    entry->trailing = trailing;
    entry->head = engine_detail::cached_answer_head(envelope, trailing).value_or(std::string());
    entry->function = function;
    results_.put(key, entry, entry_bytes(key, *entry));
    if (shared) shared_->put(key, engine_detail::encode(*entry));
    return true;
  }

  // An exception out of the engine is a bug: counted (wf_bugs_total{where="orchestrator.engine"})
  // and logged with the trace id, and answered as a Z507 wrapping a Z500.
  nlohmann::json internal_error(const nlohmann::json& request, const std::string& what,
                                const engine_detail::RunStart& start) noexcept {
    try {
      obs::count_bug("orchestrator.engine", what);
      nlohmann::json inner = zo::make_error("Z500", {});
      inner["Z5K2"]["Z500K1"] = "Call tuples failed in returnOnFirstError. Error: " + what + ".";
      nlohmann::json input = request.is_object() && request.contains("zobject")
                                 ? request["zobject"]
                                 : nlohmann::json(nullptr);
      nlohmann::json env =
          zo::error_envelope(zo::make_error("Z507", {zo::z99(input), zo::z99(inner)}));
      return engine_detail::finish_response(std::move(env), start);
    } catch (...) {
      return nlohmann::json::object();
    }
  }

  EngineOptions options_;
  std::shared_ptr<ObjectFetcher> fetcher_;
  std::shared_ptr<EntitySource> wikidata_;
  std::shared_ptr<CodeRunner> runner_;
  std::shared_ptr<SharedResultStore> shared_;
  const Definitions& defs_;
  ObjectCache cache_;
  engine_detail::ConverterCache converters_;  // per type, language and direction
  ResultCache results_;
  engine_detail::CallCostReporter costs_;
  FiberPool fibers_;  // last: its destructor waits for evaluations that use the members above
};

}  // namespace

std::string Engine::evaluate_text(const nlohmann::json& request, const CallContext& ctx,
                                  bool* has_error) {
  return engine_detail::dump_response(evaluate(request, ctx), has_error);
}

std::string Engine::evaluate_text(const nlohmann::json& request, std::string_view,
                                  const CallContext& ctx, bool* has_error) {
  return evaluate_text(request, ctx, has_error);
}

std::optional<std::string> Engine::evaluate_body(std::string_view, int, const CallContext&, bool*) {
  return std::nullopt;
}

std::shared_ptr<ReadBody> Engine::read_body(std::string_view, int) {
  return std::make_shared<ReadBody>();
}

std::optional<std::string> Engine::evaluate_read(std::shared_ptr<ReadBody>, const CallContext&,
                                                 bool*) {
  return std::nullopt;
}

std::optional<std::string> Engine::answer_cached(std::string_view, const CallContext&, bool*) {
  return std::nullopt;
}

// Measured (bench/README.md, "stack per nested call"): a recursive composition needs about
// 1.9 KiB of stack per nested call; twice that is allowed. The base covers deep values, which
// recurse without counting as calls, as an 8 MiB thread stack did before fibers. Under
// AddressSanitizer frames are larger: both scale by kSanitizerStackFactor (fiber.h).
std::size_t stack_bytes_for(int max_call_depth) {
  constexpr std::size_t kBase = (8u << 20) * engine_detail::kSanitizerStackFactor;
  constexpr std::size_t kPerCall = (4u << 10) * engine_detail::kSanitizerStackFactor;
  return kBase + static_cast<std::size_t>(std::max(max_call_depth, 0)) * kPerCall;
}

std::unique_ptr<Engine> make_engine(const EngineOptions& options,
                                    std::shared_ptr<ObjectFetcher> fetcher,
                                    std::shared_ptr<CodeRunner> runner,
                                    std::shared_ptr<SharedResultStore> shared,
                                    std::shared_ptr<EntitySource> wikidata) {
  return std::make_unique<EngineImpl>(options, std::move(fetcher), std::move(runner),
                                      std::move(shared), std::move(wikidata));
}

}  // namespace wf::orchestrator
