// The result cache: the LRU and its text form, and the engine serving repeated calls from it,
// revalidated against the objects the call used.
#include "orchestrator/engine/result_cache.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "fakes.h"
#include "orchestrator/engine/engine.h"
#include "orchestrator/engine/engine_metrics.h"
#include "orchestrator/engine/response.h"
#include "wf/zobject/zobject.h"

namespace wf::orchestrator {
namespace {

using json = nlohmann::json;
using engine_detail::CachedResult;
using engine_detail::ResultCache;

std::shared_ptr<const CachedResult> entry(const std::string& value) {
  auto e = std::make_shared<CachedResult>();
  e->envelope = zobject::make_envelope(json(value), zobject::empty_metadata_map());
  return e;
}

TEST(ResultCacheLru, KeepsWithinItsBytesAndEvictsTheLeastRecentlyUsed) {
  ResultCache cache(800);
  cache.put("a", entry("A"), 100);
  cache.put("b", entry("B"), 100);
  ASSERT_NE(cache.get("a"), nullptr);  // a is now the most recent
  for (int i = 0; i < 7; ++i) cache.put("k" + std::to_string(i), entry("x"), 100);
  EXPECT_LE(cache.bytes(), 800u);
  EXPECT_EQ(cache.get("b"), nullptr);
  ASSERT_NE(cache.get("a"), nullptr);
  EXPECT_EQ(cache.get("a")->envelope["Z22K1"], "A");
}

TEST(ResultCacheLru, RefusesAnEntryLargerThanAnEighthAndIsOffAtZeroBytes) {
  ResultCache cache(800);
  cache.put("big", entry("B"), 101);
  EXPECT_EQ(cache.get("big"), nullptr);
  ResultCache off(0);
  EXPECT_FALSE(off.enabled());
  off.put("a", entry("A"), 1);
  EXPECT_EQ(off.get("a"), nullptr);
}

TEST(ResultCacheAlias, FindsTheEntryOfAnExactBodyAndIsBounded) {
  ResultCache cache(8000);
  cache.put("k", entry("K"), 100);
  cache.alias(R"({"zobject":1})", "k");
  auto hit = cache.find_body(R"({"zobject":1})");
  ASSERT_NE(hit, nullptr);
  EXPECT_EQ(hit->envelope["Z22K1"], "K");
  EXPECT_EQ(cache.find_body(R"({"zobject": 1})"), nullptr);  // another text: not known
  cache.alias("body of a gone entry", "gone");
  EXPECT_EQ(cache.find_body("body of a gone entry"), nullptr);
  // An eighth of the bound (1000 bytes) holds a few aliases; the least recent go first.
  for (int i = 0; i < 100; ++i) cache.alias("body " + std::to_string(i), "k");
  EXPECT_LT(cache.aliases(), 10u);
  EXPECT_NE(cache.find_body("body 99"), nullptr);
  EXPECT_EQ(cache.find_body(R"({"zobject":1})"), nullptr);
  cache.alias(std::string(ResultCache::kMaxBodyBytes + 1, ' '), "k");  // too long to keep
  EXPECT_EQ(cache.find_body(std::string(ResultCache::kMaxBodyBytes + 1, ' ')), nullptr);
}

// The text of a hit written from an entry's head is the text the general path writes for it, up
// to this call's orchestration* figures.
TEST(ResultCacheText, AHitWrittenFromTheStoredHeadIsTheUsualAnswer) {
  json meta = zobject::empty_metadata_map();
  json envelope = zobject::make_envelope(json{{"Z1K1", "Z6"}, {"Z6K1", "Z11 \"quoted\""}}, meta);
  zobject::envelope_set_metadata(envelope, "implementationId", zobject::z6("Z10002"));
  engine_detail::TrailingMeta trailing = {{"implementationType", "Evaluated"}};
  auto head = engine_detail::cached_answer_head(envelope, trailing);
  ASSERT_TRUE(head.has_value());
  const auto start = engine_detail::run_start();
  const engine_detail::TrailingMeta added = {{"resultCache", "local"},
                                             {"orchestrationCacheDuration", "0.01 ms"}};
  const std::string fast = engine_detail::cached_answer(*head, added, start);
  engine_detail::TrailingMeta served = trailing;
  served.insert(served.end(), added.begin(), added.end());
  bool has_error = true;
  const std::string usual =
      engine_detail::finish_response_text(envelope, served, start, &has_error);
  EXPECT_FALSE(has_error);
  const std::string cut = R"({"K1":"orchestrationMemoryUsage")";
  ASSERT_NE(usual.find(cut), std::string::npos) << usual;
  EXPECT_EQ(fast.substr(0, fast.find(cut)), usual.substr(0, usual.find(cut)));
  json parsed = json::parse(fast);
  EXPECT_EQ(parsed["Z22K1"], "Z11 \"quoted\"");
  EXPECT_EQ(parsed["Z22K2"]["K1"].size(), 1u + 4 + 6);  // type, 4 pairs, orchestration*
  // An envelope that already says what a hit adds has no head (the general path serves it).
  engine_detail::TrailingMeta odd = {{"orchestrationCpuUsage", "1 ms"}};
  EXPECT_FALSE(engine_detail::cached_answer_head(envelope, odd).has_value());
}

TEST(ResultCacheText, RoundTripsAndRejectsWhatItDidNotWrite) {
  CachedResult r;
  r.used = {{"Z10001", 42}, {"Z10002", 0}};
  r.envelope = zobject::make_envelope(json("v"), zobject::empty_metadata_map());
  r.trailing = {{"implementationType", "Evaluated"}};
  auto back = engine_detail::decode(engine_detail::encode(r));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->used, r.used);
  EXPECT_EQ(back->envelope, r.envelope);
  EXPECT_EQ(back->trailing, r.trailing);
  EXPECT_FALSE(engine_detail::decode("{}").has_value());
  EXPECT_FALSE(engine_detail::decode("not json").has_value());
  EXPECT_FALSE(engine_detail::decode(R"({"v":"other","used":[],"trailing":[],"envelope":{}})"));
}

TEST(ResultCacheKey, SameForCanonicalAndNormalFormsAndDiffersByArgumentAndValidation) {
  json canonical = {{"Z1K1", "Z7"}, {"Z7K1", "Z10001"}, {"Z10001K1", "x"}};
  auto normal = zobject::normalize(canonical);
  ASSERT_TRUE(normal.has_value());
  EXPECT_EQ(engine_detail::call_key(canonical, false), engine_detail::call_key(*normal, false));
  json other = canonical;
  other["Z10001K1"] = "y";
  EXPECT_NE(engine_detail::call_key(canonical, false), engine_detail::call_key(other, false));
  EXPECT_NE(engine_detail::call_key(canonical, false), engine_detail::call_key(canonical, true));
}

// ---- the engine ------------------------------------------------------------------------------

using wf::orchestrator::testing::z2;
// Z10001(String) -> String with one Python implementation, Z10002, of the given code.
json function() {
  json arg = {{"Z1K1", "Z17"},
              {"Z17K1", "Z6"},
              {"Z17K2", "Z10001K1"},
              {"Z17K3", {{"Z1K1", "Z12"}, {"Z12K1", json::array({"Z11"})}}}};
  return z2("Z10001", {{"Z1K1", "Z8"},
                       {"Z8K1", json::array({"Z17", arg})},
                       {"Z8K2", "Z6"},
                       {"Z8K3", json::array({"Z20"})},
                       {"Z8K4", json::array({"Z14", "Z10002"})},
                       {"Z8K5", "Z10001"}});
}

json python(const std::string& code) {
  return z2(
      "Z10002",
      {{"Z1K1", "Z14"},
       {"Z14K1", "Z10001"},
       {"Z14K3",
        {{"Z1K1", "Z16"}, {"Z16K1", {{"Z1K1", "Z61"}, {"Z61K1", "python-3"}}}, {"Z16K2", code}}}});
}

// A wiki whose objects a test edits.
class EditableWiki : public ObjectFetcher {
 public:
  void set(const std::string& zid, const json& z2) {
    std::lock_guard lock(mu_);
    objects_[zid] = z2.dump();
  }
  void fetch(const std::vector<std::string>& zids, const CallContext&, Done done) override {
    std::map<std::string, std::string> out;
    {
      std::lock_guard lock(mu_);
      for (const auto& z : zids) {
        if (auto it = objects_.find(z); it != objects_.end()) out[z] = it->second;
      }
    }
    done(std::move(out));
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::string> objects_;
};

// Answers "<code>|<argument>" so a test sees which code ran, and counts calls; answers an error
// envelope while `failing`.
class CountingRunner : public CodeRunner {
 public:
  std::atomic<int> calls{0};
  std::atomic<bool> failing{false};
  void run(const CodeCall& call, const CallContext&, Done done) override {
    ++calls;
    if (failing) {
      done(std::unexpected(CodeRunError{CodeRunError::Kind::kFailed, "evaluator down"}));
      return;
    }
    const json arg = call.arguments.value("Z10001K1", json());
    const std::string text = arg.is_object() ? arg.value("Z6K1", "") : arg.dump();
    done(zobject::make_envelope(json{{"Z1K1", "Z6"}, {"Z6K1", call.code + "|" + text}},
                                zobject::empty_metadata_map()));
  }
};

struct Replica {
  std::shared_ptr<EditableWiki> wiki = std::make_shared<EditableWiki>();
  std::shared_ptr<CountingRunner> runner = std::make_shared<CountingRunner>();
  std::unique_ptr<Engine> engine;
  Replica() {
    wiki->set("Z10001", function());
    wiki->set("Z10002", python("v1"));
    EngineOptions o;
    o.cache_ttl = std::chrono::milliseconds(0);  // every request resolves afresh from the wiki
    o.result_cache_bytes = 1u << 20;
    engine = make_engine(o, wiki, runner);
  }
  json call(const std::string& arg, bool use_cache = true) {
    json request = {{"zobject", {{"Z1K1", "Z7"}, {"Z7K1", "Z10001"}, {"Z10001K1", arg}}}};
    if (!use_cache) request["resultCache"] = false;
    return engine->evaluate(request, CallContext{});
  }
};

std::string cache_tier(const json& z22) {
  const std::string text = z22.dump();
  if (text.find("\"resultCache\"") == std::string::npos) return "";
  return text.find("\"memcached\"") != std::string::npos ? "memcached" : "local";
}

TEST(ResultCacheEngine, ARepeatedCallIsServedFromTheCacheAndSaysSo) {
  Replica s;
  json first = s.call("a");
  EXPECT_EQ(first["Z22K1"], "v1|a") << first.dump();
  EXPECT_EQ(cache_tier(first), "");
  json second = s.call("a");
  EXPECT_EQ(second["Z22K1"], "v1|a") << second.dump();
  EXPECT_EQ(cache_tier(second), "local");
  EXPECT_EQ(s.runner->calls.load(), 1);
  s.call("b");  // another argument is another entry
  EXPECT_EQ(s.runner->calls.load(), 2);
}

TEST(ResultCacheEngine, AnEditOnTheWikiIsNeverServedStale) {
  Replica s;
  EXPECT_EQ(s.call("a")["Z22K1"], "v1|a");
  s.wiki->set("Z10002", python("v2"));
  json after = s.call("a");
  EXPECT_EQ(after["Z22K1"], "v2|a") << after.dump();
  EXPECT_EQ(s.runner->calls.load(), 2);
  EXPECT_EQ(s.call("a")["Z22K1"], "v2|a");  // and the new result is cached in turn
  EXPECT_EQ(s.runner->calls.load(), 2);
}

TEST(ResultCacheEngine, TheOptOutRunsAgainAndFailuresAreNotCached) {
  Replica s;
  s.call("a");
  json again = s.call("a", false);
  EXPECT_EQ(again["Z22K1"], "v1|a");
  EXPECT_EQ(cache_tier(again), "");
  EXPECT_EQ(s.runner->calls.load(), 2);
  s.runner->failing = true;
  const json failed = s.call("c");
  EXPECT_NE(failed.dump().find("\"errors\""), std::string::npos) << failed.dump();
  s.runner->failing = false;
  EXPECT_EQ(s.call("c")["Z22K1"], "v1|c");  // the outage was not remembered
  EXPECT_EQ(s.runner->calls.load(), 4);
}

// A shared store in memory, as memcached would be for two replicas.
class MapStore : public SharedResultStore {
 public:
  std::map<std::string, std::string> values;
  std::mutex mu;
  int gets = 0;
  void get(const std::string& key, Done done) override {
    std::optional<std::string> v;
    {
      std::lock_guard lock(mu);
      ++gets;
      if (auto it = values.find(key); it != values.end()) v = it->second;
    }
    done(std::move(v));
  }
  void put(const std::string& key, std::string value) override {
    std::lock_guard lock(mu);
    values[key] = std::move(value);
  }
};

TEST(ResultCacheEngine, AResultOfOneEngineIsServedToAnotherThroughTheSharedTier) {
  auto store = std::make_shared<MapStore>();
  Replica a, b;
  EngineOptions o;
  o.cache_ttl = std::chrono::milliseconds(0);
  o.result_cache_bytes = 1u << 20;
  a.engine = make_engine(o, a.wiki, a.runner, store);
  b.engine = make_engine(o, b.wiki, b.runner, store);
  EXPECT_EQ(a.call("a")["Z22K1"], "v1|a");
  json from_b = b.call("a");
  EXPECT_EQ(from_b["Z22K1"], "v1|a") << from_b.dump();
  EXPECT_EQ(cache_tier(from_b), "memcached");
  EXPECT_EQ(b.runner->calls.load(), 0);
  EXPECT_EQ(cache_tier(b.call("a")), "local");  // kept locally after the shared hit
}

TEST(ResultCacheEngine, ACallOfABuiltInUsesTheLocalTierOnly) {
  auto store = std::make_shared<MapStore>();
  EngineOptions o;
  o.result_cache_bytes = 1u << 20;
  auto engine = make_engine(o, nullptr, nullptr, store);
  json request = {{"zobject", {{"Z1K1", "Z7"}, {"Z7K1", "Z801"}, {"Z801K1", "hi"}}}};
  EXPECT_EQ(engine->evaluate(request, CallContext{})["Z22K1"], "hi");
  json again = engine->evaluate(request, CallContext{});
  EXPECT_EQ(again["Z22K1"], "hi");
  EXPECT_EQ(cache_tier(again), "local");
  std::lock_guard lock(store->mu);
  EXPECT_EQ(store->gets, 0);
  EXPECT_TRUE(store->values.empty());
}

// ---- the fast path of a hit (Engine::answer_cached) --------------------------------------------

struct FastReplica : Replica {
  explicit FastReplica(std::chrono::milliseconds ttl) {
    EngineOptions o;
    o.cache_ttl = ttl;  // the object cache on: the fast path checks identities against it
    o.result_cache_bytes = 1u << 20;
    engine = make_engine(o, wiki, runner);
  }
  static std::string body(const std::string& arg, const std::string& extra = "") {
    return R"({"zobject":{"Z1K1":"Z7","Z7K1":"Z10001","Z10001K1":")" + arg +
           R"("},"doValidate":false)" + extra + "}";
  }
  json evaluate(const std::string& text) {
    return json::parse(engine->evaluate_text(json::parse(text), text, CallContext{}, nullptr));
  }
  std::optional<json> fast(const std::string& text, CallContext ctx = {}) {
    bool has_error = true;
    auto out = engine->answer_cached(text, ctx, &has_error);
    if (!out) return std::nullopt;
    EXPECT_FALSE(has_error);
    return json::parse(*out);
  }
};

