// Identifier patterns of zobjects.md §1, hand-written (no std::regex on hot paths).
#include <array>

#include "wf/zobject/zobject.h"

namespace wf::zobject {
namespace {

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// Matches [1-9]\d* over the whole of s.
bool is_number(std::string_view s) {
  if (s.empty() || s[0] == '0') return false;
  for (char c : s) {
    if (!is_digit(c)) return false;
  }
  return true;
}

}  // namespace

bool is_zid(std::string_view s) {
  return s.size() >= 2 && s[0] == 'Z' && is_number(s.substr(1));
}

bool is_local_key(std::string_view s) {
  return s.size() >= 2 && s[0] == 'K' && is_number(s.substr(1));
}

bool is_global_key(std::string_view s) {
  if (s.size() < 4 || s[0] != 'Z') return false;
  auto k = s.find('K');
  if (k == std::string_view::npos) return false;
  return is_number(s.substr(1, k - 1)) && is_number(s.substr(k + 1));
}

bool is_key(std::string_view s) {
  return is_local_key(s) || is_global_key(s);
}

bool is_reference_like(std::string_view s) {
  if (s.size() < 2) return false;
  char c = s[0];
  if (c < 'A' || c > 'Z' || c == 'K') return false;
  return is_number(s.substr(1));
}

std::expected<void, json> check_zid(std::string_view s) {
  if (is_zid(s)) return {};
  return std::unexpected(make_error("Z549", {z6(s)}));
}

bool is_builtin_type(std::string_view zid) {
  static constexpr std::array<std::string_view, 29> kTypes = {
      "Z1",  "Z2",  "Z3",  "Z4",  "Z5",  "Z6",  "Z7",  "Z8",  "Z9",  "Z11",
      "Z12", "Z14", "Z16", "Z17", "Z18", "Z20", "Z21", "Z22", "Z23", "Z31",
      "Z32", "Z39", "Z40", "Z50", "Z60", "Z61", "Z80", "Z86", "Z99"};
  for (auto t : kTypes) {
    if (t == zid) return true;
  }
  return false;
}

}  // namespace wf::zobject
