#pragma once
// Shared helpers for the JavaScript runtime tests: one runtime per test process (SpiderMonkey
// allows one), initialised in main(); calls run in-process or in a forked child (as the sandbox
// runs them) when the call must be interrupted or must not leak state into later tests.

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>

#include "evaluator/executors/javascript/javascript_runtime.h"

namespace wf::evaluator::testing {

LanguageRuntime& runtime();

CallOutput call(const std::string& code, const std::string& function_name,
                const std::string& arguments_json = "{}");

struct ChildResult {
  CallOutput output;
  int wait_status = 0;
  std::chrono::milliseconds elapsed{0};  // wall time from fork to reaping
  std::chrono::milliseconds cpu{0};      // the child's user + system CPU time
};

// What `alarm_after` counts: wall time (SIGALRM: the tests of the time limit itself), or the
// child's CPU time (SIGPROF: a guard against hangs in tests of other outcomes, which must not
// depend on the machine's load: under load 20 a bomb's 2 s of CPU take over 20 s of wall time).
enum class AlarmClock { kWall, kCpu };

// Forks; the child runs after_fork(), arms an alarm after `alarm_after` (0 = none) on `clock`
// whose handler calls request_interrupt(), optionally lowers RLIMIT_AS to overhead +
// `memory_bytes` and calls set_memory_budget(`memory_budget`), calls, and sends the CallOutput
// back through a pipe.
ChildResult call_in_child(const std::string& code, const std::string& function_name,
                          const std::string& arguments_json = "{}",
                          std::chrono::milliseconds alarm_after = std::chrono::milliseconds(0),
                          std::uint64_t memory_bytes = 0, std::uint64_t memory_budget = 0,
                          AlarmClock clock = AlarmClock::kWall);

// Z22K1 of a Z22, and the Z5 under "errors" in its Z22K2 map (null if none).
nlohmann::json result_of(const CallOutput& out);
nlohmann::json error_of(const CallOutput& out);
// Z5K2.Z6K1 of the error, or "" if there is no error.
std::string error_message_of(const CallOutput& out);

inline nlohmann::json z6(const std::string& s) {
  return {{"Z1K1", "Z6"}, {"Z6K1", s}};
}
inline nlohmann::json z9(const std::string& s) {
  return {{"Z1K1", "Z9"}, {"Z9K1", s}};
}
inline nlohmann::json z40(bool b) {
  return {{"Z1K1", z9("Z40")}, {"Z40K1", z9(b ? "Z41" : "Z42")}};
}
nlohmann::json list_type(const nlohmann::json& item_type);
nlohmann::json typed_list(const nlohmann::json& item_type,
                          const std::vector<nlohmann::json>& items);
nlohmann::json pair_type(const nlohmann::json& k, const nlohmann::json& v);

}  // namespace wf::evaluator::testing
