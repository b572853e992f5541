// The server's response head (src/http/wire.h) is the bytes Beast's serializer writes.
#include "src/http/wire.h"

#include <gtest/gtest.h>

#include <boost/beast/http.hpp>
#include <sstream>
#include <string>

namespace {

namespace bhttp = boost::beast::http;
using Res = bhttp::response<bhttp::string_body>;

// What Beast's serializer writes for `res` (head and body).
std::string serialized(const Res& res) {
  std::ostringstream os;
  os << res;
  return os.str();
}

Res make(unsigned status, unsigned version, bool keep_alive, std::string body) {
  Res res{static_cast<bhttp::status>(status), version};
  res.set(bhttp::field::server, "wf-orchestrator");
  res.set(bhttp::field::content_type, "application/json; charset=utf-8");
  res.set("x-request-id", "abc-123");
  res.set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
  res.set("x-content-type-options", "nosniff");
  res.body() = std::move(body);
  res.keep_alive(keep_alive);
  res.prepare_payload();
  return res;
}

TEST(ResponseHead, IsWhatBeastsSerializerWrites) {
  const Res cases[] = {
      make(200, 11, true, R"({"Z1K1":"Z22","Z22K1":"hello"})"),
      make(200, 11, false, "OK"),
      make(200, 10, true, "keep-alive on HTTP/1.0"),
      make(200, 10, false, ""),
      make(404, 11, true, R"({"status":404})"),
      make(503, 11, false, R"({"status":503})"),
      make(204, 11, true, ""),
      make(504, 11, true, std::string(70000, 'x')),
  };
  for (const Res& res : cases) {
    SCOPED_TRACE(res.result_int());
    EXPECT_EQ(wf::http::response_head(res) + res.body(), serialized(res));
  }
}

TEST(ResponseHead, KeepsFieldOrderReplacedFieldsAndAnOwnReason) {
  Res res = make(503, 11, true, "busy");
  res.set("retry-after", "1");
  res.set("X-Request-Id", "replaced");  // set() replaces, whatever the case
  res.insert("vary", "Origin");
  res.insert("vary", "Accept");  // insert() keeps both
  res.reason("Busy Now");
  res.prepare_payload();
  const std::string head = wf::http::response_head(res);
  EXPECT_EQ(head + res.body(), serialized(res));
  EXPECT_TRUE(head.starts_with("HTTP/1.1 503 Busy Now\r\n"));
  EXPECT_NE(head.find("X-Request-Id: replaced\r\n"), std::string::npos);
  EXPECT_EQ(head.find("abc-123"), std::string::npos);
  EXPECT_TRUE(head.ends_with("\r\n\r\n"));
}

TEST(RequestHead, IsWhatBeastsSerializerWrites) {
  using Req = bhttp::request<bhttp::string_body>;
  auto make_request = [](bhttp::verb verb, std::string target, std::string body) {
    Req req{verb, target, 11};
    req.set(bhttp::field::host, "127.0.0.1:6927");
    req.set(bhttp::field::user_agent, "wf-orchestrator");
    req.set("x-request-id", "abc-123");
    if (!body.empty()) req.set(bhttp::field::content_type, "application/octet-stream");
    req.body() = std::move(body);
    req.keep_alive(true);
    req.prepare_payload();
    return req;
  };
  Req unknown = make_request(bhttp::verb::get, "/x", "");
  unknown.method_string("BREW");
  const Req cases[] = {
      make_request(bhttp::verb::post, "/wikifunctions.org/v1/evaluate/", "\x01\x02avro"),
      make_request(bhttp::verb::get, "/w/api.php?action=wikilambda_fetch&zids=Z801|Z802", ""),
      make_request(bhttp::verb::put, "/", ""),
      unknown,
  };
  for (const Req& req : cases) {
    SCOPED_TRACE(std::string(req.method_string()));
    std::ostringstream os;
    os << req;
    EXPECT_EQ(wf::http::request_head(req) + req.body(), os.str());
  }
}

}  // namespace
