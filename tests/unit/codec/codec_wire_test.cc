// The wire format against the spec's byte example and the conformance corpus's Avro bodies.

#include <gtest/gtest.h>

#include <algorithm>

#include "codec_test_support.h"
#include "wf/codec/avro.h"

namespace wf::codec {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;
using testing::from_base64;
using testing::from_hex;
using testing::to_hex;

json z6(const std::string& s) {
  return json{{"Z1K1", "Z6"}, {"Z6K1", s}};
}
json z9(const std::string& s) {
  return json{{"Z1K1", "Z9"}, {"Z9K1", s}};
}

// evaluator-api.md §2.1, written out piece by piece exactly as the spec shows it.
std::string spec_example_bytes() {
  std::string b;
  b += from_hex("05") + "0.0.4" + from_hex("00");
  b += from_hex("00 00 00 00 20 8e d2 40");
  b += from_hex("0c") + "python";
  b += from_hex("34") + "def Z1(Z1K1):\n return Z1K1";
  b += from_hex("04") + "Z1";
  b += from_hex("06");
  b += from_hex("0a") + "Z10K1" + from_hex("00 04") + "ab";
  b += from_hex("0a") + "Z10K2" + from_hex("06");
  b += from_hex("04 08") + "Z1K1" + from_hex("04 06") + "Z40" + from_hex("0a") + "Z40K1" +
       from_hex("04 06") + "Z41" + from_hex("00");
  b += from_hex("0a") + "Z10K3" + from_hex("04 34") + R"({"Z1K1":"Z9","Z9K1":"Z41"})";
  b += from_hex("00");
  return b;
}

json spec_example_arguments() {
  return json{{"Z10K1", z6("ab")},
              {"Z10K2", json{{"Z1K1", z9("Z40")}, {"Z40K1", z9("Z41")}}},
              {"Z10K3", json{{"Z1K1", z9("Z99")}, {"Z99K1", z9("Z41")}}}};
}

CodeRequest spec_example_request() {
  CodeRequest r;
  r.reentrant = false;
  r.remaining_time_ms = 19000.5;
  r.coding_language = "python";
  r.code_string = "def Z1(Z1K1):\n return Z1K1";
  r.function_name = "Z1";
  return r;
}

TEST(CodecWire, EncodesTheSpecExampleByteForByte) {
  auto bytes = encode_code_request(spec_example_request(), spec_example_arguments());
  ASSERT_TRUE(bytes.has_value()) << bytes.error().message;
  EXPECT_EQ(to_hex(*bytes), to_hex(spec_example_bytes()));
}

TEST(CodecWire, EncodesTheSpecExampleFromOrderedJson) {
  auto bytes = encode_code_request(spec_example_request(), ordered_json(spec_example_arguments()));
  ASSERT_TRUE(bytes.has_value()) << bytes.error().message;
  EXPECT_EQ(to_hex(*bytes), to_hex(spec_example_bytes()));
}

TEST(CodecWire, DecodesTheSpecExampleToTheDecodedResult) {
  auto decoded = decode_versioned<json>(spec_example_bytes());
  ASSERT_TRUE(decoded.has_value()) << decoded.error().message;
  EXPECT_EQ(decoded->format, BodyFormat::kAvroVersioned);
  EXPECT_EQ(decoded->version, "0.0.4");
  const json expected = {
      {"reentrant", false},         {"remainingTime", 19000.5},
      {"codingLanguage", "python"}, {"codeString", "def Z1(Z1K1):\n return Z1K1"},
      {"functionName", "Z1"},       {"functionArguments", spec_example_arguments()}};
  EXPECT_EQ(decoded->value, expected) << decoded->value.dump();
  // And through the evaluator's order of attempts.
  auto any = decode_request_body<json>(spec_example_bytes());
  ASSERT_TRUE(any.has_value()) << any.error().message;
  EXPECT_EQ(any->format, BodyFormat::kAvroVersioned);
  EXPECT_EQ(any->value, expected);
}

TEST(CodecWire, Version003HasNoRemainingTime) {
  auto bytes = encode_code_request(spec_example_request(), spec_example_arguments(), kVersion003);
  ASSERT_TRUE(bytes.has_value());
  std::string expected = spec_example_bytes();
  expected.replace(0, 6, from_hex("05") + "0.0.3");
  expected.erase(7, 8);  // the double
  EXPECT_EQ(to_hex(*bytes), to_hex(expected));
  auto decoded = decode_versioned<json>(*bytes);
  ASSERT_TRUE(decoded.has_value()) << decoded.error().message;
  EXPECT_FALSE(decoded->value.contains("remainingTime"));
  EXPECT_EQ(decoded->value["functionArguments"], spec_example_arguments());
}

TEST(CodecWire, TerminalsUseTheirOwnBranchInEachUnion) {
  std::string out;
  ASSERT_TRUE(encode_zobject(z6("hi"), true, out).has_value());
  EXPECT_EQ(to_hex(out), "00 04 68 69");  // toolchain note: Z6{"hi"}
  out.clear();
  ASSERT_TRUE(encode_zobject(z6("hi"), false, out).has_value());
  EXPECT_EQ(to_hex(out), "02 04 68 69");  // inner branch 1
  out.clear();
  ASSERT_TRUE(encode_zobject(z9("Z41"), true, out).has_value());
  EXPECT_EQ(out, from_hex("02 06") + "Z41");
  out.clear();
  ASSERT_TRUE(encode_zobject(z9("Z41"), false, out).has_value());
  EXPECT_EQ(out, from_hex("04 06") + "Z41");
  out.clear();
  ASSERT_TRUE(encode_zobject(json::object(), true, out).has_value());
  EXPECT_EQ(to_hex(out), "06 00");  // Z1 with an empty map
}

TEST(CodecWire, MixedFormStringsAreWrittenAsTheirNormalForm) {
  std::string out;
  // Z9K1 not a ZID: not a valid Z9, so it is a Z1: bare "Z9" becomes a Z9, "Q42" a Z6.
  ASSERT_TRUE(encode_zobject(z9("Q42"), true, out).has_value());
  auto back = decode_zobject<json>(out);
  ASSERT_TRUE(back.has_value()) << back.error().message;
  EXPECT_EQ(*back, (json{{"Z1K1", z9("Z9")}, {"Z9K1", z6("Q42")}}));
  // A canonical bare reference / string at the top.
  out.clear();
  ASSERT_TRUE(encode_zobject(json("Z41"), true, out).has_value());
  EXPECT_EQ(out, from_hex("02 06") + "Z41");
  out.clear();
  ASSERT_TRUE(encode_zobject(json("K1"), true, out).has_value());  // key-looking: a string
  EXPECT_EQ(out, from_hex("00 04") + "K1");
  // A canonical Z1K1 inside an object.
  out.clear();
  ASSERT_TRUE(encode_zobject(json{{"Z1K1", "Z12"}}, true, out).has_value());
  EXPECT_EQ(out, from_hex("06 02 08") + "Z1K1" + from_hex("04 06") + "Z12" + from_hex("00"));
}

TEST(CodecWire, ValuesWithoutAvroFormFailWithTheirPath) {
  std::string out;
  auto r = encode_zobject(json{{"Z1K1", z9("Z10")}, {"Z10K1", json::array({"a"})}}, true, out);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("/Z10K1 is a array"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("normalize"), std::string::npos);
  out.clear();
  r = encode_zobject(json{{"Z1K1", z9("Z10")}, {"Z10K1", 5}}, true, out);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("number"), std::string::npos);
  auto req = encode_code_request(CodeRequest{}, json::array());
  ASSERT_FALSE(req.has_value());
  EXPECT_NE(req.error().message.find("functionArguments"), std::string::npos);
}

