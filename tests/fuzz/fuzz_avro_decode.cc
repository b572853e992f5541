// The evaluator wire format (include/wf/codec/avro.h): the unversioned ZObject decoder, the
// versioned body decoder and the three-way request-body decoder take any bytes and answer a value
// or an error within the limits. A decoded ZObject survives a re-encode round trip.
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "fuzz_target.h"
#include "wf/codec/avro.h"

namespace codec = wf::codec;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  codec::DecodeLimits limits;
  limits.max_depth = 64;
  limits.max_map_entries = 4096;
  if (auto z = codec::decode_zobject<nlohmann::json>(bytes, limits)) {
    // Whatever decodes re-encodes; after one round (which turns e.g. a Z9 branch holding a
    // non-ZID into a Z1) encoding and decoding are a fixed point.
    std::string again;
    WF_FUZZ_CHECK(codec::encode_zobject(*z, /*outer=*/true, again).has_value());
    auto once = codec::decode_zobject<nlohmann::json>(again, limits);
    WF_FUZZ_CHECK(once.has_value());
    std::string twice_bytes;
    WF_FUZZ_CHECK(codec::encode_zobject(*once, /*outer=*/true, twice_bytes).has_value());
    auto twice = codec::decode_zobject<nlohmann::json>(twice_bytes, limits);
    WF_FUZZ_CHECK(twice.has_value() && *twice == *once);
  }
  (void)codec::decode_versioned<nlohmann::json>(bytes, limits);
  (void)codec::decode_request_body<nlohmann::json>(bytes, limits);
  return 0;
}
