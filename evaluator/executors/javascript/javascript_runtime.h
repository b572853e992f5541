#pragma once
// The JavaScript language runtime: embedded SpiderMonkey 102 behind the sandbox's LanguageRuntime
// interface (evaluator/sandbox/runtime.h). initialize() runs once in the single-threaded zygote;
// each forked child then serves one call (evaluator-api.md §5.2/§5.3). Owned by the sandbox.

#include <cstddef>
#include <cstdint>
#include <memory>

#include "evaluator/sandbox/runtime.h"

namespace wf::evaluator {

// CallOutput.error_message (with ok == false) when user code was stopped by
// request_interrupt() (the sandbox's wall-clock SIGALRM).
inline constexpr const char kJavascriptTimeoutError[] =
    "JavaScript execution interrupted: time limit reached";
// CallOutput.error_message (with ok == false) when the GC heap went over its budget or
// SpiderMonkey ran out of memory (the rlimit was hit).
inline constexpr const char kJavascriptMemoryError[] =
    "JavaScript execution stopped: memory limit reached";

struct JavascriptRuntimeOptions {
  // GC heap bytes (JSGC_BYTES) above which user code is stopped with kJavascriptMemoryError;
  // checked at the end of every major GC. SpiderMonkey's own cap (JSGC_MAX_BYTES) is set to
  // 1.5x this. Keep 1.5x below the sandbox's memory budget so that the rlimit is not hit inside
  // a GC (which SpiderMonkey turns into a crash); the default suits the 256 MiB default budget.
  // LanguageRuntime::set_memory_budget(bytes) sets it to bytes / 2.
  std::uint64_t gc_heap_budget_bytes = 128u << 20;
  // Printed text kept per call (console.*) when CallInput.captured_output_limit is 0; more is
  // cut, ending with a "[output truncated]" marker, within the limit.
  std::size_t captured_output_bytes = 16u << 10;
  // Native stack SpiderMonkey may use before it throws "too much recursion".
  std::size_t native_stack_quota_bytes = 1u << 20;
};

std::unique_ptr<LanguageRuntime> make_javascript_runtime();
std::unique_ptr<LanguageRuntime> make_javascript_runtime(const JavascriptRuntimeOptions& options);

}  // namespace wf::evaluator
