// JSON text -> ZObject (zobject::parse with its depth limit): a value or an error, never a crash;
// a parsed value is no deeper than the limit.
#include <string_view>

#include "fuzz_target.h"
#include "wf/zobject/zobject.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  constexpr int kDepth = 64;
  auto parsed = wf::zobject::parse(text, kDepth);
  if (!parsed) {
    WF_FUZZ_CHECK(!parsed.error().message.empty());
    return 0;
  }
  WF_FUZZ_CHECK(wf::zobject::depth(*parsed, kDepth + 1) <= kDepth);
  return 0;
}
