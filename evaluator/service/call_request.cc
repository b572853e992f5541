#include "evaluator/service/call_request.h"

#include <fmt/format.h>

#include <array>
#include <cmath>
#include <string_view>

namespace wf::evaluator {
namespace {

constexpr std::string_view kNoLanguage = "Unable to find programming language in function call. ";
constexpr std::string_view kParserErrors = "Unable to validate function call. Parser errors: ";
constexpr int kMaxPlanDepth = 16;

bool is_zid(std::string_view s) {
  if (s.size() < 2 || s[0] != 'Z' || s[1] < '1' || s[1] > '9') return false;
  for (std::size_t i = 2; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
  }
  return true;
}

// ^(Z[1-9]\d*)?K[1-9]\d*$
bool is_key(std::string_view s) {
  std::size_t i = 0;
  if (!s.empty() && s[0] == 'Z') {
    if (s.size() < 2 || s[1] < '1' || s[1] > '9') return false;
    i = 2;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
  }
  if (i >= s.size() || s[i] != 'K') return false;
  ++i;
  if (i >= s.size() || s[i] < '1' || s[i] > '9') return false;
  for (++i; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
  }
  return true;
}

bool is_z9_to(const Json& v, std::string_view id) {
  return v.is_object() && v.size() == 2 && v.value("Z1K1", Json()) == "Z9" &&
         v.value("Z9K1", Json()) == std::string(id);
}

class NormalFormChecker {
 public:
  explicit NormalFormChecker(std::size_t max) : max_(max) {}

  void z7(const Json& v) {
    if (!v.is_object()) {
      add("", "must be object");
      return;
    }
    if (!v.contains("Z1K1") || !is_z9_to(v["Z1K1"], "Z7")) {
      add("/Z1K1", "must be the reference Z7 (a function call)");
    }
    if (!v.contains("Z7K1")) add("", "must have required property 'Z7K1'");
    object(v, "");
  }

  std::vector<std::string> take() { return std::move(errors_); }

 private:
  void add(const std::string& path, std::string_view message) {
    if (errors_.size() < max_)
      errors_.push_back(fmt::format("{}: {}", path.empty() ? "/" : path, message));
  }
  bool full() const { return errors_.size() >= max_; }

  void value(const Json& v, const std::string& path) {
    if (full()) return;
    if (v.is_object()) {
      object(v, path);
    } else if (v.is_string()) {
      add(path, "must be object (a bare string is canonical form, not normal form)");
    } else if (v.is_array()) {
      add(path, "must be object (an array is canonical form, not normal form)");
    } else {
      add(path, fmt::format("must be object, not {}", v.type_name()));
    }
  }

  void object(const Json& v, const std::string& path) {
    if (!v.contains("Z1K1")) {
      add(path, "must have required property 'Z1K1'");
      return;
    }
    const Json& type = v["Z1K1"];
    if (type == "Z6" || type == "Z9") {
      terminal(v, path, type.get<std::string>());
      return;
    }
    if (!type.is_object()) {
      add(path + "/Z1K1", "must be object (a reference, a function call or a literal type)");
    } else {
      type_value(type, path + "/Z1K1");
    }
    for (auto it = v.begin(); it != v.end() && !full(); ++it) {
      if (it.key() == "Z1K1") continue;
      if (!is_key(it.key())) {
        add(path, fmt::format("must NOT have additional properties ('{}' is not a key)", it.key()));
        continue;
      }
      value(it.value(), path + "/" + it.key());
    }
  }

  void terminal(const Json& v, const std::string& path, const std::string& kind) {
    const std::string k = kind + "K1";
    if (!v.contains(k)) {
      add(path, fmt::format("must have required property '{}'", k));
      return;
    }
    if (!v[k].is_string()) add(path + "/" + k, "must be string");
    if (kind == "Z9" && v[k].is_string() && !is_zid(v[k].get<std::string>())) {
      add(path + "/Z9K1", "must match pattern \"^Z[1-9]\\d*$\"");
    }
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (it.key() != "Z1K1" && it.key() != k) {
        add(path, fmt::format("must NOT have additional properties ('{}')", it.key()));
      }
    }
  }

  // A Z1K1 that is not a terminal: a reference, a function call (generic type) or a literal Z4.
  void type_value(const Json& t, const std::string& path) {
    if (t.contains("Z1K1") && t["Z1K1"] == "Z9") {
      terminal(t, path, "Z9");
      return;
    }
    if (!t.contains("Z1K1") || !(is_z9_to(t["Z1K1"], "Z7") || is_z9_to(t["Z1K1"], "Z4"))) {
      add(path, "must be a reference (Z9), a function call (Z7) or a literal type (Z4)");
      return;
    }
    object(t, path);
  }

