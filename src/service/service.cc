#include "wf/service/service.h"

#include <spdlog/spdlog.h>

#include <cstdio>
#include <expected>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "wf/obs/log.h"
#include "wf/obs/metrics.h"

namespace wf::service {

using config::Option;
using config::Type;

const char* version() {
  return WF_VERSION;
}
const char* commit() {
  return WF_GIT_COMMIT;
}

std::vector<Option> common_options(const Defaults& d) {
  return {
      {"port",
       Type::kInt,
       std::to_string(d.port),
       "TCP port to listen on; 0 picks a free port (the log says which).",
       {"PORT", "WF_PORT"},
       {},
       0,
       65535},
      {"address",
       Type::kString,
       "127.0.0.1",
       "Address to listen on; 0.0.0.0 for every interface (containers).",
       {"WF_ADDRESS"}},
      {"io_threads",
       Type::kInt,
       std::to_string(d.io_threads),
       "HTTP event loops, one thread each; connections are spread over them and each stays on "
       "its own (they also run calls that cannot block).",
       {"WF_IO_THREADS"},
       {},
       1,
       64},
      {"worker_threads",
       Type::kInt,
       std::to_string(d.worker_threads),
       "Threads running requests that may block (function calls).",
       {"WF_WORKER_THREADS"},
       {},
       1,
       256},
      {"max_pending_work",
       Type::kInt,
       std::to_string(d.max_pending_work),
       "Requests running or queued for a worker at most; beyond it: 503 with Retry-After.",
       {"WF_MAX_PENDING_WORK"},
       {},
       1},
      {"max_loop_lag_ms",
       Type::kInt,
       std::to_string(d.max_loop_lag_ms),
       "Backpressure: while the event loop is this many ms behind, calls are refused at once "
       "(503 + Retry-After) before they run; 0: off.",
       {"WF_MAX_LOOP_LAG_MS"},
       {},
       0,
       60000},
      {"max_connections",
       Type::kInt,
       "1024",
       "Client connections open at most; beyond it: 503.",
       {"WF_MAX_CONNECTIONS"},
       {},
       1},
      {"max_body_bytes",
       Type::kInt,
       std::to_string(d.max_body_bytes),
       "Largest request body accepted (413 above).",
       {"WF_MAX_BODY_BYTES"},
       {},
       1024},
      {"max_header_bytes",
       Type::kInt,
       "16384",
       "Largest request header block accepted (431 above).",
       {"WF_MAX_HEADER_BYTES"},
       {},
       1024},
      {"header_timeout_ms",
       Type::kInt,
       "10000",
       "Time a client has to send a request's headers.",
       {"WF_HEADER_TIMEOUT_MS"},
       {},
       1},
      {"idle_timeout_ms",
       Type::kInt,
       "30000",
       "Time a keep-alive connection may sit idle.",
       {"WF_IDLE_TIMEOUT_MS"},
       {},
       1},
      {"shutdown_delay_ms",
       Type::kInt,
       "0",
       "On SIGTERM, how long /readyz reports 503 while still accepting, before the listener "
       "closes.",
       {"WF_SHUTDOWN_DELAY_MS"},
       {},
       0,
       600000},
      {"shutdown_grace_ms",
       Type::kInt,
       "10000",
       "On SIGTERM, how long in-flight requests may take to finish.",
       {"WF_SHUTDOWN_GRACE_MS"},
       {},
       0},
      {"log_level",
       Type::kLogLevel,
       "info",
       "Log level; change it while running with PUT /_admin/log-level on the admin listener.",
       {"WF_LOG_LEVEL", "LOG_LEVEL"}},
      {"access_log", Type::kBool, "true", "One log line per HTTP request.", {"WF_ACCESS_LOG"}},
      {"admin_port",
       Type::kInt,
       "0",
       "Port of the admin listener (PUT /_admin/log-level); 0 picks a free port (logged as "
       "wf.admin.port), -1 turns it off. The main port answers 404 for /_admin/*.",
       {"WF_ADMIN_PORT"},
       {},
       -1,
       65535},
      {"admin_address",
       Type::kString,
       "127.0.0.1",
       "Address of the admin listener; anything but loopback needs --admin-token-file.",
       {"WF_ADMIN_ADDRESS"}},
      {"admin_token_file",
       Type::kString,
       "",
       "File holding the token admin requests must send as 'Authorization: Bearer <token>'; "
       "empty: no token (only allowed on loopback).",
       {"WF_ADMIN_TOKEN_FILE"}},
      {"cors_origin",
       Type::kString,
       "",
       "Access-Control-Allow-Origin sent on the evaluate route (an origin, or *), which then also "
       "answers CORS preflight; empty: no CORS headers.",
       {"WF_CORS_ORIGIN"}},
  };
}

namespace {

// The admin token from --admin-token-file (surrounding whitespace dropped), or what is wrong.
std::expected<std::string, std::string> read_admin_token(const std::string& path) {
  if (path.empty()) return std::string();
  std::ifstream in(path);
  if (!in) {
    return std::unexpected("cannot read --admin-token-file " + path +
                           ": give a readable file holding the admin token");
  }
  std::ostringstream text;
  text << in.rdbuf();
  std::string token = text.str();
  const auto first = token.find_first_not_of(" \t\r\n");
  const auto last = token.find_last_not_of(" \t\r\n");
  token = first == std::string::npos ? "" : token.substr(first, last - first + 1);
  if (token.size() < 16) {
    return std::unexpected("--admin-token-file " + path +
                           " holds no token of at least 16 characters: put a long random one "
                           "there, e.g. `openssl rand -hex 32 > " +
                           path + "`");
  }
  return token;
}

bool is_loopback(std::string_view address) {
  return address.starts_with("127.") || address == "::1";
}

// Checks of the admin and CORS options that a single option's type and range cannot express.
std::string check_admin_options(const config::Config& cfg) {
  auto token = read_admin_token(cfg.str("admin_token_file"));
  if (!token) return token.error();
  if (cfg.integer("admin_port") >= 0 && token->empty() && !is_loopback(cfg.str("admin_address"))) {
    return "--admin-address " + cfg.str("admin_address") +
           " is not a loopback address: set --admin-token-file FILE too, or use 127.0.0.1";
  }
  return "";
}

}  // namespace

http::ServerOptions server_options(const config::Config& cfg, std::string_view service_name,
                                   std::chrono::milliseconds request_timeout) {
  http::ServerOptions o;
  o.service_name = std::string(service_name);
  o.address = cfg.str("address");
  o.port = static_cast<std::uint16_t>(cfg.integer("port"));
  o.io_threads = static_cast<int>(cfg.integer("io_threads"));
  o.worker_threads = static_cast<int>(cfg.integer("worker_threads"));
  o.max_pending_work = static_cast<int>(cfg.integer("max_pending_work"));
  o.max_connections = static_cast<int>(cfg.integer("max_connections"));
  o.max_loop_lag = std::chrono::milliseconds(cfg.integer("max_loop_lag_ms"));
  o.max_body_bytes = static_cast<std::size_t>(cfg.integer("max_body_bytes"));
  o.max_header_bytes = static_cast<std::size_t>(cfg.integer("max_header_bytes"));
  o.header_timeout = std::chrono::milliseconds(cfg.integer("header_timeout_ms"));
  o.idle_timeout = std::chrono::milliseconds(cfg.integer("idle_timeout_ms"));
  o.request_timeout = request_timeout;
  o.shutdown_delay = std::chrono::milliseconds(cfg.integer("shutdown_delay_ms"));
  o.shutdown_grace = std::chrono::milliseconds(cfg.integer("shutdown_grace_ms"));
  o.access_log = cfg.boolean("access_log");
  o.admin_port = static_cast<int>(cfg.integer("admin_port"));
  o.admin_address = cfg.str("admin_address");
  auto token = read_admin_token(cfg.str("admin_token_file"));
  if (!token) throw std::runtime_error(token.error());
  o.admin_token = std::move(*token);
  o.cors_origin = cfg.str("cors_origin");
  return o;
}

int start(const Identity& id, std::vector<Option> options, int argc, char** argv,
          config::Config& out) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  if (config::wants_help(args)) {
    std::fputs(config::help_text(id.name, id.summary, options).c_str(), stdout);
    return 0;
  }
  auto cfg = config::load(std::move(options), args);
  if (!cfg) {
    std::fprintf(stderr, "%s: configuration error: %s\n", id.name.c_str(), cfg.error().c_str());
    return 2;
  }
  if (const std::string why = check_admin_options(*cfg); !why.empty()) {
    std::fprintf(stderr, "%s: configuration error: %s\n", id.name.c_str(), why.c_str());
    return 2;
  }
  out = std::move(*cfg);
  spdlog::level::level_enum level{};
  obs::parse_level(out.str("log_level"), level);
  // A synchronous sink: no logging thread, so this may run before the evaluator forks its zygotes.
  obs::install_ecs_logger(id.name, id.version, level);
  obs::set_build_info(id.name, id.version, id.commit);
  return -1;
}

}  // namespace wf::service
