#pragma once
// The result cache's shared tier on memcached (libmemcached). Its blocking client calls run on a
// small pool of its own threads (one memcached_st each), never on an event loop or the engine's
// CPU threads: a lookup is queued and answered through the engine's callback, which resumes the
// parked evaluation. Every operation is bounded by a short timeout, the queue by a length (a
// full queue answers "miss" at once), and an entry by a size cap, so a slow or dead memcached
// costs a call at most the timeout and never an error.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "orchestrator/engine/ports.h"

namespace wf::orchestrator {

struct MemcachedOptions {
  std::string servers;  // "host:port[,host:port...]"
  std::chrono::milliseconds timeout{20};
  std::size_t max_entry_bytes = 256u << 10;
  int threads = 2;
  std::size_t max_queue = 64;
  std::chrono::seconds expiry{std::chrono::hours(24)};
};

class MemcachedStore final : public SharedResultStore {
 public:
  explicit MemcachedStore(MemcachedOptions options);
  ~MemcachedStore() override;  // answers queued lookups with a miss, joins its threads
  void get(const std::string& key, Done done) override;
  void put(const std::string& key, std::string value) override;

 private:
  struct Job {
    std::string key;
    std::string value;  // put
    Done done;          // get when set
    std::chrono::steady_clock::time_point queued;
  };
  void serve();
  bool enqueue(Job job);

  MemcachedOptions options_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace wf::orchestrator
