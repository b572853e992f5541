#pragma once
// Resolves ZIDs to persisted objects for one request. Chain, first hit wins: the bundled
// built-ins, the shared object cache, the objects directory, the wiki (ObjectFetcher), and the
// bundled fallback definitions. Results (including "not found") are memoised per request.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "orchestrator/engine/definitions.h"
#include "orchestrator/engine/object_cache.h"
#include "orchestrator/engine/ports.h"

namespace wf::orchestrator::engine_detail {

struct Dereferenced {
  std::shared_ptr<const nlohmann::json> z2;  // normal-form Z2 on success
  nlohmann::json error;                      // a Z5 (Z504 not found, Z502 invalid) otherwise
  std::string failure;                       // non-empty: transport failure (an "exception")
  std::uint64_t hash = 0;  // identity: content hash of the text it came from; 0 = not computed
  bool bundled = false;    // z2 is the bundled definition (Definitions::served): never freed
};

class Resolver {
 public:
  Resolver(const Definitions& defs, ObjectCache& cache, const std::filesystem::path& objects_dir,
           ObjectFetcher* fetcher, const CallContext& ctx, int max_depth);

  const Dereferenced& dereference(const std::string& zid);
  // The bundled definition dereference(zid) yields, without dereferencing (nothing memoised,
  // nothing fetched); null when zid is not built in. local() looks at the definitions before
  // anything else, and nothing else writes a built-in ZID's memo (prefetch() skips them; a fetch
  // follows a local miss), so the verdict depends only on the definitions this resolver serves.
  const nlohmann::json* bundled(std::string_view zid) const { return defs_.served_json(zid); }
  // Fetches the given ZIDs not known yet in one wiki batch (best effort, each ZID at most once
  // per request). Only objects the batch delivered are kept: a failed batch or a missing ZID
  // changes nothing, and dereference() later fetches it on its own, with the same errors.
  void prefetch(const std::vector<std::string>& zids);
  int batches() const { return batches_; }
  // Whether prefetch() can fetch anything (a wiki is configured): without one it does nothing.
  bool can_prefetch() const { return fetcher_ != nullptr; }
  // The identity of every object this request resolved, except the built-ins served from memory
  // (fixed for a build): ZID -> content hash of its normal form, 0 when not found. nullopt when a
  // resolution failed in transport (such an outcome is not cached).
  std::optional<std::vector<std::pair<std::string, std::uint64_t>>> used() const;
  // The content hash dereference(zid) gives now (0: not found), or nullopt on a transport failure.
  std::optional<std::uint64_t> identity(const std::string& zid);
  // Wall-clock µs spent resolving ZIDs that were not memoised yet (fetches included): the
  // "resolve" part of the call's cost (call_cost.h).
  double spent_us() const { return spent_us_; }

  // Data from outside the wiki (Wikidata, wikidata_entities.h): the source (null: none
  // configured), the shared cache and the request's context. Once an answer has read such data,
  // mark_external() makes used() answer nullopt: the result is not memoised.
  void set_entity_source(EntitySource* source) { entities_ = source; }
  EntitySource* entity_source() const { return entities_; }
  ObjectCache& cache() { return cache_; }
  const CallContext& context() const { return ctx_; }
  int max_depth() const { return max_depth_; }
  void mark_external() { external_ = true; }

 private:
  const Dereferenced& dereference_new(const std::string& zid);
  bool local(const std::string& zid, Dereferenced& out);
  Dereferenced from_text(const std::string& zid, const std::string& text);
  void fetch_batch(const std::vector<std::string>& zids);
  // One ZID: joins a fetch of it in flight for another request, or leads one (single flight).
  void fetch_single(const std::string& zid);
  // The memo entry for `zid` from a wiki answer: its text, or nullptr when the wiki lacks it.
  void settle(const std::string& zid, const std::string* text);
  ObjectFetcher::Result fetch(const std::vector<std::string>& zids);  // parks the fiber

  const Definitions& defs_;
  ObjectCache& cache_;
  const std::filesystem::path& objects_dir_;  // the engine's: a copy cost 0.25 KiB per request
  ObjectFetcher* fetcher_;
  const CallContext& ctx_;
  int max_depth_;
  std::unordered_map<std::string, Dereferenced> memo_;
  std::unordered_set<std::string> prefetched_;
  int batches_ = 0;
  double spent_us_ = 0;
  EntitySource* entities_ = nullptr;
  bool external_ = false;
};

}  // namespace wf::orchestrator::engine_detail
