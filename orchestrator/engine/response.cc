// Response building. The common case (a metadata map of the standard Z883(Z6,Z1) shape and a
// value that canonicalises) is built directly in canonical form: each metadata pair is written
// once, instead of appended to a normal-form list (a walk and several type copies per key) and
// then converted as a whole. Anything else takes the general path: map_set + to_canonical.
#include "orchestrator/engine/response.h"

#include <algorithm>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "wf/zobject/zobject.h"

namespace wf::orchestrator::engine_detail {

namespace {

namespace zo = wf::zobject;
using json = nlohmann::json;
using object_t = json::object_t;

struct Types {
  json map_normal = zo::map_type(zo::z9("Z6"), zo::z9("Z1"));
  json pair_normal = zo::pair_type(zo::z9("Z6"), zo::z9("Z1"));
  json list_normal = zo::list_type(zo::pair_type(zo::z9("Z6"), zo::z9("Z1")));
  json map_canonical = zo::to_canonical(map_normal);
  json pair_canonical = zo::to_canonical(pair_normal);
};

const Types& types() {
  static const Types t;
  return t;
}

// Canonical form of a Z6 holding s.
json canonical_string(std::string s) {
  if (!zo::is_reference_like(s)) return json(std::move(s));
  return zo::z6(s);
}

// The key of a standard pair: a normal Z6 with a string Z6K1.
const std::string* pair_key(const json& k) {
  if (!k.is_object() || k.size() != 2) return nullptr;
  auto t = k.find("Z1K1");
  auto v = k.find("Z6K1");
  if (t == k.end() || v == k.end() || *t != "Z6" || !v->is_string()) return nullptr;
  return &v->get_ref<const std::string&>();
}

// Appends the pairs of a standard metadata map to `out`, values canonicalised; false when the
// map has any other shape or a value that is not a valid ZObject (then the general path runs).
// A value that is not a map at all is replaced by a fresh map, as envelope_set_metadata does.
bool standard_pairs(const json& meta, std::vector<std::pair<std::string, json>>& out) {
  if (!zo::is_map(meta)) return true;
  if (meta.size() != 2) return false;
  const Types& t = types();
  auto mt = meta.find("Z1K1");
  auto k1 = meta.find("K1");
  if (mt == meta.end() || k1 == meta.end() || *mt != t.map_normal) return false;
  const json* node = &*k1;
  for (;;) {
    if (!node->is_object()) return false;
    const auto& o = node->get_ref<const object_t&>();
    auto lt = o.find("Z1K1");
    if (lt == o.end() || lt->second != t.list_normal) return false;
    auto head = o.find("K1");
    if (head == o.end()) return o.size() == 1;
    auto rest = o.find("K2");
    if (rest == o.end() || o.size() != 3) return false;
    const json& pair = head->second;
    if (!pair.is_object() || pair.size() != 3) return false;
    auto pt = pair.find("Z1K1");
    auto pk = pair.find("K1");
    auto pv = pair.find("K2");
    if (pt == pair.end() || pk == pair.end() || pv == pair.end() || *pt != t.pair_normal) {
      return false;
    }
    const std::string* key = pair_key(*pk);
    if (key == nullptr || !zo::check_mixed(*pv).empty()) return false;
    auto same =
        std::find_if(out.begin(), out.end(), [&](const auto& p) { return p.first == *key; });
    if (same != out.end()) return false;  // duplicate keys: leave them to the general path
    out.emplace_back(*key, zo::to_canonical(*pv));
    node = &rest->second;
  }
}

std::optional<json> fast_canonical(const json& envelope, const RunStart& start) {
  if (!envelope.is_object() || envelope.size() != 3) return std::nullopt;
  auto t = envelope.find("Z1K1");
  auto v = envelope.find("Z22K1");
  auto m = envelope.find("Z22K2");
  if (t == envelope.end() || v == envelope.end() || m == envelope.end()) return std::nullopt;
  if (zo::ref_id(*t) != "Z22" || !zo::check_mixed(*v).empty()) return std::nullopt;
  std::vector<std::pair<std::string, json>> pairs;
  pairs.reserve(12);
  if (!standard_pairs(*m, pairs)) return std::nullopt;
  for (auto& [key, value] : orchestration_values(start)) {
    auto same =
        std::find_if(pairs.begin(), pairs.end(), [&](const auto& p) { return p.first == key; });
    if (same != pairs.end()) {
      same->second = canonical_string(std::move(value));
    } else {
      pairs.emplace_back(key, canonical_string(std::move(value)));
    }
  }
  const Types& ty = types();
  json list(json::value_t::array);
  auto& items = list.get_ref<json::array_t&>();
  items.reserve(pairs.size() + 1);
  items.push_back(ty.pair_canonical);
  for (auto& [key, value] : pairs) {
    json pair(json::value_t::object);
    auto& p = pair.get_ref<object_t&>();
    p.emplace_hint(p.end(), "K1", canonical_string(key));
    p.emplace_hint(p.end(), "K2", std::move(value));
    p.emplace_hint(p.end(), "Z1K1", ty.pair_canonical);
    items.push_back(std::move(pair));
  }
  json meta(json::value_t::object);
  auto& mo = meta.get_ref<object_t&>();
  mo.emplace_hint(mo.end(), "K1", std::move(list));
  mo.emplace_hint(mo.end(), "Z1K1", ty.map_canonical);
  json out(json::value_t::object);
  auto& o = out.get_ref<object_t&>();
  o.emplace_hint(o.end(), "Z1K1", "Z22");
  o.emplace_hint(o.end(), "Z22K1", zo::to_canonical(*v));
  o.emplace_hint(o.end(), "Z22K2", std::move(meta));
  return out;
}

}  // namespace

json finish_response(json envelope, const RunStart& start) {
  if (auto fast = fast_canonical(envelope, start)) return std::move(*fast);
  add_orchestration_metadata(envelope, start);
  if (zo::check_mixed(envelope).empty()) return zo::to_canonical(envelope);
  return envelope;
}

}  // namespace wf::orchestrator::engine_detail
