// The fair queue of calls waiting for a sandbox child (evaluator/sandbox/fair_queue.h): round
// robin across callers and flows, the per-flow cap on children held, the bounds, and that its
// records go away with the calls.

#include "evaluator/sandbox/fair_queue.h"

#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <vector>

namespace wf::evaluator::sandbox_internal {
namespace {

using Admission = FairQueue::Admission;

FlowKey flow(const char* caller, const char* code) {
  return {caller, code_hash(code)};
}

TEST(FairQueue, TheSameCodeIsOneFlowWhateverItsFunctionIdDifferentCodeIsAnother) {
  EXPECT_EQ(flow("o", "def Z1(x): return x"), flow("o", "def Z1(x): return x"));
  EXPECT_NE(flow("o", "def Z1(x): return x"), flow("o", "def Z1(x): return x "));
  EXPECT_NE(flow("a", "def Z1(x): return x"), flow("b", "def Z1(x): return x"));
}

// The reference vectors of the SipHash paper (key 00..0f; messages 00..0e and empty), so that
// the code hash is the keyed PRF it claims to be.
TEST(FairQueue, TheCodeHashIsSipHash24) {
  std::string message;
  for (char c = 0; c < 15; ++c) message.push_back(c);
  EXPECT_EQ(siphash24(0x0706050403020100ull, 0x0f0e0d0c0b0a0908ull, message),
            0xa129ca6149be45e5ull);
  EXPECT_EQ(siphash24(0x0706050403020100ull, 0x0f0e0d0c0b0a0908ull, ""), 0x726fdb47dd0e0e31ull);
}

TEST(FairQueue, ACallOfAnotherFlowIsServedNextBehindThousandsOfOneFlow) {
  FairQueue q({.children_per_flow = 0, .queued_per_flow = 5000, .queued_total = 10000});
  for (FairQueue::Ticket t = 1; t <= 3000; ++t) {
    ASSERT_EQ(q.push(flow("o", "slow"), t).admission, Admission::kQueued);
  }
  ASSERT_EQ(q.push(flow("o", "fast"), 9001).admission, Admission::kQueued);
  EXPECT_EQ(q.pop(), 1u);     // the slow flow's turn
  EXPECT_EQ(q.pop(), 9001u);  // then the fast flow's, not the 2,999 slow calls queued before it
  EXPECT_EQ(q.pop(), 2u);
}

TEST(FairQueue, AFlowAtItsCapWaitsWhileOtherFlowsAreServed) {
  FairQueue q({.children_per_flow = 2, .queued_per_flow = 100, .queued_total = 1000});
  for (FairQueue::Ticket t = 1; t <= 5; ++t) q.push(flow("o", "slow"), t);
  EXPECT_EQ(q.pop(), 1u);
  EXPECT_EQ(q.pop(), 2u);
  EXPECT_FALSE(q.eligible());  // two held: the other three wait
  EXPECT_EQ(q.pop(), std::nullopt);
  const FairQueue::Pushed fast = q.push(flow("o", "fast"), 100);
  EXPECT_FALSE(fast.at_cap);
  EXPECT_TRUE(q.eligible());
  EXPECT_EQ(q.pop(), 100u);
  EXPECT_TRUE(q.push(flow("o", "slow"), 6).at_cap);
  FairQueue::Counts counts = q.counts();
  EXPECT_EQ(counts.queued, 4u);
  EXPECT_EQ(counts.queued_at_cap, 4u);
  EXPECT_EQ(counts.held, 3u);
  EXPECT_EQ(counts.flows_at_cap, 1u);
  q.release(flow("o", "slow"));  // one slow call ended: the next slow one may have a child
  EXPECT_EQ(q.pop(), 3u);
  EXPECT_EQ(q.pop(), std::nullopt);
}

// A call queued behind as many calls of its own flow as the flow may still take children waits
// for the flow's cap, not for the pool, though the flow is below its cap at that moment.
TEST(FairQueue, ACallBehindItsOwnFlowsBacklogIsQueuedAtTheCap) {
  FairQueue q({.children_per_flow = 2, .queued_per_flow = 100, .queued_total = 1000});
  EXPECT_FALSE(q.push(flow("o", "slow"), 1).at_cap);
  EXPECT_FALSE(q.push(flow("o", "slow"), 2).at_cap);  // one child held or waited for: below 2
  EXPECT_TRUE(q.push(flow("o", "slow"), 3).at_cap);   // 2 ahead of it: it waits for the cap
  EXPECT_EQ(q.pop(), 1u);
  EXPECT_TRUE(q.push(flow("o", "slow"), 4).at_cap);  // 1 held + 2 waiting
  EXPECT_FALSE(q.push(flow("o", "other"), 5).at_cap);
}

TEST(FairQueue, CallersAreServedInTurnWhateverTheirNumberOfFlows) {
  FairQueue q({.children_per_flow = 0, .queued_per_flow = 100, .queued_total = 1000});
  // Caller a queues one call under each of 50 code variants; caller b one call.
  for (FairQueue::Ticket t = 1; t <= 50; ++t) {
    q.push({"a", t}, t);
  }
  q.push(flow("b", "fast"), 1000);
  std::vector<FairQueue::Ticket> order;
  for (int i = 0; i < 3; ++i) order.push_back(*q.pop());
  EXPECT_EQ(order, (std::vector<FairQueue::Ticket>{1, 1000, 2}));
}

TEST(FairQueue, RefusesBeyondItsBoundsPerFlowAndInTotal) {
  FairQueue q({.children_per_flow = 1, .queued_per_flow = 3, .queued_total = 5});
  for (FairQueue::Ticket t = 1; t <= 3; ++t) {
    EXPECT_EQ(q.push(flow("o", "slow"), t).admission, Admission::kQueued);
  }
  EXPECT_EQ(q.push(flow("o", "slow"), 4).admission, Admission::kFlowFull);
  EXPECT_EQ(q.push(flow("o", "other"), 5).admission, Admission::kQueued);
  EXPECT_EQ(q.push(flow("p", "other"), 6).admission, Admission::kQueued);
  EXPECT_EQ(q.push(flow("q", "third"), 7).admission, Admission::kTotalFull);
  EXPECT_EQ(q.pop(), 1u);  // a slow call has its child: one more may queue
  EXPECT_EQ(q.push(flow("o", "slow"), 8).admission, Admission::kQueued);
}

TEST(FairQueue, AWithdrawnCallIsNotServedAndItsRecordsGo) {
  FairQueue q({.children_per_flow = 1, .queued_per_flow = 10, .queued_total = 10});
  q.push(flow("o", "a"), 1);
  q.push(flow("o", "a"), 2);
  q.push(flow("o", "b"), 3);
  EXPECT_TRUE(q.remove(flow("o", "a"), 1));
  EXPECT_FALSE(q.remove(flow("o", "a"), 1));
  EXPECT_EQ(q.pop(), 2u);
  EXPECT_FALSE(q.remove(flow("o", "a"), 2));  // handed out: the caller releases its child
  EXPECT_TRUE(q.remove(flow("o", "b"), 3));
  EXPECT_FALSE(q.eligible());
  EXPECT_EQ(q.counts().flows, 1u);  // "a" still holds its child
  q.release(flow("o", "a"));
  q.release(flow("o", "a"));  // a second release of the same child changes nothing
  const FairQueue::Counts counts = q.counts();
  EXPECT_EQ(counts.flows, 0u);
  EXPECT_EQ(counts.held, 0u);
  EXPECT_EQ(counts.queued, 0u);
}

// Two users of one orchestrator, forwarded (X-Wikifunctions-Caller): their calls of the same
// code are two flows with a cap each, so one user's held children do not hold up the other's.
TEST(FairQueue, TheSameCodeOfTwoCallersIsTwoFlowsEachWithItsOwnCap) {
  FairQueue q({.children_per_flow = 1, .queued_per_flow = 10, .queued_total = 10});
  q.push(flow("fwd user:Alice", "sleep"), 1);
  q.push(flow("fwd user:Alice", "sleep"), 2);
  q.push(flow("fwd user:Bob", "sleep"), 3);
  EXPECT_EQ(q.pop(), 1u);
  EXPECT_EQ(q.pop(), 3u);  // Alice's flow is at its cap; Bob's is not
  EXPECT_EQ(q.pop(), std::nullopt);
  FairQueue::Counts counts = q.counts();
  EXPECT_EQ(counts.callers, 2u);
  EXPECT_EQ(counts.flows, 2u);
  EXPECT_EQ(counts.flows_at_cap, 2u);
  EXPECT_EQ(counts.queued_at_cap, 1u);
  q.release(flow("fwd user:Bob", "sleep"));
  EXPECT_EQ(q.counts().callers, 1u);
}

TEST(FairQueue, FlowsThatComeAndGoLeaveNothingBehind) {
  FairQueue q({.children_per_flow = 4, .queued_per_flow = 10, .queued_total = 100});
  for (std::uint64_t i = 0; i < 10000; ++i) {
    const FlowKey key{"caller" + std::to_string(i % 7), i};
    q.push(key, i);
    if (i % 2 == 0) {
      EXPECT_TRUE(q.remove(key, i));
    } else {
      EXPECT_EQ(q.pop(), i);
      q.release(key);
    }
  }
  const FairQueue::Counts counts = q.counts();
  EXPECT_EQ(counts.flows, 0u);
  EXPECT_EQ(counts.callers, 0u);
  EXPECT_EQ(counts.queued, 0u);
  EXPECT_FALSE(q.eligible());
  EXPECT_EQ(q.pop(), std::nullopt);
}

TEST(FairQueue, EveryQueuedCallIsServedOnceUnderRandomPushPopReleaseRemove) {
  FairQueue q({.children_per_flow = 3, .queued_per_flow = 50, .queued_total = 200});
  std::map<FairQueue::Ticket, FlowKey> queued, held;
  std::uint64_t state = 12345;
  auto next = [&state] {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return state >> 33;
  };
  FairQueue::Ticket ticket = 0;
  for (int step = 0; step < 20000; ++step) {
    switch (next() % 4) {
      case 0: {
        const FlowKey key{(next() % 2) ? "a" : "b", next() % 5};
        if (q.push(key, ++ticket).admission == Admission::kQueued) queued[ticket] = key;
        break;
      }
      case 1:
        if (auto t = q.pop()) {
          ASSERT_EQ(queued.count(*t), 1u);
          held[*t] = queued[*t];
          queued.erase(*t);
        } else {
          // Nothing eligible: every queued call's flow holds its cap.
          std::map<std::pair<std::string, std::uint64_t>, int> holding;
          for (const auto& [t2, key] : held) ++holding[{key.caller, key.code}];
          for (const auto& [t2, key] : queued) {
            ASSERT_GE((holding[{key.caller, key.code}]), 3);
          }
        }
        break;
      case 2:
        if (!held.empty()) {
          auto it = held.begin();
          q.release(it->second);
          held.erase(it);
        }
        break;
      default:
        if (!queued.empty()) {
          auto it = queued.begin();
          ASSERT_TRUE(q.remove(it->second, it->first));
          queued.erase(it);
        }
        break;
    }
    const FairQueue::Counts counts = q.counts();
    ASSERT_EQ(counts.queued, queued.size());
    ASSERT_EQ(counts.held, held.size());
  }
}

}  // namespace
}  // namespace wf::evaluator::sandbox_internal
