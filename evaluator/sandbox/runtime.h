#pragma once
// A language runtime as the sandbox sees it: initialised once in a single-threaded zygote, then
// used in forked children that each serve exactly one call. Implemented by
// evaluator/executors/python and evaluator/executors/javascript.

#include <cstdint>
#include <string>
#include <vector>

namespace wf::evaluator {

// One call, as decoded from the request (evaluator-api.md §2).
struct CallInput {
  std::string code;            // codeString
  std::string function_name;   // functionName
  std::string arguments_json;  // JSON object: argument key -> normal-form ZObject
  // Empty, or a JSON object {"arguments": {key: plan}, "result": plan} of type converters written
  // in the call's language (docs/compatibility.md "Type converters"); run in the same child.
  std::string converters_json;
  // Most bytes of printed text the runtime should keep (the sandbox sets it from
  // SandboxLimits::captured_output_bytes and truncates again on its side).
  std::uint64_t captured_output_limit = 16u << 10;
  // Who asked (the calling service's address): with the code, the flow the call's wait for a
  // child is scheduled in (fair_queue.h). Never sent to the child.
  std::string caller;
};

// What the runtime produced inside the child. Exactly one of z22_json / error_message is
// meaningful.
struct CallOutput {
  bool ok = false;
  std::string z22_json;  // normal-form Z22 as JSON text (result or user error, evaluator-api.md §5)
  std::string captured_output;  // what user code printed (stdout+stderr), truncated by the runtime
  // When !ok: why the runtime could not produce a Z22 (e.g. the JavaScript runtime's
  // kJavascriptTimeoutError / kJavascriptMemoryError texts), for the sandbox to map to a status.
  std::string error_message;
  // Set when the call ran out of memory as the runtime itself observed it (an allocation of the
  // interpreter failed, or its own memory budget stopped the call), never from error text, which
  // user code controls. The sandbox then reports CallOutcome::Status::kMemoryLimit (keeping
  // z22_json when ok).
  bool out_of_memory = false;
};

class LanguageRuntime {
 public:
  virtual ~LanguageRuntime() = default;
  // Family name used in logs and metrics: "python" or "javascript".
  virtual const char* name() const = 0;
  // In the zygote, before any thread exists: start the interpreter, preload modules.
  virtual bool initialize(std::string& error) = 0;
  // In a fresh child, before the sandbox is locked down (reseed RNGs, PyOS_AfterFork_Child...).
  virtual void after_fork() = 0;
  // In the child after lock-down, off the request path: a dummy call so that the first real call is
  // warm.
  virtual void warm_up() = 0;
  // In the child, after the sandbox is locked down: run one call. Must not throw.
  virtual CallOutput call(const CallInput& input) = 0;
  // Whether the supervisor should move the memory the runtime initialised into a sealed file image
  // before forking zygotes (file_image.h): children then fork from file-backed pages, which fork
  // and exit do not walk. Only for runtimes whose allocators never expect anonymous memory's
  // behaviour from what they mapped before (MADV_DONTNEED reads back zeros only on anonymous
  // memory; on the image it reads back the image).
  virtual bool rebase_memory() const { return false; }
  // Extra syscalls (by name, for libseccomp) this runtime needs beyond the common allow-list.
  virtual std::vector<std::string> extra_syscalls() const { return {}; }
  // Bytes of address space the interpreter needs beyond the configured budget (SpiderMonkey
  // reserves ~2.1 GB PROT_NONE for its JIT); the sandbox adds it to RLIMIT_AS, or uses RLIMIT_DATA.
  virtual std::uint64_t address_space_overhead() const { return 0; }
  // Called by the parent-side wall-clock enforcement in the child via SIGALRM, if the runtime
  // can stop user code cooperatively (SpiderMonkey interrupt callback). Default: nothing.
  virtual void request_interrupt() {}
  // The user-code memory budget (SandboxLimits::memory_bytes), so that a runtime can stop a memory
  // bomb itself before the rlimit hits at a bad moment (SpiderMonkey crashes if it hits inside a
  // GC). Call in the zygote, before initialize() (later calls may take effect only partly).
  // Default: nothing.
  virtual void set_memory_budget(std::uint64_t /*bytes*/) {}
};

}  // namespace wf::evaluator
