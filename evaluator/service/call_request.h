#pragma once
// From a decoded request body (any form of evaluator-api.md §2) to the call to run, applying the
// checks of §3 steps 2-3 in the reference's order: language, then (whole Z7 only) normal-form
// validation, then code / function name / arguments. Every early failure is the Z5 to answer with.

#include <expected>
#include <optional>
#include <string>
#include <vector>

#include "evaluator/service/result_envelope.h"

namespace wf::evaluator {

struct CallRequest {
  bool reentrant = false;
  // remainingTime of a 0.0.4 (or JSON) request: the caller's milliseconds left. Only a positive
  // value is meaningful (the original orchestrator sends a large negative number).
  std::optional<double> remaining_time_ms;
  std::string language;       // codingLanguage, or Z61K1 of the first implementation's Z16K1
  std::string code;           // codeString / Z16K2
  std::string function_name;  // functionName / Z8K5
  Json arguments = Json::object();
  // typeConverters of the request (docs/compatibility.md "Type converters"), checked; null when
  // the call carries none.
  Json converters;
};

// `decoded` is codec::DecodedBody::value: {reentrant?, zobject?} wrappers are unwrapped here.
// The error is a Z5 (see result_envelope.h) for the `errors` key.
std::expected<CallRequest, Json> to_call_request(const Json& decoded);

// Violations of the normal form by a whole Z7 (zobjects.md §3), as "<path>: <message>" lines in
// document order, at most `max` of them; empty when valid.
std::vector<std::string> normal_z7_violations(const Json& z7, std::size_t max = 10);

}  // namespace wf::evaluator
