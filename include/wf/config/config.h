#pragma once
// Service configuration from three sources: a YAML (or JSON) file, environment variables and
// command-line flags. Precedence: flags > environment > file > default. Every value is validated at
// start-up; errors name the option, where the bad value came from, and how to fix it.

#include <cstdint>
#include <expected>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace wf::config {

enum class Type {
  kString,
  kInt,       // decimal integer, within [min, max]
  kBool,      // true/false/1/0/yes/no
  kUrl,       // empty, or http://host[:port]/path
  kLogLevel,  // trace|debug|info|warn|error|critical|off
};

struct Option {
  std::string key;  // key in the file; also the flag name: key "wiki_api_url" -> --wiki-api-url
  Type type = Type::kString;
  std::string default_value;
  std::string help;
  std::vector<std::string> env;           // environment variables, first set wins
  std::vector<std::string> flag_aliases;  // extra flag spellings, e.g. "--wiki"
  std::int64_t min = 0;
  std::int64_t max = INT64_MAX;
};

enum class Source { kDefault, kFile, kEnvironment, kFlag };

class Config {
 public:
  const std::string& str(std::string_view key) const;
  std::int64_t integer(std::string_view key) const;
  bool boolean(std::string_view key) const;
  Source source(std::string_view key) const;
  // Where a value came from, for the start-up log: "flag --port", "env PORT", "file x.yaml",
  // "default".
  std::string origin(std::string_view key) const;
  const std::vector<Option>& options() const { return options_; }

 private:
  friend std::expected<Config, std::string> load(std::vector<Option>,
                                                 const std::vector<std::string>&,
                                                 const std::function<const char*(const char*)>&);
  struct Value {
    std::string text;
    Source source = Source::kDefault;
    std::string where;
  };
  std::vector<Option> options_;
  std::map<std::string, Value, std::less<>> values_;
};

// args: argv without the program name. The flag --config FILE (or env WF_CONFIG) names the file.
// getenv_fn defaults to ::getenv; tests pass their own.
std::expected<Config, std::string> load(
    std::vector<Option> options, const std::vector<std::string>& args,
    const std::function<const char*(const char*)>& getenv_fn = nullptr);

// True if args ask for --help or -h.
bool wants_help(const std::vector<std::string>& args);
// The --help text: usage line, then every option with flag, environment names and default.
std::string help_text(std::string_view program, std::string_view summary,
                      const std::vector<Option>& options);

}  // namespace wf::config
