// Decoding untrusted bytes: truncation, garbage, lying lengths, deep nesting, and a mutation loop
// over valid messages that must never crash, hang or allocate more than the input allows.

#include <gtest/gtest.h>

#include <random>

#include "codec_test_support.h"
#include "wf/codec/avro.h"

namespace wf::codec {
namespace {

using nlohmann::json;
using testing::from_base64;
using testing::from_hex;

std::string valid_v004() {
  CodeRequest r;
  r.remaining_time_ms = 1000;
  r.coding_language = "python-3";
  r.code_string = "def Z1000(Z1000K1):\n\treturn Z1000K1";
  r.function_name = "Z1000";
  const json args = {
      {"Z1000K1", {{"Z1K1", "Z6"}, {"Z6K1", "x"}}},
      {"Z1000K2",
       {{"Z1K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z40"}}}, {"Z40K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z41"}}}}},
      {"Z1000K3", {{"Z1K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z99"}}}, {"Z99K1", {{"a", {1, 2}}}}}}};
  return *encode_code_request(r, args);
}

std::string error_of(std::string_view body) {
  auto d = decode_versioned<json>(body);
  return d.has_value() ? std::string("<decoded>") : d.error().message;
}

TEST(CodecHostile, EveryTruncationFailsCleanly) {
  const std::string full = valid_v004();
  for (std::size_t n = 0; n < full.size(); ++n) {
    auto d = decode_request_body<json>(std::string_view(full).substr(0, n));
    EXPECT_FALSE(d.has_value()) << "prefix of " << n << " bytes decoded";
  }
  EXPECT_TRUE(decode_request_body<json>(full).has_value());
}

TEST(CodecHostile, TrailingBytesAreRejected) {
  auto m = error_of(valid_v004() + "x");
  EXPECT_NE(m.find("unexpected bytes"), std::string::npos) << m;
}

TEST(CodecHostile, HugeStringLengthIsCheckedBeforeAllocating) {
  // Unversioned Z6 claiming a 2 GiB string in a 6-byte message (the avro-c failure case).
  const std::string body = from_hex("00 80 80 80 80 10");
  auto d = decode_unversioned<json>(body);
  ASSERT_FALSE(d.has_value());
  EXPECT_NE(d.error().message.find("declares 2147483648 bytes but only 0 remain"),
            std::string::npos)
      << d.error().message;
  // Same in a versioned body's codingLanguage.
  std::string v =
      from_hex("05") + "0.0.4" + from_hex("00") + std::string(8, '\0') + from_hex("fe ff ff ff 0f");
  auto m = error_of(v);
  EXPECT_NE(m.find("declares 2147483647 bytes"), std::string::npos) << m;
}

TEST(CodecHostile, NegativeStringLengthIsRejected) {
  auto d = decode_unversioned<json>(from_hex("00 01"));
  ASSERT_FALSE(d.has_value());
  EXPECT_NE(d.error().message.find("negative length"), std::string::npos) << d.error().message;
}

TEST(CodecHostile, HugeMapCountIsCheckedAgainstRemainingBytes) {
  // Z1 with a map block claiming 2^62 entries.
  auto d = decode_unversioned<json>(from_hex("06 80 80 80 80 80 80 80 80 80 01"));
  ASSERT_FALSE(d.has_value());
  EXPECT_NE(d.error().message.find("entries but only"), std::string::npos) << d.error().message;
}

TEST(CodecHostile, NegativeMapBlockCountIsAccepted) {
  // Z1 {"Z1K1": inner Z9 "Z7"} written as one negative block (count -1, byte size 8).
  const std::string entry = from_hex("08") + "Z1K1" + from_hex("04 04") + "Z7";
  std::string body = from_hex("06 01") + std::string(1, static_cast<char>(entry.size() * 2)) +
                     entry + from_hex("00");
  auto d = decode_unversioned<json>(body);
  ASSERT_TRUE(d.has_value()) << d.error().message;
  EXPECT_EQ(d->value, (json{{"Z1K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z7"}}}}));
  // Two blocks, positive then negative.
  const std::string e2 = from_hex("08") + "Z7K1" + from_hex("02 02") + "a";
  body = from_hex("06 02") + entry + from_hex("01") +
         std::string(1, static_cast<char>(e2.size() * 2)) + e2 + from_hex("00");
  d = decode_unversioned<json>(body);
  ASSERT_TRUE(d.has_value()) << d.error().message;
  EXPECT_EQ(d->value["Z7K1"], (json{{"Z1K1", "Z6"}, {"Z6K1", "a"}}));
}

