// HTTP/1.1 request parsing under the server's limits (src/http/request_limits.h). The first two
// bytes pick the limits (header 64..16447 bytes, body 0..4095 bytes), the rest is the wire. The
// parser is fed the way the server's reads feed it (header first, then the body); whatever it
// accepts must be within the limits.
#include <boost/beast/core/buffers_prefix.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <string_view>

#include "fuzz_target.h"
#include "src/http/request_limits.h"

namespace bhttp = boost::beast::http;

namespace {

// Puts bytes into the parser until it stops taking any, as a read loop does; returns the error.
boost::beast::error_code feed(wf::http::RequestParser& parser, std::string_view& wire,
                              bool header_only) {
  boost::beast::error_code ec;
  while (!wire.empty() && !(header_only ? parser.is_header_done() : parser.is_done())) {
    const std::size_t used = parser.put(boost::asio::buffer(wire.data(), wire.size()), ec);
    if (ec == bhttp::error::need_more) {
      ec = {};
      break;  // a read would wait for more bytes; the input has none
    }
    if (ec) return ec;
    if (used == 0) break;
    wire.remove_prefix(used);
  }
  return ec;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  wf::http::ServerOptions options;
  options.max_header_bytes = 64 + (static_cast<std::size_t>(data[0]) << 6);
  options.max_body_bytes = static_cast<std::size_t>(data[1]) << 4;
  std::string_view wire(reinterpret_cast<const char*>(data + 2), size - 2);
  const std::size_t total = wire.size();

  wf::http::RequestParser parser;
  wf::http::apply_request_limits(parser, options);
  const std::string_view sent = wire;
  if (feed(parser, wire, /*header_only=*/true) || !parser.is_header_done()) return 0;
  // Beast bounds the request line and the header fields each by the limit (see
  // request_limits.h): a header is at most its request line plus max_header_bytes.
  const std::size_t line = sent.find("\r\n") == std::string_view::npos ? 0 : sent.find("\r\n") + 2;
  WF_FUZZ_CHECK(line <= options.max_header_bytes);
  WF_FUZZ_CHECK(total - wire.size() <= line + options.max_header_bytes);
  const auto& req = parser.get();
  // What the server reads from the header (it lowercases names, looks at the method and target).
  for (const auto& field : req) WF_FUZZ_CHECK(field.name_string().size() <= total);
  WF_FUZZ_CHECK(req.target().size() <= total);
  if (req.has_content_length() && req.payload_size() &&
      *req.payload_size() > options.max_body_bytes) {
    return 0;  // the server answers 413 without reading the body
  }
  if (feed(parser, wire, /*header_only=*/false)) return 0;
  WF_FUZZ_CHECK(parser.get().body().size() <= options.max_body_bytes);
  return 0;
}
