// The wiki's wikilambda_fetch answer (orchestrator/wiki_protocol.h), then what the resolver does
// with each object text it yields: parse with the depth limit and normalize.
#include <string_view>

#include "fuzz_target.h"
#include "orchestrator/wiki_protocol.h"
#include "wf/zobject/zobject.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::vector<std::string> kZids = {"Z1", "Z2", "Z801", "Z10001", "Z12345"};
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  auto objects = wf::orchestrator::decode_wikilambda_fetch(body, kZids);
  if (!objects) return 0;
  WF_FUZZ_CHECK(objects->size() <= kZids.size());
  for (const auto& [zid, text] : *objects) {
    auto parsed = wf::zobject::parse(text, 64);
    if (parsed) (void)wf::zobject::normalize(*parsed);
  }
  return 0;
}
