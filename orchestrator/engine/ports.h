#pragma once
// The engine's two ports to the outside world. The service implements them over HTTP (the wiki's
// action=wikilambda_fetch and the evaluator's /v1/evaluate/); tests put fakes in their place.
// Both are called from engine worker threads and may block until the deadline.

#include <chrono>
#include <expected>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace wf::orchestrator {

using Clock = std::chrono::steady_clock;

// Who asked: carried to the outbound calls so logs and traces join up.
struct CallContext {
  std::string request_id;
  std::string traceparent;  // header value for downstream calls, may be empty
  Clock::time_point deadline = Clock::time_point::max();
};

struct FetchError {
  std::string message;  // transport or protocol failure, e.g. "wiki API at X answered 500"
};

// Resolves persisted objects from a wiki.
class ObjectFetcher {
 public:
  virtual ~ObjectFetcher() = default;
  // For each requested ZID found, the JSON text of its persisted Z2 (the `wikilambda_fetch`
  // string). A ZID absent from the map was not found (Z504). An error means the whole batch failed
  // (Z500).
  virtual std::expected<std::map<std::string, std::string>, FetchError> fetch(
      const std::vector<std::string>& zids, const CallContext& ctx) = 0;
};

struct CodeCall {
  std::string coding_language;  // Z61K1 of the implementation, e.g. "python-3"
  std::string code;             // Z16K2
  std::string function_name;    // Z8K5 of the called function, e.g. "Z10001"
  nlohmann::json arguments = nlohmann::json::object();  // argument key -> normal-form value
};

struct CodeRunError {
  enum class Kind {
    kNoEvaluator,  // no evaluator configured for this language: "No evaluator is available for X"
    kFailed,       // transport failure or non-2xx answer; message as the spec words it
  };
  Kind kind = Kind::kFailed;
  std::string message;
};

// Runs code implementations on an evaluator.
class CodeRunner {
 public:
  virtual ~CodeRunner() = default;
  // The evaluator's Z22 (normal form, as parsed from its JSON answer) or an error.
  virtual std::expected<nlohmann::json, CodeRunError> run(const CodeCall& call,
                                                          const CallContext& ctx) = 0;
};

}  // namespace wf::orchestrator
