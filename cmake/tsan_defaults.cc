// Linked into every executable of a -DWF_SANITIZE=thread build (scripts/test-tsan): the
// ThreadSanitizer options and suppressions compiled in, so that ctest, gtest discovery during the
// build and a test binary run by hand all see the same ones. Why each: docs/testing.md,
// "ThreadSanitizer". TSAN_OPTIONS in the environment still overrides the options.

extern const char* const wf_tsan_suppressions;  // cmake/tsan.supp, embedded by the build

extern "C" {

// second_deadlock_stack: a lock-order report shows where both locks were taken.
// history_size=4: the older side of a race is still known after long tests (default 2).
const char* __tsan_default_options() {
  return "second_deadlock_stack=1:history_size=4";
}

const char* __tsan_default_suppressions() {
  return wf_tsan_suppressions;
}

}  // extern "C"
