#include "wf/config/config.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <stdexcept>

namespace wf::config {
namespace {

std::string flag_name(const Option& o) {
  std::string f = "--" + o.key;
  std::replace(f.begin(), f.end(), '_', '-');
  return f;
}

std::string type_hint(const Option& o) {
  switch (o.type) {
    case Type::kInt:
      if (o.max == INT64_MAX) return fmt::format("an integer >= {}", o.min);
      return fmt::format("an integer from {} to {}", o.min, o.max);
    case Type::kBool:
      return "true or false";
    case Type::kUrl:
      return "an http:// URL such as http://127.0.0.1:6927/1/v1/evaluate/";
    case Type::kLogLevel:
      return "one of trace, debug, info, warn, error, critical, off";
    case Type::kString:
      return "a string";
  }
  return "a value";
}

std::optional<bool> parse_bool(std::string_view v) {
  if (v == "true" || v == "1" || v == "yes" || v == "on") return true;
  if (v == "false" || v == "0" || v == "no" || v == "off") return false;
  return std::nullopt;
}

// Empty string when valid, else why not.
std::string check(const Option& o, const std::string& v) {
  switch (o.type) {
    case Type::kString:
      return {};
    case Type::kInt: {
      std::int64_t n = 0;
      const auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
      if (ec != std::errc() || ptr != v.data() + v.size() || v.empty()) return "is not an integer";
      if (n < o.min || n > o.max) return "is out of range";
      return {};
    }
    case Type::kBool:
      return parse_bool(v) ? "" : "is not a boolean";
    case Type::kUrl: {
      if (v.empty()) return {};
      if (v.rfind("http://", 0) != 0) {
        return v.rfind("https://", 0) == 0
                   ? "uses https, which this build does not speak (put a TLS proxy in front)"
                   : "is not an http:// URL";
      }
      if (v.size() <= 7 || v[7] == '/' || v[7] == ':') return "has no host";
      return {};
    }
    case Type::kLogLevel: {
      static const char* levels[] = {"trace", "debug", "info",     "warn", "warning",
                                     "error", "err",   "critical", "off"};
      for (const char* l : levels) {
        if (v == l) return {};
      }
      return "is not a log level";
    }
  }
  return {};
}

std::string scalar_text(const YAML::Node& node) {
  if (node.IsNull()) return "";
  return node.as<std::string>();
}

}  // namespace

const std::string& Config::str(std::string_view key) const {
  const auto it = values_.find(key);
  if (it == values_.end()) throw std::logic_error(fmt::format("config key {} not declared", key));
  return it->second.text;
}

std::int64_t Config::integer(std::string_view key) const {
  const std::string& v = str(key);
  std::int64_t n = 0;
  std::from_chars(v.data(), v.data() + v.size(), n);
  return n;
}

bool Config::boolean(std::string_view key) const {
  return parse_bool(str(key)).value_or(false);
}

Source Config::source(std::string_view key) const {
  str(key);
  return values_.find(key)->second.source;
}

std::string Config::origin(std::string_view key) const {
  str(key);
  return values_.find(key)->second.where;
}

bool wants_help(const std::vector<std::string>& args) {
  return std::any_of(args.begin(), args.end(),
                     [](const std::string& a) { return a == "--help" || a == "-h"; });
}

std::expected<Config, std::string> load(std::vector<Option> options,
                                        const std::vector<std::string>& args,
                                        const std::function<const char*(const char*)>& getenv_in) {
  const std::function<const char*(const char*)> getenv_fn =
      getenv_in ? getenv_in : [](const char* n) -> const char* { return std::getenv(n); };
  Config cfg;
  for (const Option& o : options)
    cfg.values_[o.key] = {o.default_value, Source::kDefault, "default"};

  auto find_by_flag = [&](std::string_view flag) -> const Option* {
    for (const Option& o : options) {
      if (flag_name(o) == flag) return &o;
      for (const auto& alias : o.flag_aliases) {
        if (alias == flag) return &o;
      }
    }
    return nullptr;
  };

  // 1. Flags are parsed first (so --config is known), applied last.
  std::vector<std::pair<const Option*, std::string>> flags;
  std::string config_file;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string arg = args[i];
    if (arg.rfind("--", 0) != 0) {
      return std::unexpected(
          fmt::format("unexpected argument '{}': options look like --port 6254 (see --help)", arg));
    }
    std::string value;
    bool has_value = false;
    if (const auto eq = arg.find('='); eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_value = true;
    }
    if (arg == "--config") {
      if (!has_value) {
        if (i + 1 >= args.size())
          return std::unexpected("--config needs a file name: --config /etc/wf/service.yaml");
        value = args[++i];
      }
      config_file = value;
      continue;
    }
    const Option* o = find_by_flag(arg);
    if (o == nullptr)
      return std::unexpected(
          fmt::format("unknown option {}; run with --help to list the options", arg));
    if (!has_value) {
      if (o->type == Type::kBool && (i + 1 >= args.size() || args[i + 1].rfind("--", 0) == 0)) {
        value = "true";
      } else if (i + 1 >= args.size()) {
        return std::unexpected(fmt::format("{} needs a value: {}", arg, type_hint(*o)));
      } else {
        value = args[++i];
      }
    }
    flags.emplace_back(o, value);
  }
  if (config_file.empty()) {
    if (const char* f = getenv_fn("WF_CONFIG"); f != nullptr && *f != '\0') config_file = f;
  }

