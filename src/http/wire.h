#pragma once
// How the server and the client write a message's head on the wire. Private to wf_http (Beast stays
// out of include/); tests/unit/http/wire_test.cc checks it against Beast's serializer.

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>

#include "wf/http/message.h"

namespace wf::http {

// The head of `res` byte for byte as Beast's serializer writes it: "HTTP/X.Y ### reason", every
// field as "name: value" in the message's order, each line ended by CRLF, then an empty line.
// Written by hand and sent with the body in one gathered write, it costs a small part of what
// the serializer's buffer sequences do (~20 k instructions per response: bench/README.md,
// "session 9, reqcpu").
std::string response_head(const boost::beast::http::response<boost::beast::http::string_body>& res);

// One field of a response head, by view.
struct HeadField {
  std::string_view name;
  std::string_view value;
};

// The head Beast's serializer writes for a response of `status` and `version` whose fields were
// set() in the order of `fields` (a later field of the same name, whatever the case, replaces an
// earlier one and moves to the end), then keep_alive(keep_alive) and prepare_payload() with a
// body of `body_size` bytes; written without building Beast's message (~5 k instructions per
// response). The first `distinct` fields are the caller's word that their names differ from each
// other and from Connection, Content-Length and Transfer-Encoding; the others are checked. False
// (and `head` left as it was) when it would not be that simple: a repeated name, one of those
// three, HTTP other than 1.0 and 1.1, a status that is 1xx, 204, 304 or outside 100-599; then
// the caller builds Beast's message.
bool append_response_head(std::string& head, unsigned status, unsigned version, bool keep_alive,
                          std::size_t body_size, std::span<const HeadField> fields,
                          std::size_t distinct);

// The head of `req` byte for byte as Beast's serializer writes it: "METHOD target HTTP/X.Y",
// then the fields and the empty line as above (the HTTP client's requests to evaluators and wikis).
std::string request_head(const boost::beast::http::request<boost::beast::http::string_body>& req);

// What the HTTP client's request is made of.
struct RequestHeadParts {
  std::string_view method;  // as given: "GET", "POST", ...
  std::string_view target;  // path and query
  std::string_view host;    // the Host field's value
  std::string_view user_agent;
  std::span<const Header> headers;  // the caller's, in order
  std::string_view content_type;    // sent when the body is not empty or the method is POST/PUT
  std::size_t body_size = 0;
};

// The head Beast's serializer writes for an HTTP/1.1 request built as the client did: the
// method, the target, then set() of Host, User-Agent and the caller's headers in order, the
// Content-Type, keep_alive(true) and prepare_payload() (a Content-Length when the body is not
// empty or the method is POST, PUT or OPTIONS); written without building Beast's message. False
// (and `head` left as it was) when it would not be that simple: a method other than GET, HEAD,
// POST, PUT, DELETE, OPTIONS and PATCH as written, a caller's header named like another one, or
// like Host, User-Agent, Content-Type, Content-Length, Transfer-Encoding or Connection, or a
// field over 4 KiB; then the caller builds Beast's message.
bool append_request_head(std::string& head, const RequestHeadParts& parts);

}  // namespace wf::http
