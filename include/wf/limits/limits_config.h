#pragma once
// The limits' options in the services' configuration (flags, environment, YAML), and GateOptions
// built from them. Documented in docs/config/*.yaml and docs/limits.md.

#include <expected>
#include <string>
#include <vector>

#include "wf/config/config.h"
#include "wf/limits/gate.h"

namespace wf::limits {

// limits_* and admission_* options. The orchestrator gets the per-user set (header, trusted peers,
// anonymous and user classes, extra classes, memcached); the evaluator a per-caller set.
std::vector<config::Option> orchestrator_limit_options();
std::vector<config::Option> evaluator_limit_options();

// GateOptions from a loaded configuration; the error names the option and the fix.
std::expected<GateOptions, std::string> orchestrator_gate_options(const config::Config& cfg);
std::expected<GateOptions, std::string> evaluator_gate_options(const config::Config& cfg);

// Extra classes from JSON: [{"name": "bot", "users": ["Bot:*"], "peers": ["10.0.0.0/8"],
// "rate": 50, "burst": 100, "concurrency": 16, "cpu_ms": 600000, "pooled": false}, ...].
std::expected<void, std::string> parse_extra_classes(std::string_view json_text,
                                                     std::vector<ClassRule>& rules,
                                                     std::vector<ClassLimits>& classes);

}  // namespace wf::limits
