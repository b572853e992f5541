#include "wf/service/admission.h"

namespace wf::service {

limits::CallerInfo caller_info(const http::Request& request, std::string_view user_header) {
  limits::CallerInfo caller;
  caller.peer = request.client_address;
  if (!user_header.empty()) caller.user_header = request.header(user_header);
  caller.forwarded_for = request.header("x-forwarded-for");
  return caller;
}

bool wants_envelope(const http::Request& request) {
  const auto v = request.header("x-wikifunctions-envelope");
  return v && !v->empty() && *v != "0" && *v != "false" && *v != "no";
}

http::Response refusal_response(const limits::Refusal& refusal, bool envelope) {
  limits::RefusalReply reply = limits::render(refusal, envelope);
  http::Response r = http::Response::json(reply.status, std::move(reply.body));
  r.content_type = "application/json; charset=utf-8";
  r.headers.push_back({"retry-after", std::move(reply.retry_after)});
  return r;
}

}  // namespace wf::service

namespace wf::service {

http::Handler admitted(std::shared_ptr<limits::Gate> gate, http::Handler handler) {
  const std::string user_header = gate->user_header();
  return [gate, handler = std::move(handler), user_header](const http::Request& req) {
    const limits::Identity who = gate->identify(caller_info(req, user_header));
    auto admitted = gate->admit_now(who);
    if (!admitted) return refusal_response(admitted.error(), wants_envelope(req));
    http::Response response = handler(req);
    admitted->finish(limits::reported_cpu_ms(response.body));
    return response;
  };
}

void add_limits_admin_routes(http::Server& server, std::shared_ptr<limits::Gate> gate) {
  server.add_admin_route("GET", "/_admin/limits", "admin", [gate](const http::Request&) {
    return http::Response::json(200, gate->describe().dump());
  });
  server.add_admin_route("PUT", "/_admin/limits", "admin", [gate](const http::Request& req) {
    const auto body = nlohmann::json::parse(req.body, nullptr, false);
    if (auto ok = gate->apply(body); !ok) {
      return http::Response::error(400, "bad_request", ok.error());
    }
    return http::Response::json(200, gate->describe().dump());
  });
}

}  // namespace wf::service
