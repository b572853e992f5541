#pragma once
// Small helpers shared by the codec tests: hex/base64 decoding and reading conformance cases.

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace wf::codec::testing {

inline std::string from_hex(std::string_view hex) {
  std::string out;
  int nibble = -1;
  for (char c : hex) {
    int v = -1;
    if (c >= '0' && c <= '9') v = c - '0';
    if (c >= 'a' && c <= 'f') v = c - 'a' + 10;
    if (c >= 'A' && c <= 'F') v = c - 'A' + 10;
    if (v < 0) continue;
    if (nibble < 0) {
      nibble = v;
    } else {
      out.push_back(static_cast<char>(nibble * 16 + v));
      nibble = -1;
    }
  }
  return out;
}

inline std::string to_hex(std::string_view bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    if (!out.empty()) out.push_back(' ');
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

inline std::string from_base64(std::string_view in) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
  };
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    const int v = value(c);
    if (v < 0) continue;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  return out;
}

// What the codec's Avro form turns a mixed-form ZObject into: bare strings outside Z6/Z9 become
// Z9 (ZIDs) or Z6 objects. Written from zobjects.md §5 for the tests.
template <class Json>
Json normalize_strings(const Json& j) {
  if (j.is_string()) {
    const auto& s = j.template get_ref<const std::string&>();
    bool ref = s.size() >= 2 && s[0] == 'Z' && s[1] >= '1' && s[1] <= '9';
    for (std::size_t i = 2; ref && i < s.size(); ++i) ref = s[i] >= '0' && s[i] <= '9';
    return ref ? Json{{"Z1K1", "Z9"}, {"Z9K1", s}} : Json{{"Z1K1", "Z6"}, {"Z6K1", s}};
  }
  if (!j.is_object()) return j;
  if (j.contains("Z1K1") && (j["Z1K1"] == "Z6" || j["Z1K1"] == "Z9") && j.size() == 2) return j;
  Json out = Json::object();
  for (auto it = j.begin(); it != j.end(); ++it) out[it.key()] = normalize_strings(it.value());
  return out;
}

inline nlohmann::json read_json_file(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return nlohmann::json::parse(ss.str());
}

// Where the evaluator conformance cases are (../shared beside the repository).
inline std::filesystem::path evaluator_cases_dir() {
  return std::filesystem::path(WF_CONFORMANCE_DIR) / "cases" / "evaluator";
}

// Why the corpus tests are skipped, for GTEST_SKIP(); empty when the cases are there.
inline std::string missing_cases_reason() {
  std::error_code ec;
  if (std::filesystem::is_directory(evaluator_cases_dir(), ec)) return "";
  return "no conformance cases at " + evaluator_cases_dir().string() +
         " (a clone without ../shared beside it): corpus checks skipped";
}

// Every evaluator conformance case, sorted by file name; none when the corpus is absent.
inline std::vector<nlohmann::json> evaluator_cases() {
  std::vector<std::filesystem::path> files;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(evaluator_cases_dir(), ec)) {
    if (e.path().extension() == ".json") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  std::vector<nlohmann::json> out;
  for (const auto& f : files) out.push_back(read_json_file(f));
  return out;
}

}  // namespace wf::codec::testing
