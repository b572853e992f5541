#include "orchestrator/engine/converters.h"

#include "wf/zobject/zobject.h"

namespace wf::orchestrator::engine_detail {
namespace {

using json = nlohmann::json;
namespace zo = wf::zobject;

struct DirectionKeys {
  const char* type_key;    // of the Z4: the list of converters
  const char* converter;   // the converter's type
  std::string_view label;  // in cache keys
};

const DirectionKeys& keys_of(ConverterDirection direction) {
  static const DirectionKeys kTo{"Z4K7", "Z46", "to"};
  static const DirectionKeys kFrom{"Z4K8", "Z64", "from"};
  return direction == ConverterDirection::kToCode ? kTo : kFrom;
}

// The persisted object's value (Z2K2) when `v` is a reference (noting its ZID in `read`), else
// `v` itself; null when the reference cannot be resolved.
const json* value_of(const json& v, Resolver& resolver, std::vector<std::string>& read) {
  const std::string zid = zo::ref_id(v);
  if (zid.empty() || !zo::is_zid(zid)) return &v;
  read.push_back(zid);
  const Dereferenced& d = resolver.dereference(zid);
  if (!d.z2) return nullptr;
  auto it = d.z2->find("Z2K2");
  return it == d.z2->end() ? nullptr : &*it;
}

const json* key_of(const json* object, const std::string& key) {
  if (object == nullptr || !object->is_object()) return nullptr;
  auto it = object->find(key);
  return it == object->end() ? nullptr : &*it;
}

// One Z46/Z64 as a plan when its code is in `family`, else null.
json plan_of(const json& item, const char* converter_type, const std::string& family,
             Resolver& resolver, std::vector<std::string>& read) {
  const json* converter = value_of(item, resolver, read);
  if (converter == nullptr || zo::type_id(*converter) != converter_type) return nullptr;
  const std::string prefix = converter_type;
  const json* code = key_of(converter, prefix + "K3");
  code = code == nullptr ? nullptr : value_of(*code, resolver, read);
  const json* language = key_of(code, "Z16K1");
  language = language == nullptr ? nullptr : value_of(*language, resolver, read);
  const json* language_code = key_of(language, "Z61K1");
  const json* text = key_of(code, "Z16K2");
  if (language_code == nullptr || text == nullptr ||
      language_family(zo::string_value(*language_code)) != family) {
    return nullptr;
  }
  const json* identity = key_of(converter, prefix + "K1");
  std::string name = identity == nullptr ? "" : zo::ref_id(*identity);
  if (name.empty()) name = zo::ref_id(item);
  if (name.empty()) return nullptr;  // an inline converter without identity cannot be called
  json plan = {{"converter", {{"functionName", name}, {"code", zo::string_value(*text)}}}};
  const json* native = key_of(converter, prefix + "K4");
  if (native != nullptr && !zo::string_value(*native).empty()) {
    plan["converter"]["nativeType"] = zo::string_value(*native);
  }
  return plan;
}

}  // namespace

std::string language_family(std::string_view code) {
  return std::string(code.substr(0, code.find('-')));
}

bool declares_converters(const json& z4) {
  return z4.is_object() && (z4.contains("Z4K7") || z4.contains("Z4K8"));
}

json find_converter(const json& z4, ConverterDirection direction, const std::string& family,
                    Resolver& resolver, std::vector<std::string>& read) {
  const DirectionKeys& keys = keys_of(direction);
  const json* list = key_of(&z4, keys.type_key);
  if (list == nullptr || family.empty()) return nullptr;
  const std::vector<json> items = zo::list_items(*list);
  std::vector<std::string> refs;
  for (const json& item : items) {
    const std::string zid = zo::ref_id(item);
    if (zo::is_zid(zid)) refs.push_back(zid);
  }
  if (refs.size() >= 2) resolver.prefetch(refs);
  for (const json& item : items) {
    json plan = plan_of(item, keys.converter, family, resolver, read);
    if (!plan.is_null()) return plan;
  }
  return nullptr;
}

ConverterCache::ConverterCache(std::chrono::milliseconds ttl, std::size_t max_entries)
    : ttl_(ttl), max_entries_(max_entries) {}

json ConverterCache::lookup(const std::string& zid, const json& z4, ConverterDirection direction,
                            const std::string& family, Resolver& resolver) {
  const bool enabled = ttl_.count() > 0 && max_entries_ > 0;
  std::string key;
  if (enabled) {
    key = zid + '\n' + std::string(keys_of(direction).label) + '\n' + family;
    if (auto hit = get(key, Clock::now())) {
      bool same = true;
      for (const auto& [read_zid, hash] : hit->identities) {
        const auto now = resolver.identity(read_zid);
        same = same && now && *now == hash;
        if (!same) break;
      }
      if (same) return hit->plan;
    }
  }
  std::vector<std::string> read{zid};
  json plan = find_converter(z4, direction, family, resolver, read);
  if (!enabled) return plan;
  auto entry = std::make_shared<Entry>();
  for (const auto& r : read) {
    const auto id = resolver.identity(r);
    if (!id) return plan;  // a transport failure: not cached
    entry->identities.emplace_back(r, *id);
  }
  entry->plan = plan;
  entry->expires = Clock::now() + ttl_;
  put(key, std::move(entry));
  return plan;
}

std::shared_ptr<const ConverterCache::Entry> ConverterCache::get(const std::string& key,
                                                                 Clock::time_point now) const {
  std::lock_guard lock(mu_);
  auto it = entries_.find(key);
  if (it == entries_.end() || it->second->expires <= now) return nullptr;
  return it->second;
}

void ConverterCache::put(const std::string& key, std::shared_ptr<const Entry> entry) {
  std::lock_guard lock(mu_);
  if (entries_.size() >= max_entries_ && !entries_.contains(key)) entries_.clear();
  entries_[key] = std::move(entry);
}

std::size_t ConverterCache::size() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}

}  // namespace wf::orchestrator::engine_detail
