#pragma once
// Counters shared by the replicas of a service: atomic add with expiry. The memcached
// implementation (libmemcached) uses short timeouts and is only ever called from the limiter's
// background sync thread, never from a request.

#include <chrono>
#include <cstdint>
#include <expected>
#include <memory>
#include <string>
#include <string_view>

namespace wf::limits {

class SharedCounters {
 public:
  virtual ~SharedCounters() = default;
  // Adds `delta` (0 reads) to `key`, creating it with that value and `expiry` when absent; returns
  // the new total of every replica's additions. The error says what failed.
  virtual std::expected<std::uint64_t, std::string> add(std::string_view key, std::uint64_t delta,
                                                        std::chrono::seconds expiry) = 0;
  virtual std::string describe() const = 0;  // for logs: "memcached 127.0.0.1:11211"
};

struct MemcachedOptions {
  std::string servers;                    // "host:port[,host:port...]"
  std::chrono::milliseconds timeout{50};  // connect, send, receive; a slow server is a failed one
};
// The error names the option to fix when `servers` cannot be parsed.
std::expected<std::unique_ptr<SharedCounters>, std::string> make_memcached_counters(
    const MemcachedOptions& options);

// In-process counters with the same contract (tests and single-process benchmarks). Can be made
// to fail, to exercise the fallback.
class MemoryCounters final : public SharedCounters {
 public:
  std::expected<std::uint64_t, std::string> add(std::string_view key, std::uint64_t delta,
                                                std::chrono::seconds expiry) override;
  std::string describe() const override { return "in-memory counters"; }
  void set_failing(bool failing);
  std::uint64_t value(std::string_view key) const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_ = make_impl();
  static std::shared_ptr<Impl> make_impl();
};

}  // namespace wf::limits