TEST(CodecWire, QuoteRoundTripsAnyJson) {
  const json quote = {{"Z1K1", z9("Z99")},
                      {"Z99K1", json{{"a", json::array({1, 2.5, nullptr, true, "ü"})}}}};
  auto bytes = encode_unversioned(quote);
  ASSERT_TRUE(bytes.has_value());
  auto back = decode_unversioned<json>(*bytes);
  ASSERT_TRUE(back.has_value()) << back.error().message;
  EXPECT_EQ(back->version, "0.0.1");
  EXPECT_EQ(back->value, quote);
}

TEST(CodecWire, ZobjectRequestRoundTripsWithKeyOrder) {
  ordered_json z7 = ordered_json::object();
  z7["Z1K1"] = ordered_json{{"Z1K1", "Z9"}, {"Z9K1", "Z7"}};
  z7["Z7K1"] = ordered_json{{"Z1K1", "Z9"}, {"Z9K1", "Z1000"}};
  z7["Z1000K2"] = ordered_json{{"Z1K1", "Z6"}, {"Z6K1", "b"}};
  z7["Z1000K1"] = ordered_json{{"Z1K1", "Z6"}, {"Z6K1", "a"}};
  auto bytes = encode_zobject_request(true, z7);
  ASSERT_TRUE(bytes.has_value());
  auto back = decode_versioned<ordered_json>(*bytes);
  ASSERT_TRUE(back.has_value()) << back.error().message;
  EXPECT_EQ(back->version, "0.0.2");
  EXPECT_EQ(back->value["reentrant"], true);
  EXPECT_EQ(back->value["zobject"].dump(), z7.dump());  // insertion order kept
}

TEST(CodecWire, JsonBodiesAreTheLastResort) {
  auto d = decode_request_body<json>(R"({"zobject":{"Z1K1":"Z7"},"reentrant":false})");
  ASSERT_TRUE(d.has_value()) << d.error().message;
  EXPECT_EQ(d->format, BodyFormat::kJson);
  EXPECT_EQ(d->value["zobject"]["Z1K1"], "Z7");
  auto ws = decode_request_body<json>(" \n\t{}");
  ASSERT_TRUE(ws.has_value()) << ws.error().message;
  EXPECT_EQ(ws->format, BodyFormat::kJson);
}

