// Cross-check of the hand-written codec against avro-c (libavro), an independent implementation
// of the Avro binary encoding, using the function-schemata schemas: avro-c must produce the same
// bytes as our encoder, and read our bytes back to the same values.

#include <avro.h>
#include <gtest/gtest.h>

#include <memory>

#include "codec_test_support.h"
#include "wf/codec/avro.h"

namespace wf::codec {
namespace {

using nlohmann::ordered_json;
using testing::to_hex;

constexpr const char* kTerminals = R"(
  {"type":"record","namespace":"ztypes","name":"Z6","fields":[{"name":"Z6K1","type":"string"}]},
  {"type":"record","namespace":"ztypes","name":"Z9","fields":[{"name":"Z9K1","type":"string"}]},
  {"type":"record","namespace":"ztypes","name":"Z99","fields":[{"name":"Z99K1","type":"string"}]},
  {"type":"record","namespace":"ztypes","name":"Z1","fields":[{"name":"valueMap","type":
    {"type":"map","values":["ztypes.Z1","ztypes.Z6","ztypes.Z9","ztypes.Z99"]}}]})";

std::string zobject_schema() {
  return std::string("[") + kTerminals + "]";
}

std::string request_v004_schema() {
  return std::string(R"({"type":"record","namespace":"ztypes","name":"Request","fields":[
    {"name":"reentrant","type":"boolean"},
    {"name":"remainingTime","type":"double"},
    {"name":"codingLanguage","type":"string"},
    {"name":"codeString","type":"string"},
    {"name":"functionName","type":"string"},
    {"name":"functionArguments","type":{"type":"map","values":[)") +
         kTerminals + "]}}]}";
}

// Owns one schema, its generic class and one value.
class AvroValue {
 public:
  explicit AvroValue(const std::string& schema_json) {
    if (avro_schema_from_json_length(schema_json.data(), schema_json.size(), &schema_) != 0) {
      ADD_FAILURE() << "schema: " << avro_strerror();
      return;
    }
    iface_ = avro_generic_class_from_schema(schema_);
    avro_generic_value_new(iface_, &value_);
  }
  ~AvroValue() {
    if (iface_ != nullptr) {
      avro_value_decref(&value_);
      avro_value_iface_decref(iface_);
    }
    if (schema_ != nullptr) avro_schema_decref(schema_);
  }
  AvroValue(const AvroValue&) = delete;
  AvroValue& operator=(const AvroValue&) = delete;

  avro_value_t* get() { return &value_; }

  std::string write() {
    size_t size = 0;
    EXPECT_EQ(avro_value_sizeof(&value_, &size), 0) << avro_strerror();
    std::string out(size, '\0');
    avro_writer_t w = avro_writer_memory(out.data(), static_cast<int64_t>(out.size()));
    EXPECT_EQ(avro_value_write(w, &value_), 0) << avro_strerror();
    out.resize(static_cast<std::size_t>(avro_writer_tell(w)));
    avro_writer_free(w);
    return out;
  }

  bool read(const std::string& bytes) {
    avro_value_reset(&value_);
    avro_reader_t r = avro_reader_memory(bytes.data(), static_cast<int64_t>(bytes.size()));
    const int rc = avro_value_read(r, &value_);
    avro_reader_free(r);
    return rc == 0;
  }

 private:
  avro_schema_t schema_ = nullptr;
  avro_value_iface_t* iface_ = nullptr;
  avro_value_t value_{};
};

void set_string(avro_value_t* v, const std::string& s) {
  ASSERT_EQ(avro_value_set_string_len(v, s.c_str(), s.size() + 1), 0) << avro_strerror();
}

bool is_ref(const ordered_json& j) {
  return j.is_object() && j.size() == 2 && j.value("Z1K1", ordered_json()) == "Z9" &&
         j.contains("Z9K1") && j["Z9K1"].is_string();
}

// Sets the union `u` from a normal ZObject, with the branch rule of evaluator-api.md §2.1.
void set_zobject(avro_value_t* u, const ordered_json& in, bool outer) {
  const ordered_json j = in.is_string() ? testing::normalize_strings(in) : in;
  ASSERT_TRUE(j.is_object());
  avro_value_t branch, field;
  const auto idx = [outer](int outer_index, int inner_index) {
    return outer ? outer_index : inner_index;
  };
  if (j.size() == 2 && j.contains("Z99K1") && j.contains("Z1K1") && j["Z1K1"].is_object() &&
      j["Z1K1"] == ordered_json{{"Z1K1", "Z9"}, {"Z9K1", "Z99"}}) {
    ASSERT_EQ(avro_value_set_branch(u, idx(2, 3), &branch), 0);
    avro_value_get_by_name(&branch, "Z99K1", &field, nullptr);
    set_string(&field, j["Z99K1"].dump());
  } else if (is_ref(j)) {
    ASSERT_EQ(avro_value_set_branch(u, idx(1, 2), &branch), 0);
    avro_value_get_by_name(&branch, "Z9K1", &field, nullptr);
    set_string(&field, j["Z9K1"].get<std::string>());
  } else if (j.size() == 2 && j.value("Z1K1", ordered_json()) == "Z6" && j.contains("Z6K1")) {
    ASSERT_EQ(avro_value_set_branch(u, idx(0, 1), &branch), 0);
    avro_value_get_by_name(&branch, "Z6K1", &field, nullptr);
    set_string(&field, j["Z6K1"].get<std::string>());
  } else {
    ASSERT_EQ(avro_value_set_branch(u, idx(3, 0), &branch), 0);
    avro_value_get_by_name(&branch, "valueMap", &field, nullptr);
    for (auto it = j.begin(); it != j.end(); ++it) {
      avro_value_t element;
      ASSERT_EQ(avro_value_add(&field, it.key().c_str(), &element, nullptr, nullptr), 0);
      set_zobject(&element, it.value(), false);
    }
  }
}

std::string get_string(avro_value_t* v) {
  const char* s = nullptr;
  size_t size = 0;
  EXPECT_EQ(avro_value_get_string(v, &s, &size), 0);
  return size > 0 ? std::string(s, size - 1) : std::string();
}

// Reads a union value that avro-c decoded back into a normal ZObject.
ordered_json get_zobject(avro_value_t* u, bool outer) {
  int disc = -1;
  avro_value_t branch, field;
  avro_value_get_discriminant(u, &disc);
  avro_value_get_current_branch(u, &branch);
  static constexpr const char* kOuter[] = {"Z6", "Z9", "Z99", "Z1"};
  static constexpr const char* kInner[] = {"Z1", "Z6", "Z9", "Z99"};
  const std::string kind = (outer ? kOuter : kInner)[disc];
  if (kind == "Z6" || kind == "Z9") {
    avro_value_get_by_index(&branch, 0, &field, nullptr);
    return ordered_json{{"Z1K1", kind}, {kind + "K1", get_string(&field)}};
  }
  if (kind == "Z99") {
    avro_value_get_by_index(&branch, 0, &field, nullptr);
    return ordered_json{{"Z1K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z99"}}},
                        {"Z99K1", ordered_json::parse(get_string(&field))}};
  }
  avro_value_get_by_index(&branch, 0, &field, nullptr);
  size_t n = 0;
  avro_value_get_size(&field, &n);
  ordered_json out = ordered_json::object();
  for (size_t i = 0; i < n; ++i) {
    avro_value_t element;
    const char* key = nullptr;
    avro_value_get_by_index(&field, i, &element, &key);
    out[key] = get_zobject(&element, false);
  }
  return out;
}

std::vector<ordered_json> sample_zobjects() {
  std::vector<ordered_json> out;
  for (const auto& c : testing::evaluator_cases()) {
    const auto& z = c["request"]["zobject"];
    if (z.contains("functionArguments")) {
      for (const auto& [k, v] : z["functionArguments"].items()) out.push_back(ordered_json(v));
    } else {
      out.push_back(ordered_json(z));
    }
  }
  out.push_back(ordered_json{{"Z1K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z99"}}},
                             {"Z99K1", {{"b", 1}, {"a", {true, nullptr, "é"}}}}});
  out.push_back(ordered_json::object());
  // Long strings and many keys: multi-byte varints.
  ordered_json wide = ordered_json::object();
  wide["Z1K1"] = {{"Z1K1", "Z9"}, {"Z9K1", "Z10000"}};
  for (int i = 1; i <= 200; ++i) {
    wide["Z10000K" + std::to_string(i)] = {{"Z1K1", "Z6"}, {"Z6K1", std::string(i * 7, 'x')}};
  }
  out.push_back(wide);
  return out;
}