  std::size_t max_;
  std::vector<std::string> errors_;
};

// Walks `path` (keys) from `root`; on a missing step, says which.
const Json* walk(const Json& root, std::initializer_list<std::string_view> path,
                 std::string& missing) {
  const Json* cur = &root;
  std::string where;
  for (std::string_view key : path) {
    where += where.empty() ? std::string(key) : "." + std::string(key);
    if (!cur->is_object() || !cur->contains(key)) {
      missing = where + " is missing";
      return nullptr;
    }
    cur = &(*cur)[std::string(key)];
  }
  return cur;
}

std::unexpected<Json> parser_error(std::string_view what) {
  return std::unexpected(make_error("Z507", fmt::format("{}{}", kParserErrors, what), true));
}

std::unexpected<Json> no_language(std::string_view detail) {
  return std::unexpected(make_error("Z558", fmt::format("{}{}", kNoLanguage, detail)));
}

// The language of a whole Z7: Z7K1.Z8K4.K1.Z14K3.Z16K1.Z61K1.Z6K1. Also accepted (an extension):
// Z16K1 as a reference to a programming-language ZID (Z600...), served by its ZID.
std::expected<std::string, std::string> language_of_z7(const Json& z7) {
  std::string missing;
  const Json* lang = walk(z7, {"Z7K1", "Z8K4", "K1", "Z14K3", "Z16K1"}, missing);
  if (lang == nullptr) return std::unexpected(missing);
  if (lang->is_object() && lang->value("Z1K1", Json()) == "Z9" && lang->contains("Z9K1") &&
      (*lang)["Z9K1"].is_string()) {
    return (*lang)["Z9K1"].get<std::string>();
  }
  const Json* code = walk(*lang, {"Z61K1"}, missing);
  if (code == nullptr) return std::unexpected("Z7K1.Z8K4.K1.Z14K3.Z16K1.Z61K1 is missing");
  if (code->is_string()) return code->get<std::string>();  // canonical Z6
  if (code->is_object() && code->contains("Z6K1") && (*code)["Z6K1"].is_string()) {
    return (*code)["Z6K1"].get<std::string>();
  }
  return std::unexpected("Z7K1.Z8K4.K1.Z14K3.Z16K1.Z61K1 is not a string");
}

std::expected<CallRequest, Json> from_code_request(const Json& req, CallRequest call) {
  const Json language = req.value("codingLanguage", Json());
  if (!language.is_string() || language.get<std::string>().empty()) {
    return no_language("codingLanguage not specified");
  }
  call.language = language.get<std::string>();
  const Json code = req.value("codeString", Json());
  if (!code.is_string()) return parser_error("Request did not supply codeString.");
  call.code = code.get<std::string>();
  const Json name = req.value("functionName", Json());
  if (!name.is_string() || name.get<std::string>().empty()) {
    return parser_error("Request did not supply functionName.");
  }
  call.function_name = name.get<std::string>();
  if (req.contains("functionArguments")) {
    if (!req["functionArguments"].is_object()) {
      return parser_error("functionArguments must be an object of argument key to ZObject.");
    }
    call.arguments = req["functionArguments"];
  }
  return call;
}

std::expected<CallRequest, Json> from_z7(const Json& z7, CallRequest call) {
  auto language = language_of_z7(z7);
  if (!language) return no_language(language.error());
  if (language->empty()) return no_language("the language code is empty");
  call.language = std::move(*language);

  auto violations = normal_z7_violations(z7);
  if (!violations.empty()) {
    std::string joined;
    for (const auto& v : violations) joined += (joined.empty() ? "" : ",") + v;
    return std::unexpected(make_error("Z502", fmt::format("{}{}", kParserErrors, joined)));
  }
  std::string missing;
  const Json* code = walk(z7, {"Z7K1", "Z8K4", "K1", "Z14K3", "Z16K2", "Z6K1"}, missing);
  if (code == nullptr || !code->is_string()) {
    return parser_error("Request did not supply codeString.");
  }
  call.code = code->get<std::string>();
  const Json* name = walk(z7, {"Z7K1", "Z8K5", "Z9K1"}, missing);
  if (name == nullptr || !name->is_string()) {
    return parser_error("Request did not supply functionName.");
  }
  call.function_name = name->get<std::string>();
  for (auto it = z7.begin(); it != z7.end(); ++it) {
    if (it.key() != "Z1K1" && it.key() != "Z7K1") call.arguments[it.key()] = it.value();
  }
  return call;
}

// A conversion plan: {"converter": {"functionName": <non-empty string>, "code": <string>}},
// {"list": <plan>}, {"pair": [<plan>|null, <plan>|null]}, {"map": [<plan>|null, <plan>|null]},
// {"keys": {<key>: <plan>}} or {"native": {<native type name>: <plan>}}. Returns what is wrong,
// empty when valid.
std::string plan_problem(const Json& plan, const std::string& path, int depth);

constexpr const char* kPlanShapes = "'converter', 'list', 'pair', 'map', 'keys' or 'native'";

// The plans of an object (keys, native) or of a two-element array (pair, map; null elements
// allowed).
std::string inner_plans_problem(const Json& inner, const std::string& path, int depth, bool pair) {
  if (pair) {
    if (!inner.is_array() || inner.size() != 2) {
      return fmt::format("{} must be an array of two plans (null: no plan)", path);
    }
  } else if (!inner.is_object()) {
    return fmt::format("{} must be an object of names to plans", path);
  }
  std::size_t index = 0;
  for (auto it = inner.begin(); it != inner.end(); ++it, ++index) {
    if (pair && it->is_null()) continue;
    const std::string name = pair ? fmt::format("[{}]", index) : "." + it.key();
    auto problem = plan_problem(it.value(), path + name, depth + 1);
    if (!problem.empty()) return problem;
  }
  return {};
}

std::string plan_problem(const Json& plan, const std::string& path, int depth) {
  if (depth > kMaxPlanDepth)
    return fmt::format("{} nests deeper than {} plans", path, kMaxPlanDepth);
  if (!plan.is_object() || plan.size() != 1) {
    return fmt::format("{} must be an object with one key, {}", path, kPlanShapes);
  }
  const auto first = plan.begin();
  const std::string& shape = first.key();
  const Json& inner = first.value();
  if (shape == "list") return plan_problem(inner, path + ".list", depth + 1);
  if (shape == "pair" || shape == "map") {
    return inner_plans_problem(inner, path + "." + shape, depth, true);
  }
  if (shape == "keys" || shape == "native") {
    return inner_plans_problem(inner, path + "." + shape, depth, false);
  }
  if (shape != "converter") {
    return fmt::format("{} must be an object with one key, {}", path, kPlanShapes);
  }
  const Json name = inner.is_object() ? inner.value("functionName", Json()) : Json();
  if (!name.is_string() || name.get<std::string>().empty() ||
      !inner.value("code", Json()).is_string()) {
    return fmt::format("{}.converter must have a non-empty string functionName and a string code",
                       path);
  }
  return {};
}

// typeConverters: {"arguments"?: {<argument key>: plan}, "result"?: plan}.
std::expected<Json, Json> checked_converters(const Json& field) {
  std::string problem;
  if (!field.is_object()) {
    problem = "typeConverters must be an object";
  } else if (field.contains("arguments") && !field["arguments"].is_object()) {
    problem = "typeConverters.arguments must be an object of argument key to plan";
  }
  for (auto it = field.begin(); problem.empty() && it != field.end(); ++it) {
    if (it.key() == "result") {
      problem = plan_problem(it.value(), "typeConverters.result", 0);
    } else if (it.key() == "arguments") {
      for (auto arg = it->begin(); problem.empty() && arg != it->end(); ++arg) {
        problem = plan_problem(arg.value(), "typeConverters.arguments." + arg.key(), 0);
      }
    } else {
      problem = fmt::format("typeConverters has an unknown key '{}'", it.key());
    }
  }
  if (!problem.empty()) return parser_error(problem);
  return field;
}

}  // namespace