TEST(CodecWire, UndecodableBodyExplainsEveryAttempt) {
  auto d = decode_request_body<json>("hello");
  ASSERT_FALSE(d.has_value());
  const auto& m = d.error().message;
  EXPECT_NE(m.find("unversioned Avro"), std::string::npos) << m;
  EXPECT_NE(m.find("versioned Avro"), std::string::npos) << m;
  EXPECT_NE(m.find("as JSON"), std::string::npos) << m;
}

// ---- Conformance corpus ------------------------------------------------------------------

json code_of_z7(const json& z7) {
  return z7["Z7K1"]["Z8K4"]["K1"]["Z14K3"]["Z16K2"]["Z6K1"];
}

TEST(CodecConformance, EveryAvroCaseDecodesToItsLogicalRequest) {
  if (auto why = testing::missing_cases_reason(); !why.empty()) GTEST_SKIP() << why;
  int avro_cases = 0;
  for (const json& c : testing::evaluator_cases()) {
    if (!c.contains("request_body_base64")) continue;
    ++avro_cases;
    SCOPED_TRACE(c["name"].get<std::string>());
    const std::string body = from_base64(c["request_body_base64"].get<std::string>());
    const std::string encoding = c["request_encoding"];
    auto d = decode_request_body<ordered_json>(body);
    ASSERT_TRUE(d.has_value()) << d.error().message;
    EXPECT_EQ(d->format, BodyFormat::kAvroVersioned);
    EXPECT_EQ("avro-" + d->version, encoding);
    const json decoded = json(d->value);
    const json& request = c["request"];
    if (d->version == "0.0.2") {
      EXPECT_EQ(decoded, request);
      // Re-encoding with the decoded key order reproduces the exact bytes.
      auto again = encode_zobject_request(d->value["reentrant"].get<bool>(), d->value["zobject"]);
      ASSERT_TRUE(again.has_value());
      EXPECT_EQ(to_hex(*again), to_hex(body));
    } else {
      const json& z7 = request["zobject"];
      EXPECT_EQ(decoded["reentrant"], request["reentrant"]);
      EXPECT_EQ(decoded["remainingTime"], request["remainingTime"]);
      EXPECT_EQ(decoded["codingLanguage"],
                z7["Z7K1"]["Z8K4"]["K1"]["Z14K3"]["Z16K1"]["Z61K1"]["Z6K1"]);
      EXPECT_EQ(decoded["codeString"], code_of_z7(z7));
      EXPECT_EQ(decoded["functionName"], z7["Z7K1"]["Z8K5"]["Z9K1"]);
      json args = z7;
      args.erase("Z1K1");
      args.erase("Z7K1");
      EXPECT_EQ(decoded["functionArguments"], args);
      CodeRequest r;
      r.reentrant = decoded["reentrant"];
      r.remaining_time_ms = decoded["remainingTime"];
      r.coding_language = decoded["codingLanguage"];
      r.code_string = decoded["codeString"];
      r.function_name = decoded["functionName"];
      auto again = encode_code_request(r, d->value["functionArguments"], d->version);
      ASSERT_TRUE(again.has_value());
      EXPECT_EQ(to_hex(*again), to_hex(body));
    }
  }
  EXPECT_GE(avro_cases, 10);
}

TEST(CodecConformance, JsonCasesRoundTripThroughEveryAvroForm) {
  if (auto why = testing::missing_cases_reason(); !why.empty()) GTEST_SKIP() << why;
  for (const json& c : testing::evaluator_cases()) {
    if (c.contains("request_body_base64")) continue;
    SCOPED_TRACE(c["name"].get<std::string>());
    const json& zobject = c["request"]["zobject"];
    if (zobject.contains("codingLanguage")) {
      CodeRequest r;
      r.coding_language = zobject["codingLanguage"];
      r.code_string = zobject["codeString"];
      r.function_name = zobject["functionName"];
      auto bytes = encode_code_request(r, zobject["functionArguments"]);
      ASSERT_TRUE(bytes.has_value()) << bytes.error().message;
      auto back = decode_request_body<json>(*bytes);
      ASSERT_TRUE(back.has_value()) << back.error().message;
      EXPECT_EQ(back->value["functionArguments"],
                testing::normalize_strings(zobject["functionArguments"]));
      EXPECT_EQ(back->value["codeString"], zobject["codeString"]);
    } else {
      auto bytes = encode_unversioned(zobject);
      ASSERT_TRUE(bytes.has_value()) << bytes.error().message;
      auto back = decode_request_body<json>(*bytes);
      ASSERT_TRUE(back.has_value()) << back.error().message;
      EXPECT_EQ(back->format, BodyFormat::kAvroUnversioned);
      EXPECT_EQ(back->value, testing::normalize_strings(zobject));
    }
  }
}

}  // namespace
}  // namespace wf::codec