TEST(CodecLibavro, ZobjectBytesMatchAvroC) {
  if (auto why = testing::missing_cases_reason(); !why.empty()) GTEST_SKIP() << why;
  AvroValue avro(zobject_schema());
  int n = 0;
  for (const auto& z : sample_zobjects()) {
    SCOPED_TRACE(z.dump().substr(0, 200));
    avro_value_reset(avro.get());
    set_zobject(avro.get(), z, true);
    const std::string theirs = avro.write();
    auto ours = encode_unversioned(z);
    ASSERT_TRUE(ours.has_value()) << ours.error().message;
    EXPECT_EQ(to_hex(*ours), to_hex(theirs));
    // avro-c reads our bytes back to the same ZObject.
    ASSERT_TRUE(avro.read(*ours)) << avro_strerror();
    EXPECT_EQ(get_zobject(avro.get(), true), testing::normalize_strings(z));
    // and we read avro-c's bytes back to the same ZObject.
    auto back = decode_zobject<ordered_json>(theirs);
    ASSERT_TRUE(back.has_value()) << back.error().message;
    EXPECT_EQ(*back, testing::normalize_strings(z));
    ++n;
  }
  EXPECT_GT(n, 30);
}

TEST(CodecLibavro, RequestV004MatchesAvroC) {
  if (auto why = testing::missing_cases_reason(); !why.empty()) GTEST_SKIP() << why;
  AvroValue avro(request_v004_schema());
  avro_value_t field;
  avro_value_get_by_name(avro.get(), "reentrant", &field, nullptr);
  avro_value_set_boolean(&field, 1);
  avro_value_get_by_name(avro.get(), "remainingTime", &field, nullptr);
  avro_value_set_double(&field, 12345.678);
  avro_value_get_by_name(avro.get(), "codingLanguage", &field, nullptr);
  set_string(&field, "javascript");
  avro_value_get_by_name(avro.get(), "codeString", &field, nullptr);
  set_string(&field, std::string(300, 'c'));
  avro_value_get_by_name(avro.get(), "functionName", &field, nullptr);
  set_string(&field, "Z10001");
  avro_value_get_by_name(avro.get(), "functionArguments", &field, nullptr);
  const auto samples = sample_zobjects();
  ordered_json args = ordered_json::object();
  for (std::size_t i = 0; i < 5; ++i) {
    const std::string key = "Z10001K" + std::to_string(i + 1);
    args[key] = samples[i];
    avro_value_t element;
    ASSERT_EQ(avro_value_add(&field, key.c_str(), &element, nullptr, nullptr), 0);
    set_zobject(&element, samples[i], true);
  }
  const std::string theirs = std::string("\x05") + "0.0.4" + avro.write();

  CodeRequest r;
  r.reentrant = true;
  r.remaining_time_ms = 12345.678;
  r.coding_language = "javascript";
  r.code_string = std::string(300, 'c');
  r.function_name = "Z10001";
  auto ours = encode_code_request(r, args);
  ASSERT_TRUE(ours.has_value()) << ours.error().message;
  EXPECT_EQ(to_hex(*ours), to_hex(theirs));

  auto decoded = decode_versioned<ordered_json>(theirs);
  ASSERT_TRUE(decoded.has_value()) << decoded.error().message;
  EXPECT_EQ(decoded->value["functionArguments"], testing::normalize_strings(args));
  EXPECT_EQ(decoded->value["remainingTime"], 12345.678);
  EXPECT_EQ(decoded->value["reentrant"], true);
}

}  // namespace
}  // namespace wf::codec
