#include "wf/limits/admission.h"

#include <gtest/gtest.h>

#include <map>
#include <vector>

namespace wf::limits {
namespace {

using namespace std::chrono_literals;

AdmissionOptions options(int max_concurrency, std::size_t max_queue = 100) {
  AdmissionOptions o;
  o.max_concurrency = max_concurrency;
  o.max_queue = max_queue;
  o.max_queue_time = 1000ms;
  o.sweeper_thread = false;
  return o;
}

// Records what happened to each submitted call; keeps the slots of started calls. Declared before
// the Admission, so that it is still there when the Admission refuses what is queued at its end.
struct Recorder {
  std::vector<std::string> started;  // user of each started call, in order
  std::vector<std::pair<std::string, Reason>> refused;
  std::vector<Slot> slots;

  Work work(std::string user, double cost = 1) {
    Work w;
    w.user_key = user;
    w.class_name = "user";
    w.cost = cost;
    w.start = [this, user](Slot s) {
      started.push_back(user);
      slots.push_back(std::move(s));
    };
    w.refuse = [this, user](const Refusal& r) { refused.emplace_back(user, r.reason); };
    return w;
  }
  // Ends the oldest running call.
  void finish_one() {
    Slot s = std::move(slots.front());
    slots.erase(slots.begin());
  }
};

TEST(Admission, StartsAtOnceWhileThereIsRoom) {
  ManualClock clock;
  Recorder r;
  Admission a(options(2), clock);
  EXPECT_EQ(a.submit(r.work("u1")), 0u);
  EXPECT_EQ(a.submit(r.work("u2")), 0u);
  EXPECT_EQ(r.started.size(), 2u);
  EXPECT_NE(a.submit(r.work("u3")), 0u);  // queued
  EXPECT_EQ(a.stats().queued, 1u);
  r.finish_one();
  EXPECT_EQ(r.started.size(), 3u);
  EXPECT_EQ(a.stats().running, 2);
}

TEST(Admission, WaitingWorkIsServedRoundRobinAcrossUsers) {
  ManualClock clock;
  Recorder r;
  Admission a(options(1), clock);
  a.submit(r.work("blocker"));
  for (int i = 0; i < 6; ++i) a.submit(r.work("flood"));
  a.submit(r.work("polite"));
  a.submit(r.work("polite"));
  for (int i = 0; i < 8; ++i) r.finish_one();
  // The polite user's calls are not behind the flood: they alternate.
  const std::vector<std::string> expected = {"blocker", "flood", "polite", "flood", "polite",
                                             "flood",   "flood", "flood",  "flood"};
  EXPECT_EQ(r.started, expected);
}

TEST(Admission, HeavyUsersGetFewerTurnsThanLightOnes) {
  ManualClock clock;
  Recorder r;
  Admission a(options(1), clock);
  a.submit(r.work("blocker"));
  for (int i = 0; i < 20; ++i) a.submit(r.work("heavy", 20));
  for (int i = 0; i < 20; ++i) a.submit(r.work("light", 1));
  for (int i = 0; i < 20; ++i) r.finish_one();
  std::map<std::string, int> served;
  for (std::size_t i = 1; i < r.started.size(); ++i) ++served[r.started[i]];
  // Light calls cost 1, heavy ones 20: the heavy user's first call comes after about 20 light ones.
  EXPECT_GE(served["light"], 19);
  EXPECT_LE(served["heavy"], 1);
}

TEST(Admission, FullQueueRefusesAtOnceButMakesRoomForShorterQueues) {
  ManualClock clock;
  Recorder r;
  Admission a(options(1, 4), clock);
  a.submit(r.work("blocker"));
  for (int i = 0; i < 4; ++i) a.submit(r.work("flood"));
  a.submit(r.work("flood"));  // the flood's own fifth waits for nobody: refused
  ASSERT_EQ(r.refused.size(), 1u);
  EXPECT_EQ(r.refused[0], std::make_pair(std::string("flood"), Reason::kQueueFull));
  a.submit(r.work("polite"));  // takes the place of the flood's newest
  ASSERT_EQ(r.refused.size(), 2u);
  EXPECT_EQ(r.refused[1].first, "flood");
  EXPECT_EQ(a.stats().queued, 4u);
  for (int i = 0; i < 2; ++i) r.finish_one();
  EXPECT_EQ(r.started[2], "polite");
}

TEST(Admission, QueueTimeBudgetAndDeadlineRefuse) {
  ManualClock clock;
  Recorder r;
  Admission a(options(1), clock);
  a.submit(r.work("blocker"));
  a.submit(r.work("slow"));
  Work soon = r.work("deadline");
  soon.deadline = clock.steady() + 100ms;
  a.submit(std::move(soon));
  clock.advance(200ms);
  a.expire();
  ASSERT_EQ(r.refused.size(), 1u);
  EXPECT_EQ(r.refused[0], std::make_pair(std::string("deadline"), Reason::kQueueTimeout));
  clock.advance(900ms);
  a.expire();
  ASSERT_EQ(r.refused.size(), 2u);
  EXPECT_EQ(r.refused[1].second, Reason::kQueueTimeout);
  EXPECT_EQ(a.stats().queued, 0u);
}

TEST(Admission, CancelTakesQueuedWorkOutSilently) {
  ManualClock clock;
  Recorder r;
  Admission a(options(1), clock);
  a.submit(r.work("blocker"));
  const auto ticket = a.submit(r.work("gone"));
  ASSERT_NE(ticket, 0u);
  EXPECT_TRUE(a.cancel(ticket));
  EXPECT_FALSE(a.cancel(ticket));
  r.finish_one();
  EXPECT_EQ(r.started.size(), 1u);
  EXPECT_TRUE(r.refused.empty());
}

TEST(Admission, DrainRefusesQueuedAndNewWork) {
  ManualClock clock;
  Recorder r;
  Admission a(options(1), clock);
  a.submit(r.work("blocker"));
  a.submit(r.work("queued"));
  a.drain();
  a.submit(r.work("late"));
  ASSERT_EQ(r.refused.size(), 2u);
  EXPECT_EQ(r.refused[0].second, Reason::kDraining);
  EXPECT_EQ(r.refused[1].second, Reason::kDraining);
}

TEST(Admission, CallsThatEndInsideStartDoNotRecurse) {
  ManualClock clock;
  Admission a(options(1, 100000), clock);
  int done = 0;
  // A blocker holds the slot while 50,000 calls queue, each ending as soon as it starts.
  Slot blocker;
  Work first;
  first.user_key = "b";
  first.start = [&](Slot s) { blocker = std::move(s); };
  a.submit(std::move(first));
  for (int i = 0; i < 50000; ++i) {
    Work w;
    w.user_key = "u" + std::to_string(i % 7);
    w.start = [&](Slot s) {
      ++done;
      s.release();
    };
    a.submit(std::move(w));
  }
  blocker.release();
  EXPECT_EQ(done, 50000);
  EXPECT_EQ(a.stats().running, 0);
}

TEST(Admission, RaisingTheLimitStartsWaitingWork) {
  ManualClock clock;
  Recorder r;
  Admission a(options(1), clock);
  a.submit(r.work("a"));
  a.submit(r.work("b"));
  a.submit(r.work("c"));
  a.set_max_concurrency(3);
  EXPECT_EQ(r.started.size(), 3u);
}

TEST(Admission, CallsThatWouldWaitTooLongAreRefusedAtOnce) {
  ManualClock clock;
  Recorder r;
  Admission a(options(1), clock);  // queue-time budget 1 s
  // Calls hold their slot 100 ms: with one slot, the queue drains 10 calls per second.
  for (int i = 0; i < 3; ++i) {
    a.submit(r.work("warm"));
    clock.advance(100ms);
    r.finish_one();
  }
  a.submit(r.work("blocker"));
  for (int i = 0; i < 10; ++i) a.submit(r.work("flood"));  // the tenth starts after 1.0 s
  EXPECT_TRUE(r.refused.empty());
  a.submit(r.work("flood"));  // the eleventh would start after 1.1 s at best: refused now
  a.submit(r.work("flood"));
  ASSERT_EQ(r.refused.size(), 2u);
  EXPECT_EQ(r.refused[0], std::make_pair(std::string("flood"), Reason::kQueueTimeout));
  // Another user's first call goes ahead of most of the flood: it is queued.
  a.submit(r.work("polite"));
  EXPECT_EQ(r.refused.size(), 2u);
  EXPECT_EQ(a.stats().queued, 11u);
}

TEST(Admission, ValidateNamesTheOption) {
  AdmissionOptions o;
  o.max_concurrency = -1;
  auto bad = validate(o);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().find("admission_max_concurrency"), std::string::npos);
}

}  // namespace
}  // namespace wf::limits
