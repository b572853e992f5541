#pragma once
// How the server reads a request off the wire: Beast's parser under the server's limits. One home
// for that setup, used by the server and by tests/fuzz/fuzz_http_request.cc, so the fuzzer parses
// exactly as the server does. Private to wf_http (Beast stays out of include/).

#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include "wf/http/server.h"

namespace wf::http {

using RequestParser = boost::beast::http::request_parser<boost::beast::http::string_body>;

// Header bytes above options.max_header_bytes end the read with error::header_limit (the server
// answers 431), body bytes above options.max_body_bytes with error::body_limit (413). Beast
// applies the header limit to the request line and to the header fields each (found by
// tests/fuzz/fuzz_http_request.cc): a header can reach its request line + max_header_bytes,
// at most twice the limit.
void apply_request_limits(RequestParser& parser, const ServerOptions& options);

}  // namespace wf::http
