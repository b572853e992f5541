#pragma once
// WF_ASAN: 1 when this translation unit is built with AddressSanitizer (the -DWF_SANITIZE=ON
// build, g++: __SANITIZE_ADDRESS__; the fuzz build, clang: __has_feature), else 0. WF_TSAN: the
// same for ThreadSanitizer (-DWF_SANITIZE=thread). The few places that behave differently under
// them say why (docs/testing.md, "Sanitizers").

#if defined(__SANITIZE_ADDRESS__)
#define WF_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WF_ASAN 1
#endif
#endif
#ifndef WF_ASAN
#define WF_ASAN 0
#endif

#if defined(__SANITIZE_THREAD__)
#define WF_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define WF_TSAN 1
#endif
#endif
#ifndef WF_TSAN
#define WF_TSAN 0
#endif
