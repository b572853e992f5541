#pragma once
// Test doubles for the engine's ports, behaving like shared/conformance/run.py's mocks:
// a wiki serving a map of persisted objects (plus a definitions directory), and an evaluator
// answering from a list of stubbed calls.

#include <filesystem>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "orchestrator/engine/ports.h"

namespace wf::orchestrator::testing {

// A persisted object (Z2) of the given ZID and value, as the wiki stores it.
inline nlohmann::json z2(const std::string& zid, nlohmann::json value) {
  return {{"Z1K1", "Z2"}, {"Z2K1", {{"Z1K1", "Z6"}, {"Z6K1", zid}}}, {"Z2K2", std::move(value)}};
}

class FakeWiki : public ObjectFetcher {
 public:
  // objects: ZID -> persisted Z2 (any form). definitions_dir may be empty.
  FakeWiki(nlohmann::json objects, std::filesystem::path definitions_dir,
           std::set<std::string> problems = {});
  // Answers at once, on the calling thread.
  void fetch(const std::vector<std::string>& zids, const CallContext& ctx, Done done) override;
  std::vector<std::vector<std::string>> requests() const;

 private:
  Result answer(const std::vector<std::string>& zids, const CallContext& ctx);
  nlohmann::json objects_;
  std::filesystem::path dir_;
  std::set<std::string> problems_;
  mutable std::mutex mu_;
  std::vector<std::vector<std::string>> requests_;
};

class FakeEvaluator : public CodeRunner {
 public:
  // stub: {"calls":[{"function":..., "args": null|{...}, "status": n, "body": ...}]}
  explicit FakeEvaluator(nlohmann::json stub);
  // Answers at once, on the calling thread.
  void run(const CodeCall& call, const CallContext& ctx, Done done) override;
  int calls() const;

 private:
  Result answer(const CodeCall& call, const CallContext& ctx);
  nlohmann::json stub_;
  mutable std::mutex mu_;
  int calls_ = 0;
};

// A code implementation (Z14) of `function` in `language` (a Z61 name: "python-3", "lua"), inline.
nlohmann::json code_implementation(const std::string& function, const std::string& language,
                                   const std::string& code);
// A function `zid` of no arguments that returns a string and has one code implementation: the
// smallest call that needs an evaluator.
nlohmann::json code_function(const std::string& zid, const std::string& language,
                             const std::string& code);

// The legacy default language routing of orchestrator-api.md §5.
bool legacy_language_routed(const std::string& language);

}  // namespace wf::orchestrator::testing
