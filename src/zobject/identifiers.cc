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

namespace {

// Whether s[i..] is [1-9]\d* followed by `end` (the end of s when `end` is 0); `i` is left at
// `end`. One pass, no find() or substr(): every key of a request is checked (shallow_mixed,
// interning), and the two-pass form cost ~80 instructions a key through memchr.
bool number_then(std::string_view s, std::size_t& i, char end) {
  if (i >= s.size() || s[i] < '1' || s[i] > '9') return false;
  for (++i; i < s.size(); ++i) {
    if (!is_digit(s[i])) return s[i] == end && end != 0;
  }
  return end == 0;
}

}  // namespace

bool is_global_key(std::string_view s) {
  std::size_t i = 1;
  return !s.empty() && s[0] == 'Z' && number_then(s, i, 'K') && (++i, number_then(s, i, 0));
}

bool is_key(std::string_view s) {
  if (s.empty()) return false;
  std::size_t i = 1;
  if (s[0] == 'K') return number_then(s, i, 0);
  return s[0] == 'Z' && number_then(s, i, 'K') && (++i, number_then(s, i, 0));
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
  // The built-in types are Z1-Z99 with these numbers: a table by number, not 29 text compares
  // (the engine asks for every reference it resolves).
  static constexpr auto kTypes = [] {
    std::array<bool, 100> t{};
    for (int n : {1,  2,  3,  4,  5,  6,  7,  8,  9,  11, 12, 14, 16, 17, 18,
                  20, 21, 22, 23, 31, 32, 39, 40, 50, 60, 61, 80, 86, 99}) {
      t[n] = true;
    }
    return t;
  }();
  if (zid.size() < 2 || zid.size() > 3 || zid[0] != 'Z' || zid[1] == '0') return false;
  int n = 0;
  for (char c : zid.substr(1)) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + (c - '0');
  }
  return kTypes[n];
}

}  // namespace wf::zobject
