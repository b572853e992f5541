#include "wf/obs/log.h"

#include <fmt/format.h>
#include <spdlog/formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <memory>
#include <utility>

#include "wf/obs/json_escape.h"

namespace wf::obs {
namespace {

struct ThreadContext {
  std::string trace_id;
  std::string span_id;
  std::string request_id;
  // Extra fields of the log_event() call being formatted on this thread (sync sinks only).
  const std::vector<LogField>* fields = nullptr;
  bool muted = false;  // LogScope, set_log_muted: this thread's lines are not written
};
thread_local ThreadContext t_context;

// stdout, but not the lines of a thread whose lines are muted (LogScope). The check is here, not
// only in log_event(), so that plain spdlog::info() calls are muted too.
class MutableStdoutSink final : public spdlog::sinks::stdout_sink_mt {
 public:
  void log(const spdlog::details::log_msg& msg) override {
    if (t_context.muted) return;
    spdlog::sinks::stdout_sink_mt::log(msg);
  }
};

struct ServiceIdentity {
  std::string name_json;     // pre-escaped
  std::string version_json;  // pre-escaped
  std::string pid;
};

const char* ecs_level(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace:
      return "trace";
    case spdlog::level::debug:
      return "debug";
    case spdlog::level::info:
      return "info";
    case spdlog::level::warn:
      return "warn";
    case spdlog::level::err:
      return "error";
    case spdlog::level::critical:
      return "critical";
    default:
      return "off";
  }
}

// Writes one ECS 1.11 JSON object per record. Stateless apart from the service identity.
class EcsFormatter final : public spdlog::formatter {
 public:
  explicit EcsFormatter(std::shared_ptr<const ServiceIdentity> id) : id_(std::move(id)) {}

  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    std::string line;
    line.reserve(256 + msg.payload.size());
    const auto since_epoch = msg.time.time_since_epoch();
    const auto secs = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
    const auto micros =
        std::chrono::duration_cast<std::chrono::microseconds>(since_epoch - secs).count();
    const std::time_t t = secs.count();
    std::tm tm{};
    gmtime_r(&t, &tm);
    char ts[64];
    std::snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<long>(micros));
    line += "{\"@timestamp\":\"";
    line += ts;
    line += "\",\"log.level\":\"";
    line += ecs_level(msg.level);
    line += "\",\"message\":";
    append_json_string(line, std::string_view(msg.payload.data(), msg.payload.size()));
    line += ",\"ecs.version\":\"1.11.0\",\"service.name\":";
    line += id_->name_json;
    line += ",\"service.version\":";
    line += id_->version_json;
    line += ",\"process.pid\":";
    line += id_->pid;
    line += ",\"process.thread.id\":";
    line += std::to_string(msg.thread_id);
    if (msg.logger_name.size() > 0) {
      line += ",\"log.logger\":";
      append_json_string(line, std::string_view(msg.logger_name.data(), msg.logger_name.size()));
    }
    const ThreadContext& ctx = t_context;
    if (!ctx.trace_id.empty()) {
      line += ",\"trace.id\":\"" + ctx.trace_id + "\"";
    }
    if (!ctx.span_id.empty()) {
      line += ",\"span.id\":\"" + ctx.span_id + "\"";
    }
    if (!ctx.request_id.empty()) {
      line += ",\"http.request.id\":";
      append_json_string(line, ctx.request_id);
    }
    if (ctx.fields != nullptr) {
      for (const LogField& f : *ctx.fields) {
        line += ',';
        append_json_string(line, f.name);
        line += ':';
        line += f.json;
      }
    }
    line += "}\n";
    dest.append(line.data(), line.data() + line.size());
  }

  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<EcsFormatter>(id_);
  }

 private:
  std::shared_ptr<const ServiceIdentity> id_;
};

