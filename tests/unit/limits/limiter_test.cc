#include "wf/limits/limiter.h"

#include <gtest/gtest.h>

namespace wf::limits {
namespace {

using namespace std::chrono_literals;

LimiterOptions options(ClassLimits c) {
  LimiterOptions o;
  o.classes = {std::move(c)};
  o.background_thread = false;
  return o;
}

Identity who(std::string key, std::string cls = "user") {
  Identity id;
  id.key = std::move(key);
  id.class_name = std::move(cls);
  return id;
}

TEST(Limiter, TokenBucketRefusesBeyondBurstAndRefills) {
  ManualClock clock;
  Limiter limiter(options({.name = "user", .rate = 2, .burst = 3}), clock);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.acquire(who("user:a")));
  auto refused = limiter.acquire(who("user:a"));
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().reason, Reason::kRate);
  EXPECT_EQ(refused.error().limit, 2);
  EXPECT_EQ(refused.error().retry_after, 500ms);  // one token at 2 per second
  // Another user has their own bucket.
  EXPECT_TRUE(limiter.acquire(who("user:b")));
  clock.advance(500ms);
  EXPECT_TRUE(limiter.acquire(who("user:a")));
  EXPECT_FALSE(limiter.acquire(who("user:a")));
}

TEST(Limiter, ARefusalWithinASecondOfTheLastIsMarkedRepeated) {
  ManualClock clock;
  Limiter limiter(options({.name = "user", .rate = 1, .burst = 1}), clock);
  EXPECT_TRUE(limiter.acquire(who("user:a")));
  auto first = limiter.acquire(who("user:a"));
  ASSERT_FALSE(first);
  EXPECT_FALSE(first.error().repeated);  // answered at once
  clock.advance(100ms);
  auto again = limiter.acquire(who("user:a"));
  ASSERT_FALSE(again);
  EXPECT_TRUE(again.error().repeated);  // did not wait for Retry-After
  // A caller who waits for Retry-After and is refused again later is not a flood.
  clock.advance(1000ms);
  EXPECT_TRUE(limiter.acquire(who("user:a")));
  clock.advance(1100ms);
  EXPECT_TRUE(limiter.acquire(who("user:a")));
  auto later = limiter.acquire(who("user:a"));
  ASSERT_FALSE(later);
  EXPECT_FALSE(later.error().repeated);
}

TEST(Limiter, ConcurrencyCapReleasesWithThePermit) {
  ManualClock clock;
  Limiter limiter(options({.name = "user", .concurrency = 2}), clock);
  auto p1 = limiter.acquire(who("user:a"));
  auto p2 = limiter.acquire(who("user:a"));
  ASSERT_TRUE(p1 && p2);
  auto p3 = limiter.acquire(who("user:a"));
  ASSERT_FALSE(p3);
  EXPECT_EQ(p3.error().reason, Reason::kConcurrency);
  EXPECT_EQ(reason_status(p3.error().reason), 429u);
  p1->release();
  EXPECT_TRUE(limiter.acquire(who("user:a")));  // released again at once (temporary)
  { Permit moved = std::move(*p2); }
  auto both = std::pair{limiter.acquire(who("user:a")), limiter.acquire(who("user:a"))};
  EXPECT_TRUE(both.first && both.second);
}

TEST(Limiter, CpuBudgetIsChargedAfterTheCallAndResetsWithTheWindow) {
  ManualClock clock;
  LimiterOptions o = options({.name = "user", .cpu_ms = 100});
  o.cpu_window = 10s;
  Limiter limiter(o, clock);
  {
    auto p = limiter.acquire(who("user:heavy"));
    ASSERT_TRUE(p);
    p->charge_cpu(80);
    p->charge_cpu(80);  // charged once only
  }
  {
    auto p = limiter.acquire(who("user:heavy"));  // 80 < 100: still allowed
    ASSERT_TRUE(p);
    p->charge_cpu(30);
  }
  auto refused = limiter.acquire(who("user:heavy"));
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().reason, Reason::kCpu);
  EXPECT_EQ(refused.error().retry_after, 10s);  // the manual clock starts on a window boundary
  EXPECT_TRUE(limiter.acquire(who("user:light")));
  clock.advance(10s);
  EXPECT_TRUE(limiter.acquire(who("user:heavy")));
}

TEST(Limiter, CostEstimateFollowsChargedCpu) {
  ManualClock clock;
  Limiter limiter(options({.name = "user"}), clock);
  for (int i = 0; i < 20; ++i) {
    auto p = limiter.acquire(who("user:heavy"));
    p->charge_cpu(50);
  }
  auto heavy = limiter.acquire(who("user:heavy"));
  auto light = limiter.acquire(who("user:light"));
  EXPECT_GT(heavy->cost_estimate(), 40);
  EXPECT_LT(light->cost_estimate(), 2);
}

TEST(Limiter, PooledClassSharesOneBucket) {
  ManualClock clock;
  Limiter limiter(options({.name = "anonymous", .rate = 1, .burst = 2, .pooled = true}), clock);
  EXPECT_TRUE(limiter.acquire(who("ip:192.0.2.1", "anonymous")));
  EXPECT_TRUE(limiter.acquire(who("ip:192.0.2.2", "anonymous")));
  EXPECT_FALSE(limiter.acquire(who("ip:192.0.2.3", "anonymous")));
}

