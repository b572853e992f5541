// The evaluator's request decoding (evaluator/service/call_request.cc behind the codec's
// three-way body decoder): any body becomes a call to run or the Z5 to answer with.
#include <string_view>

#include "evaluator/service/call_request.h"
#include "fuzz_target.h"
#include "wf/codec/avro.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  wf::codec::DecodeLimits limits;
  limits.max_depth = 64;
  limits.max_map_entries = 4096;
  auto decoded = wf::codec::decode_request_body<wf::evaluator::Json>(body, limits);
  if (!decoded) return 0;
  auto call = wf::evaluator::to_call_request(decoded->value);
  if (!call) {
    WF_FUZZ_CHECK(call.error().is_object() && call.error().contains("Z5K1"));
    return 0;
  }
  WF_FUZZ_CHECK(call->arguments.is_object());
  (void)wf::evaluator::normal_z7_violations(decoded->value, 10);
  return 0;
}
