#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "wf/http/server.h"
#include "wf/obs/log.h"
#include "wf/obs/metrics.h"

namespace wf::http {

void add_standard_routes(Server& server, const ServiceInfo& info) {
  server.add_route("GET", "/healthz", "healthz", Dispatch::kInline,
                   [](const Request&) { return Response::json(200, R"({"status":"ok"})"); });
  server.add_route("GET", "/readyz", "readyz", Dispatch::kInline, [&server](const Request&) {
    std::string why;
    if (server.ready(why)) return Response::json(200, R"({"status":"ready"})");
    return Response::refusal_with_body(
        503, nlohmann::json{{"status", "not ready"}, {"reason", why}}.dump(),
        std::chrono::seconds(1));
  });
  server.add_route("GET", "/metrics", "metrics", Dispatch::kInline, [](const Request&) {
    Response r = Response::json(200, obs::render_metrics());
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    return r;
  });
  const std::string info_json = nlohmann::json{{"name", info.name},
                                               {"version", info.version},
                                               {"commit", info.commit},
                                               {"description", info.description},
                                               {"home", "https://www.wikifunctions.org"}}
                                    .dump();
  server.add_route("GET", "/_info", "info", Dispatch::kInline,
                   [info_json](const Request&) { return Response::json(200, info_json); });
  server.add_route("GET", "/_info/{field}", "info", Dispatch::kInline, [info](const Request& req) {
    const std::string field = req.path.substr(req.path.rfind('/') + 1);
    const nlohmann::json j = {
        {"name", info.name}, {"version", info.version}, {"commit", info.commit}};
    if (!j.contains(field))
      return Response::error(404, "not_found", "known fields: name, version, commit");
    return Response::json(200, nlohmann::json{{field, j[field]}}.dump());
  });
  server.add_route("GET", "/openapi.json", "openapi", Dispatch::kInline,
                   [doc = info.openapi_json](const Request&) { return Response::json(200, doc); });
  // The log level can be changed while running: GET shows it, PUT/POST {"level":"debug"} sets it.
  server.add_admin_route("GET", "/_admin/log-level", "admin", [](const Request&) {
    const auto level = spdlog::level::to_string_view(obs::current_level());
    return Response::json(
        200, nlohmann::json{{"level", std::string(level.data(), level.size())}}.dump());
  });
  auto set_level = [](const Request& req) {
    const auto body = nlohmann::json::parse(req.body, nullptr, false);
    spdlog::level::level_enum level{};
    if (!body.is_object() || !body.contains("level") || !body["level"].is_string() ||
        !obs::parse_level(body["level"].get<std::string>(), level)) {
      return Response::error(400, "bad_request",
                             R"(send {"level":"trace|debug|info|warn|error|critical|off"})");
    }
    obs::set_level(level);
    spdlog::log(spdlog::level::info, "log level set to {}", body["level"].get<std::string>());
    return Response::json(200, nlohmann::json{{"level", body["level"]}}.dump());
  };
  server.add_admin_route("PUT", "/_admin/log-level", "admin", set_level);
  server.add_admin_route("POST", "/_admin/log-level", "admin", set_level);
}

}  // namespace wf::http