TEST(CodecHostile, MinimumMapCountAndLyingBlockSizeAreRejected) {
  // count = INT64_MIN (zig-zag 2^64-1)
  auto d = decode_unversioned<json>(from_hex("06 ff ff ff ff ff ff ff ff ff 01"));
  ASSERT_FALSE(d.has_value());
  EXPECT_NE(d.error().message.find("invalid count"), std::string::npos) << d.error().message;
  // count -1 with a block size larger than the message
  d = decode_unversioned<json>(from_hex("06 01 80 80 04 08"));
  ASSERT_FALSE(d.has_value());
  EXPECT_NE(d.error().message.find("declares"), std::string::npos) << d.error().message;
}

TEST(CodecHostile, OverlongVarintIsRejected) {
  auto d = decode_unversioned<json>(from_hex("ff ff ff ff ff ff ff ff ff ff ff 01"));
  ASSERT_FALSE(d.has_value());
  d = decode_unversioned<json>(from_hex("80 80 80 80 80 80 80 80 80 7f"));
  ASSERT_FALSE(d.has_value());
  EXPECT_NE(d.error().message.find("64 bits"), std::string::npos) << d.error().message;
}

TEST(CodecHostile, BadBranchBooleanUtf8AndVersion) {
  EXPECT_NE(decode_unversioned<json>(from_hex("08")).error().message.find("out of range"),
            std::string::npos);
  std::string bad_bool = from_hex("05") + "0.0.2" + from_hex("07 00 00");
  EXPECT_NE(error_of(bad_bool).find("boolean byte is 7"), std::string::npos);
  EXPECT_NE(decode_unversioned<json>(from_hex("00 04 c3 28")).error().message.find("UTF-8"),
            std::string::npos);
  EXPECT_NE(error_of(from_hex("05") + "9.9.9" + from_hex("00")).find("unsupported version"),
            std::string::npos);
  EXPECT_FALSE(decode_versioned<json>("").has_value());
  EXPECT_FALSE(decode_versioned<json>(from_hex("40 41")).has_value());
}

TEST(CodecHostile, QuoteMustBeJsonAndBounded) {
  auto d = decode_unversioned<json>(from_hex("04 06") + "{x}");
  ASSERT_FALSE(d.has_value());
  EXPECT_NE(d.error().message.find("not JSON"), std::string::npos) << d.error().message;
  const std::string deep(200, '[');
  const std::string body = from_hex("04 90 03") + deep;  // Z99, length 200 (zig-zag 0x190)
  DecodeLimits limits;
  limits.max_depth = 50;
  d = decode_unversioned<json>(body, limits);
  ASSERT_FALSE(d.has_value());
  EXPECT_NE(d.error().message.find("deeper than 50"), std::string::npos) << d.error().message;
}

TEST(CodecHostile, DeepZobjectNestingIsBounded) {
  // Z1 { K1: Z1 { K1: ... } } nested 100 deep; limit 40.
  std::string body = from_hex("06");
  for (int i = 0; i < 100; ++i) body += from_hex("02 04") + "K1" + from_hex("00");
  DecodeLimits limits;
  limits.max_depth = 40;
  auto d = decode_unversioned<json>(body, limits);
  ASSERT_FALSE(d.has_value());
  EXPECT_NE(d.error().message.find("deeper than 40"), std::string::npos) << d.error().message;
}

