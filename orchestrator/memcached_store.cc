#include "orchestrator/memcached_store.h"

#include <libmemcached/memcached.h>

#include <cstdlib>
#include <optional>

namespace wf::orchestrator {

namespace {

// One client per thread (memcached_st is not thread-safe), set up for failing fast.
memcached_st* connect(const MemcachedOptions& o) {
  memcached_st* mc = memcached_create(nullptr);
  if (mc == nullptr) return nullptr;
  memcached_server_st* list = memcached_servers_parse(o.servers.c_str());
  if (list != nullptr) {
    memcached_server_push(mc, list);
    memcached_server_list_free(list);
  }
  const auto ms = static_cast<uint64_t>(o.timeout.count());
  memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, ms);
  memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_POLL_TIMEOUT, ms);
  memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_RCV_TIMEOUT, ms * 1000);
  memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_SND_TIMEOUT, ms * 1000);
  memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
  // A server that fails is skipped for a second instead of costing every call its timeout.
  memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, 1);
  memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_SERVER_FAILURE_LIMIT, 1);
  return mc;
}

std::optional<std::string> lookup(memcached_st* mc, const std::string& key) {
  std::size_t length = 0;
  uint32_t flags = 0;
  memcached_return_t rc = MEMCACHED_FAILURE;
  char* value = memcached_get(mc, key.data(), key.size(), &length, &flags, &rc);
  if (value == nullptr) return std::nullopt;
  std::optional<std::string> out;
  if (rc == MEMCACHED_SUCCESS) out.emplace(value, length);
  std::free(value);
  return out;
}

}  // namespace

MemcachedStore::MemcachedStore(MemcachedOptions options) : options_(std::move(options)) {
  for (int i = 0; i < std::max(options_.threads, 1); ++i)
    threads_.emplace_back([this] { serve(); });
}

MemcachedStore::~MemcachedStore() {
  std::deque<Job> left;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    left.swap(queue_);
  }
  cv_.notify_all();
  for (auto& job : left) {
    if (job.done) job.done(std::nullopt);
  }
  for (auto& t : threads_) t.join();
}

bool MemcachedStore::enqueue(Job job) {
  {
    std::lock_guard lock(mu_);
    if (stopping_ || queue_.size() >= options_.max_queue) return false;
    job.queued = std::chrono::steady_clock::now();
    queue_.push_back(std::move(job));
  }
  cv_.notify_one();
  return true;
}

void MemcachedStore::get(const std::string& key, Done done) {
  auto shared = std::make_shared<Done>(std::move(done));
  if (!enqueue(
          Job{key, {}, [shared](std::optional<std::string> v) { (*shared)(std::move(v)); }, {}})) {
    (*shared)(std::nullopt);  // too busy: a miss now rather than a wait
  }
}

void MemcachedStore::put(const std::string& key, std::string value) {
  if (value.size() > options_.max_entry_bytes) return;
  enqueue(Job{key, std::move(value), nullptr, {}});
}

void MemcachedStore::serve() {
  memcached_st* mc = connect(options_);
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) break;  // stopping
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    // A lookup that waited in the queue past the timeout is a miss without asking.
    const bool late = std::chrono::steady_clock::now() - job.queued > options_.timeout;
    if (job.done) {
      job.done(mc != nullptr && !late ? lookup(mc, job.key) : std::nullopt);
    } else if (mc != nullptr) {
      memcached_set(mc, job.key.data(), job.key.size(), job.value.data(), job.value.size(),
                    static_cast<time_t>(options_.expiry.count()), 0);
    }
  }
  if (mc != nullptr) memcached_free(mc);
}

}  // namespace wf::orchestrator
