// SpiderMonkey 102 embedding for the evaluator sandbox. The measured facts this relies on are in
// /work/shared/notes/sandbox-spike.md: init order, no helper threads at fork time, JIT settings,
// interrupt callback for timeouts, a GC callback for memory bombs, no Math.random in the zygote.

#include "evaluator/executors/javascript/javascript_runtime.h"

#include <js/CallAndConstruct.h>
#include <js/CharacterEncoding.h>
#include <js/CompilationAndEvaluation.h>
#include <js/Conversions.h>
#include <js/Exception.h>
#include <js/GCAPI.h>
#include <js/HelperThreadAPI.h>
#include <js/Initialization.h>
#include <js/Interrupt.h>
#include <js/MemoryCallbacks.h>
#include <js/Promise.h>
#include <js/SourceText.h>
#include <js/Stack.h>
#include <js/ValueArray.h>
#include <jsapi.h>
#include <jsfriendapi.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>

#include "evaluator/executors/javascript/conversion_prelude.h"
#include "wf/obs/log.h"

namespace wf::evaluator {
namespace {

// Stop reasons, written from the SIGALRM handler or the GC callback, read by the interrupt
// callback. Lock-free atomics are async-signal-safe.
enum StopReason : int { kNoStop = 0, kStopTimeout = 1, kStopMemory = 2 };

// Address space beyond the zygote's own VmSize that SpiderMonkey may need in a child for JIT
// code, GC chunk alignment and malloc arenas, on top of the user's budget.
constexpr std::uint64_t kAddressSpaceHeadroom = 64u << 20;

constexpr std::string_view kTruncationMarker = "\n[output truncated]\n";

const JSClass kGlobalClass = {
    "global", JSCLASS_GLOBAL_FLAGS, &JS::DefaultGlobalClassOps, nullptr, nullptr, nullptr};

// SpiderMonkey would start its own helper threads unless the embedder dispatches tasks. We
// never run them (the zygote must stay single-threaded to fork); GC joins undispatched tasks by
// running them on the main thread. The callback runs under the helper lock: only count.
std::atomic<std::uint64_t> g_helper_tasks_dispatched{0};
void on_helper_task(JS::DispatchReason /*reason*/) {
  g_helper_tasks_dispatched.fetch_add(1, std::memory_order_relaxed);
}

std::string success_z22(std::string_view value_json) {
  std::string out;
  out.reserve(value_json.size() + 96);
  out += R"({"Z1K1":{"Z1K1":"Z9","Z9K1":"Z22"},"Z22K1":)";
  out += value_json;
  out += R"(,"Z22K2":{"Z1K1":"Z9","Z9K1":"Z24"}})";
  return out;
}

// Z22K1 void; Z22K2 a normal-form Z883(Z6,Z1) map with "errors" -> Z5 (no Z5K1, message in
// Z5K2, as the reference JavaScript executor reports user errors: evaluator-api.md §5).
std::string error_z22(std::string_view message) {
  static constexpr std::string_view kPairType =
      R"({"Z1K1":{"Z1K1":"Z9","Z9K1":"Z7"},"Z7K1":{"Z1K1":"Z9","Z9K1":"Z882"},)"
      R"("Z882K1":{"Z1K1":"Z9","Z9K1":"Z6"},"Z882K2":{"Z1K1":"Z9","Z9K1":"Z1"}})";
  std::string list_type =
      R"({"Z1K1":{"Z1K1":"Z9","Z9K1":"Z7"},"Z7K1":{"Z1K1":"Z9","Z9K1":"Z881"},"Z881K1":)";
  list_type += kPairType;
  list_type += '}';
  std::string out =
      R"({"Z1K1":{"Z1K1":"Z9","Z9K1":"Z22"},"Z22K1":{"Z1K1":"Z9","Z9K1":"Z24"},"Z22K2":{"Z1K1":)";
  out += R"({"Z1K1":{"Z1K1":"Z9","Z9K1":"Z7"},"Z7K1":{"Z1K1":"Z9","Z9K1":"Z883"},)"
         R"("Z883K1":{"Z1K1":"Z9","Z9K1":"Z6"},"Z883K2":{"Z1K1":"Z9","Z9K1":"Z1"}})";
  out += R"(,"K1":{"Z1K1":)";
  out += list_type;
  out += R"(,"K1":{"Z1K1":)";
  out += kPairType;
  out += R"(,"K1":{"Z1K1":"Z6","Z6K1":"errors"},"K2":{"Z1K1":{"Z1K1":"Z9","Z9K1":"Z5"},)"
         R"("Z5K2":{"Z1K1":"Z6","Z6K1":)";
  obs::append_json_string(out, message);  // also keeps invalid UTF-8 out of the JSON
  out += R"(}}},"K2":{"Z1K1":)";
  out += list_type;
  out += "}}}}";
  return out;
}

class JavascriptRuntime;
JavascriptRuntime* g_runtime = nullptr;  // the one runtime of this process (callbacks have no data)

class JavascriptRuntime final : public LanguageRuntime {
 public:
  explicit JavascriptRuntime(const JavascriptRuntimeOptions& options) : options_(options) {}

