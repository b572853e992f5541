#pragma once
// One ASCII character inside a JSON string, as the log lines (log.cc) and the orchestrator's
// response writer (nlohmann's escapes) write it.

#include <string>

namespace wf::obs {

// How append_json_char writes the characters JSON lets a writer choose for: the log lines' way
// (every control character and DEL as \u00XX), or nlohmann::json::dump's (\b and \f, DEL as it is).
enum class JsonEscapes { kLog, kNlohmann };

// Appends the ASCII character c (below 0x80) as it stands inside a JSON string.
inline void append_json_char(std::string& out, unsigned char c, JsonEscapes style) {
  static constexpr char kHex[] = "0123456789abcdef";
  const bool nlohmann = style == JsonEscapes::kNlohmann;
  switch (c) {
    case '"':
      out += "\\\"";
      return;
    case '\\':
      out += "\\\\";
      return;
    case '\n':
      out += "\\n";
      return;
    case '\r':
      out += "\\r";
      return;
    case '\t':
      out += "\\t";
      return;
    case '\b':
      if (nlohmann) {
        out += "\\b";
        return;
      }
      break;
    case '\f':
      if (nlohmann) {
        out += "\\f";
        return;
      }
      break;
    default:
      break;
  }
  if (c < 0x20 || (c == 0x7F && !nlohmann)) {
    out += "\\u00";
    out += kHex[c >> 4];
    out += kHex[c & 0xF];
  } else {
    out += static_cast<char>(c);
  }
}

}  // namespace wf::obs
