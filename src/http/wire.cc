#include "wire.h"

#include <string_view>

namespace wf::http {

std::string response_head(
    const boost::beast::http::response<boost::beast::http::string_body>& res) {
  const unsigned version = res.version();
  const unsigned code = res.result_int();
  const std::string_view reason = res.reason();
  std::size_t size = 13 + reason.size() + 4;
  for (const auto& f : res.base()) size += f.name_string().size() + f.value().size() + 4;
  std::string head;
  head.reserve(size);
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
  for (const auto& f : res.base()) {
    head.append(f.name_string());
    head.append(": ");
    head.append(f.value());
    head.append("\r\n");
  }
  head.append("\r\n");
  return head;
}

}  // namespace wf::http