  // The runtime lives as long as the process: tearing SpiderMonkey down in a forked child is
  // pointless (children _exit), and JS_ShutDown in the zygote races nothing we need.
  ~JavascriptRuntime() override {
    if (g_runtime == this) {
      g_runtime = nullptr;
    }
  }

  const char* name() const override { return "javascript"; }

  bool initialize(std::string& error) override {
    if (g_runtime != nullptr) {
      error =
          "a JavaScript runtime is already initialised in this process (SpiderMonkey allows one)";
      return false;
    }
    if (!JS_Init()) {
      error =
          "JS_Init failed: SpiderMonkey needs ~2.1 GB of address space at start-up; do not set "
          "RLIMIT_AS before initialize() (set it in the child, see address_space_overhead())";
      return false;
    }
    // Before the context exists, so that SpiderMonkey starts no helper threads (fork safety).
    JS::SetHelperThreadTaskCallback(&on_helper_task, 2, 1u << 20);
    // SpiderMonkey's own hard cap (its allocations then fail with a catchable "out of memory")
    // sits above the budget that on_gc() enforces uncatchably, so that the budget trips first.
    cx_ = JS_NewContext(gc_max_bytes());
    if (cx_ == nullptr) {
      error = "JS_NewContext failed (out of memory?)";
      return false;
    }
    // Order matters (spike §1): job queues before the self-hosted code, then the global.
    if (!js::UseInternalJobQueues(cx_)) {
      error = "js::UseInternalJobQueues failed";
      return false;
    }
    if (!JS::InitSelfHostedCode(cx_)) {
      error = "JS::InitSelfHostedCode failed";
      return false;
    }
    JS_SetNativeStackQuota(cx_, options_.native_stack_quota_bytes);
    // Fewer JIT tiers for short calls (each tier-up costs mprotect W^X churn); hot loops still
    // get compiled, on the main thread since children have no helper threads.
    JS_SetGlobalJitCompilerOption(cx_, JSJITCOMPILER_BASELINE_INTERPRETER_WARMUP_TRIGGER, 1000);
    JS_SetGlobalJitCompilerOption(cx_, JSJITCOMPILER_BASELINE_WARMUP_TRIGGER, 2000);
    JS_SetOffthreadIonCompilationEnabled(cx_, false);

    JS::RealmOptions realm_options;
    global_.emplace(cx_, JS_NewGlobalObject(cx_, &kGlobalClass, nullptr, JS::FireOnNewGlobalHook,
                                            realm_options));
    if (!*global_) {
      error = "JS_NewGlobalObject failed";
      return false;
    }
    // Stay in the global's realm for the life of the process.
    JS::EnterRealm(cx_, *global_);
    if (!JS::InitRealmStandardClasses(cx_)) {
      error = "JS::InitRealmStandardClasses failed";
      return false;
    }
    g_runtime = this;
    JS_AddInterruptCallback(cx_, &JavascriptRuntime::on_interrupt);
    JS_SetGCCallback(cx_, &JavascriptRuntime::on_gc, this);
    JS::SetOutOfMemoryCallback(cx_, &JavascriptRuntime::on_out_of_memory, this);

    if (!load_prelude(error)) {
      return false;
    }
    // A first call in the zygote compiles the driver and the conversions once for all children
    // (no Math.random here: children would all inherit the same RNG state).
    CallOutput probe =
        call({"function Z0(Z0K1, Z0K2) { return [Z0K1, Z0K2.size === 0, null]; }", "Z0",
              R"({"Z0K1":{"Z1K1":"Z6","Z6K1":"x"},"Z0K2":{"Z1K1":{"Z1K1":{"Z1K1":"Z9",)"
              R"("Z9K1":"Z7"},"Z7K1":{"Z1K1":"Z9","Z9K1":"Z883"},"Z883K1":{"Z1K1":"Z9",)"
              R"("Z9K1":"Z6"},"Z883K2":{"Z1K1":"Z9","Z9K1":"Z40"}}}})"});
    if (!probe.ok || probe.z22_json.find("\"Z9K1\":\"Z24\"}}") == std::string::npos ||
        probe.z22_json.find("errors") != std::string::npos) {
      error = "the JavaScript runtime's start-up self-test failed: " +
              (probe.ok ? probe.z22_json : probe.error_message);
      return false;
    }
    JS_GC(cx_);
    return true;
  }

