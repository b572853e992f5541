#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "wf/obs/log.h"

namespace {

// Captures what the ECS logger writes to stdout (fd 1) while in scope.
class StdoutCapture {
 public:
  StdoutCapture() {
    std::fflush(stdout);
    saved_ = dup(1);
    file_ = std::tmpfile();
    dup2(fileno(file_), 1);
  }
  std::string finish() {
    std::fflush(stdout);
    dup2(saved_, 1);
    close(saved_);
    std::string out;
    std::rewind(file_);
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, file_)) > 0) out.append(buf, n);
    std::fclose(file_);
    return out;
  }

 private:
  int saved_ = -1;
  std::FILE* file_ = nullptr;
};

std::vector<nlohmann::json> lines_of(const std::string& text) {
  std::vector<nlohmann::json> out;
  std::size_t pos = 0;
  while (pos < text.size()) {
    const auto nl = text.find('\n', pos);
    const std::string line = text.substr(pos, nl - pos);
    out.push_back(nlohmann::json::parse(line));  // throws (fails the test) if not valid JSON
    if (nl == std::string::npos) break;
    pos = nl + 1;
  }
  return out;
}

TEST(EcsLog, ControlCharactersAreEscapedAsUnicodeAndTheRestAsJsonSays) {
  std::string out;
  wf::obs::append_json_string(out, "a\"\\\n\r\t\b\f\x01\x1f\x7f~");
  EXPECT_EQ(out, R"("a\"\\\n\r\t\u0008\u000c\u0001\u001f\u007f~")");
  EXPECT_EQ(nlohmann::json::parse(out), "a\"\\\n\r\t\b\f\x01\x1f\x7f~");
}

TEST(EcsLog, EveryLineIsEcsJsonEvenWithHostileText) {
  wf::obs::install_ecs_logger("svc-test", "1.2.3", spdlog::level::info);
  StdoutCapture cap;
  spdlog::info("plain");
  spdlog::warn("quotes \" backslash \\ newline \n tab \t bell \x07 del \x7f");
  spdlog::error("invalid utf8 \xff\xfe and valid é 😀");
  spdlog::debug("below the level: not written");
  const auto lines = lines_of(cap.finish());
  ASSERT_EQ(lines.size(), 3u);
  for (const auto& j : lines) {
    for (const char* key :
         {"@timestamp", "log.level", "message", "ecs.version", "service.name", "service.version"}) {
      EXPECT_TRUE(j.contains(key)) << key << " missing in " << j.dump();
    }
    EXPECT_EQ(j["ecs.version"], "1.11.0");
    EXPECT_EQ(j["service.name"], "svc-test");
    EXPECT_EQ(j["service.version"], "1.2.3");
    const std::string ts = j["@timestamp"];
    EXPECT_EQ(ts.size(), 27u) << ts;  // 2026-01-02T03:04:05.123456Z
    EXPECT_EQ(ts.back(), 'Z');
  }
  EXPECT_EQ(lines[0]["log.level"], "info");
  EXPECT_EQ(lines[1]["log.level"], "warn");
  EXPECT_EQ(lines[1]["message"], "quotes \" backslash \\ newline \n tab \t bell \x07 del \x7f");
  EXPECT_EQ(lines[2]["log.level"], "error");
  EXPECT_EQ(lines[2]["message"], "invalid utf8 \xEF\xBF\xBD\xEF\xBF\xBD and valid é 😀");
}

TEST(EcsLog, ScopeAndFieldsAreAdded) {
  wf::obs::install_ecs_logger("svc-test", "1.2.3", spdlog::level::info);
  StdoutCapture cap;
  {
    wf::obs::LogScope scope("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", "req-1");
    wf::obs::log_event(
        spdlog::level::info, "GET /x 200",
        {wf::obs::field_str("http.request.method", "GET"), wf::obs::field_str("url.path", "/x"),
         wf::obs::field_int("http.response.status_code", 200),
         wf::obs::field_int("event.duration", 1500)});
  }
  spdlog::info("after the scope");
  const auto lines = lines_of(cap.finish());
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0]["trace.id"], "0af7651916cd43dd8448eb211c80319c");
  EXPECT_EQ(lines[0]["span.id"], "b7ad6b7169203331");
  EXPECT_EQ(lines[0]["http.request.id"], "req-1");
  EXPECT_EQ(lines[0]["http.request.method"], "GET");
  EXPECT_EQ(lines[0]["http.response.status_code"], 200);
  EXPECT_EQ(lines[0]["event.duration"], 1500);
  EXPECT_FALSE(lines[1].contains("trace.id"));
}

TEST(EcsLog, LevelChangesAtRunTime) {
  wf::obs::install_ecs_logger("svc-test", "1.2.3", spdlog::level::info);
  spdlog::level::level_enum level{};
  ASSERT_TRUE(wf::obs::parse_level("debug", level));
  EXPECT_FALSE(wf::obs::parse_level("loud", level));
  StdoutCapture cap;
  spdlog::debug("hidden");
  wf::obs::set_level(spdlog::level::debug);
  spdlog::debug("shown");
  ASSERT_TRUE(wf::obs::parse_level("warning", level));
  wf::obs::set_level(level);
  spdlog::info("hidden again");
  const auto lines = lines_of(cap.finish());
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0]["message"], "shown");
  EXPECT_EQ(lines[0]["log.level"], "debug");
}

}  // namespace

#include "wf/obs/metrics.h"

namespace {
TEST(EcsLog, BugsAreLoggedWithErrorFields) {
  wf::obs::install_ecs_logger("svc-test", "1.2.3", spdlog::level::info);
  StdoutCapture cap;
  wf::obs::count_bug("ecs_log_test", "an invariant \"failed\"");
  const auto lines = lines_of(cap.finish());
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0]["log.level"], "error");
  EXPECT_EQ(lines[0]["error.type"], "bug");
  EXPECT_EQ(lines[0]["error.message"], "an invariant \"failed\"");
  EXPECT_EQ(lines[0]["log.origin.function"], "ecs_log_test");
}
}  // namespace
