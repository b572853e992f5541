#include "wf/config/config.h"

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <string>

namespace {

using wf::config::Option;
using wf::config::Source;
using wf::config::Type;

std::vector<Option> options() {
  return {
      {"port", Type::kInt, "6254", "port", {"PORT"}, {}, 0, 65535},
      {"wiki_api_url", Type::kUrl, "", "wiki", {"WIKI_API_URL"}, {"--wiki"}},
      {"access_log", Type::kBool, "true", "log", {}},
      {"log_level", Type::kLogLevel, "info", "level", {"WF_LOG_LEVEL"}},
  };
}

struct Env {
  std::map<std::string, std::string> vars;
  std::function<const char*(const char*)> fn() {
    return [this](const char* n) -> const char* {
      auto it = vars.find(n);
      return it == vars.end() ? nullptr : it->second.c_str();
    };
  }
};

std::string write_file(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + name;
  std::ofstream(path) << text;
  return path;
}

TEST(Config, DefaultsApply) {
  Env env;
  auto cfg = wf::config::load(options(), {}, env.fn());
  ASSERT_TRUE(cfg) << cfg.error();
  EXPECT_EQ(cfg->integer("port"), 6254);
  EXPECT_TRUE(cfg->boolean("access_log"));
  EXPECT_EQ(cfg->source("port"), Source::kDefault);
}

TEST(Config, FlagsBeatEnvironmentBeatsFileBeatsDefault) {
  const std::string file = write_file(
      "prec.yaml", "port: 1111\nwiki_api_url: http://file/w/api.php\nlog_level: debug\n");
  Env env;
  env.vars["PORT"] = "2222";
  env.vars["WIKI_API_URL"] = "http://env/w/api.php";
  auto cfg = wf::config::load(options(), {"--config", file, "--port", "3333"}, env.fn());
  ASSERT_TRUE(cfg) << cfg.error();
  EXPECT_EQ(cfg->integer("port"), 3333);
  EXPECT_EQ(cfg->source("port"), Source::kFlag);
  EXPECT_EQ(cfg->str("wiki_api_url"), "http://env/w/api.php");
  EXPECT_EQ(cfg->source("wiki_api_url"), Source::kEnvironment);
  EXPECT_EQ(cfg->str("log_level"), "debug");
  EXPECT_EQ(cfg->source("log_level"), Source::kFile);
  EXPECT_EQ(cfg->origin("port"), "flag --port");
}

TEST(Config, FlagSpellings) {
  Env env;
  auto cfg = wf::config::load(
      options(), {"--port=0", "--wiki", "http://x/api.php", "--access-log", "false"}, env.fn());
  ASSERT_TRUE(cfg) << cfg.error();
  EXPECT_EQ(cfg->integer("port"), 0);
  EXPECT_EQ(cfg->str("wiki_api_url"), "http://x/api.php");
  EXPECT_FALSE(cfg->boolean("access_log"));
  auto bare = wf::config::load(options(), {"--access-log"}, env.fn());
  ASSERT_TRUE(bare);
  EXPECT_TRUE(bare->boolean("access_log"));
}

TEST(Config, ErrorsNameTheOptionTheSourceAndTheFix) {
  Env env;
  env.vars["PORT"] = "70000";
  auto out_of_range = wf::config::load(options(), {}, env.fn());
  ASSERT_FALSE(out_of_range);
  EXPECT_NE(out_of_range.error().find("port"), std::string::npos);
  EXPECT_NE(out_of_range.error().find("environment variable PORT"), std::string::npos);
  EXPECT_NE(out_of_range.error().find("0 to 65535"), std::string::npos) << out_of_range.error();

  Env clean;
  auto unknown = wf::config::load(options(), {"--prot", "1"}, clean.fn());
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().find("--help"), std::string::npos);

  auto https = wf::config::load(options(), {"--wiki-api-url", "https://x/api.php"}, clean.fn());
  ASSERT_FALSE(https);
  EXPECT_NE(https.error().find("https"), std::string::npos);

  auto missing_value = wf::config::load(options(), {"--port"}, clean.fn());
  ASSERT_FALSE(missing_value);

  const std::string bad_key = write_file("badkey.yaml", "prot: 1\n");
  auto file_key = wf::config::load(options(), {"--config", bad_key}, clean.fn());
  ASSERT_FALSE(file_key);
  EXPECT_NE(file_key.error().find("known keys: port"), std::string::npos) << file_key.error();

  const std::string bad_yaml = write_file("bad.yaml", "port: [1,\n");
  auto yaml = wf::config::load(options(), {"--config", bad_yaml}, clean.fn());
  ASSERT_FALSE(yaml);
  EXPECT_NE(yaml.error().find("not valid YAML"), std::string::npos);

  auto nofile = wf::config::load(options(), {"--config", "/nonexistent/x.yaml"}, clean.fn());
  ASSERT_FALSE(nofile);
  EXPECT_NE(nofile.error().find("cannot read config file"), std::string::npos);
}

TEST(Config, ConfigFileFromEnvironment) {
  const std::string file = write_file("envfile.yaml", "port: 4444\n");
  Env env;
  env.vars["WF_CONFIG"] = file;
  auto cfg = wf::config::load(options(), {}, env.fn());
  ASSERT_TRUE(cfg) << cfg.error();
  EXPECT_EQ(cfg->integer("port"), 4444);
}

TEST(Config, HelpListsEveryOptionWithDefaultAndEnvironment) {
  const std::string help = wf::config::help_text("prog", "does things", options());
  for (const char* needle : {"--port", "default: 6254", "[env: PORT]", "--wiki-api-url, --wiki",
                             "--access-log", "--config FILE", "--help"}) {
    EXPECT_NE(help.find(needle), std::string::npos) << needle << "\n" << help;
  }
  EXPECT_TRUE(wf::config::wants_help({"--port", "1", "--help"}));
  EXPECT_FALSE(wf::config::wants_help({"--port", "1"}));
}

}  // namespace
