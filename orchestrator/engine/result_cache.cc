#include "orchestrator/engine/result_cache.h"

#include <fmt/format.h>

#include "wf/zobject/zobject.h"

namespace wf::orchestrator::engine_detail {

namespace {

constexpr std::string_view kVersion = "wfr1:";

std::uint64_t fnv1a(std::string_view bytes, std::uint64_t basis) {
  std::uint64_t h = basis;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace

std::uint64_t content_hash(std::string_view bytes) {
  const std::uint64_t h = fnv1a(bytes, 14695981039346656037ull);
  return h == 0 ? 1 : h;  // 0 stands for "not found"
}

std::string call_key(const nlohmann::json& zobject, bool do_validate) {
  auto normal = zobject::normalize(zobject);
  if (!normal) return {};
  const std::string text = normal->dump();
  return fmt::format("{}{:016x}{:016x}{}", kVersion, fnv1a(text, 14695981039346656037ull),
                     fnv1a(text, 0x9e3779b97f4a7c15ull), do_validate ? 'v' : 'n');
}

std::string encode(const CachedResult& result) {
  nlohmann::json used = nlohmann::json::array();
  for (const auto& [zid, hash] : result.used) used.push_back({zid, hash});
  nlohmann::json trailing = nlohmann::json::array();
  for (const auto& [k, v] : result.trailing) trailing.push_back({k, v});
  nlohmann::json j = {{"v", kVersion},
                      {"used", std::move(used)},
                      {"trailing", std::move(trailing)},
                      {"envelope", result.envelope}};
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::optional<CachedResult> decode(std::string_view text) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object() || j.value("v", "") != kVersion) return std::nullopt;
  auto used = j.find("used");
  auto envelope = j.find("envelope");
  if (used == j.end() || !used->is_array() || envelope == j.end() || !envelope->is_object()) {
    return std::nullopt;
  }
  CachedResult out;
  for (const auto& pair : *used) {
    if (!pair.is_array() || pair.size() != 2 || !pair[0].is_string() ||
        !pair[1].is_number_unsigned()) {
      return std::nullopt;
    }
    out.used.emplace_back(pair[0].get<std::string>(), pair[1].get<std::uint64_t>());
  }
  auto trailing = j.find("trailing");
  if (trailing == j.end() || !trailing->is_array()) return std::nullopt;
  for (const auto& pair : *trailing) {
    if (!pair.is_array() || pair.size() != 2 || !pair[0].is_string() || !pair[1].is_string()) {
      return std::nullopt;
    }
    out.trailing.emplace_back(pair[0].get<std::string>(), pair[1].get<std::string>());
  }
  out.envelope = std::move(*envelope);
  return out;
}

std::shared_ptr<const CachedResult> ResultCache::get(const std::string& key) {
  std::lock_guard lock(mu_);
  auto it = index_.find(key);
  if (it == index_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->value;
}

void ResultCache::put(const std::string& key, std::shared_ptr<const CachedResult> value,
                      std::size_t bytes) {
  if (!enabled() || bytes > max_bytes_ / 8) return;
  std::lock_guard lock(mu_);
  if (auto it = index_.find(key); it != index_.end()) {
    bytes_ -= it->second->bytes;
    lru_.erase(it->second);
    index_.erase(it);
  }
  lru_.push_front(Item{key, std::move(value), bytes});
  index_[key] = lru_.begin();
  bytes_ += bytes;
  for (int guard = 0; bytes_ > max_bytes_ && !lru_.empty() && guard < 1'000'000; ++guard) {
    bytes_ -= lru_.back().bytes;
    index_.erase(lru_.back().key);
    lru_.pop_back();
  }
}

std::size_t ResultCache::bytes() const {
  std::lock_guard lock(mu_);
  return bytes_;
}

std::size_t ResultCache::size() const {
  std::lock_guard lock(mu_);
  return index_.size();
}

}  // namespace wf::orchestrator::engine_detail
