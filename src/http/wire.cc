#include "wire.h"

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

}  // namespace wf::http
