#pragma once
// The engine's two ports to the outside world. The service implements them over HTTP (the wiki's
// action=wikilambda_fetch and the evaluator's /v1/evaluate/); tests put fakes in their place.
// Both are asynchronous: they start the work and return; the engine parks the evaluation's fiber
// until `done` is called, so no thread waits while a request is in flight.

#include <chrono>
#include <expected>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "wf/http/cancellation.h"
#include "wf/io_wait.h"

namespace wf::orchestrator {

using Clock = std::chrono::steady_clock;

// Why a request stops before its answer (client gone, deadline, shutdown): raised by the service,
// checked by the interpreter at each step and when it resumes; the ports abort their outstanding
// requests when it is raised.
using Cancellation = http::Cancellation;

// Who asked: carried to the outbound calls so logs and traces join up.
struct CallContext {
  std::string request_id;
  std::string traceparent;  // header value for downstream calls, may be empty
  std::string trace_id;     // for log lines written while the call runs (may be empty)
  std::string span_id;
  // Who the call is for (http::Request::caller: the gate's identity, e.g. "user:Alice"); sent to
  // the evaluator so that its sandbox fair queue shares children per user. May be empty.
  std::string caller;
  Clock::time_point deadline = Clock::time_point::max();
  std::shared_ptr<Cancellation> cancel;  // may be null: never cancelled
  // The admission gate's view of the call (http::Request::io_wait): the engine tells it when the
  // call parks on I/O and resumes; the evaluator client, how long the evaluator made it wait for a
  // sandbox child. May be null.
  std::shared_ptr<IoWaitObserver> io_wait;
};

struct FetchError {
  std::string message;        // transport or protocol failure, e.g. "wiki API at X answered 500"
  bool rate_limited = false;  // the upstream API answered 429 (Z567)
};

// Resolves persisted objects from a wiki.
class ObjectFetcher {
 public:
  // For each requested ZID found, the JSON text of its persisted Z2 (the `wikilambda_fetch`
  // string). A ZID absent from the map was not found (Z504). An error means the whole batch failed
  // (Z500).
  using Result = std::expected<std::map<std::string, std::string>, FetchError>;
  using Done = std::function<void(Result)>;

  virtual ~ObjectFetcher() = default;
  // Starts the fetch and returns. `done` is called exactly once, from any thread, possibly before
  // fetch() returns; a cancelled ctx.cancel ends the request early with an error.
  virtual void fetch(const std::vector<std::string>& zids, const CallContext& ctx, Done done) = 0;
};

// Reads entities from a Wikibase API (Wikidata's wbgetentities and its lexeme search) for the
// Wikidata built-ins (docs/wikidata.md).
class EntitySource {
 public:
  // Entity id (Q42, P31, L7, L7-F1, L7-S1) -> its Wikibase entity JSON. An id absent from the
  // map does not exist. An error means the whole request failed (transport, HTTP status, body).
  using Entities = std::expected<std::map<std::string, nlohmann::json>, FetchError>;
  using Done = std::function<void(Entities)>;
  // Ids of the lexemes having a statement `property` (P...) whose value is `value` (Q...,
  // L...-S...).
  using Ids = std::expected<std::vector<std::string>, FetchError>;
  using IdsDone = std::function<void(Ids)>;

  virtual ~EntitySource() = default;
  // Both start the request and return; `done` is called exactly once, from any thread, possibly
  // before the call returns; a cancelled ctx.cancel ends the request early with an error.
  virtual void get_entities(const std::vector<std::string>& ids, const CallContext& ctx,
                            Done done) = 0;
  virtual void find_lexemes(const std::string& property, const std::string& value,
                            const CallContext& ctx, IdsDone done) = 0;
};

struct CodeCall {
  std::string coding_language;  // Z61K1 of the implementation, e.g. "python-3"
  std::string code;             // Z16K2
  std::string function_name;    // Z8K5 of the called function, e.g. "Z10001"
  nlohmann::json arguments = nlohmann::json::object();  // argument key -> normal-form value
  // typeConverters (docs/compatibility.md "Type converters"): {"arguments": {key: plan},
  // "result": plan}; null when no argument or result type has a converter for the language.
  nlohmann::json converters;
};

struct CodeRunError {
  enum class Kind {
    kNoEvaluator,  // no evaluator configured for this language: "No evaluator is available for X"
    kFailed,       // transport failure or non-2xx answer; message as the spec words it
  };
  Kind kind = Kind::kFailed;
  std::string message;
};

// The Z6 keys and Z6 values of a metadata map's pairs, in the map's order.
using MetaPairs = std::vector<std::pair<std::string, std::string>>;

// An evaluator's answer: its Z22 in normal form. The usual answer's metadata map (Z22K2: a
// Z883(Z6, Z1) map whose keys are unique Z6 strings other than "errors" and whose values are Z6
// strings) may come as `meta` instead, its pairs in order, the Z22 then without Z22K2: building
// that map's normal form (about 150 objects) cost more than the rest of a code call's handling
// in the orchestrator, and the outermost call's pairs go to the response text as they are
// (read_code_answer, code_answer.h; bench/orchestrator_cpu). A Z22 alone converts to one.
struct CodeAnswer {
  CodeAnswer() = default;
  CodeAnswer(nlohmann::json z22_in) : z22(std::move(z22_in)) {}  // NOLINT: implicit by design
  nlohmann::json z22;
  std::optional<MetaPairs> meta;  // when set, stands for z22's Z22K2
};

// Runs code implementations on an evaluator.
class CodeRunner {
 public:
  // The evaluator's answer (normal form, as read from its JSON text) or an error.
  using Result = std::expected<CodeAnswer, CodeRunError>;
  using Done = std::function<void(Result)>;

  virtual ~CodeRunner() = default;
  // Starts the call and returns. `done` is called exactly once, from any thread, possibly before
  // run() returns; a cancelled ctx.cancel ends the request early with an error.
  virtual void run(const CodeCall& call, const CallContext& ctx, Done done) = 0;
};

// A result store shared by replicas (memcached): the second tier of the result cache. Best
// effort: a slow or absent store answers "miss", never an error, and never holds up a call
// longer than its own short timeout.
class SharedResultStore {
 public:
  using Done = std::function<void(std::optional<std::string>)>;
  virtual ~SharedResultStore() = default;
  // Starts the lookup and returns; `done` is called exactly once, from any thread, with the value
  // or nullopt (miss, timeout, store down, too busy).
  virtual void get(const std::string& key, Done done) = 0;
  // Stores in the background (dropped when too large or too busy).
  virtual void put(const std::string& key, std::string value) = 0;
};

}  // namespace wf::orchestrator