TEST(Limiter, TableIsBoundedAndEvictsIdleUsersFirst) {
  ManualClock clock;
  LimiterOptions o = options({.name = "user", .concurrency = 1});
  o.max_users = 16;  // one per shard
  Limiter limiter(o, clock);
  std::vector<Permit> held;
  int refused = 0;
  for (int i = 0; i < 200; ++i) {
    auto p = limiter.acquire(who("user:" + std::to_string(i)));
    if (p) {
      held.push_back(std::move(*p));
    } else {
      EXPECT_EQ(p.error().reason, Reason::kTooManyUsers);
      ++refused;
    }
  }
  EXPECT_EQ(held.size(), 16u);  // every shard holds one user in flight
  EXPECT_EQ(refused, 184);
  EXPECT_LE(limiter.stats().tracked_users, 16u);
  held.clear();
  for (int i = 200; i < 400; ++i) EXPECT_TRUE(limiter.acquire(who("user:" + std::to_string(i))));
  EXPECT_LE(limiter.stats().tracked_users, 16u);
}

TEST(Limiter, StatsCountUsersRefusedInTheLastMinute) {
  ManualClock clock;
  Limiter limiter(options({.name = "user", .rate = 1, .burst = 1}), clock);
  for (const char* u : {"user:a", "user:b", "user:c"}) {
    (void)limiter.acquire(who(u));
  }
  (void)limiter.acquire(who("user:a"));
  (void)limiter.acquire(who("user:b"));
  EXPECT_EQ(limiter.stats().limited_users, 2u);
  EXPECT_EQ(limiter.stats().tracked_users, 3u);
  clock.advance(61s);
  EXPECT_EQ(limiter.stats().limited_users, 0u);
}

TEST(Limiter, ReconfigureChangesLimitsAndValidates) {
  ManualClock clock;
  Limiter limiter(options({.name = "user", .concurrency = 1}), clock);
  auto p = limiter.acquire(who("user:a"));
  EXPECT_FALSE(limiter.acquire(who("user:a")));
  ASSERT_TRUE(limiter.reconfigure({{.name = "user", .concurrency = 2}}));
  EXPECT_TRUE(limiter.acquire(who("user:a")));
  auto bad = limiter.reconfigure({{.name = "user", .rate = -1}});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().find("user"), std::string::npos);
  EXPECT_EQ(limiter.classes()[0].concurrency, 2);
}

TEST(Limiter, SharedCountersHoldTheRateAcrossReplicas) {
  ManualClock clock;
  auto shared = std::make_shared<MemoryCounters>();
  // Locally a burst of 6 each (12 for two replicas); shared: rate * 1 s + burst = 7 per window.
  LimiterOptions o = options({.name = "user", .rate = 1, .burst = 6});
  Limiter a(o, clock, shared), b(o, clock, shared);
  int admitted = 0;
  for (int i = 0; i < 12; ++i) {
    Limiter& l = i % 2 == 0 ? a : b;
    if (auto p = l.acquire(who("user:x"))) ++admitted;
    l.maintain();
  }
  // A replica learns the others' calls when it pushes its own: at most one call per replica
  // beyond the shared limit.
  EXPECT_GE(admitted, 7);
  EXPECT_LE(admitted, 8);
  auto refused = a.acquire(who("user:x"));
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().reason, Reason::kRate);
  EXPECT_TRUE(refused.error().shared);
  EXPECT_TRUE(a.stats().shared_up);
  // A new window: both may call again.
  clock.advance(1s);
  EXPECT_TRUE(a.acquire(who("user:x")));
  EXPECT_TRUE(b.acquire(who("user:x")));
}

TEST(Limiter, SharedCpuBudgetIsChargedOnceForAllReplicas) {
  ManualClock clock;
  auto shared = std::make_shared<MemoryCounters>();
  LimiterOptions o = options({.name = "user", .cpu_ms = 100});
  Limiter a(o, clock, shared), b(o, clock, shared);
  {
    auto p = a.acquire(who("user:x"));
    p->charge_cpu(60);
  }
  {
    auto p = b.acquire(who("user:x"));
    p->charge_cpu(60);
  }
  a.maintain();
  b.maintain();
  // Each replica saw 60 ms: under the budget alone; together 120 ms.
  auto refused = b.acquire(who("user:x"));
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().reason, Reason::kCpu);
  EXPECT_TRUE(refused.error().shared);
  // a learns the total once it pushes something of its own.
  {
    auto p = a.acquire(who("user:x"));
    ASSERT_TRUE(p);
    p->charge_cpu(1);
  }
  a.maintain();
  EXPECT_FALSE(a.acquire(who("user:x")));
}

TEST(Limiter, FallsBackToPerReplicaLimitsWhenSharedCountersFail) {
  ManualClock clock;
  auto shared = std::make_shared<MemoryCounters>();
  LimiterOptions o = options({.name = "user", .rate = 1, .burst = 2});
  Limiter a(o, clock, shared), b(o, clock, shared);
  shared->set_failing(true);
  (void)a.acquire(who("user:x"));
  a.maintain();
  EXPECT_FALSE(a.stats().shared_up);
  // Per-replica limits still apply.
  EXPECT_TRUE(a.acquire(who("user:x")));
  EXPECT_FALSE(a.acquire(who("user:x")));
  // b never pushed: it still believes the counters are there, and finds out on its first push.
  EXPECT_TRUE(b.acquire(who("user:x")));
  b.maintain();
  EXPECT_FALSE(b.stats().shared_up);
  shared->set_failing(false);
  clock.advance(1100ms);
  a.maintain();  // the probe finds them again
  EXPECT_TRUE(a.stats().shared_up);
}

}  // namespace
}  // namespace wf::limits
