#pragma once
// A JSON parser for the usual shape of a ZObject answer (wf-evaluator's Z22 in normal form):
// objects, arrays, strings of printable ASCII without escapes, true, false and null. It scans each
// string once and builds its value directly, where nlohmann's lexer copies it byte by byte
// (bench/orchestrator_cpu: about half of the orchestrator's CPU for a Python call's answer was
// that parse). Any other text (an escape, a byte below 0x20 or above 0x7e in a string, a number,
// a duplicate key, nesting deeper than max_depth, invalid JSON) gives nullopt: the caller
// then parses it with nlohmann, so the result is always what nlohmann::json::parse gives.

#include <array>
#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>

namespace wf::codec {

inline constexpr int kMaxPlainDepth = 128;

// What a byte inside a plain string is: printable ASCII but '"' and '\\' (kPlainByte), or not.
inline constexpr unsigned char kPlainByte = 1;
inline constexpr auto kStringByte = [] {
  std::array<unsigned char, 256> t{};
  for (int c = 0x20; c <= 0x7e; ++c) t[c] = c == '"' || c == '\\' ? 0 : kPlainByte;
  return t;
}();

// The lexing of plain JSON, shared by parse_plain_json and the readers that view such text
// without building it (the orchestrator's code_answer.cc and request_nodes.cc): a cursor over
// the text.
struct PlainCursor {
  const char* p;
  const char* end;

  // Most calls find no space (the next token at once): one comparison then.
  void skip_space() {
    while (p != end && static_cast<unsigned char>(*p) <= ' ' &&
           (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) {
      ++p;
    }
  }

  // A string's characters (after its opening quote) up to its closing quote, which is consumed;
  // false for anything but printable ASCII without escapes. One table look-up per character.
  bool string_text(std::string_view& out) {
    const char* start = p;
    while (p != end && kStringByte[static_cast<unsigned char>(*p)] == kPlainByte) ++p;
    if (p == end || *p != '"') return false;  // the end, an escape or a byte not plain
    out = std::string_view(start, static_cast<std::size_t>(p - start));
    ++p;
    return true;
  }

  // The items of an array or object after its opening bracket, up to `close`, which is consumed:
  // `item()` reads one (false ends the read as not plain JSON), commas between them.
  template <class Item>
  bool items(char close, Item&& item) {
    skip_space();
    if (p != end && *p == close) {
      ++p;
      return true;
    }
    for (;;) {
      if (!item()) return false;
      skip_space();
      if (p == end) return false;
      if (*p == ',') {
        ++p;
        continue;
      }
      if (*p != close) return false;
      ++p;
      return true;
    }
  }

  // An object's members after its '{': `member(key)` reads the value that follows the key's ':'.
  template <class Member>
  bool members(Member&& member) {
    return items('}', [&] {
      skip_space();
      if (p == end || *p != '"') return false;
      ++p;
      std::string_view key;
      if (!string_text(key)) return false;
      skip_space();
      if (p == end || *p != ':') return false;
      ++p;
      return member(key);
    });
  }

  bool literal(std::string_view word) {
    if (static_cast<std::size_t>(end - p) < word.size() ||
        word.compare(0, word.size(), p, word.size()) != 0) {
      return false;
    }
    p += word.size();
    return true;
  }
};

// `max_depth` (at most kMaxPlainDepth counts): text nested deeper gives nullopt, so a caller with
// a lower bound than kMaxPlainDepth (a request body's) gets its own refusal from its own parser.
std::optional<nlohmann::json> parse_plain_json(std::string_view text,
                                               int max_depth = kMaxPlainDepth);

}  // namespace wf::codec
