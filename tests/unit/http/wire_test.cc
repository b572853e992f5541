// The server's response head (src/http/wire.h) is the bytes Beast's serializer writes.
#include "src/http/wire.h"

#include <gtest/gtest.h>

#include <boost/beast/http.hpp>
#include <span>
#include <sstream>
#include <string>
#include <vector>

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

// append_response_head against Beast: the message built by set() of the same fields in order,
// keep_alive() and prepare_payload(), then serialised.
std::string beast_head(unsigned status, unsigned version, bool keep_alive, const std::string& body,
                       const std::vector<wf::http::HeadField>& fields) {
  Res res{static_cast<bhttp::status>(status), version};
  for (const auto& f : fields) res.set(f.name, f.value);
  res.body() = body;
  res.keep_alive(keep_alive);
  res.prepare_payload();
  const std::string all = serialized(res);
  return all.substr(0, all.size() - body.size());
}

std::vector<wf::http::HeadField> server_fields() {
  return {{"Server", "wf-orchestrator"},
          {"Content-Type", "application/json; charset=utf-8"},
          {"x-request-id", "abc-123"},
          {"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
          {"x-content-type-options", "nosniff"},
          {"x-frame-options", "SAMEORIGIN"}};
}

TEST(ResponseHead, WrittenFromFieldsIsWhatBeastWrites) {
  struct Case {
    unsigned status;
    unsigned version;
    bool keep_alive;
    std::string body;
  };
  const Case cases[] = {{200, 11, true, R"({"Z1K1":"Z22","Z22K1":"hello"})"},
                        {200, 11, false, "OK"},
                        {200, 10, true, "keep-alive on HTTP/1.0"},
                        {200, 10, false, ""},
                        {400, 11, true, R"({"status":400})"},
                        {404, 11, true, R"({"status":404})"},
                        {503, 11, false, R"({"status":503})"},
                        {599, 11, true, "an unknown status"},
                        {504, 11, true, std::string(70000, 'x')}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.status);
    auto fields = server_fields();
    fields.push_back({"retry-after", "1"});
    std::string head = "kept:";
    ASSERT_TRUE(wf::http::append_response_head(head, c.status, c.version, c.keep_alive,
                                               c.body.size(), fields, 6));
    EXPECT_EQ(head, "kept:" + beast_head(c.status, c.version, c.keep_alive, c.body, fields));
  }
}