  void after_fork() override {
    // Nothing to reseed: Math.random is seeded lazily from getrandom() on first use, which
    // never happens in the zygote. SpiderMonkey has no threads to restart.
    stop_reason_.store(kNoStop);
  }

  void warm_up() override {
    // Exercises the driver, conversions and the JIT entry paths; not Math.random (per child it
    // would be fine, but keeping warm-up deterministic keeps its cost stable).
    (void)call(
        {"function Z0(Z0K1) { const m = new Map([[Z0K1, true]]);"
         " return [...m.keys()].map((k) => `${k}!`).concat([new ZPair('a', false)].map(String)); }",
         "Z0", R"({"Z0K1":{"Z1K1":"Z6","Z6K1":"warm"}})"});
  }

  CallOutput call(const CallInput& input) override {
    CallOutput out;
    if (cx_ == nullptr || !driver_) {
      out.error_message = "the JavaScript runtime is not initialised";
      return out;
    }
    // stop_reason_ is not cleared here: a SIGALRM that lands between the sandbox arming its
    // timer and this line must still stop the call. It is cleared after the call instead.
    output_.clear();
    output_full_ = false;
    output_limit_ = input.captured_output_limit != 0
                        ? static_cast<std::size_t>(input.captured_output_limit)
                        : options_.captured_output_bytes;
    oom_reported_ = false;
    in_call_ = true;

    if (!is_identifier(input.function_name)) {
      in_call_ = false;
      out.ok = true;
      out.z22_json = error_z22("Function name '" + input.function_name +
                               "' is not a valid JavaScript identifier.");
      return out;
    }

    JS::RootedValue result(cx_);
    bool called = false;
    {
      JS::RootedValueArray<5> argv(cx_);
      JSString* code = new_utf8_string(input.code);
      if (code != nullptr) {
        argv[0].setString(code);
        JSString* fname = new_utf8_string(input.function_name);
        if (fname != nullptr) {
          argv[1].setString(fname);
          JSString* args = new_utf8_string(input.arguments_json.empty() ? std::string_view("{}")
                                                                        : input.arguments_json);
          JSString* converters = args != nullptr ? new_utf8_string(input.converters_json) : nullptr;
          if (converters != nullptr) {
            argv[2].setString(args);
            argv[3].setString(converters);
            // Wikifunctions.Debug keeps at most as many characters as the console.
            argv[4].setNumber(static_cast<double>(output_limit_));
            JS::RootedValue fn(cx_, JS::ObjectValue(**driver_));
            called = JS::Call(cx_, JS::UndefinedHandleValue, fn, argv, &result);
          }
        }
      }
    }
    // Runs the user's awaits and our own; nothing else is queued (no timers, no I/O).
    js::RunJobs(cx_);
    in_call_ = false;

    const int stop = stop_reason_.load();
    if (stop != kNoStop) {
      JS_ClearPendingException(cx_);
      out.error_message = stop == kStopTimeout ? kJavascriptTimeoutError : kJavascriptMemoryError;
      out.out_of_memory = stop == kStopMemory;
    } else if (!called) {
      finish_with_exception(out);
    } else {
      finish_with_promise(result, out);
    }
    out.captured_output = std::move(output_);
    output_.clear();
    stop_reason_.store(kNoStop);
    return out;
  }

