#include "request_limits.h"

#include <algorithm>
#include <cstdint>
#include <limits>

namespace wf::http {

void apply_request_limits(RequestParser& parser, const ServerOptions& options) {
  // Beast takes a 32-bit header limit: a larger setting is the largest it can enforce.
  parser.header_limit(static_cast<std::uint32_t>(
      std::min<std::size_t>(options.max_header_bytes, std::numeric_limits<std::uint32_t>::max())));
  parser.body_limit(options.max_body_bytes);
}

}  // namespace wf::http
