#pragma once
// Cross-request cache of resolved persistent objects (normal-form Z2s), shared by all requests:
// thread-safe, bounded in bytes (LRU eviction) and by age (TTL). A TTL of zero disables it.
// It also keeps the wiki fetches in flight, so that concurrent misses for one ZID fetch it once
// (single flight): the first request leads, the others wait for its answer (even with the cache
// off, which only stops keeping answers).

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace wf::orchestrator::engine_detail {

class ObjectCache {
 public:
  using json = nlohmann::json;
  using Clock = std::chrono::steady_clock;
  ObjectCache(std::chrono::milliseconds ttl, std::size_t max_bytes);

  bool enabled() const { return ttl_.count() > 0 && max_bytes_ > 0; }
  // `hash` (may be null) receives the identity put() was given with the value.
  std::shared_ptr<const json> get(const std::string& zid, std::uint64_t* hash = nullptr,
                                  Clock::time_point now = Clock::now());
  // `hash`: the object's identity (content hash of the text it came from, result_cache.h).
  void put(const std::string& zid, std::shared_ptr<const json> value, std::uint64_t hash,
           Clock::time_point now = Clock::now());
  std::size_t bytes() const;
  std::size_t size() const;

  // The outcome of one ZID's fetch: its JSON text, or absent (not found), or a failure.
  struct Fetched {
    std::optional<std::string> text;
    std::string failure;  // non-empty: the fetch failed (for the leader's request)
  };
  using Waiter = std::function<void(Fetched)>;
  // True: no fetch of `zid` is in flight and the caller now leads one; it must call land().
  bool lead(const std::string& zid);
  // Waits for the fetch of `zid` in flight: `waiter` is called by land(), on the leader's thread.
  // False (waiter dropped) when there is none any more.
  bool join(const std::string& zid, Waiter waiter);
  // Ends the flight of `zid` and hands its outcome to every waiter.
  void land(const std::string& zid, const Fetched& outcome);

 private:
  struct Item {
    std::string zid;
    std::shared_ptr<const json> value;
    std::size_t bytes;
    Clock::time_point expires;
    std::uint64_t hash;
  };
  void erase_locked(std::list<Item>::iterator it);
  void publish_locked();  // cache size gauges

  std::chrono::milliseconds ttl_;
  std::size_t max_bytes_;
  mutable std::mutex mu_;
  std::list<Item> lru_;  // front = most recently used
  std::unordered_map<std::string, std::list<Item>::iterator> index_;
  std::size_t bytes_ = 0;
  std::mutex flights_mu_;
  std::unordered_map<std::string, std::vector<Waiter>> flights_;
};

}  // namespace wf::orchestrator::engine_detail