  std::vector<std::string> extra_syscalls() const override {
    // mprotect: JIT code pages flip between writable and executable (W^X).
    // getrusage: the GC reads its CPU time under memory pressure (SIGSYS without it).
    // rt_sigreturn: returning from the SIGALRM handler that calls request_interrupt().
    // madvise/mremap: GC chunk decommit and realloc of large buffers (also in Python's list).
    return {"mprotect", "getrusage", "rt_sigreturn", "madvise", "mremap"};
  }

  std::uint64_t address_space_overhead() const override {
    // JS_Init reserves ~2.1 GB PROT_NONE for JIT code, and RLIMIT_AS counts it; that reservation
    // is already part of the zygote's VmSize after initialize(), which the sandbox adds to
    // RLIMIT_AS itself (zygote VmSize + budget + this). What a child may map on top of that
    // outside the user's budget: JIT code pages, GC chunk alignment, malloc arenas.
    // (RLIMIT_DATA ignores PROT_NONE reservations, so it needs no overhead at all.)
    return kAddressSpaceHeadroom;
  }

  void set_memory_budget(std::uint64_t bytes) override {
    if (bytes == 0) {
      return;
    }
    // Half the budget for the GC heap (the uncatchable stop), SpiderMonkey's own cap at three
    // quarters; the rest is for malloc'd buffers, the nursery and the GC's own work, so that the
    // rlimit is not reached inside a GC.
    options_.gc_heap_budget_bytes = bytes / 2;
    if (cx_ != nullptr) {
      JS_SetGCParameter(cx_, JSGC_MAX_BYTES, gc_max_bytes());
    }
  }

  void request_interrupt() override {
    // Async-signal-safe: an atomic store and SpiderMonkey's atomic interrupt flag.
    int expected = kNoStop;
    stop_reason_.compare_exchange_strong(expected, kStopTimeout);
    if (cx_ != nullptr) {
      JS_RequestInterruptCallback(cx_);
    }
  }

 private:
  std::uint32_t gc_max_bytes() const {
    const std::uint64_t max = options_.gc_heap_budget_bytes + options_.gc_heap_budget_bytes / 2;
    return static_cast<std::uint32_t>(std::min<std::uint64_t>(max, 0xFFFFFFFFu));
  }

  static bool on_interrupt(JSContext* cx) {
    JavascriptRuntime* self = g_runtime;
    if (self == nullptr || self->stop_reason_.load() == kNoStop) {
      return true;  // an interrupt we did not ask for: carry on
    }
    // Returning false stops the running script without an exception, so user code cannot catch
    // it. Ask again at once so that any promise job still queued is stopped as soon as it starts.
    JS_RequestInterruptCallback(cx);
    return false;
  }

  // SpiderMonkey calls this when one of its allocations failed, before it throws its "out of
  // memory" string. The only trustworthy sign of OOM: user code can throw that text too. The call
  // stops there, uncatchably, as at the GC budget: user code that catches the exception would
  // otherwise keep failing allocations until the time limit (it did under ASan, whose allocator
  // reaches RLIMIT_AS before the GC heap reaches its budget).
  static void on_out_of_memory(JSContext* cx, void* data) {
    auto* self = static_cast<JavascriptRuntime*>(data);
    self->oom_reported_ = true;
    if (!self->in_call_) {
      return;
    }
    int expected = kNoStop;
    self->stop_reason_.compare_exchange_strong(expected, kStopMemory);
    JS_RequestInterruptCallback(cx);
  }

  static void on_gc(JSContext* cx, JSGCStatus status, JS::GCReason /*reason*/, void* data) {
    auto* self = static_cast<JavascriptRuntime*>(data);
    if (status != JSGC_END || !self->in_call_) {
      return;
    }
    // JSGC_MAX_BYTES does not fail fast (a bomb thrashes in back-to-back GCs); this does.
    if (JS_GetGCParameter(cx, JSGC_BYTES) > self->options_.gc_heap_budget_bytes) {
      int expected = kNoStop;
      self->stop_reason_.compare_exchange_strong(expected, kStopMemory);
      JS_RequestInterruptCallback(cx);
    }
  }

