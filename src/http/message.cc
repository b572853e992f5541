#include "wf/http/message.h"

#include <strings.h>

#include "wf/obs/log.h"

namespace wf::http {

std::optional<std::string_view> Request::header(std::string_view name) const {
  for (const Header& h : headers) {
    if (h.name.size() == name.size() && strncasecmp(h.name.data(), name.data(), name.size()) == 0) {
      return std::string_view(h.value);
    }
  }
  return std::nullopt;
}

Response Response::json(unsigned status, std::string body) {
  Response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

Response Response::error(unsigned status, std::string_view type, std::string_view message) {
  // The shape of the original services' framework errors (status, type, title, detail).
  std::string body = "{\"status\":" + std::to_string(status) + ",\"type\":";
  obs::append_json_string(body, type);
  body += ",\"title\":";
  obs::append_json_string(body, reason_phrase(status));
  body += ",\"detail\":";
  obs::append_json_string(body, message);
  body += "}";
  return json(status, std::move(body));
}

Response Response::refusal(unsigned status, std::string_view type, std::string_view message,
                           std::chrono::milliseconds retry_after) {
  Response r = error(status, type, message);
  return refusal_with_body(status, std::move(r.body), retry_after);
}

Response Response::refusal_with_body(unsigned status, std::string body,
                                     std::chrono::milliseconds retry_after) {
  Response r = json(status, std::move(body));
  const long long seconds = (retry_after.count() + 999) / 1000;
  r.headers.push_back({"retry-after", std::to_string(seconds < 1 ? 1 : seconds)});
  return r;
}

std::string_view reason_phrase(unsigned status) {
  switch (status) {
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 411:
      return "Length Required";
    case 413:
      return "Payload Too Large";
    case 415:
      return "Unsupported Media Type";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return status < 400 ? "OK" : "Error";
  }
}

}  // namespace wf::http
