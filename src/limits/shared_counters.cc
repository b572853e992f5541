#include "wf/limits/shared_counters.h"

#include <fmt/format.h>
#include <libmemcached/memcached.h>

#include <map>
#include <mutex>

namespace wf::limits {
namespace {

class MemcachedCounters final : public SharedCounters {
 public:
  MemcachedCounters(memcached_st* memc, std::string servers)
      : memc_(memc), servers_(std::move(servers)) {}
  ~MemcachedCounters() override { memcached_free(memc_); }

  std::expected<std::uint64_t, std::string> add(std::string_view key, std::uint64_t delta,
                                                std::chrono::seconds expiry) override {
    std::lock_guard lock(mu_);
    // incr, or create with add when absent; a concurrent creator wins the add and we incr again.
    for (int attempt = 0; attempt < 2; ++attempt) {
      std::uint64_t value = 0;
      memcached_return_t rc = memcached_increment(memc_, key.data(), key.size(),
                                                  static_cast<std::uint32_t>(delta), &value);
      if (rc == MEMCACHED_SUCCESS) return value;
      if (rc != MEMCACHED_NOTFOUND) return std::unexpected(error("incr", rc));
      const std::string initial = std::to_string(delta);
      rc = memcached_add(memc_, key.data(), key.size(), initial.data(), initial.size(),
                         static_cast<time_t>(expiry.count()), 0);
      if (rc == MEMCACHED_SUCCESS) return delta;
      if (rc != MEMCACHED_NOTSTORED && rc != MEMCACHED_DATA_EXISTS)
        return std::unexpected(error("add", rc));
    }
    return std::unexpected(fmt::format("memcached {}: key kept changing", servers_));
  }

  std::string describe() const override { return "memcached " + servers_; }

 private:
  std::string error(std::string_view op, memcached_return_t rc) const {
    return fmt::format("memcached {} {}: {}", servers_, op, memcached_strerror(memc_, rc));
  }
  std::mutex mu_;
  memcached_st* memc_;
  std::string servers_;
};

}  // namespace

std::expected<std::unique_ptr<SharedCounters>, std::string> make_memcached_counters(
    const MemcachedOptions& options) {
  memcached_server_st* list = memcached_servers_parse(options.servers.c_str());
  if (list == nullptr) {
    return std::unexpected(fmt::format(
        "limits_memcached_servers '{}' is not a server list: write host:port[,host:port]",
        options.servers));
  }
  memcached_st* memc = memcached_create(nullptr);
  const memcached_return_t rc = memcached_server_push(memc, list);
  memcached_server_list_free(list);
  if (rc != MEMCACHED_SUCCESS) {
    memcached_free(memc);
    return std::unexpected(fmt::format("limits_memcached_servers '{}': {}", options.servers,
                                       memcached_strerror(nullptr, rc)));
  }
  const auto ms = static_cast<std::uint64_t>(options.timeout.count());
  memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_NO_BLOCK, 1);
  memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
  memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, ms);
  memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_POLL_TIMEOUT, ms);
  memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_SND_TIMEOUT, ms * 1000);
  memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_RCV_TIMEOUT, ms * 1000);
  // A failed server is retried after a second rather than marked dead for good.
  memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, 1);
  return std::make_unique<MemcachedCounters>(memc, options.servers);
}

struct MemoryCounters::Impl {
  mutable std::mutex mu;
  std::map<std::string, std::uint64_t, std::less<>> values;
  bool failing = false;
};

std::shared_ptr<MemoryCounters::Impl> MemoryCounters::make_impl() {
  return std::make_shared<Impl>();
}

std::expected<std::uint64_t, std::string> MemoryCounters::add(std::string_view key,
                                                              std::uint64_t delta,
                                                              std::chrono::seconds) {
  std::lock_guard lock(impl_->mu);
  if (impl_->failing) return std::unexpected("in-memory counters: made to fail");
  auto it = impl_->values.find(key);
  if (it == impl_->values.end()) it = impl_->values.emplace(std::string(key), 0).first;
  it->second += delta;
  return it->second;
}

void MemoryCounters::set_failing(bool failing) {
  std::lock_guard lock(impl_->mu);
  impl_->failing = failing;
}

std::uint64_t MemoryCounters::value(std::string_view key) const {
  std::lock_guard lock(impl_->mu);
  const auto it = impl_->values.find(key);
  return it == impl_->values.end() ? 0 : it->second;
}

}  // namespace wf::limits
