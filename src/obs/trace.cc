#include "wf/obs/trace.h"

#include <random>

namespace wf::obs {
namespace {

bool is_lower_hex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

bool all_zero(std::string_view s) {
  return s.find_first_not_of('0') == std::string_view::npos;
}

}  // namespace

std::string TraceContext::traceparent() const {
  // One allocation (the chain of operator+ took four): every request writes it twice or more.
  std::string out;
  out.reserve(trace_id.size() + span_id.size() + 7);
  out.append("00-", 3);
  out.append(trace_id);
  out += '-';
  out.append(span_id);
  out.append(sampled ? "-01" : "-00", 3);
  return out;
}

std::optional<ParsedTraceparent> parse_traceparent(std::string_view v) {
  // version "-" trace-id "-" parent-id "-" flags ; 2+1+32+1+16+1+2 = 55 characters.
  if (v.size() < 55) return std::nullopt;
  const std::string_view version = v.substr(0, 2);
  if (!is_lower_hex(version) || version == "ff") return std::nullopt;
  // Version 00 is exactly 55 characters; later versions may append "-..." fields.
  if (version == "00" && v.size() != 55) return std::nullopt;
  if (v.size() > 55 && v[55] != '-') return std::nullopt;
  if (v[2] != '-' || v[35] != '-' || v[52] != '-') return std::nullopt;
  const std::string_view trace_id = v.substr(3, 32);
  const std::string_view parent_id = v.substr(36, 16);
  const std::string_view flags = v.substr(53, 2);
  if (!is_lower_hex(trace_id) || !is_lower_hex(parent_id) || !is_lower_hex(flags)) {
    return std::nullopt;
  }
  if (all_zero(trace_id) || all_zero(parent_id)) return std::nullopt;
  const int flag_bits = std::stoi(std::string(flags), nullptr, 16);
  return ParsedTraceparent{std::string(trace_id), std::string(parent_id), (flag_bits & 1) != 0};
}

std::string random_hex_id(std::size_t bytes) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char digits[] = "0123456789abcdef";
  std::string out(bytes * 2, '0');
  do {
    for (std::size_t i = 0; i < bytes; i += 8) {
      std::uint64_t r = rng();
      for (std::size_t k = 0; k < 8 && i + k < bytes; ++k) {
        const auto byte = static_cast<unsigned>(r & 0xFF);
        r >>= 8;
        out[2 * (i + k)] = digits[byte >> 4];
        out[2 * (i + k) + 1] = digits[byte & 0xF];
      }
    }
  } while (all_zero(out));
  return out;
}

TraceContext make_trace_context(std::optional<std::string_view> header) {
  TraceContext ctx;
  if (header) {
    if (auto parsed = parse_traceparent(*header)) {
      ctx.trace_id = std::move(parsed->trace_id);
      ctx.parent_id = std::move(parsed->parent_id);
      ctx.sampled = parsed->sampled;
    }
  }
  if (ctx.trace_id.empty()) ctx.trace_id = random_hex_id(16);
  ctx.span_id = random_hex_id(8);
  return ctx;
}

}  // namespace wf::obs
