#pragma once
// Cross-request cache of resolved persistent objects (normal-form Z2s), shared by all requests:
// thread-safe, bounded in bytes (LRU eviction) and by age (TTL). A TTL of zero disables it.

#include <chrono>
#include <cstddef>
#include <list>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>

namespace wf::orchestrator::engine_detail {

class ObjectCache {
 public:
  using json = nlohmann::json;
  using Clock = std::chrono::steady_clock;
  ObjectCache(std::chrono::milliseconds ttl, std::size_t max_bytes);

  bool enabled() const { return ttl_.count() > 0 && max_bytes_ > 0; }
  std::shared_ptr<const json> get(const std::string& zid, Clock::time_point now = Clock::now());
  void put(const std::string& zid, std::shared_ptr<const json> value,
           Clock::time_point now = Clock::now());
  std::size_t bytes() const;
  std::size_t size() const;

 private:
  struct Item {
    std::string zid;
    std::shared_ptr<const json> value;
    std::size_t bytes;
    Clock::time_point expires;
  };
  void erase_locked(std::list<Item>::iterator it);
  void publish_locked();  // cache size gauges

  std::chrono::milliseconds ttl_;
  std::size_t max_bytes_;
  mutable std::mutex mu_;
  std::list<Item> lru_;  // front = most recently used
  std::unordered_map<std::string, std::list<Item>::iterator> index_;
  std::size_t bytes_ = 0;
};

}  // namespace wf::orchestrator::engine_detail
