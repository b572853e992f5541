#include "orchestrator/engine/object_cache.h"

#include "orchestrator/engine/engine_metrics.h"
#include "orchestrator/engine/fiber.h"
#include "wf/zobject/zobject.h"

namespace wf::orchestrator::engine_detail {

ObjectCache::ObjectCache(std::chrono::milliseconds ttl, std::size_t max_bytes)
    : ttl_(ttl), max_bytes_(max_bytes) {}

std::shared_ptr<const nlohmann::json> ObjectCache::get(const std::string& zid, std::uint64_t* hash,
                                                       Clock::time_point now) {
  if (!enabled()) return nullptr;
  // A replay's lookups (fiber.h, await_retirable) repeat those of the run it replays, which
  // counted them: a request's lookups are counted once.
  const bool counted = !replaying();
  std::lock_guard lock(mu_);
  auto it = index_.find(zid);
  if (it == index_.end()) {
    if (counted) metrics().cache_misses.Increment();
    return nullptr;
  }
  if (it->second->expires <= now) {
    erase_locked(it->second);
    metrics().cache_evictions.Increment();
    publish_locked();
    if (counted) metrics().cache_misses.Increment();
    return nullptr;
  }
  lru_.splice(lru_.begin(), lru_, it->second);
  if (counted) metrics().cache_hits.Increment();
  if (hash != nullptr) *hash = it->second->hash;
  return it->second->value;
}

void ObjectCache::put(const std::string& zid, std::shared_ptr<const json> value, std::uint64_t hash,
                      Clock::time_point now) {
  if (!enabled() || !value) return;
  std::size_t size = wf::zobject::approx_size(*value) + zid.size() + 64;
  if (size > max_bytes_) return;
  std::lock_guard lock(mu_);
  auto it = index_.find(zid);
  if (it != index_.end()) erase_locked(it->second);
  lru_.push_front(Item{zid, std::move(value), size, now + ttl_, hash});
  index_[zid] = lru_.begin();
  bytes_ += size;
  while (bytes_ > max_bytes_ && !lru_.empty()) {
    erase_locked(std::prev(lru_.end()));
    metrics().cache_evictions.Increment();
  }
  publish_locked();
}

void ObjectCache::publish_locked() {
  metrics().cache_bytes.Set(static_cast<double>(bytes_));
  metrics().cache_entries.Set(static_cast<double>(lru_.size()));
}

void ObjectCache::erase_locked(std::list<Item>::iterator it) {
  bytes_ -= it->bytes;
  index_.erase(it->zid);
  lru_.erase(it);
}

bool ObjectCache::lead(const std::string& zid) {
  std::lock_guard lock(flights_mu_);
  return flights_.try_emplace(zid).second;
}

bool ObjectCache::join(const std::string& zid, Waiter waiter) {
  {
    std::lock_guard lock(flights_mu_);
    auto it = flights_.find(zid);
    if (it == flights_.end()) return false;
    it->second.push_back(std::move(waiter));
  }
  metrics().fetches_joined.Increment();
  return true;
}

void ObjectCache::land(const std::string& zid, const Fetched& outcome) {
  std::vector<Waiter> waiters;
  {
    std::lock_guard lock(flights_mu_);
    auto it = flights_.find(zid);
    if (it == flights_.end()) return;
    waiters = std::move(it->second);
    flights_.erase(it);
  }
  for (auto& w : waiters) w(outcome);
}

std::size_t ObjectCache::bytes() const {
  std::lock_guard lock(mu_);
  return bytes_;
}

std::size_t ObjectCache::size() const {
  std::lock_guard lock(mu_);
  return lru_.size();
}

}  // namespace wf::orchestrator::engine_detail
