#include "wire.h"

#include <algorithm>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/status.hpp>
#include <charconv>
#include <iterator>
#include <string_view>

namespace wf::http {

namespace {

// An empty string with room for a head whose start line takes `size` bytes.
template <class Fields>
std::string reserved_head(const Fields& fields, std::size_t size) {
  for (const auto& f : fields) size += f.name_string().size() + f.value().size() + 4;
  std::string head;
  head.reserve(size + 2);
  return head;
}

template <class Fields>
void append_fields(std::string& head, const Fields& fields) {
  for (const auto& f : fields) {
    head.append(f.name_string());
    head.append(": ");
    head.append(f.value());
    head.append("\r\n");
  }
  head.append("\r\n");
}

}  // namespace

std::string response_head(
    const boost::beast::http::response<boost::beast::http::string_body>& res) {
  const unsigned version = res.version();
  const unsigned code = res.result_int();
  const std::string_view reason = res.reason();
  std::string head = reserved_head(res.base(), 13 + reason.size() + 2);
  head.append("HTTP/");
  head += static_cast<char>('0' + version / 10);
  head += '.';
  head += static_cast<char>('0' + version % 10);
  head += ' ';
  head += static_cast<char>('0' + code / 100);
  head += static_cast<char>('0' + (code / 10) % 10);
  head += static_cast<char>('0' + code % 10);
  head += ' ';
  head.append(reason);
  head.append("\r\n");
  append_fields(head, res.base());
  return head;
}

namespace {

bool same_name(std::string_view a, std::string_view b) {
  return a.size() == b.size() && boost::beast::iequals(a, b);
}

// The fields Beast's keep_alive() and prepare_payload() write themselves.
bool payload_field(std::string_view name) {
  return same_name(name, "connection") || same_name(name, "content-length") ||
         same_name(name, "transfer-encoding");
}

}  // namespace

bool append_response_head(std::string& head, unsigned status, unsigned version, bool keep_alive,
                          std::size_t body_size, std::span<const HeadField> fields,
                          std::size_t distinct) {
  if ((version != 10 && version != 11) || status < 200 || status > 599 || status == 204 ||
      status == 304) {
    return false;
  }
  std::size_t size = 0;
  for (std::size_t i = 0; i < fields.size(); ++i) {
    const std::string_view name = fields[i].name;
    size += name.size() + fields[i].value.size() + 4;
    if (i < distinct) continue;
    if (payload_field(name)) return false;
    for (std::size_t j = 0; j < i; ++j) {
      if (same_name(fields[j].name, name)) return false;
    }
  }
  const std::string_view reason =
      boost::beast::http::obsolete_reason(static_cast<boost::beast::http::status>(status));
  head.reserve(head.size() + size + reason.size() + 64);
  head.append(version == 11 ? "HTTP/1.1 " : "HTTP/1.0 ", 9);
  head += static_cast<char>('0' + status / 100);
  head += static_cast<char>('0' + (status / 10) % 10);
  head += static_cast<char>('0' + status % 10);
  head += ' ';
  head.append(reason);
  head.append("\r\n", 2);
  for (const HeadField& f : fields) {
    head.append(f.name);
    head.append(": ", 2);
    head.append(f.value);
    head.append("\r\n", 2);
  }
  // keep_alive(): HTTP/1.1 says "close" when not kept, HTTP/1.0 "keep-alive" when kept.
  if (version == 11 && !keep_alive) head.append("Connection: close\r\n");
  if (version == 10 && keep_alive) head.append("Connection: keep-alive\r\n");
  char digits[24];
  const auto [end, ec] = std::to_chars(digits, digits + sizeof digits, body_size);
  head.append("Content-Length: ");
  head.append(digits, static_cast<std::size_t>(end - digits));
  head.append("\r\n\r\n", 4);
  return true;
}

std::string request_head(const boost::beast::http::request<boost::beast::http::string_body>& req) {
  const unsigned version = req.version();
  const std::string_view method = req.method_string();
  const std::string_view target = req.target();
  std::string head = reserved_head(req.base(), method.size() + target.size() + 11);
  head.append(method);
  head += ' ';
  head.append(target);
  head.append(" HTTP/");
  head += static_cast<char>('0' + version / 10);
  head += '.';
  head += static_cast<char>('0' + version % 10);
  head.append("\r\n");
  append_fields(head, req.base());
  return head;
}

namespace {

// Fields the client writes itself, or that Beast's keep_alive() and prepare_payload() change.
bool client_field(std::string_view name) {
  return payload_field(name) || same_name(name, "host") || same_name(name, "user-agent") ||
         same_name(name, "content-type");
}

// Beast's set() keeps a value without its leading and trailing spaces and tabs.
std::string_view trim_ows(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

void append_field(std::string& head, std::string_view name, std::string_view value) {
  value = trim_ows(value);
  head.append(name);
  head.append(": ", 2);
  head.append(value);
  head.append("\r\n", 2);
}

}  // namespace

bool append_request_head(std::string& head, const RequestHeadParts& parts) {
  constexpr std::string_view kMethods[] = {"GET",    "HEAD",    "POST", "PUT",
                                           "DELETE", "OPTIONS", "PATCH"};
  if (std::find(std::begin(kMethods), std::end(kMethods), parts.method) == std::end(kMethods)) {
    return false;
  }
  constexpr std::size_t kLongField = 4096;
  std::size_t size = parts.method.size() + parts.target.size() + parts.host.size() +
                     parts.user_agent.size() + parts.content_type.size() + 128;
  for (std::size_t i = 0; i < parts.headers.size(); ++i) {
    const std::string_view name = parts.headers[i].name;
    const std::string_view value = parts.headers[i].value;
    if (name.size() > kLongField || value.size() > kLongField || client_field(name)) return false;
    for (std::size_t j = 0; j < i; ++j) {
      if (same_name(parts.headers[j].name, name)) return false;
    }
    size += name.size() + value.size() + 4;
  }
  if (parts.host.size() > kLongField || parts.user_agent.size() > kLongField ||
      parts.content_type.size() > kLongField) {
    return false;
  }
  const bool post_or_put = parts.method == "POST" || parts.method == "PUT";
  head.reserve(head.size() + size);
  head.append(parts.method);
  head += ' ';
  head.append(parts.target);
  head.append(" HTTP/1.1\r\n");
  append_field(head, "Host", parts.host);
  append_field(head, "User-Agent", parts.user_agent);
  for (const Header& h : parts.headers) append_field(head, h.name, h.value);
  if ((parts.body_size > 0 || post_or_put) && !parts.content_type.empty()) {
    append_field(head, "Content-Type", parts.content_type);
  }
  if (parts.body_size > 0 || post_or_put || parts.method == "OPTIONS") {
    char digits[24];
    const auto [end, ec] = std::to_chars(digits, digits + sizeof digits, parts.body_size);
    append_field(head, "Content-Length",
                 std::string_view(digits, static_cast<std::size_t>(end - digits)));
  }
  head.append("\r\n", 2);
  return true;
}

}  // namespace wf::http