std::vector<std::string> normal_z7_violations(const Json& z7, std::size_t max) {
  NormalFormChecker checker(max);
  checker.z7(z7);
  return checker.take();
}

std::expected<CallRequest, Json> to_call_request(const Json& decoded) {
  CallRequest call;
  static const Json kEmpty = Json::object();
  const Json& outer = decoded.is_object() ? decoded : kEmpty;
  if (outer.contains("reentrant") && outer["reentrant"].is_boolean()) {
    call.reentrant = outer["reentrant"].get<bool>();
  }
  if (outer.contains("remainingTime") && outer["remainingTime"].is_number()) {
    const double ms = outer["remainingTime"].get<double>();
    if (ms > 0 && std::isfinite(ms)) call.remaining_time_ms = ms;
  }
  const Json& req =
      outer.contains("zobject") && outer["zobject"].is_object() ? outer["zobject"] : outer;
  static constexpr std::array<std::string_view, 4> kRecordFields = {
      "codingLanguage", "codeString", "functionName", "functionArguments"};
  const Json* converters = req.contains("typeConverters")     ? &req["typeConverters"]
                           : outer.contains("typeConverters") ? &outer["typeConverters"]
                                                              : nullptr;
  if (converters != nullptr && !converters->is_null()) {
    auto checked = checked_converters(*converters);
    if (!checked) return std::unexpected(std::move(checked.error()));
    call.converters = std::move(*checked);
  }
  bool record = false;
  for (auto f : kRecordFields) record = record || req.contains(f);
  if (record) return from_code_request(req, std::move(call));
  if (!req.contains("Z7K1") && !req.contains("Z1K1")) {
    return no_language("codingLanguage not specified");
  }
  return from_z7(req, std::move(call));
}

}  // namespace wf::evaluator