  static bool console_write(JSContext* cx, unsigned argc, JS::Value* vp) {
    JS::CallArgs args = JS::CallArgsFromVp(argc, vp);
    args.rval().setUndefined();
    JavascriptRuntime* self = g_runtime;
    if (self == nullptr || self->output_full_ || argc < 1) {
      return true;
    }
    JS::RootedString text(cx, JS::ToString(cx, args[0]));
    if (!text) {
      return false;
    }
    JS::UniqueChars utf8 = JS_EncodeStringToUTF8(cx, text);
    if (!utf8) {
      return false;
    }
    self->append_output(utf8.get());
    return true;
  }

  void append_output(std::string_view text) {
    const std::size_t limit = output_limit_;
    const std::size_t room_for_text =
        limit > kTruncationMarker.size() ? limit - kTruncationMarker.size() : 0;
    if (output_.size() + text.size() <= room_for_text) {
      output_ += text;
      return;
    }
    std::size_t take = room_for_text > output_.size() ? room_for_text - output_.size() : 0;
    take = std::min(take, text.size());
    // Do not cut a UTF-8 sequence in half.
    while (take > 0 && take < text.size() &&
           (static_cast<unsigned char>(text[take]) & 0xC0) == 0x80) {
      --take;
    }
    output_ += text.substr(0, take);
    output_ += kTruncationMarker;
    output_full_ = true;
  }

  static bool is_identifier(const std::string& s) {
    if (s.empty() || s.size() > 256) {
      return false;
    }
    for (std::size_t i = 0; i < s.size(); ++i) {
      const unsigned char c = static_cast<unsigned char>(s[i]);
      const bool alpha = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' || c == '$';
      const bool digit = c >= '0' && c <= '9';
      if (!(alpha || (digit && i > 0))) {
        return false;
      }
    }
    return true;
  }

  JSString* new_utf8_string(std::string_view s) {
    return JS_NewStringCopyUTF8N(cx_, JS::UTF8Chars(s.data(), s.size()));
  }

  // UTF-8 of a JS value converted with ToString; empty on failure.
  std::string to_utf8(JS::HandleValue v) {
    JS::RootedString s(cx_, JS::ToString(cx_, v));
    if (!s) {
      JS_ClearPendingException(cx_);
      return {};
    }
    JS::UniqueChars utf8 = JS_EncodeStringToUTF8(cx_, s);
    if (!utf8) {
      JS_ClearPendingException(cx_);
      return {};
    }
    return std::string(utf8.get());
  }

  // Only when SpiderMonkey itself reported an allocation failure during this call: the message
  // alone is text that user code controls (`throw new Error("out of memory: ...")`).
  bool is_out_of_memory(std::string_view message) const {
    return oom_reported_ && message.starts_with("out of memory");
  }

  void finish_with_message(std::string_view message, CallOutput& out) {
    if (is_out_of_memory(message)) {
      out.error_message = kJavascriptMemoryError;
      out.out_of_memory = true;
      return;
    }
    out.ok = true;
    out.z22_json = error_z22(message);
  }

  void finish_with_exception(CallOutput& out) {
    JS::RootedValue exc(cx_);
    if (!JS_IsExceptionPending(cx_) || !JS_GetPendingException(cx_, &exc)) {
      // Uncatchable stop that was not ours (should not happen): no Z22 to give.
      out.error_message = "JavaScript execution was terminated";
      return;
    }
    JS_ClearPendingException(cx_);
    std::string message = exc.isString() ? to_utf8(exc) : std::string();
    if (message.empty() && exc.isObject()) {
      JS::RootedObject obj(cx_, &exc.toObject());
      JS::RootedValue m(cx_);
      if (JS_GetProperty(cx_, obj, "message", &m) && m.isString()) {
        message = to_utf8(m);
      }
      JS_ClearPendingException(cx_);
    }
    finish_with_message(message.empty() ? "uncaught exception" : message, out);
  }

