// Linked into every executable of a -DWF_SANITIZE=ON build: the sanitizers' default options,
// compiled in rather than taken from the environment, because the evaluator starts its sandbox
// supervisors from a fresh image with an empty environment (no ASAN_OPTIONS reach them), and
// gtest discovery runs the test binaries during the build. Why each option: docs/testing.md.
// An environment variable still overrides these (it is applied after the defaults).

extern "C" {

const char* __asan_default_options() {
  return "detect_leaks=1:handle_segv=0:handle_sigbus=0:handle_sigfpe=0:handle_sigill=0:"
         "handle_abort=0:allocator_may_return_null=1";
}

const char* __ubsan_default_options() {
  return "print_stacktrace=1:halt_on_error=1";
}

// The embedded interpreters keep their global state until the process ends (CPython does not
// free everything at exit, nor SpiderMonkey's process-wide caches): not leaks of ours.
const char* __lsan_default_suppressions() {
  return "leak:libpython3.11\n"
         "leak:libmozjs-102\n";
}

}  // extern "C"
