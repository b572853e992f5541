#pragma once
// The one entry point every fuzz target defines. Under WF_FUZZ=ON libFuzzer calls it; in the
// normal build replay_main.cc calls it once per corpus file (ctest fuzz.<target>).
// A target aborts (WF_FUZZ_CHECK) when an invariant breaks, so both drivers see it as a crash.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

#define WF_FUZZ_CHECK(cond)                                                             \
  do {                                                                                  \
    if (!(cond)) {                                                                      \
      std::fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                     \
    }                                                                                   \
  } while (0)