// Length of the valid UTF-8 sequence at s[i], or 0 if invalid.
std::size_t utf8_sequence_length(std::string_view s, std::size_t i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  std::size_t len = 0;
  unsigned min = 0;
  unsigned cp = 0;
  if (b0 < 0x80) return 1;
  if ((b0 & 0xE0) == 0xC0) {
    len = 2, cp = b0 & 0x1Fu, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, cp = b0 & 0x0Fu, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4, cp = b0 & 0x07u, min = 0x10000;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (std::size_t k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b & 0x3Fu);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

}  // namespace

namespace {

// A printable ASCII character that both escape styles write as it is.
bool plain_json_char(unsigned char c) {
  return c >= 0x20 && c < 0x7F && c != '"' && c != '\\';
}

void append_escaped(std::string& out, std::string_view text, JsonEscapes escapes) {
  out += '"';
  for (std::size_t i = 0; i < text.size();) {
    // A run of plain characters in one append (one call per character was most of the cost).
    std::size_t end = i;
    while (end < text.size() && plain_json_char(static_cast<unsigned char>(text[end]))) ++end;
    if (end > i) {
      out.append(text.data() + i, end - i);
      i = end;
      continue;
    }
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x80) {
      const std::size_t len = utf8_sequence_length(text, i);
      if (len == 0) {
        out += "\xEF\xBF\xBD";  // U+FFFD
        ++i;
      } else {
        out.append(text.substr(i, len));
        i += len;
      }
      continue;
    }
    append_json_char(out, c, escapes);
    ++i;
  }
  out += '"';
}

}  // namespace

void append_json_string(std::string& out, std::string_view text) {
  append_escaped(out, text, JsonEscapes::kLog);
}

void append_json_string_as_nlohmann(std::string& out, std::string_view text) {
  append_escaped(out, text, JsonEscapes::kNlohmann);
}

LogField field_str(std::string name, std::string_view value) {
  LogField f{std::move(name), {}};
  append_json_string(f.json, value);
  return f;
}

LogField field_num(std::string name, double value) {
  return LogField{std::move(name), fmt::format("{}", value)};
}

LogField field_int(std::string name, long long value) {
  return LogField{std::move(name), std::to_string(value)};
}

void install_ecs_logger(std::string_view service_name, std::string_view service_version,
                        spdlog::level::level_enum level) {
  auto id = std::make_shared<ServiceIdentity>();
  append_json_string(id->name_json, service_name);
  append_json_string(id->version_json, service_version);
  id->pid = std::to_string(getpid());
  // A synchronous sink: measured cheaper than spdlog's async queue on 2 cores, and it lets the
  // formatter read this thread's request context.
  auto sink = std::make_shared<MutableStdoutSink>();
  auto logger = std::make_shared<spdlog::logger>(std::string(service_name), sink);
  logger->set_formatter(std::make_unique<EcsFormatter>(id));
  logger->set_level(level);
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(logger);
}

bool parse_level(std::string_view text, spdlog::level::level_enum& level) {
  if (text == "warning") text = "warn";
  if (text == "error") text = "err";
  static constexpr std::string_view names[] = {"trace", "debug",    "info", "warn",
                                               "err",   "critical", "off"};
  for (std::size_t i = 0; i < std::size(names); ++i) {
    if (text == names[i]) {
      level = static_cast<spdlog::level::level_enum>(i);
      return true;
    }
  }
  return false;
}

void set_level(spdlog::level::level_enum level) {
  spdlog::default_logger_raw()->set_level(level);
}

spdlog::level::level_enum current_level() {
  return spdlog::default_logger_raw()->level();
}

void log_event(spdlog::level::level_enum level, std::string_view message,
               std::vector<LogField> fields) {
  spdlog::logger* logger = spdlog::default_logger_raw();
  if (t_context.muted || !logger->should_log(level)) return;
  t_context.fields = &fields;
  logger->log(level, "{}", message);
  t_context.fields = nullptr;
}

LogScope::LogScope(std::string_view trace_id, std::string_view span_id, std::string_view request_id,
                   bool muted)
    : saved_trace_(std::move(t_context.trace_id)),
      saved_span_(std::move(t_context.span_id)),
      saved_request_(std::move(t_context.request_id)),
      saved_muted_(std::exchange(t_context.muted, muted)) {
  t_context.trace_id = trace_id;
  t_context.span_id = span_id;
  t_context.request_id = request_id;
}

LogScope::~LogScope() {
  t_context.trace_id = std::move(saved_trace_);
  t_context.span_id = std::move(saved_span_);
  t_context.request_id = std::move(saved_request_);
  t_context.muted = saved_muted_;
}

void set_log_muted(bool muted) {
  t_context.muted = muted;
}

bool log_muted() {
  return t_context.muted;
}

}  // namespace wf::obs