std::map<std::string, json> meta_of(const json& z22) {
  std::map<std::string, json> out;
  const auto& pairs = z22["Z22K2"]["K1"];
  for (std::size_t i = 1; i < pairs.size(); ++i)
    out[pairs[i]["K1"].get<std::string>()] = pairs[i]["K2"];
  return out;
}

TEST(ResultCacheFastPath, ARepeatedBodyIsAnsweredWithoutEvaluationAndWithTheSameMetadata) {
  FastReplica s(std::chrono::minutes(5));
  const std::string body = FastReplica::body("a");
  EXPECT_FALSE(s.fast(body).has_value());  // never seen
  EXPECT_EQ(s.evaluate(body)["Z22K1"], "v1|a");
  const json slow_hit = s.evaluate(body);  // a hit of the general path
  auto hit = s.fast(body);
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ((*hit)["Z22K1"], "v1|a");
  EXPECT_EQ(s.runner->calls.load(), 1);
  auto meta = meta_of(*hit);
  auto slow_meta = meta_of(slow_hit);
  EXPECT_EQ(meta["resultCache"], "local");
  EXPECT_EQ(meta.size(), slow_meta.size());
  for (const auto& [key, value] : slow_meta) {
    ASSERT_TRUE(meta.count(key)) << key;
    if (!key.starts_with("orchestration")) {
      EXPECT_EQ(meta[key], value) << key;
    }
  }
  // Another spelling of the same call is another text: evaluated (a hit by key), then known.
  const std::string spaced = " " + body;
  EXPECT_FALSE(s.fast(spaced).has_value());
  EXPECT_EQ(meta_of(s.evaluate(spaced))["resultCache"], "local");
  EXPECT_TRUE(s.fast(spaced).has_value());
  EXPECT_EQ(s.runner->calls.load(), 1);
  // A passed deadline is left to the general path (which answers the timeout).
  CallContext late;
  late.deadline = Clock::now() - std::chrono::seconds(1);
  EXPECT_FALSE(s.fast(body, late).has_value());
}

