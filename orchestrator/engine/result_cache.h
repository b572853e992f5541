#pragma once
// Memoised function-call results (docs/result-cache.md). An entry is keyed by a hash of the
// normalised call and carries the identity (content hash) of every object the evaluation used;
// a hit is served only after each of those objects resolves to the same content again, so an
// edit on the wiki is never answered from an old result. In-process tier: an LRU bounded in
// bytes, thread-safe. Entries have a text form for a shared tier (memcached, SharedResultStore).

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace wf::orchestrator::engine_detail {

// 64-bit FNV-1a: the same in every process and build (the shared tier depends on it).
std::uint64_t content_hash(std::string_view bytes);

struct CachedResult {
  // ZID -> content hash of the normal-form Z2 it resolved to; 0 when it was not found.
  std::vector<std::pair<std::string, std::uint64_t>> used;
  nlohmann::json envelope;  // the interpreter's normal-form Z22, without run metadata
  std::vector<std::pair<std::string, std::string>> trailing;  // its trailing metadata pairs
  // The canonical answer text up to the metadata pairs of the call that is served (response.h
  // cached_answer_head); empty when the envelope has no such form (then a hit is rebuilt).
  std::string head;
  std::string function;  // the called function (cost reports of a hit), not in the text form
};

// Text form for the shared tier; decode() rejects anything it did not write.
std::string encode(const CachedResult& result);
std::optional<CachedResult> decode(std::string_view text);

// The cache key of a call: its normal form and doValidate, hashed twice (128 bits) and prefixed
// with the entry format's version. Empty when the call does not normalise.
std::string call_key(const nlohmann::json& zobject, bool do_validate);

class ResultCache {
 public:
  explicit ResultCache(std::size_t max_bytes) : max_bytes_(max_bytes) {}
  bool enabled() const { return max_bytes_ > 0; }
  std::shared_ptr<const CachedResult> get(const std::string& key);
  // Entries larger than an eighth of the bound are not kept.
  void put(const std::string& key, std::shared_ptr<const CachedResult> value, std::size_t bytes);
  std::size_t bytes() const;
  std::size_t size() const;

  // The first-level index: the exact JSON text of an evaluate request (at most kMaxBodyBytes)
  // whose entry is `key`, so a repeated identical body finds its entry without being parsed or
  // normalised. The text decides the key (call and doValidate) and the opt-out alone, so an
  // alias never goes stale; it may outlive its entry (then find_body() finds nothing). Bounded
  // apart from the entries, by an eighth of the bytes, least recently used first out.
  static constexpr std::size_t kMaxBodyBytes = 16u << 10;
  void alias(std::string_view body, const std::string& key);
  std::shared_ptr<const CachedResult> find_body(std::string_view body);
  std::size_t aliases() const;

 private:
  struct Alias {
    std::string body;
    std::string key;
  };
  void evict_aliases_locked();
  struct Item {
    std::string key;
    std::shared_ptr<const CachedResult> value;
    std::size_t bytes;
  };
  std::size_t max_bytes_;
  mutable std::mutex mu_;
  std::list<Item> lru_;  // front = most recently used
  std::unordered_map<std::string, std::list<Item>::iterator> index_;
  std::size_t bytes_ = 0;
  std::list<Alias> alias_lru_;  // front = most recently used
  // Keyed by a view of the body held in its list node (nodes do not move).
  std::unordered_map<std::string_view, std::list<Alias>::iterator> alias_index_;
  std::size_t alias_bytes_ = 0;
};

}  // namespace wf::orchestrator::engine_detail