TEST(ResponseHead, FromFieldsLeavesWhatIsNotSimpleToBeast) {
  const auto refused = [](unsigned status, unsigned version,
                          const std::vector<wf::http::HeadField>& fields, std::size_t distinct) {
    std::string head;
    const bool written =
        wf::http::append_response_head(head, status, version, true, 0, fields, distinct);
    if (!written) {
      EXPECT_TRUE(head.empty());
    }
    return !written;
  };
  const auto fields = server_fields();
  EXPECT_TRUE(refused(204, 11, fields, 6));
  EXPECT_TRUE(refused(304, 11, fields, 6));
  EXPECT_TRUE(refused(101, 11, fields, 6));
  EXPECT_TRUE(refused(200, 20, fields, 6));
  EXPECT_TRUE(refused(600, 11, fields, 6));
  // A handler's field that replaces one of the server's, whatever its case, or Beast's own.
  for (const char* name : {"x-request-id", "CONTENT-TYPE", "Server", "Connection", "content-length",
                           "Transfer-Encoding"}) {
    SCOPED_TRACE(name);
    auto with = fields;
    with.push_back({name, "v"});
    EXPECT_TRUE(refused(200, 11, with, 6));
  }
  auto twice = fields;
  twice.push_back({"vary", "Origin"});
  twice.push_back({"Vary", "Accept"});
  EXPECT_TRUE(refused(200, 11, twice, 6));
  // Checked from the first field when the caller vouches for none.
  auto dup = fields;
  dup[1] = {"server", "again"};
  EXPECT_TRUE(refused(200, 11, dup, 0));
  EXPECT_FALSE(refused(200, 11, fields, 0));
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

// The HTTP client's request as the client built Beast's message (client.cc), for the head
// written without it.
bhttp::request<bhttp::string_body> beast_request(const wf::http::RequestHeadParts& p,
                                                 std::string body) {
  bhttp::request<bhttp::string_body> req{bhttp::string_to_verb(p.method), p.target, 11};
  req.set(bhttp::field::host, p.host);
  req.set(bhttp::field::user_agent, p.user_agent);
  for (const wf::http::Header& h : p.headers) req.set(h.name, h.value);
  if (!body.empty() || p.method == "POST" || p.method == "PUT") {
    if (!p.content_type.empty()) req.set(bhttp::field::content_type, p.content_type);
    req.body() = std::move(body);
  }
  req.keep_alive(true);
  req.prepare_payload();
  return req;
}

TEST(RequestHead, WrittenFromPartsIsWhatBeastWrites) {
  const std::vector<wf::http::Header> headers = {
      {"x-request-id", "abc-123"},
      {"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
      {"X-Wikifunctions-Caller", " user:Alice B "},
      {"accept", "\t"}};
  struct Case {
    std::string_view method;
    std::string_view target;
    std::string_view content_type;
    std::string body;
    std::size_t headers;
  };
  const Case cases[] = {
      {"POST", "/wikifunctions.org/v1/evaluate/", "application/octet-stream", "\x01\x02avro", 3},
      {"POST", "/empty", "application/json", "", 2},
      {"POST", "/no-type", "", "body", 0},
      {"PUT", "/", " text/plain\t", "", 4},
      {"GET", "/w/api.php?action=wikilambda_fetch&zids=Z801|Z802", "application/json", "", 2},
      {"GET", "/with-body", "text/plain", "x", 1},
      {"DELETE", "/d", "", "", 4},
      {"HEAD", "/h", "", "", 0},
      {"OPTIONS", "/o", "text/plain", "", 1},
      {"PATCH", "/p", "application/json", "{}", 2},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(c.method) + " " + std::string(c.target));
    wf::http::RequestHeadParts parts;
    parts.method = c.method;
    parts.target = c.target;
    parts.host = "127.0.0.1:6927";
    parts.user_agent = "wikifunctions-cpp";
    parts.headers = std::span(headers.data(), c.headers);
    parts.content_type = c.content_type;
    parts.body_size = c.body.size();
    std::string head = "kept:";
    ASSERT_TRUE(wf::http::append_request_head(head, parts));
    std::ostringstream os;
    os << beast_request(parts, c.body);
    EXPECT_EQ(head + c.body, "kept:" + os.str());
  }
}

TEST(RequestHead, FromPartsLeavesWhatIsNotSimpleToBeast) {
  auto refused = [](std::string_view method, std::vector<wf::http::Header> headers) {
    wf::http::RequestHeadParts parts;
    parts.method = method;
    parts.target = "/";
    parts.host = "h:1";
    parts.headers = headers;
    std::string head = "as it was";
    const bool written = wf::http::append_request_head(head, parts);
    EXPECT_EQ(written, head != "as it was");
    return !written;
  };
  EXPECT_FALSE(refused("GET", {{"x-a", "1"}, {"x-b", "2"}}));
  EXPECT_TRUE(refused("get", {}));
  EXPECT_TRUE(refused("TRACE", {}));
  EXPECT_TRUE(refused("BREW", {}));
  for (const char* name : {"Host", "user-agent", "CONTENT-TYPE", "Content-Length",
                           "transfer-encoding", "Connection"}) {
    SCOPED_TRACE(name);
    EXPECT_TRUE(refused("POST", {{"x-a", "1"}, {name, "v"}}));
  }
  EXPECT_TRUE(refused("GET", {{"x-a", "1"}, {"X-A", "2"}}));
  EXPECT_TRUE(refused("GET", {{"x-long", std::string(5000, 'v')}}));
}

}  // namespace