TEST(ResultCacheFastPath, TheOptOutIsNeverAnsweredFromTheCache) {
  FastReplica s(std::chrono::minutes(5));
  s.evaluate(FastReplica::body("a"));
  const std::string again = FastReplica::body("a", R"(,"resultCache":false)");
  EXPECT_EQ(meta_of(s.evaluate(again)).count("resultCache"), 0u);
  EXPECT_FALSE(s.fast(again).has_value());
  EXPECT_EQ(s.runner->calls.load(), 2);
}

TEST(ResultCacheFastPath, AnEditedObjectIsNeverServedOnceTheObjectCacheSeesIt) {
  FastReplica s(std::chrono::milliseconds(150));
  const std::string body = FastReplica::body("a");
  s.evaluate(body);
  ASSERT_TRUE(s.fast(body).has_value());
  s.wiki->set("Z10002", python("v2"));
  std::this_thread::sleep_for(std::chrono::milliseconds(250));  // the object cache expires
  EXPECT_FALSE(s.fast(body).has_value());  // an object it used is not known to be the same
  EXPECT_EQ(s.evaluate(body)["Z22K1"], "v2|a");
  EXPECT_EQ(s.runner->calls.load(), 2);
  auto hit = s.fast(body);
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ((*hit)["Z22K1"], "v2|a");
}

