// Engine: the request pipeline around the Interpreter (orchestrator-api.md §2-§4, §8).
#include "orchestrator/engine/engine.h"

#include <algorithm>
#include <exception>

#include "orchestrator/engine/definitions.h"
#include "orchestrator/engine/engine_metrics.h"
#include "orchestrator/engine/fiber.h"
#include "orchestrator/engine/interpreter.h"
#include "orchestrator/engine/object_cache.h"
#include "orchestrator/engine/resolver.h"
#include "orchestrator/engine/response.h"
#include "orchestrator/engine/run_metadata.h"
#include "wf/obs/log.h"
#include "wf/obs/metrics.h"
#include "wf/zobject/zobject.h"

namespace wf::orchestrator {

namespace {

namespace zo = wf::zobject;
using engine_detail::Definitions;
using engine_detail::FiberLogContext;
using engine_detail::FiberPool;
using engine_detail::Interpreter;
using engine_detail::ObjectCache;
using engine_detail::Resolver;

bool truthy(const nlohmann::json& v) {
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_number()) return v != 0;
  if (v.is_string()) return !v.get_ref<const std::string&>().empty();
  return v.is_object() || v.is_array();
}

// orchestrator-api.md §4: normal form, no metadata but the error.
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

FiberLogContext log_context(const CallContext& ctx) {
  return FiberLogContext{ctx.trace_id, ctx.span_id, ctx.request_id};
}

// Counts and logs an evaluation stopped before its answer (the log line carries the trace id).
void count_cancelled(const CallContext& ctx) {
  const auto reason = ctx.cancel && ctx.cancel->cancelled() ? ctx.cancel->reason()
                                                            : Cancellation::Reason::kDeadline;
  const std::string why(http::to_string(reason));
  engine_detail::metrics().cancelled.at(static_cast<std::size_t>(reason))->Increment();
  obs::log_event(spdlog::level::info, "evaluation stopped before its answer: " + why,
                 {obs::field_str("event.action", "evaluation-cancelled"),
                  obs::field_str("event.reason", why)});
}

class EngineImpl final : public Engine {
 public:
  EngineImpl(const EngineOptions& options, std::shared_ptr<ObjectFetcher> fetcher,
             std::shared_ptr<CodeRunner> runner)
      : options_(with_stack(options)),
        fetcher_(std::move(fetcher)),
        runner_(std::move(runner)),
        defs_(Definitions::instance()),
        cache_(options.cache_ttl, options.cache_bytes),
        fibers_({options_.cpu_threads, options_.stack_bytes, 32}) {}

  bool serves_locally(std::string_view zid) const override { return defs_.served(zid) != nullptr; }

  void spawn(const CallContext& ctx, std::function<void()> work) override {
    fibers_.spawn(log_context(ctx), counted(std::move(work)));
  }

  void spawn_here(const CallContext& ctx, std::function<void()> work) override {
    fibers_.start_here(log_context(ctx), counted(std::move(work)));
  }

  nlohmann::json evaluate(const nlohmann::json& request, const CallContext& ctx) override {
    nlohmann::json out;
    on_fiber(ctx, [&] { out = evaluate_here(request, ctx); });
    return out;
  }

  std::string evaluate_text(const nlohmann::json& request, const CallContext& ctx,
                            bool* has_error) override {
    std::string out;
    on_fiber(ctx, [&] { out = evaluate_text_here(request, ctx, has_error); });
    return out;
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
      fibers_.run_here(log_context(ctx), std::forward<F>(f));
    }
  }

  nlohmann::json evaluate_here(const nlohmann::json& request, const CallContext& ctx) {
    auto start = engine_detail::run_start();
    try {
      nlohmann::json envelope;
      engine_detail::TrailingMeta trailing;
      if (!run(request, ctx, envelope, trailing)) return timeout_response();
      engine_detail::add_trailing_metadata(envelope, trailing);
      return engine_detail::finish_response(std::move(envelope), start);
    } catch (const std::exception& e) {
      return internal_error(request, e.what(), start);
    } catch (...) {
      return internal_error(request, "unknown failure", start);
    }
  }

  std::string evaluate_text_here(const nlohmann::json& request, const CallContext& ctx,
                                 bool* has_error) {
    auto start = engine_detail::run_start();
    try {
      nlohmann::json envelope;
      engine_detail::TrailingMeta trailing;
      if (!run(request, ctx, envelope, trailing)) {
        return engine_detail::dump_response(timeout_response(), has_error);
      }
      return engine_detail::finish_response_text(envelope, trailing, start, has_error);
    } catch (const std::exception& e) {
      return engine_detail::dump_response(internal_error(request, e.what(), start), has_error);
    } catch (...) {
      return engine_detail::dump_response(internal_error(request, "unknown failure", start),
                                          has_error);
    }
  }

  // Steps 1-6 of orchestrator-api.md §8: the normal-form Z22 in `envelope` plus the metadata
  // pairs that follow its map (`trailing`); false when the deadline passed (the answer is then
  // timeout_response()).
  bool run(const nlohmann::json& request, const CallContext& ctx, nlohmann::json& envelope,
           engine_detail::TrailingMeta& trailing) {
    if (Clock::now() >= ctx.deadline) {
      count_cancelled(ctx);
      return false;
    }
    static const nlohmann::json kNull;
    const nlohmann::json* zobject = &kNull;
    bool do_validate = false;
    if (request.is_object()) {
      auto it = request.find("zobject");
      if (it != request.end()) zobject = &*it;
      auto v = request.find("doValidate");
      if (v != request.end()) do_validate = truthy(*v);
    }
    if (zobject->is_null()) {
      envelope = zo::make_envelope(nullptr, zo::empty_metadata_map());
      return true;
    }
    Resolver resolver(defs_, cache_, options_.objects_dir, fetcher_.get(), ctx,
                      options_.max_zobject_depth);
    Interpreter interpreter(resolver, runner_.get(), ctx, options_);
    envelope = interpreter.orchestrate(*zobject, do_validate, &trailing);
    engine_detail::metrics().steps.Observe(static_cast<double>(interpreter.steps()));
    if (interpreter.deadline_hit() || Clock::now() >= ctx.deadline) {
      count_cancelled(ctx);
      return false;
    }
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
  std::shared_ptr<CodeRunner> runner_;
  const Definitions& defs_;
  ObjectCache cache_;
  FiberPool fibers_;  // last: its destructor waits for evaluations that use the members above
};

}  // namespace

std::string Engine::evaluate_text(const nlohmann::json& request, const CallContext& ctx,
                                  bool* has_error) {
  return engine_detail::dump_response(evaluate(request, ctx), has_error);
}

// Measured (bench/README.md, "stack per nested call"): a recursive composition needs about
// 1.9 KiB of stack per nested call; twice that is allowed. The base covers deep values, which
// recurse without counting as calls, as an 8 MiB thread stack did before fibers.
std::size_t stack_bytes_for(int max_call_depth) {
  constexpr std::size_t kBase = 8u << 20;
  constexpr std::size_t kPerCall = 4u << 10;
  return kBase + static_cast<std::size_t>(std::max(max_call_depth, 0)) * kPerCall;
}

std::unique_ptr<Engine> make_engine(const EngineOptions& options,
                                    std::shared_ptr<ObjectFetcher> fetcher,
                                    std::shared_ptr<CodeRunner> runner) {
  return std::make_unique<EngineImpl>(options, std::move(fetcher), std::move(runner));
}

}  // namespace wf::orchestrator