TEST(CodecHostile, JsonBodyDepthAndSyntax) {
  DecodeLimits limits;
  limits.max_depth = 10;
  auto d = decode_request_body<json>(std::string(1000, '[') + std::string(1000, ']'), limits);
  ASSERT_FALSE(d.has_value());
  EXPECT_NE(d.error().message.find("deeper than 10"), std::string::npos) << d.error().message;
  auto p = parse_json<json>("{\"a\":", limits);
  ASSERT_FALSE(p.has_value());
  EXPECT_NE(p.error().message.find("parse error"), std::string::npos) << p.error().message;
  // A million nested arrays with the default limit: refused, no stack overflow.
  auto big = decode_request_body<json>(std::string(1'000'000, '['));
  EXPECT_FALSE(big.has_value());
}

TEST(CodecHostile, MapEntryBudgetIsEnforced) {
  std::string body = from_hex("06 c8 01");  // 100 entries
  for (int i = 0; i < 100; ++i) body += from_hex("02") + "K" + from_hex("02 00");
  body += from_hex("00");
  DecodeLimits limits;
  limits.max_map_entries = 50;
  auto d = decode_unversioned<json>(body, limits);
  ASSERT_FALSE(d.has_value());
  EXPECT_NE(d.error().message.find("more than 50 map entries"), std::string::npos)
      << d.error().message;
}

// Random mutations of valid messages (the spec example, conformance bodies, our own): the decoder
// must return (value or error) every time; whatever decodes must survive a re-encode round trip.
TEST(CodecHostile, MutationLoopNeverCrashes) {
  std::vector<std::string> seeds = {valid_v004()};
  for (const json& c : testing::evaluator_cases()) {
    if (c.contains("request_body_base64")) {
      seeds.push_back(from_base64(c["request_body_base64"].get<std::string>()));
    }
  }
  {
    const json z7 = {{"Z1K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z7"}}},
                     {"Z7K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z801"}}},
                     {"Z801K1", {{"Z1K1", "Z6"}, {"Z6K1", "hello"}}}};
    seeds.push_back(*encode_unversioned(z7));
  }
  std::mt19937_64 rng(20240607);
  DecodeLimits limits;
  limits.max_depth = 64;
  int decoded = 0;
  for (int iter = 0; iter < 30000; ++iter) {
    std::string m = seeds[rng() % seeds.size()];
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !m.empty(); ++e) {
      const std::size_t pos = rng() % m.size();
      switch (rng() % 6) {
        case 0:
          m[pos] = static_cast<char>(m[pos] ^ (1 << (rng() % 8)));
          break;
        case 1:
          m[pos] = static_cast<char>(rng());
          break;
        case 2:
          m.insert(pos, 1, static_cast<char>(rng()));
          break;
        case 3:
          m.erase(pos, 1 + rng() % 4);
          break;
        case 4:
          m.resize(pos);
          break;
        default: {  // splice a run of 0xff / 0x80 (long varints)
          m.insert(pos, 1 + rng() % 10, static_cast<char>((rng() & 1) ? 0xff : 0x80));
          break;
        }
      }
    }
    auto d = decode_request_body<json>(m, limits);
    if (!d.has_value()) {
      EXPECT_FALSE(d.error().message.empty());
      continue;
    }
    ++decoded;
    if (d->format == BodyFormat::kAvroUnversioned) {
      // Whatever decodes re-encodes; after one round (which normalizes e.g. a Z9 branch holding a
      // non-ZID into a Z1) encoding and decoding are a fixed point.
      auto again = encode_unversioned(d->value);
      ASSERT_TRUE(again.has_value()) << again.error().message;
      auto once = decode_unversioned<json>(*again, limits);
      ASSERT_TRUE(once.has_value()) << once.error().message;
      auto twice = decode_unversioned<json>(*encode_unversioned(once->value), limits);
      ASSERT_TRUE(twice.has_value()) << twice.error().message;
      EXPECT_EQ(twice->value, once->value);
    }
  }
  // Some mutations (e.g. inside string contents) still decode; the loop must exercise both paths.
  EXPECT_GT(decoded, 100);
}

}  // namespace
}  // namespace wf::codec
