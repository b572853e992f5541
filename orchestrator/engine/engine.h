#pragma once
// The orchestrator's evaluation engine: takes a parsed evaluate request and produces the Z22
// envelope to send back. Synchronous; the service runs it on worker threads. Never throws across
// evaluate(): every failure is a Z5 inside the envelope.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "orchestrator/engine/ports.h"

namespace wf::orchestrator {

struct EngineOptions {
  // In-process cache of resolved objects, shared across requests. ttl 0 turns it off.
  std::chrono::milliseconds cache_ttl{std::chrono::minutes(5)};
  std::size_t cache_bytes = 64u << 20;
  // Directory of persisted Z2 JSON files (one per file, named ZID.json); empty for none.
  std::filesystem::path objects_dir;
  // Limits that end in a specific Z5 instead of a crash or a hang.
  int max_zobject_depth = 128;         // nesting depth of input and fetched objects
  int max_call_depth = 256;            // nested function calls
  std::int64_t max_steps = 1'000'000;  // evaluation steps per request
};

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
  // True when `zid` is a built-in served from memory: resolving it never waits on the wiki, and
  // (for functions) running it never waits on an evaluator. The service uses this to run small,
  // self-contained calls on its event loop instead of handing them to a worker thread.
  virtual bool serves_locally(std::string_view zid) const = 0;
};

// `fetcher` may be null (no wiki configured): non-built-in references then fail with a clear Z5.
std::unique_ptr<Engine> make_engine(const EngineOptions& options,
                                    std::shared_ptr<ObjectFetcher> fetcher,
                                    std::shared_ptr<CodeRunner> runner);

}  // namespace wf::orchestrator
