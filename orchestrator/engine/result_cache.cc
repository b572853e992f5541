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

namespace {
std::size_t alias_bytes(std::string_view body, std::string_view key) {
  return body.size() + key.size() + 128;  // the texts, a list node and an index node
}
}  // namespace

void ResultCache::alias(std::string_view body, const std::string& key) {
  if (!enabled() || body.empty() || body.size() > kMaxBodyBytes || key.empty()) return;
  std::lock_guard lock(mu_);
  if (auto it = alias_index_.find(body); it != alias_index_.end()) {
    alias_lru_.splice(alias_lru_.begin(), alias_lru_, it->second);
    if (it->second->key == key) return;
    alias_bytes_ -= alias_bytes(body, it->second->key);
    it->second->key = key;
    alias_bytes_ += alias_bytes(body, key);
    return;
  }
  alias_lru_.push_front(Alias{std::string(body), key});
  alias_index_.emplace(alias_lru_.front().body, alias_lru_.begin());
  alias_bytes_ += alias_bytes(body, key);
  evict_aliases_locked();
}

void ResultCache::evict_aliases_locked() {
  for (int guard = 0; alias_bytes_ > max_bytes_ / 8 && !alias_lru_.empty() && guard < 1'000'000;
       ++guard) {
    const Alias& last = alias_lru_.back();
    alias_bytes_ -= alias_bytes(last.body, last.key);
    alias_index_.erase(last.body);
    alias_lru_.pop_back();
  }
}

std::shared_ptr<const CachedResult> ResultCache::find_body(std::string_view body) {
  std::lock_guard lock(mu_);
  auto a = alias_index_.find(body);
  if (a == alias_index_.end()) return nullptr;
  alias_lru_.splice(alias_lru_.begin(), alias_lru_, a->second);
  auto it = index_.find(a->second->key);
  if (it == index_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->value;
}

std::size_t ResultCache::aliases() const {
  std::lock_guard lock(mu_);
  return alias_index_.size();
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