// ---- the object cache's single flight ---------------------------------------------------------

namespace single_flight {

// A wiki that holds every fetch until the test releases it.
class HeldWiki : public ObjectFetcher {
 public:
  explicit HeldWiki(std::map<std::string, std::string> objects) : objects_(std::move(objects)) {}
  void fetch(const std::vector<std::string>& zids, const CallContext&, Done done) override {
    std::lock_guard lock(mu_);
    requests_.push_back(zids);
    held_.emplace_back(zids, std::move(done));
  }
  std::size_t requests() {
    std::lock_guard lock(mu_);
    return requests_.size();
  }
  std::vector<std::vector<std::string>> seen() {
    std::lock_guard lock(mu_);
    return requests_;
  }
  // Answers every held fetch; true when there was one.
  bool release() {
    std::vector<std::pair<std::vector<std::string>, Done>> held;
    {
      std::lock_guard lock(mu_);
      held.swap(held_);
    }
    for (auto& [zids, done] : held) {
      std::map<std::string, std::string> out;
      for (const auto& z : zids) {
        if (auto it = objects_.find(z); it != objects_.end()) out[z] = it->second;
      }
      done(std::move(out));
    }
    return !held.empty();
  }

 private:
  std::map<std::string, std::string> objects_;
  std::mutex mu_;
  std::vector<std::vector<std::string>> requests_;
  std::vector<std::pair<std::vector<std::string>, Done>> held_;
};

TEST(ObjectCacheSingleFlight, ConcurrentMissesForOneZidFetchItOnce) {
  // Z10001 is a function whose composition echoes its argument: the first fetch is Z10001 alone.
  json fn = function();
  fn["Z2K2"]["Z8K4"] = json::array({"Z14",
                                    {{"Z1K1", "Z14"},
                                     {"Z14K1", "Z10001"},
                                     {"Z14K2",
                                      {{"Z1K1", "Z7"},
                                       {"Z7K1", "Z801"},
                                       {"Z801K1", {{"Z1K1", "Z18"}, {"Z18K1", "Z10001K1"}}}}}}});
  auto wiki = std::make_shared<HeldWiki>(std::map<std::string, std::string>{{"Z10001", fn.dump()}});
  EngineOptions o;
  o.cpu_threads = 2;
  auto engine = make_engine(o, wiki, nullptr);
  constexpr int kCalls = 4;
  std::mutex mu;
  std::vector<json> answers;
  const auto joined = [] { return engine_detail::metrics().fetches_joined.Value(); };
  const double joined_before = joined();
  for (int i = 0; i < kCalls; ++i) {
    engine->spawn(CallContext{}, [&, i] {
      json request = {
          {"zobject", {{"Z1K1", "Z7"}, {"Z7K1", "Z10001"}, {"Z10001K1", std::to_string(i)}}}};
      json r = engine->evaluate(request, CallContext{});
      std::lock_guard lock(mu);
      answers.push_back(r["Z22K1"]);
    });
  }
  // Bounded waits (30 s, far beyond a loaded machine's needs): the leader's fetch arrives and
  // the others join it (a fixed 200 ms for them to get there was a guess about the machine).
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (joined() < joined_before + kCalls - 1 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  EXPECT_EQ(joined(), joined_before + kCalls - 1);
  EXPECT_EQ(wiki->requests(), 1u);
  while (std::chrono::steady_clock::now() < until) {
    wiki->release();
    {
      std::lock_guard lock(mu);
      if (answers.size() == kCalls) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  std::lock_guard lock(mu);
  ASSERT_EQ(answers.size(), static_cast<std::size_t>(kCalls));
  std::set<json> got(answers.begin(), answers.end());
  EXPECT_EQ(got, (std::set<json>{"0", "1", "2", "3"}));
  std::size_t z10001_fetches = 0;
  for (const auto& req : wiki->seen()) {
    z10001_fetches += std::count(req.begin(), req.end(), "Z10001");
  }
  EXPECT_EQ(z10001_fetches, 1u);
}

}  // namespace single_flight

}  // namespace
}  // namespace wf::orchestrator
