#pragma once
// How the server and the client write a message's head on the wire. Private to wf_http (Beast stays
// out of include/); tests/unit/http/wire_test.cc checks it against Beast's serializer.

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <string>

namespace wf::http {

// The head of `res` byte for byte as Beast's serializer writes it: "HTTP/X.Y ### reason", every
// field as "name: value" in the message's order, each line ended by CRLF, then an empty line.
// Written by hand and sent with the body in one gathered write, it costs a small part of what
// the serializer's buffer sequences do (~20 k instructions per response: bench/README.md,
// "session 9, reqcpu").
std::string response_head(const boost::beast::http::response<boost::beast::http::string_body>& res);

// The head of `req` byte for byte as Beast's serializer writes it: "METHOD target HTTP/X.Y",
// then the fields and the empty line as above (the HTTP client's requests to evaluators and wikis).
std::string request_head(const boost::beast::http::request<boost::beast::http::string_body>& req);

}  // namespace wf::http
