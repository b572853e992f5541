#pragma once
// Structured logs: one Elastic Common Schema 1.11 JSON object per line on stdout.
// install_ecs_logger() makes spdlog's default logger write ECS JSON, so plain spdlog::info() calls
// anywhere become valid ECS lines; log_event() adds structured fields (http.*, error.*, ...).
// The trace ids of the request being served on this thread are added to every line.

#include <spdlog/common.h>

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace wf::obs {

// A field of a log line: a dotted ECS name and a value that is already JSON text
// (use field_str/field_num to build one).
struct LogField {
  std::string name;
  std::string json;
};
LogField field_str(std::string name, std::string_view value);
LogField field_num(std::string name, double value);
LogField field_int(std::string name, long long value);

// Installs the ECS JSON logger as spdlog's default logger, writing to stdout.
void install_ecs_logger(std::string_view service_name, std::string_view service_version,
                        spdlog::level::level_enum level);

// Parses "trace|debug|info|warn|warning|error|critical|off"; false if unknown.
bool parse_level(std::string_view text, spdlog::level::level_enum& level);
void set_level(spdlog::level::level_enum level);
spdlog::level::level_enum current_level();

void log_event(spdlog::level::level_enum level, std::string_view message,
               std::vector<LogField> fields);

// Sets the trace.id / span.id / request id that this thread's log lines carry while in scope.
// `muted`: this thread writes no log lines while in scope, for work done a second time whose
// lines were written the first time (the orchestrator's replay of a retired evaluation,
// orchestrator/engine/fiber.h). set_log_muted may lift it sooner, and a LogScope nested in it
// says for itself (a line written under its own request's scope, e.g. a failed fetch, is
// written). Only the ECS logger (install_ecs_logger) drops muted lines written through spdlog
// directly; log_event() drops them with any logger.
class LogScope {
 public:
  LogScope(std::string_view trace_id, std::string_view span_id, std::string_view request_id,
           bool muted = false);
  ~LogScope();
  LogScope(const LogScope&) = delete;
  LogScope& operator=(const LogScope&) = delete;

 private:
  std::string saved_trace_, saved_span_, saved_request_;
  bool saved_muted_ = false;
};

// Mutes or unmutes this thread's log lines until the enclosing LogScope ends (which restores what
// was there before it).
void set_log_muted(bool muted);
bool log_muted();

// JSON string escaping that always yields valid JSON: control characters as \u00XX, invalid UTF-8
// bytes replaced by U+FFFD. Appends the quoted string to out.
void append_json_string(std::string& out, std::string_view text);
// The same with nlohmann::json::dump's escapes (\b and \f, DEL as it is): for valid UTF-8, the
// bytes nlohmann writes for the string (each invalid byte, where nlohmann's strict dump throws,
// becomes U+FFFD). For JSON written by hand beside JSON that nlohmann writes.
void append_json_string_as_nlohmann(std::string& out, std::string_view text);

}  // namespace wf::obs
