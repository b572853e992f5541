// Loads the embedded definition files (definitions_data.cc) into normalized, immutable JSON.
#include "orchestrator/engine/definitions.h"

#include <stdexcept>

#include "orchestrator/engine/definitions_data.h"
#include "wf/zobject/zobject.h"

namespace wf::orchestrator::engine_detail {

namespace zo = wf::zobject;

namespace {

nlohmann::json load(std::string_view name, std::string_view text) {
  auto parsed = zo::parse(text, 512);
  if (!parsed) throw std::runtime_error("bundled definition " + std::string(name) + " is not JSON");
  auto normal = zo::normalize(*parsed);
  if (!normal) throw std::runtime_error("bundled definition " + std::string(name) + " is invalid");
  return std::move(*normal);
}

const definitions_data::Entry* find(const definitions_data::Entry* table, std::size_t n,
                                    std::string_view name) {
  for (std::size_t i = 0; i < n; ++i) {
    if (table[i].name == name) return &table[i];
  }
  return nullptr;
}

}  // namespace

const Definitions& Definitions::instance() {
  static const Definitions defs;
  return defs;
}

Definitions::Definitions() {
  using definitions_data::kInternal;
  using definitions_data::kInternalCount;
  for (std::size_t i = 0; i < kInternalCount; ++i) {
    const auto& e = kInternal[i];
    if (e.name == "naturalLanguages") {
      auto parsed = zo::parse(e.text, 8);
      if (parsed && parsed->is_object()) {
        for (const auto& [code, zid] : parsed->items()) {
          if (zid.is_string()) languages_[code] = zid.get<std::string>();
        }
      }
      continue;
    }
    original_[std::string(e.name)] = std::make_shared<const json>(load(e.name, e.text));
  }
  // Functions: replace Z8K4 references by the inline implementations.
  for (const auto& [zid, z2] : original_) {
    json copy = *z2;
    json& value = copy["Z2K2"];
    if (value.is_object() && zo::type_id(value) == "Z8" && value.contains("Z8K4")) {
      json* node = &value["Z8K4"];
      while (node->is_object() && node->contains("K1")) {
        std::string impl = zo::ref_id((*node)["K1"]);
        auto it = original_.find(impl);
        if (!impl.empty() && it != original_.end()) (*node)["K1"] = (*it->second)["Z2K2"];
        node = &(*node)["K2"];
      }
    }
    served_[zid] = std::make_shared<const json>(std::move(copy));
  }
  for (const auto& [zid, z2] : served_) {
    const long n = dense_number(zid);
    if (n < 0) continue;
    if (served_by_number_.size() <= static_cast<std::size_t>(n)) {
      served_by_number_.resize(static_cast<std::size_t>(n) + 1, nullptr);
    }
    served_by_number_[static_cast<std::size_t>(n)] = z2.get();
  }
}

long Definitions::dense_number(std::string_view zid) {
  if (zid.size() < 2 || zid.size() > 6 || zid[0] != 'Z' || zid[1] == '0') return -1;
  long n = 0;
  for (std::size_t i = 1; i < zid.size(); ++i) {
    const char c = zid[i];
    if (c < '0' || c > '9') return -1;
    n = n * 10 + (c - '0');
  }
  return n < static_cast<long>(kDenseZids) ? n : -1;
}

std::shared_ptr<const nlohmann::json> Definitions::served(std::string_view zid) const {
  auto it = served_.find(zid);
  return it == served_.end() ? nullptr : it->second;
}

const nlohmann::json* Definitions::served_json(std::string_view zid) const {
  if (const long n = dense_number(zid); n >= 0) {
    // Every canonical ZID served is in the table: one not there (or beyond it) is not served.
    const auto i = static_cast<std::size_t>(n);
    return i < served_by_number_.size() ? served_by_number_[i] : nullptr;
  }
  auto it = served_.find(zid);
  return it == served_.end() ? nullptr : it->second.get();
}

std::shared_ptr<const nlohmann::json> Definitions::original(std::string_view zid) const {
  auto it = original_.find(zid);
  return it == original_.end() ? nullptr : it->second;
}

std::shared_ptr<const nlohmann::json> Definitions::fallback(std::string_view zid) const {
  std::lock_guard lock(fallback_mu_);
  auto it = fallback_.find(zid);
  if (it != fallback_.end()) return it->second;
  std::shared_ptr<const json> value;
  if (const auto* e = find(definitions_data::kFallback, definitions_data::kFallbackCount, zid)) {
    value = std::make_shared<const json>(load(e->name, e->text));
  }
  fallback_.emplace(std::string(zid), value);
  return value;
}

std::string Definitions::language_zid(std::string_view code) const {
  auto it = languages_.find(code);
  return it == languages_.end() ? std::string() : it->second;
}

}  // namespace wf::orchestrator::engine_detail
