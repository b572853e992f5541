#pragma once
// The orchestrator's evaluation engine: takes a parsed evaluate request and produces the Z22
// envelope to send back. Every evaluation runs on a fiber with its own stack (sized from the
// call-depth limit); while the wiki or an evaluator answers, the fiber is parked and holds no
// thread. Never throws across evaluate(): every failure is a Z5 inside the envelope.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "orchestrator/engine/event_loop.h"
#include "orchestrator/engine/ports.h"

namespace wf::orchestrator {

struct EngineOptions {
  // In-process cache of resolved objects, shared across requests. ttl 0 turns it off.
  std::chrono::milliseconds cache_ttl{std::chrono::minutes(5)};
  std::size_t cache_bytes = 64u << 20;
  // Directory of persisted Z2 JSON files (one per file, named ZID.json); empty for none.
  std::filesystem::path objects_dir;
  // Memoised call results (docs/result-cache.md): the in-process tier's bound; 0 (the engine's
  // default; the service's is 64 MiB) turns the result cache (both tiers) off.
  std::size_t result_cache_bytes = 0;
  // Limits that end in a specific Z5 instead of a crash or a hang.
  int max_zobject_depth = 128;         // nesting depth of input and fetched objects
  int max_call_depth = 256;            // nested function calls
  std::int64_t max_steps = 1'000'000;  // evaluation steps per request
  // Calls of bundled built-in functions bind their arguments from a per-process signature
  // instead of the function's definition nodes (builtin_calls.cc): the same answers, less work.
  // Off only in tests that compare the two paths.
  bool direct_builtin_calls = true;
  // Threads that run evaluations (their CPU work); a parked evaluation holds none.
  int cpu_threads = 2;
  // The service's event loop (may be null): an evaluation whose evaluator answer arrives there
  // and is small goes on there (the envelope, the response) instead of crossing to the CPU
  // threads and back (fiber.h, Resume::kLoop; bench/README.md "Thread crossings").
  std::shared_ptr<EventLoop> event_loop;
  // Stack of each evaluation; 0: stack_bytes_for(max_call_depth).
  std::size_t stack_bytes = 0;
  // An evaluation spawned as replayable (Engine::spawn) whose top-level code call has waited
  // this long on the evaluator gives its fiber back (its frames and the engine's nodes: the
  // memory of a parked call, bench/slow_calls) and runs again once the answer is in. 0: never.
  // Longer than a usual code call (a few ms), so that only slow calls pay for the second run.
  std::chrono::milliseconds retire_parked_after{100};
  // Cost per call (docs/operations.md): functions with their own series in the per-function
  // metrics (the first ones called; any other counts as "other"; the engine's default 0 puts no
  // ZID in a label, the service's is 50), and the wall-clock time from which a call is logged
  // as slow (0: never).
  std::size_t function_metrics_top_n = 0;
  std::chrono::milliseconds slow_call{1000};
};

class Engine;

// A request body read into the engine's nodes before its evaluation is placed (Engine::read_body),
// and what its string literals say about where that evaluation may run (routes.cc: the event
// loop or the CPU threads): the counts a scan of every string literal of the text gives, found
// while it was read, so the text is not scanned a second time.
struct ReadBody {
  virtual ~ReadBody() = default;
  // The body was the usual request (orchestrator/engine/request_nodes.h) and was read; false:
  // the caller parses it (the general path), and the counts below are not set.
  bool usual = false;
  int calls = 0;         // "Z7" literals
  int not_local = 0;     // reference-like literals serves_locally() denies
  bool unusual = false;  // static validation asked, or inline code ("Z14K3", "Z16K..." literals)
  // The engine whose read_body() made it: evaluate_read() takes its own reads without a
  // dynamic_cast (one per usual request).
  const Engine* reader = nullptr;
};

// The stack an evaluation needs so that max_call_depth nested calls end in the depth Z5, never
// in a crash: a base for deep values plus a measured allowance per nested call. Stacks are
// reserved address space; only the pages an evaluation touches cost memory.
std::size_t stack_bytes_for(int max_call_depth);

class Engine {
 public:
  virtual ~Engine() = default;
  // `request` is the parsed JSON body: {"zobject": ..., "doValidate": bool}. The answer is the Z22
  // envelope (canonical, or normal when canonicalisation fails) with all metadata of
  // orchestrator-api.md §3. ctx.deadline bounds the whole call (Z558 when it passes).
  virtual nlohmann::json evaluate(const nlohmann::json& request, const CallContext& ctx) = 0;
  // The same answer as evaluate() as JSON text, byte for byte what
  // `evaluate(request, ctx).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)` gives.
  // When has_error is not null it is set to whether the envelope's metadata has an "errors" key.
  // The default serialises evaluate(); the engine writes the usual envelope straight to text.
  virtual std::string evaluate_text(const nlohmann::json& request, const CallContext& ctx,
                                    bool* has_error);
  // evaluate_text() of a request parsed from the JSON text `body`: when its answer comes from or
  // goes into the result cache, the text is indexed to the entry, so answer_cached(body) finds it.
  virtual std::string evaluate_text(const nlohmann::json& request, std::string_view body,
                                    const CallContext& ctx, bool* has_error);
  // evaluate_text(request, body, ...) of the request whose JSON text is `body`, read straight into
  // the engine's nodes (no JSON tree) when it is the usual one (orchestrator/engine/
  // request_nodes.h: plain JSON, a valid call within `max_json_depth` of the body's nesting and
  // the engine's max_zobject_depth). nullopt otherwise: the caller then parses the body (its
  // refusals are the caller's) and calls evaluate_text(request, body, ...), which answers it. The
  // default always gives nullopt.
  virtual std::optional<std::string> evaluate_body(std::string_view body, int max_json_depth,
                                                   const CallContext& ctx, bool* has_error);
  // The body read ahead of its evaluation (on the calling thread, outside any fiber), as
  // evaluate_body() reads it; never null. The default reads nothing (`usual` false).
  virtual std::shared_ptr<ReadBody> read_body(std::string_view body, int max_json_depth);
  // evaluate_body() of a body read by read_body(), whose text must be alive and unchanged. The
  // first evaluation takes the nodes read (and lets go of `read` before it starts: a parked call
  // does not keep it); a later one with the same ReadBody reads the text again. nullopt when the
  // body was not the usual one (the caller then parses it). The default gives nullopt.
  virtual std::optional<std::string> evaluate_read(std::shared_ptr<ReadBody> read,
                                                   const CallContext& ctx, bool* has_error);
  // A result-cache hit answered without parsing, evaluating or waiting (for event loops): `body`
  // is the JSON text of a request evaluate_text(request, body, …) answered before, and its entry
  // is in the in-process tier with every object it used in the object cache with the same
  // identity. The answer is the stored text with this call's resultCache and orchestration*
  // metadata. nullopt otherwise (unknown text, entry gone, an object expired or edited, the
  // deadline passed): evaluate_text() then decides, with the full check of every used object.
  virtual std::optional<std::string> answer_cached(std::string_view body, const CallContext& ctx,
                                                   bool* has_error);
  // True when `zid` is a built-in served from memory: resolving it never waits on the wiki, and
  // (for functions) running it never waits on an evaluator. The service uses this to run small,
  // self-contained calls on its event loop instead of handing them to a worker thread.
  virtual bool serves_locally(std::string_view zid) const = 0;
  // Runs `work` on a new evaluation fiber on the engine's CPU threads and returns at once; `work`
  // calls evaluate()/evaluate_text(), which then park the fiber instead of blocking on I/O. Log
  // lines written by `work` carry ctx's trace and request ids. Called without spawn(), evaluate()
  // runs its fiber on the calling thread, which waits while the fiber is parked.
  // `replayable`: `work` may run again from its start (it evaluates one request and then answers
  // it; nothing before the evaluation it cannot do twice): an evaluation whose top-level code
  // call waits longer than EngineOptions::retire_parked_after then gives its fiber back meanwhile
  // and runs again once the evaluator has answered, taking that answer (fiber.h,
  // await_retirable): the same envelope, with less memory held while it waits.
  // The fiber shares `ctx` (its log lines' ids are read from it, not copied).
  virtual void spawn(std::shared_ptr<const CallContext> ctx, std::function<void()> work,
                     bool replayable = false) = 0;
  void spawn(const CallContext& ctx, std::function<void()> work, bool replayable = false) {
    spawn(std::make_shared<const CallContext>(ctx), std::move(work), replayable);
  }
  // Like spawn(), but `work` starts on the calling thread (an event loop: calls of built-ins that
  // need no I/O, small code calls) and moves to the CPU threads when it waits for I/O (or, with
  // EngineOptions::event_loop, goes on on the loop after a small evaluator answer), or when its
  // slice on the loop has used more than its CPU budget (1 ms).
  virtual void spawn_here(std::shared_ptr<const CallContext> ctx, std::function<void()> work,
                          bool replayable = false) = 0;
  void spawn_here(const CallContext& ctx, std::function<void()> work, bool replayable = false) {
    spawn_here(std::make_shared<const CallContext>(ctx), std::move(work), replayable);
  }
};

// `fetcher` may be null (no wiki configured): non-built-in references then fail with a clear Z5.
// `shared` (may be null) is the result cache's second tier, shared by replicas. `wikidata` (may
// be null: the Wikidata built-ins then fail with a Z5 naming --wikidata-api-url) serves the
// Wikidata built-ins (docs/wikidata.md).
std::unique_ptr<Engine> make_engine(const EngineOptions& options,
                                    std::shared_ptr<ObjectFetcher> fetcher,
                                    std::shared_ptr<CodeRunner> runner,
                                    std::shared_ptr<SharedResultStore> shared = nullptr,
                                    std::shared_ptr<EntitySource> wikidata = nullptr);

}  // namespace wf::orchestrator
