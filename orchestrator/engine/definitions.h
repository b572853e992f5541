#pragma once
// The built-in definitions, parsed and normalized once at start-up and shared read-only by all
// requests. `served` is what dereferencing a built-in ZID yields (functions have their Z8K4
// references replaced by the inline Z14s, as the reference keeps them in memory).

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace wf::orchestrator::engine_detail {

class Definitions {
 public:
  using json = nlohmann::json;
  static const Definitions& instance();

  // Normal-form Z2 served for an internally known ZID (orchestrator-api.md §6), else null.
  std::shared_ptr<const json> served(std::string_view zid) const;
  // The same object as served(zid).get(), without taking a reference: the definitions live for
  // the process. For the questions asked per request and per string ("is this a built-in?").
  const json* served_json(std::string_view zid) const;
  // The definition file exactly as bundled (normalized, Z8K4 untouched), for Z828.
  std::shared_ptr<const json> original(std::string_view zid) const;
  // Normal-form Z2 of an object the reference fetches from the wiki (Z24, Z41, languages, ...)
  // that we bundle for running without a wiki; null when not bundled. Parsed on first use.
  std::shared_ptr<const json> fallback(std::string_view zid) const;
  // naturalLanguages.json: language code -> ZID, "" when unknown.
  std::string language_zid(std::string_view code) const;

 private:
  Definitions();
  // Transparent hashing: looked up by string_view without building a string.
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  // Asked for every ZID a request names (can_run_inline, the resolver): a hash map.
  std::unordered_map<std::string, std::shared_ptr<const json>, Hash, std::equal_to<>> served_;
  // served_ by the number of a ZID written canonically ("Z" and digits without a leading zero,
  // below kDenseZids): served_json() is asked ~50 times per nest request (the routes' scan of
  // the request's literals, each direct call's check), and hashing the text was most of it.
  static constexpr std::size_t kDenseZids = 100000;
  std::vector<const json*> served_by_number_;
  // The number of `zid` when it is written as served_by_number_ indexes, else -1.
  static long dense_number(std::string_view zid);
  std::map<std::string, std::shared_ptr<const json>, std::less<>> original_;
  std::map<std::string, std::string, std::less<>> languages_;
  mutable std::mutex fallback_mu_;
  mutable std::map<std::string, std::shared_ptr<const json>, std::less<>> fallback_;
};

}  // namespace wf::orchestrator::engine_detail
