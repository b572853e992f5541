#include "orchestrator/engine/resolver.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "orchestrator/engine/call_cost.h"
#include "orchestrator/engine/fiber.h"
#include "orchestrator/engine/result_cache.h"
#include "wf/zobject/zobject.h"

namespace wf::orchestrator::engine_detail {

namespace zo = wf::zobject;

Resolver::Resolver(const Definitions& defs, ObjectCache& cache,
                   const std::filesystem::path& objects_dir, ObjectFetcher* fetcher,
                   const CallContext& ctx, int max_depth)
    : defs_(defs),
      cache_(cache),
      objects_dir_(objects_dir),
      fetcher_(fetcher),
      ctx_(ctx),
      max_depth_(max_depth) {}

Dereferenced Resolver::from_text(const std::string& zid, const std::string& text) {
  Dereferenced out;
  auto parsed = zo::parse(text, max_depth_);
  if (!parsed) {
    out.failure = "stored object " + zid + " is not valid JSON: " + parsed.error().message;
    return out;
  }
  auto normal = zo::normalize(*parsed);
  if (!normal) {
    out.error = normal.error();
    return out;
  }
  if (!normal->is_object() || !normal->contains("Z2K2")) {
    out.error = zo::make_error("Z513", {zo::z99(*normal)});
    return out;
  }
  out.z2 = std::make_shared<const nlohmann::json>(std::move(*normal));
  out.hash = content_hash(text);
  return out;
}

bool Resolver::local(const std::string& zid, Dereferenced& out) {
  if (auto z2 = defs_.served(zid)) {
    out.z2 = std::move(z2);
    out.bundled = true;
    return true;
  }
  if (auto z2 = cache_.get(zid, &out.hash)) {
    out.z2 = std::move(z2);
    return true;
  }
  if (!objects_dir_.empty() && zo::check_zid(zid)) {  // a file name only from a real ZID
    std::ifstream in(objects_dir_ / (zid + ".json"), std::ios::binary);
    if (in) {
      std::stringstream buf;
      buf << in.rdbuf();
      out = from_text(zid, buf.str());
      if (out.z2) cache_.put(zid, out.z2, out.hash);
      return true;
    }
  }
  return false;
}

ObjectFetcher::Result Resolver::fetch(const std::vector<std::string>& zids) {
  // The fiber parks until the wiki answers. The arguments are copied into the started work: it
  // may still be unwinding on another thread after this fiber has resumed.
  return await<ObjectFetcher::Result>(
      [fetcher = fetcher_, zids, ctx = ctx_](ObjectFetcher::Done done) {
        fetcher->fetch(zids, ctx, std::move(done));
      });
}

void Resolver::settle(const std::string& zid, const std::string* text) {
  Dereferenced d;
  if (text != nullptr) {
    d = from_text(zid, *text);
    if (d.z2) cache_.put(zid, d.z2, d.hash);
  } else if (auto fb = defs_.fallback(zid)) {
    d.z2 = std::move(fb);
  } else {
    d.error = zo::make_error("Z504", {zo::z6(zid)});
  }
  memo_[zid] = std::move(d);
}

void Resolver::fetch_batch(const std::vector<std::string>& zids) {
  if (zids.empty()) return;
  auto answer = fetch(zids);
  for (const auto& zid : zids) {
    if (!answer) {
      memo_[zid] = Dereferenced{nullptr, nullptr, answer.error().message};
      continue;
    }
    auto it = answer->find(zid);
    settle(zid, it != answer->end() ? &it->second : nullptr);
  }
}

void Resolver::fetch_single(const std::string& zid) {
  using Fetched = ObjectCache::Fetched;
  if (cache_.lead(zid)) {
    auto answer = fetch({zid});
    Fetched outcome;
    if (!answer) {
      outcome.failure = answer.error().message;
    } else if (auto it = answer->find(zid); it != answer->end()) {
      outcome.text = it->second;
    }
    cache_.land(zid, outcome);
    if (!outcome.failure.empty()) {
      memo_[zid] = Dereferenced{nullptr, nullptr, outcome.failure};
    } else {
      settle(zid, outcome.text ? &*outcome.text : nullptr);
    }
    return;
  }
  // Another request is fetching it: park until its answer lands.
  auto got = await<std::optional<Fetched>>([cache = &cache_,
                                            zid](std::function<void(std::optional<Fetched>)> done) {
    auto shared = std::make_shared<std::function<void(std::optional<Fetched>)>>(std::move(done));
    if (!cache->join(zid, [shared](Fetched f) { (*shared)(std::move(f)); })) {
      (*shared)(std::nullopt);
    }
  });
  // Its flight ended before we joined, or failed for its own request (its caller may have hung
  // up): fetch on our own, with our own errors.
  if (!got || !got->failure.empty()) {
    fetch_batch({zid});
    return;
  }
  settle(zid, got->text ? &*got->text : nullptr);
}

void Resolver::prefetch(const std::vector<std::string>& zids) {
  if (fetcher_ == nullptr) return;
  Stopwatch watch(spent_us_);
  std::vector<std::string> remote;
  for (const auto& zid : zids) {
    if (!zo::is_zid(zid) || memo_.count(zid) || prefetched_.count(zid)) continue;
    if (std::find(remote.begin(), remote.end(), zid) != remote.end()) continue;
    if (defs_.served_json(zid)) continue;  // built in: never fetched
    Dereferenced d;
    if (local(zid, d)) {
      memo_[zid] = std::move(d);
      continue;
    }
    remote.push_back(zid);
  }
  if (remote.size() < 2) return;  // nothing to batch: fetch on demand as before
  for (const auto& zid : remote) prefetched_.insert(zid);
  ++batches_;
  auto answer = fetch(remote);
  // Only what the batch actually delivered is kept. A failed batch, or a ZID missing from the
  // answer (the wiki answers all-or-nothing on some errors), is fetched on its own when it is
  // really needed, so errors are exactly those of single fetches.
  if (!answer) return;
  for (const auto& zid : remote) {
    auto it = answer->find(zid);
    if (it == answer->end()) continue;
    Dereferenced d = from_text(zid, it->second);
    if (!d.failure.empty()) continue;
    if (d.z2) cache_.put(zid, d.z2, d.hash);
    memo_[zid] = std::move(d);
  }
}

namespace {
std::optional<std::uint64_t> identity_of(const Dereferenced& d) {
  if (!d.failure.empty()) return std::nullopt;
  if (!d.z2) return 0;
  return d.hash != 0 ? d.hash : content_hash(d.z2->dump());
}
}  // namespace

std::optional<std::vector<std::pair<std::string, std::uint64_t>>> Resolver::used() const {
  if (external_) return std::nullopt;
  std::vector<std::pair<std::string, std::uint64_t>> out;
  out.reserve(memo_.size());
  for (const auto& [zid, d] : memo_) {
    if (defs_.served_json(zid)) continue;
    auto id = identity_of(d);
    if (!id) return std::nullopt;
    out.emplace_back(zid, *id);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::optional<std::uint64_t> Resolver::identity(const std::string& zid) {
  return identity_of(dereference(zid));
}

const Dereferenced& Resolver::dereference(const std::string& zid) {
  auto it = memo_.find(zid);
  if (it != memo_.end()) return it->second;
  Stopwatch watch(spent_us_);
  return dereference_new(zid);
}

const Dereferenced& Resolver::dereference_new(const std::string& zid) {
  Dereferenced d;
  if (auto valid = zo::check_zid(zid); !valid) {  // never a file name or a wiki query
    d.error = std::move(valid.error());
    return memo_[zid] = std::move(d);
  }
  if (local(zid, d)) return memo_[zid] = std::move(d);
  if (fetcher_ != nullptr) {
    fetch_single(zid);
    return memo_[zid];
  }
  if (auto fb = defs_.fallback(zid)) {
    d.z2 = std::move(fb);
  } else {
    d.error = zo::make_error("Z504", {zo::z6(zid)});
  }
  return memo_[zid] = std::move(d);
}

}  // namespace wf::orchestrator::engine_detail