  void finish_with_promise(JS::HandleValue result, CallOutput& out) {
    if (!result.isObject()) {
      out.error_message = "the JavaScript driver returned no promise";
      return;
    }
    JS::RootedObject promise(cx_, &result.toObject());
    if (!JS::IsPromiseObject(promise)) {
      out.error_message = "the JavaScript driver returned no promise";
      return;
    }
    switch (JS::GetPromiseState(promise)) {
      case JS::PromiseState::Fulfilled: {
        JS::RootedValue value(cx_, JS::GetPromiseResult(promise));
        std::string text = to_utf8(value);
        if (text.size() >= 1 && text[0] == 'R') {
          out.ok = true;
          out.z22_json = success_z22(std::string_view(text).substr(1));
        } else if (text.size() >= 1 && text[0] == 'Z') {
          // A whole Z22 built by the driver: a result or error with Wikifunctions.Debug lines.
          out.ok = true;
          out.z22_json = text.substr(1);
        } else if (text.size() >= 1 && text[0] == 'E') {
          finish_with_message(std::string_view(text).substr(1), out);
        } else if (oom_reported_) {
          // ToString failed while SpiderMonkey was out of memory building the result.
          out.error_message = kJavascriptMemoryError;
          out.out_of_memory = true;
        } else {
          out.error_message = "the JavaScript driver returned a value it never builds";
        }
        return;
      }
      case JS::PromiseState::Rejected: {
        // The driver catches everything; a rejection means it failed inside its own catch
        // (out of memory, too much recursion while formatting the error...).
        JS::RootedValue reason(cx_, JS::GetPromiseResult(promise));
        std::string message = to_utf8(reason);
        finish_with_message(message.empty() ? "uncaught exception" : message, out);
        return;
      }
      case JS::PromiseState::Pending:
        out.ok = true;
        out.z22_json = error_z22(
            "The function's result never settled: it awaits a Promise that is never resolved "
            "(there are no timers or I/O in this runtime).");
        return;
    }
  }

  bool load_prelude(std::string& error) {
    JS::CompileOptions opts(cx_);
    opts.setFileAndLine("wf-conversion-prelude.js", 1);
    JS::SourceText<mozilla::Utf8Unit> source;
    if (!source.init(cx_, javascript_detail::kConversionPrelude,
                     std::strlen(javascript_detail::kConversionPrelude),
                     JS::SourceOwnership::Borrowed)) {
      error = "could not load the JavaScript conversion prelude";
      return false;
    }
    JS::RootedValue factory(cx_);
    if (!JS::Evaluate(cx_, opts, source, &factory)) {
      error = "the JavaScript conversion prelude failed to evaluate: " + pending_exception_text();
      return false;
    }
    JSFunction* write = JS_NewFunction(cx_, &JavascriptRuntime::console_write, 1, 0, "write");
    if (write == nullptr) {
      error = "could not create the console sink";
      return false;
    }
    JS::RootedValueArray<1> argv(cx_);
    argv[0].setObject(*JS_GetFunctionObject(write));
    JS::RootedValue driver(cx_);
    if (!JS::Call(cx_, JS::UndefinedHandleValue, factory, argv, &driver) || !driver.isObject()) {
      error = "the JavaScript conversion prelude did not return the driver: " +
              pending_exception_text();
      return false;
    }
    driver_.emplace(cx_, &driver.toObject());
    return true;
  }

  std::string pending_exception_text() {
    JS::RootedValue exc(cx_);
    if (!JS_GetPendingException(cx_, &exc)) {
      return "(no exception)";
    }
    JS_ClearPendingException(cx_);
    return to_utf8(exc);
  }

  JavascriptRuntimeOptions options_;
  JSContext* cx_ = nullptr;
  mozilla::Maybe<JS::PersistentRootedObject> global_;
  mozilla::Maybe<JS::PersistentRootedObject> driver_;
  std::atomic<int> stop_reason_{kNoStop};
  bool in_call_ = false;
  bool oom_reported_ = false;  // set by on_out_of_memory during the current call
  std::string output_;
  bool output_full_ = false;
  std::size_t output_limit_ = 0;
};

static_assert(std::atomic<int>::is_always_lock_free, "stop flag must be async-signal-safe");

}  // namespace

std::unique_ptr<LanguageRuntime> make_javascript_runtime() {
  return make_javascript_runtime(JavascriptRuntimeOptions{});
}

std::unique_ptr<LanguageRuntime> make_javascript_runtime(const JavascriptRuntimeOptions& options) {
  return std::make_unique<JavascriptRuntime>(options);
}

}  // namespace wf::evaluator