  // 2. The file.
  if (!config_file.empty()) {
    YAML::Node root;
    try {
      root = YAML::LoadFile(config_file);
    } catch (const YAML::BadFile&) {
      return std::unexpected(
          fmt::format("cannot read config file {}: check the path given to --config or WF_CONFIG",
                      config_file));
    } catch (const YAML::Exception& e) {
      return std::unexpected(
          fmt::format("config file {} is not valid YAML: {} (line {}, column {})", config_file,
                      e.msg, e.mark.line + 1, e.mark.column + 1));
    }
    if (!root.IsNull() && !root.IsMap()) {
      return std::unexpected(fmt::format(
          "config file {} must be a mapping of keys to values, like 'port: 6254'", config_file));
    }
    for (const auto& kv : root) {
      const std::string key = kv.first.as<std::string>();
      const auto it = std::find_if(options.begin(), options.end(),
                                   [&](const Option& o) { return o.key == key; });
      if (it == options.end()) {
        std::string known;
        for (const Option& o : options) known += (known.empty() ? "" : ", ") + o.key;
        return std::unexpected(fmt::format("unknown key '{}' in config file {}; known keys: {}",
                                           key, config_file, known));
      }
      if (!kv.second.IsScalar() && !kv.second.IsNull()) {
        return std::unexpected(fmt::format("key '{}' in config file {} must be a single value ({})",
                                           key, config_file, type_hint(*it)));
      }
      cfg.values_[key] = {scalar_text(kv.second), Source::kFile, "file " + config_file};
    }
  }

  // 3. Environment.
  for (const Option& o : options) {
    for (const std::string& name : o.env) {
      if (const char* v = getenv_fn(name.c_str()); v != nullptr) {
        cfg.values_[o.key] = {v, Source::kEnvironment, "environment variable " + name};
        break;
      }
    }
  }

  // 4. Flags win.
  for (const auto& [o, v] : flags)
    cfg.values_[o->key] = {v, Source::kFlag, "flag " + flag_name(*o)};

  // 5. Validate everything, naming the fix.
  for (const Option& o : options) {
    Config::Value& v = cfg.values_[o.key];
    if (o.type == Type::kLogLevel && v.text == "warning") v.text = "warn";
    if (const std::string why = check(o, v.text); !why.empty()) {
      return std::unexpected(fmt::format("{} = '{}' (from {}) {}: set it to {} ({})", o.key, v.text,
                                         v.where, why, type_hint(o), o.help));
    }
  }
  cfg.options_ = std::move(options);
  return cfg;
}

std::string help_text(std::string_view program, std::string_view summary,
                      const std::vector<Option>& options) {
  std::string out =
      fmt::format("{} - {}\n\nUsage: {} [--config FILE] [options]\n\n", program, summary, program);
  out +=
      "Sources, highest precedence first: flags, environment variables, the config file\n"
      "(YAML, --config FILE or WF_CONFIG; keys as below), defaults.\n\nOptions:\n";
  out += "  --config FILE\n      YAML/JSON configuration file. [env: WF_CONFIG]\n";
  for (const Option& o : options) {
    out += "  " + flag_name(o);
    for (const auto& a : o.flag_aliases) out += ", " + a;
    out += fmt::format(" <{}>\n      {}", o.key, o.help);
    out +=
        fmt::format("\n      default: {}", o.default_value.empty() ? "(empty)" : o.default_value);
    if (!o.env.empty()) {
      out += "  [env: ";
      for (std::size_t i = 0; i < o.env.size(); ++i) out += (i ? ", " : "") + o.env[i];
      out += "]";
    }
    out += "\n";
  }
  out += "  --help, -h\n      Print this help and exit.\n";
  return out;
}

}  // namespace wf::config
