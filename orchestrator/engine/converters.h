#pragma once
// Type converters (docs/compatibility.md "Type converters"): a type's Z4K7 lists Z46 "type
// converter to code" and its Z4K8 Z64 "from code", one per programming language. A code call
// sends, for each argument type and for the return type, the converter of the implementation's
// language as a plan: {"converter": {"functionName", "code"}} or {"list": plan} for typed lists.
// The lookup per persisted type, language and direction is cached across requests, checked
// against the identities (content hashes) of the type and of every object it read.

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "orchestrator/engine/resolver.h"

namespace wf::orchestrator::engine_detail {

enum class ConverterDirection { kToCode, kFromCode };  // Z4K7 (Z46) / Z4K8 (Z64)

// "python-3" -> "python", "javascript-es2020" -> "javascript": what a converter's language and
// an implementation's language must share.
std::string language_family(std::string_view code);

// True when the normal-form type declares converters at all (no lookup needed otherwise).
bool declares_converters(const nlohmann::json& z4);

// The converter plan of a normal-form Z4 for `family` in `direction`, or null. Converters listed
// by reference are fetched through `resolver` (one batch); `read` receives every ZID it read.
// A converter that cannot be fetched, is not a Z46/Z64 or has no code is passed over.
nlohmann::json find_converter(const nlohmann::json& z4, ConverterDirection direction,
                              const std::string& family, Resolver& resolver,
                              std::vector<std::string>& read);

// Cross-request memo of find_converter for persisted types; thread-safe, bounded, entries live
// as long as objects do in the object cache (`ttl`; 0 disables it).
class ConverterCache {
 public:
  using Clock = std::chrono::steady_clock;
  ConverterCache(std::chrono::milliseconds ttl, std::size_t max_entries);

  // The plan for the persisted type `zid` (already resolved to `z4`), from the cache when the
  // type and the objects the cached lookup read still have the same identity.
  nlohmann::json lookup(const std::string& zid, const nlohmann::json& z4,
                        ConverterDirection direction, const std::string& family,
                        Resolver& resolver);
  std::size_t size() const;

 private:
  struct Entry {
    std::vector<std::pair<std::string, std::uint64_t>> identities;  // the type first
    nlohmann::json plan;
    Clock::time_point expires;
  };
  std::shared_ptr<const Entry> get(const std::string& key, Clock::time_point now) const;
  void put(const std::string& key, std::shared_ptr<const Entry> entry);

  std::chrono::milliseconds ttl_;
  std::size_t max_entries_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<const Entry>> entries_;
};

}  // namespace wf::orchestrator::engine_detail
