#pragma once
// What both services share around their own logic: the HTTP/logging options every service has,
// turning them into ServerOptions, and the start-up sequence of main() (--help, configuration
// errors with exit code 2, the ECS logger, the build-info metric).

#include <string>
#include <string_view>
#include <vector>

#include "wf/config/config.h"
#include "wf/http/server.h"

namespace wf::service {

// Defaults that differ between the services.
struct Defaults {
  std::string name;  // "wf-orchestrator"
  int port = 0;      // 6254, 6927
  int io_threads = 1;
  int worker_threads = 4;
  int max_pending_work = 256;
  std::size_t max_body_bytes = 1u << 20;
  int max_loop_lag_ms = 0;  // ServerOptions::max_loop_lag; 0: off
};

// port, address, io_threads, worker_threads, max_pending_work, max_loop_lag_ms, max_connections,
// max_body_bytes, max_header_bytes, header_timeout_ms, idle_timeout_ms, shutdown_delay_ms,
// shutdown_grace_ms, log_level, access_log, admin_port, admin_address, admin_token_file,
// cors_origin.
std::vector<config::Option> common_options(const Defaults& defaults);

// ServerOptions from the common options; `request_timeout` is the service's own deadline. Reads
// the admin token file (throws std::runtime_error naming the file if it cannot).
http::ServerOptions server_options(const config::Config& cfg, std::string_view service_name,
                                   std::chrono::milliseconds request_timeout);

// The project version and the git commit this binary was configured from.
const char* version();
const char* commit();

struct Identity {
  std::string name;
  std::string version;
  std::string commit;
  std::string summary;  // one line for --help
};

// Parses argv against `options`. Prints --help and returns exit code 0, or prints a configuration
// error (including an unreadable admin token file, or a non-loopback admin listener without
// one) and returns 2; otherwise stores the configuration in `out`, installs the ECS logger at the
// configured level and sets wf_build_info, and returns -1 (carry on).
int start(const Identity& id, std::vector<config::Option> options, int argc, char** argv,
          config::Config& out);

}  // namespace wf::service
