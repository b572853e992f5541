#include "wf/limits/admission.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <map>
#include <random>
#include <tuple>
#include <utility>
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

AdmissionOptions with_budget(AdmissionOptions o, std::chrono::milliseconds max_queue_time) {
  o.max_queue_time = max_queue_time;
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
  // With one slot: three calls that held it 100 ms each (the queue drains 10 calls a second), then
  // a blocker that holds it and `floods` calls of "flood" behind it.
  void flood_behind_blocker(Admission& a, ManualClock& clock, int floods) {
    hold_in_turn(a, clock, 3, std::chrono::milliseconds(100));
    a.submit(work("blocker"));
    for (int i = 0; i < floods; ++i) a.submit(work("flood"));
  }
  // One call of each user, in order (each starts, queues or is refused).
  void submit_each(Admission& a, std::initializer_list<const char*> users) {
    for (const char* user : users) a.submit(work(user));
  }
  // `calls` calls of `user`, one after another, each holding its slot for `held`: what the queue's
  // drain is measured from.
  void hold_in_turn(Admission& a, ManualClock& clock, int calls, std::chrono::nanoseconds held,
                    const std::string& user = "warm") {
    for (int i = 0; i < calls; ++i) {
      a.submit(work(user));
      clock.advance(held);
      finish_one();
    }
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

// Start-time fair queuing: a user with nothing queued is served next (after the calls that start
// at the same virtual time), however heavy their calls; their following calls pay for it.
TEST(Admission, AUserWithNothingQueuedIsNextWhateverTheirCallsCost) {
  ManualClock clock;
  Recorder r;
  Admission a(options(1), clock);
  a.submit(r.work("blocker"));
  for (int i = 0; i < 10; ++i) a.submit(r.work("flood", 1));
  a.submit(r.work("heavy", 20));
  a.submit(r.work("heavy", 20));
  for (int i = 0; i < 12; ++i) r.finish_one();
  // By finish times its first call (0 + 20) would wait behind all ten light ones (1 ... 10).
  const std::vector<std::string> expected = {"blocker", "flood", "heavy", "flood", "flood",
                                             "flood",   "flood", "flood", "flood", "flood",
                                             "flood",   "flood", "heavy"};
  EXPECT_EQ(r.started, expected);
}

// A user's calls that started without waiting count too: the next call of a user who holds both
// slots starts after the first call of a user who holds none, though it was queued first.
TEST(Admission, AUserWithCallsRunningComesAfterOneWithNone) {
  ManualClock clock;
  Recorder r;
  Admission a(options(2), clock);
  r.submit_each(a, {"flood", "flood", "flood", "polite"});
  ASSERT_EQ(r.started.size(), 2u);
  EXPECT_EQ(a.stats().queued, 2u);
  r.finish_one();
  EXPECT_EQ(r.started.back(), "polite");
  r.finish_one();
  EXPECT_EQ(r.started.back(), "flood");
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
  r.submit_each(a, {"blocker", "slow"});
  Work soon = r.work("deadline");
  soon.deadline = clock.steady() + 100ms;
  a.submit(std::move(soon));
  clock.advance(200ms);
  a.expire();
  ASSERT_EQ(r.refused.size(), 1u);
  EXPECT_EQ(r.refused[0], std::make_pair(std::string("deadline"), Reason::kQueueTimeout));
  // The budget (1 s) decides on arrival; a call let in is refused only at twice it.
  clock.advance(900ms);
  a.expire();
  EXPECT_EQ(r.refused.size(), 1u);
  clock.advance(900ms);
  a.expire();
  ASSERT_EQ(r.refused.size(), 2u);
  EXPECT_EQ(r.refused[1].second, Reason::kQueueTimeout);
  EXPECT_EQ(a.stats().queued, 0u);
}

// Fixed: a queued call whose user has debt (its previous call runs) has nobody ahead of it, but
// calls of users without debt that arrive later go before it in the fair queue. Past half its
// queue-time budget (the wait it was let in for) it goes first: it is served, not passed by one
// newcomer after another until its budget runs out.
TEST(Admission, AFixedLimitsQueuedCallIsNotPassedPastItsWait) {
  ManualClock clock;
  Recorder r;
  Admission a(with_budget(options(1), 100ms), clock);
  r.submit_each(a, {"debtor", "debtor"});  // the first runs; the second queues behind its debt
  for (int i = 0; i < 8; ++i) {
    a.submit(r.work("u" + std::to_string(i)));  // no debt: before the debtor in the fair queue
    clock.advance(20ms);
    r.finish_one();
    a.expire();
  }
  EXPECT_TRUE(r.refused.empty());
  // u0 and u1 went before it; at 60 ms it was overdue (50 ms) and went first.
  ASSERT_GE(r.started.size(), 4u);
  EXPECT_EQ(r.started[1], "u0");
  EXPECT_EQ(r.started[2], "u1");
  EXPECT_EQ(r.started[3], "debtor");
}

// A call let in (nothing measured says it would wait long) whose slot is held past its budget by
// a slow call is served when the slot frees, not refused at the budget after it waited.
TEST(Admission, AQueuedCallIsServedPastItsBudget) {
  ManualClock clock;
  Recorder r;
  Admission a(with_budget(options(1), 100ms), clock);
  r.submit_each(a, {"slow", "queued"});
  clock.advance(150ms);
  a.expire();
  r.finish_one();
  EXPECT_TRUE(r.refused.empty());
  EXPECT_EQ(r.started, (std::vector<std::string>{"slow", "queued"}));
  EXPECT_EQ(a.stats().refused_after_wait, 0u);
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
  r.submit_each(a, {"blocker", "queued"});
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
  r.submit_each(a, {"a", "b", "c"});
  a.set_max_concurrency(3);
  EXPECT_EQ(r.started.size(), 3u);
}

TEST(Admission, CallsThatWouldWaitTooLongAreRefusedAtOnce) {
  ManualClock clock;
  Recorder r;
  Admission a(options(1), clock);  // queue-time budget 1 s: refused on arrival beyond half of it
  r.flood_behind_blocker(a, clock, 5);  // the fifth flood call starts after 0.5 s
  EXPECT_TRUE(r.refused.empty());
  a.submit(r.work("flood"));  // the sixth would start after 0.6 s at best: refused now
  a.submit(r.work("flood"));
  ASSERT_EQ(r.refused.size(), 2u);
  EXPECT_EQ(r.refused[0], std::make_pair(std::string("flood"), Reason::kQueueTimeout));
  EXPECT_EQ(a.stats().refused_on_arrival, 2u);
  EXPECT_EQ(a.stats().refused_after_wait, 0u);
  // Another user's first call goes ahead of most of the flood: it is queued.
  a.submit(r.work("polite"));
  EXPECT_EQ(r.refused.size(), 2u);
  EXPECT_EQ(a.stats().queued, 6u);
}

TEST(Admission, WithNobodyQueuedACallWaitsForTheNextSlot) {
  ManualClock clock;
  Recorder r;
  Admission a(options(1), clock);
  a.submit(r.work("slow"));
  clock.advance(5s);  // a call that holds its slot longer than the whole budget
  r.finish_one();
  a.submit(r.work("slow"));
  EXPECT_NE(a.submit(r.work("polite")), 0u);  // queued: it takes the next slot that frees
  EXPECT_TRUE(r.refused.empty());
  a.submit(r.work("other"));  // behind it, 5 s away: refused at once
  ASSERT_EQ(r.refused.size(), 1u);
  EXPECT_EQ(r.refused[0].first, "other");
}

TEST(Admission, AQueueThatDrainsSlowerThanCallsEndedIsSeenAtOnce) {
  ManualClock clock;
  Recorder r;
  Admission a(options(1), clock);  // queue-time budget 1 s: refused on arrival beyond half of it
  // Calls held their slot 1 ms: by Little's law alone the queue drains 1,000 calls a second.
  r.hold_in_turn(a, clock, 20, 1ms);
  // Then they become slow (the evaluator is saturated): the running call holds its slot 300 ms.
  a.submit(r.work("blocker"));
  a.submit(r.work("q1"));  // nobody was queued: it waits for the next slot
  clock.advance(300ms);
  r.finish_one();  // q1 starts, 300 ms after it was queued
  ASSERT_EQ(r.started.back(), "q1");
  a.submit(r.work("q2"));  // queued (nobody else is)
  EXPECT_TRUE(r.refused.empty());
  // Behind q2 and the running call: about 0.6 s at the drain just measured, over half the budget
  // (Little's law, with the average hold still near 30 ms, would expect 60 ms and queue it, to
  // time out after waiting).
  a.submit(r.work("q3"));
  ASSERT_EQ(r.refused.size(), 1u);
  EXPECT_EQ(r.refused[0], std::make_pair(std::string("q3"), Reason::kQueueTimeout));
  EXPECT_EQ(a.stats().refused_on_arrival, 1u);
  EXPECT_EQ(a.stats().queued, 1u);
  // The measure is forgotten once it is older than the budget: the same call, after a quiet
  // spell in which the queue did not move, is queued again (by Little's law alone).
  r.finish_one();  // q1 ends; q2 starts (the queue is empty)
  clock.advance(1500ms);
  a.submit(r.work("q4"));
  a.submit(r.work("q5"));
  EXPECT_EQ(r.refused.size(), 1u);
  EXPECT_EQ(a.stats().queued, 2u);
}

// A call's place in the queue is counted by virtual start times: a polite user beside a flood,
// whose waiting calls start after its own, expects to wait for the next free slot only (where a
// count of one call per other user put it behind the flood's next); the next call of anyone
// stands behind it.
TEST(Admission, APoliteUserIsNotCountedBehindTheFlood) {
  ManualClock clock;
  Recorder r;
  Admission a(options(1), clock);  // queue-time budget 1 s: refused on arrival beyond half of it
  r.flood_behind_blocker(a, clock, 4);  // the fourth flood call would start after 0.4 s
  ASSERT_TRUE(r.refused.empty());
  clock.advance(300ms);  // the calls became slow: the queue drained one call in 0.3 s
  r.finish_one();        // the flood's first starts; three of its calls wait
  ASSERT_EQ(r.started.back(), "flood");
  EXPECT_NE(a.submit(r.work("polite")), 0u);  // 0.3 s away: queued, before the flood's three
  EXPECT_TRUE(r.refused.empty());
  a.submit(r.work("other"));  // behind the polite call: 0.6 s away, refused
  ASSERT_EQ(r.refused.size(), 1u);
  EXPECT_EQ(r.refused[0], std::make_pair(std::string("other"), Reason::kQueueTimeout));
  r.finish_one();
  EXPECT_EQ(r.started.back(), "polite");
}

TEST(Admission, ACallThatWouldNotStartBeforeItsDeadlineIsRefusedAtOnce) {
  ManualClock clock;
  Recorder r;
  AdmissionOptions o = options(1);
  o.max_queue_time = 10s;  // the budget is not what refuses here
  Admission a(o, clock);
  r.hold_in_turn(a, clock, 3, 100ms);  // calls hold their slot 100 ms
  a.submit(r.work("blocker"));
  a.submit(r.work("q1"));
  // Behind q1 and the running call, it would start in about 200 ms and end 100 ms later.
  Work hurried = r.work("hurried");
  hurried.deadline = clock.steady() + 250ms;
  EXPECT_EQ(a.submit(std::move(hurried)), 0u);
  ASSERT_EQ(r.refused.size(), 1u);
  EXPECT_EQ(r.refused[0], std::make_pair(std::string("hurried"), Reason::kQueueTimeout));
  EXPECT_EQ(a.stats().refused_on_arrival, 1u);
  Work patient = r.work("patient");
  patient.deadline = clock.steady() + 5s;
  EXPECT_NE(a.submit(std::move(patient)), 0u);  // queued
  EXPECT_EQ(r.refused.size(), 1u);
  EXPECT_EQ(a.stats().queued, 2u);
}

AdmissionOptions gradient_options(int max_concurrency, int min_concurrency) {
  AdmissionOptions o = options(max_concurrency, 1000);
  o.limit = LimitMode::kGradient;
  o.min_concurrency = min_concurrency;
  o.window_calls = 4;
  o.window_time = 0ms;
  return o;
}

// A service that runs `parallel` calls at once in `base` each; more share it (each takes longer).
struct Service {
  int parallel;
  std::chrono::milliseconds base;
  std::chrono::nanoseconds held(int in_flight) const {
    return base * std::max(1, in_flight) / std::min(std::max(1, in_flight), parallel);
  }
};

// Runs `rounds` rounds of as many calls as the limit allows, all at once; returns the limit after.
int run_rounds(Admission& a, Recorder& r, ManualClock& clock, int rounds, const Service& service) {
  for (int round = 0; round < rounds; ++round) {
    const int in_flight = a.stats().max_concurrency;
    for (int i = 0; i < in_flight; ++i) a.submit(r.work("u" + std::to_string(i)));
    clock.advance(service.held(in_flight));
    r.slots.clear();  // all of them end
    r.started.clear();
    r.refused.clear();
  }
  return a.stats().max_concurrency;
}

TEST(AdmissionGradient, SettlesNearWhatTheServiceRunsAtOnce) {
  ManualClock clock;
  Recorder r;
  Admission a(gradient_options(64, 2), clock);
  EXPECT_EQ(a.stats().max_concurrency, 4);  // starts at twice the floor
  EXPECT_TRUE(a.stats().adaptive);
  // 8 calls at once take 10 ms; 16 take 20 ms: the limit stops where calls start to wait.
  const int limit = run_rounds(a, r, clock, 200, Service{8, 10ms});
  EXPECT_GE(limit, 8);
  EXPECT_LE(limit, 16);  // about where calls are 1.5x (the tolerance) slower than alone
  EXPECT_NEAR(a.stats().baseline_rtt_s, 0.010, 1e-6);
}

TEST(AdmissionGradient, ShrinksUnderInjectedLatencyAndRecovers) {
  ManualClock clock;
  Recorder r;
  Admission a(gradient_options(64, 2), clock);
  const int before = run_rounds(a, r, clock, 200, Service{8, 10ms});
  ASSERT_GE(before, 8);
  // The service slows down: only 2 calls at once take 10 ms, more wait for each other.
  const int slowed = run_rounds(a, r, clock, 200, Service{2, 10ms});
  EXPECT_LE(slowed, 4);
  EXPECT_GE(slowed, 2);
  EXPECT_GT(a.stats().recent_rtt_s, 0.010);
  // It recovers: the limit grows back.
  EXPECT_GE(run_rounds(a, r, clock, 200, Service{8, 10ms}), 8);
}

TEST(AdmissionGradient, CallsThatAreSlowerForGoodBecomeTheNewBaseline) {
  ManualClock clock;
  Recorder r;
  Admission a(gradient_options(64, 2), clock);
  ASSERT_GE(run_rounds(a, r, clock, 200, Service{8, 10ms}), 8);
  // Every call takes 40 ms now, however many run: at the floor the baseline learns it (enough
  // that 40 ms is within the tolerance), and the limit grows back to what the service runs at once.
  EXPECT_GE(run_rounds(a, r, clock, 300, Service{8, 40ms}), 8);
  EXPECT_GE(a.stats().baseline_rtt_s, 0.040 / 1.5 - 1e-6);
  EXPECT_LE(a.stats().baseline_rtt_s, 0.040 + 1e-6);
}

TEST(AdmissionGradient, AnUnusedLimitIsNotRaised) {
  ManualClock clock;
  Recorder r;
  Admission a(gradient_options(64, 4), clock);
  ASSERT_EQ(a.stats().max_concurrency, 8);
  // One call at a time, fast: nothing says more would be served as fast.
  for (int round = 0; round < 100; ++round) {
    a.submit(r.work("alone"));
    clock.advance(1ms);
    r.slots.clear();
  }
  EXPECT_EQ(a.stats().max_concurrency, 8);
}

TEST(AdmissionGradient, TheQueueIsHalfABaselineCall) {
  ManualClock clock;
  Recorder r;
  Admission a(gradient_options(64, 2), clock);
  run_rounds(a, r, clock, 10, Service{64, 100ms});  // baseline 100 ms
  const int limit = a.stats().max_concurrency;
  for (int i = 0; i < limit; ++i) a.submit(r.work("busy"));
  ASSERT_EQ(static_cast<int>(r.started.size()), limit);
  // The queue drains `limit` calls per 100 ms: a wait over 50 ms is refused on arrival.
  int queued = 0;
  for (int i = 0; i < 100 && r.refused.empty(); ++i) {
    if (a.submit(r.work("q" + std::to_string(i))) != 0) ++queued;
  }
  ASSERT_EQ(r.refused.size(), 1u);
  EXPECT_EQ(r.refused[0].second, Reason::kQueueTimeout);
  EXPECT_LE(queued, limit / 2 + 1);
  EXPECT_GE(queued, 1);
  EXPECT_EQ(a.stats().refused_on_arrival, 1u);
  // A queued call is served, however long the calls ahead take: it is refused only at the
  // queue-time budget (1 s here), not after two baseline calls (until session 10).
  clock.advance(500ms);
  a.expire();
  EXPECT_EQ(a.stats().queued, static_cast<std::size_t>(queued));
  r.finish_one();
  EXPECT_EQ(r.started.size(), static_cast<std::size_t>(limit + 1));
  EXPECT_EQ(a.stats().queued, static_cast<std::size_t>(queued - 1));
  clock.advance(501ms);
  a.expire();
  EXPECT_EQ(a.stats().queued, 0u);
  EXPECT_EQ(a.stats().refused_after_wait, static_cast<std::uint64_t>(queued - 1));
}

// A queued call that waited past what it was let in for (a baseline call, or what a call holds its
// slot now when that is longer; two of each until session 11) goes before the fair queue's order:
// calls of other users that arrive later do not push it back for ever.
TEST(AdmissionGradient, ACallPastItsExpectedWaitGoesFirst) {
  ManualClock clock;
  Recorder r;
  Admission a(gradient_options(64, 2), clock);
  run_rounds(a, r, clock, 10, Service{64, 100ms});  // baseline call 100 ms
  const int limit = std::min(a.stats().max_concurrency, a.stats().max_in_flight);
  for (int i = 0; i < limit - 1; ++i) a.submit(r.work("busy"));
  a.submit(r.work("other"));
  ASSERT_EQ(static_cast<int>(r.started.size()), limit);
  // With calls of its own just started, and no other user holding more, it is judged by its
  // wait: the calls in flight end a baseline call after they started, over half a baseline call
  // from now.
  EXPECT_EQ(a.submit(r.work("busy")), 0u);
  EXPECT_EQ(a.stats().refused_on_arrival, 1u);
  clock.advance(60ms);                      // now 40 ms from the next end: within half a call
  ASSERT_NE(a.submit(r.work("busy")), 0u);  // queued
  // Later, calls of users with nothing queued come before it in the fair queue (virtual start
  // times: "busy" has 5 calls' debt) as long as it is not overdue.
  clock.advance(10ms);
  ASSERT_NE(a.submit(r.work("fresh1")), 0u);
  r.finish_one();
  EXPECT_EQ(r.started.back(), "fresh1");
  ASSERT_NE(a.submit(r.work("fresh2")), 0u);
  clock.advance(150ms);  // 160 ms after it was queued: past one call (100 ms), not past two
  r.finish_one();
  EXPECT_EQ(r.started.back(), "busy");
  r.finish_one();
  EXPECT_EQ(r.started.back(), "fresh2");
  EXPECT_EQ(a.stats().refused_after_wait, 0u);
}

// A call queued with nobody ahead of it takes the next slot that frees; when the calls in their
// slots hold them longer than a baseline call (a busy machine, a flooder's calls), it waits for one
// of them to end (twice what a call holds its slot now) rather than two baseline calls: it was
// refused after waiting before one ended. A call behind it keeps the short wait.
TEST(AdmissionGradient, ACallWithNobodyAheadWaitsForTheNextSlotToFree) {
  ManualClock clock;
  Recorder r;
  Admission a(gradient_options(64, 2), clock);
  run_rounds(a, r, clock, 10, Service{64, 100ms});  // baseline call 100 ms
  run_rounds(a, r, clock, 3, Service{1, 100ms});    // then calls hold their slots 400 ms or more
  ASSERT_NEAR(a.stats().call_s, 0.100, 0.001);
  const int limit = std::min(a.stats().max_concurrency, a.stats().max_in_flight);
  for (int i = 0; i < limit; ++i) a.submit(r.work("busy"));
  ASSERT_EQ(static_cast<int>(r.started.size()), limit);
  ASSERT_NE(a.submit(r.work("polite")), 0u);  // nobody queued: it waits for the next slot
  clock.advance(250ms);                       // over two baseline calls
  a.expire();
  EXPECT_TRUE(r.refused.empty());
  EXPECT_EQ(a.stats().queued, 1u);
  r.finish_one();
  EXPECT_EQ(r.started.back(), "polite");
  EXPECT_EQ(a.stats().refused_after_wait, 0u);
}

// A call that finds nobody queued while its user's previous call started moments ago (their
// debt) is judged by its wait: the flooder's, whose calls hold the other places, is refused on
// arrival (the calls in flight end a baseline call after they started); the polite user's, who
// holds fewer places than the flooder, takes the next slot that frees.
TEST(AdmissionGradient, AUserWhoHoldsFewerPlacesIsNotJudgedByTheWait) {
  ManualClock clock;
  Recorder r;
  Admission a(gradient_options(64, 2), clock);
  run_rounds(a, r, clock, 10, Service{64, 100ms});  // baseline call 100 ms
  const int limit = std::min(a.stats().max_concurrency, a.stats().max_in_flight);
  ASSERT_GE(limit, 3);
  for (int i = 0; i < limit - 1; ++i) a.submit(r.work("flood"));
  a.submit(r.work("polite"));
  ASSERT_EQ(static_cast<int>(r.started.size()), limit);
  EXPECT_EQ(a.submit(r.work("flood")), 0u);
  ASSERT_EQ(r.refused.size(), 1u);
  EXPECT_EQ(r.refused[0], std::make_pair(std::string("flood"), Reason::kQueueTimeout));
  EXPECT_NE(a.submit(r.work("polite")), 0u);  // queued
  clock.advance(100ms);
  r.finish_one();
  EXPECT_EQ(r.started.back(), "polite");
  EXPECT_EQ(a.stats().refused_on_arrival, 1u);
  EXPECT_EQ(a.stats().refused_after_wait, 0u);
}

// A polite user's second call while its first is queued (two connections), beside a flooder
// that holds every place and has a call queued after both: no other user's call is ahead of it, and
// its user holds fewer places than the flooder, so it is not refused for its wait (judged by it,
// it was: its own first call ahead, and the calls in flight a baseline call from their end). Both
// polite calls start before the flooder's queued one.
TEST(AdmissionGradient, APoliteUsersSecondCallIsNotRefusedBesideAFlooder) {
  // The adaptive limit after rounds of calls of 100 ms (its baseline call).
  struct {
    ManualClock clock;
    Recorder r;
    Admission a{gradient_options(64, 2), clock};
  } rig;
  run_rounds(rig.a, rig.r, rig.clock, 10, Service{64, 100ms});
  Admission& a = rig.a;
  Recorder& r = rig.r;
  const int places = std::min(a.stats().max_concurrency, a.stats().max_in_flight);
  ASSERT_GE(places, 3);
  for (int i = 0; i <= places; ++i) a.submit(r.work("flood", 2));  // alone: one queued
  ASSERT_EQ(static_cast<int>(r.started.size()), places);
  ASSERT_EQ(a.stats().queued, 1u);
  EXPECT_NE(a.submit(r.work("polite", 1)), 0u);  // nobody ahead of it: queued
  EXPECT_NE(a.submit(r.work("polite", 1)), 0u);  // only its own first call ahead
  for (int i = 0; i < 2; ++i) {
    rig.clock.advance(10ms);
    r.finish_one();
  }
  ASSERT_EQ(static_cast<int>(r.started.size()), places + 2);
  EXPECT_EQ(r.started[places], "polite");
  EXPECT_EQ(r.started[places + 1], "polite");
  EXPECT_EQ(a.stats().refused_on_arrival + a.stats().refused_after_wait, 0u);
}

// A client alone that runs more calls at once than the bound (a batch of cases over a pool of
// connections) waits for its own calls to end: its calls are queued, not refused on arrival.
TEST(AdmissionGradient, AUserAloneQueuesBehindItsOwnCalls) {
  ManualClock clock;
  Recorder r;
  Admission a(gradient_options(64, 2), clock);
  run_rounds(a, r, clock, 10, Service{64, 100ms});  // baseline call 100 ms
  const int limit = std::min(a.stats().max_concurrency, a.stats().max_in_flight);
  for (int i = 0; i < limit; ++i) a.submit(r.work("batch"));
  ASSERT_EQ(static_cast<int>(r.started.size()), limit);
  EXPECT_NE(a.submit(r.work("batch")), 0u);
  EXPECT_TRUE(r.refused.empty());
  clock.advance(100ms);
  r.finish_one();
  EXPECT_EQ(static_cast<int>(r.started.size()), limit + 1);
  EXPECT_EQ(a.stats().refused_on_arrival + a.stats().refused_after_wait, 0u);
}

TEST(AdmissionGradient, RaisingTheCeilingKeepsTheLimitAndLoweringItCaps) {
  ManualClock clock;
  Recorder r;
  Admission a(gradient_options(64, 2), clock);
  a.set_max_concurrency(3);
  EXPECT_EQ(a.stats().max_concurrency, 3);
  EXPECT_EQ(a.stats().ceiling, 3);
  a.set_max_concurrency(100);
  EXPECT_EQ(a.stats().max_concurrency, 3);  // it grows from there as calls allow
  EXPECT_EQ(a.stats().ceiling, 100);
}

// Calls parked on I/O (Slot::park: a fiber waiting for the evaluator) leave the running count,
// so the next queued call starts; a parked call that resumes counts again at once, even over the
// limit, and is never refused mid-call.
TEST(AdmissionGradient, ParkedCallsLeaveTheRunningCountAndReenter) {
  ManualClock clock;
  Recorder r;
  Admission a(gradient_options(64, 2), clock);
  ASSERT_EQ(a.stats().max_concurrency, 4);
  for (int i = 0; i < 5; ++i) a.submit(r.work("u" + std::to_string(i)));
  ASSERT_EQ(r.started.size(), 4u);
  ASSERT_EQ(a.stats().queued, 1u);
  r.slots[0].park();
  r.slots[0].park();  // idempotent
  EXPECT_TRUE(r.slots[0].parked());
  EXPECT_EQ(r.started.size(), 5u);  // its running place went to the queued call
  EXPECT_EQ(a.stats().running, 4);
  EXPECT_EQ(a.stats().parked, 1);
  r.slots[0].resume();
  r.slots[0].resume();  // idempotent
  EXPECT_FALSE(r.slots[0].parked());
  EXPECT_EQ(a.stats().running, 5);  // over the limit of 4: it was admitted already
  EXPECT_EQ(a.stats().parked, 0);
  EXPECT_TRUE(r.refused.empty());
  // A call that ends parked gives back its in-flight place.
  r.slots[1].park();
  r.slots.clear();
  EXPECT_EQ(a.stats().running, 0);
  EXPECT_EQ(a.stats().parked, 0);
}

// The fixed limit counts a call from start to end, parked or not.
TEST(Admission, FixedLimitIgnoresParking) {
  ManualClock clock;
  Recorder r;
  Admission a(options(2), clock);
  r.submit_each(a, {"a", "b", "c"});
  r.slots[0].park();
  EXPECT_FALSE(r.slots[0].parked());
  EXPECT_EQ(r.started.size(), 2u);
  EXPECT_EQ(a.stats().running, 2);
  EXPECT_EQ(a.stats().parked, 0);
}

// Hundreds of calls parked for seconds on an evaluator do not hold the limit at its floor: fast
// calls beside them start at once, and the limit does not fall.
TEST(AdmissionGradient, SlowParkedCallsDoNotStopFastOnes) {
  ManualClock clock;
  Recorder r;
  Admission a(gradient_options(2000, 4), clock);
  std::vector<Slot> slow;
  for (int i = 0; i < 1000; ++i) {
    a.submit(r.work("slow" + std::to_string(i)));
    ASSERT_EQ(r.slots.size(), 1u) << i;  // started at once (nobody queued)
    clock.advance(100us);                // it runs a little, then waits for the evaluator
    r.slots.back().park();
    slow.push_back(std::move(r.slots.back()));
    r.slots.clear();
  }
  EXPECT_EQ(a.stats().parked, 1000);
  EXPECT_EQ(a.stats().running, 0);
  const int limit = a.stats().max_concurrency;
  for (int i = 0; i < 400; ++i) {
    ASSERT_EQ(a.submit(r.work("fast")), 0u) << i;  // never queued
    ASSERT_EQ(r.slots.size(), 1u);
    clock.advance(200us);
    r.slots.back().park();
    clock.advance(5ms);  // the evaluator answers
    r.slots.back().resume();
    clock.advance(100us);
    r.slots.clear();
  }
  EXPECT_EQ(r.started.size(), 1400u);
  EXPECT_TRUE(r.refused.empty());
  EXPECT_GE(a.stats().max_concurrency, limit);
  EXPECT_EQ(a.stats().max_in_flight, 2000);
  EXPECT_LT(a.stats().baseline_rtt_s, 0.001);  // what calls report: their runs, not their waits
  // The slow calls end after their 3 s: nothing was congested.
  clock.advance(3s);
  slow.clear();
  EXPECT_EQ(a.stats().parked, 0);
  EXPECT_EQ(a.stats().max_in_flight, 2000);
}

// Calls in flight, parked or not, stay under the ceiling (memory is bounded).
TEST(AdmissionGradient, ParkedCallsAreBoundedByTheCeiling) {
  ManualClock clock;
  Recorder r;
  Admission a(gradient_options(8, 2), clock);
  for (int i = 0; i < 8; ++i) {
    a.submit(r.work("u" + std::to_string(i)));
    r.slots.back().park();
  }
  EXPECT_EQ(a.stats().parked, 8);
  EXPECT_NE(a.submit(r.work("ninth")), 0u);  // queued: no running call, but 8 in flight
  EXPECT_EQ(r.started.size(), 8u);
  r.finish_one();  // one ends
  EXPECT_EQ(r.started.size(), 9u);
}

// Parked calls that report congestion (the evaluator's wait for a sandbox child) shrink the limit
// and bound the calls in flight, parked ones included; without congestion the bound grows back to
// the ceiling (after windows without congestion, or a second without any window).
TEST(AdmissionGradient, ReportedCongestionShrinksTheLimits) {
  ManualClock clock;
  Recorder r;
  AdmissionOptions o = gradient_options(256, 2);
  o.max_queue_time = 1ms;
  Admission a(o, clock);
  // Rounds of `n` calls offered at once, each running 1 ms and then parked for 10 ms on an
  // evaluator that runs `capacity` calls at once: the others wait for a child, 10 ms per
  // `capacity` calls ahead of them. Returns how many were in flight in the last round. Calls
  // beyond the limits are refused, not carried to the next round: each has a deadline of 1 ms
  // (a queued call is refused at twice the queue-time budget, 2 ms, or its deadline).
  auto rounds = [&](int count, int n, int capacity) {
    int in_flight = 0;
    for (int round = 0; round < count; ++round) {
      r.started.clear();
      r.refused.clear();
      for (int i = 0; i < n; ++i) {
        Work w = r.work("u" + std::to_string(i));
        w.deadline = clock.steady() + 1ms;
        a.submit(std::move(w));
      }
      std::vector<Slot> mine;
      clock.advance(1ms);
      // Each parks on the evaluator; calls queued behind the running limit start meanwhile.
      while (!r.slots.empty()) {
        std::vector<Slot> more = std::move(r.slots);
        r.slots.clear();
        for (Slot& s : more) {
          s.park();
          mine.push_back(std::move(s));
        }
      }
      in_flight = static_cast<int>(mine.size());
      const auto wait = 10ms * std::max(0, in_flight - capacity) / capacity;
      clock.advance(10ms + wait);
      a.expire();  // what is still queued waited too long
      for (Slot& s : mine) {
        s.resume();
        s.add_congestion(wait);
      }
      mine.clear();
    }
    return in_flight;
  };
  EXPECT_EQ(rounds(20, 64, 256), 64);  // not congested: all 64 in flight at once
  EXPECT_EQ(a.stats().max_in_flight, 256);
  // The evaluator runs 8 at once: calls in flight fall to about what it serves without a wait.
  const int congested = rounds(50, 64, 8);
  EXPECT_LE(congested, 16);
  EXPECT_GE(congested, 2);
  EXPECT_LE(a.stats().max_in_flight, 16);
  EXPECT_NEAR(a.stats().baseline_rtt_s, 0.001, 0.0005);  // its runs, not the congestion
  EXPECT_FALSE(r.refused.empty());
  // No more congestion: the bound grows back to the ceiling.
  rounds(50, 64, 256);
  EXPECT_EQ(a.stats().max_in_flight, 256);
  // And with no call ending, a second is enough for it to grow.
  rounds(50, 64, 8);
  const int low = a.stats().max_in_flight;
  ASSERT_LT(low, 256);
  for (int i = 0; i < 5; ++i) {
    clock.advance(1100ms);
    a.expire();
  }
  EXPECT_GT(a.stats().max_in_flight, low);
}

// The in-flight bound under congestion is what the evaluator serves (the calls in flight less those
// it says were waiting: Little's law) plus half as many waiting, at most halved per window: it does
// not fall below what the evaluator serves, whatever the wait.
TEST(AdmissionGradient, CongestedBoundIsWhatTheServiceServesPlusAFewWaiting) {
  ManualClock clock;
  Recorder r;
  AdmissionOptions o = gradient_options(256, 2);
  o.max_queue_time = 1ms;  // calls beyond the limits are refused, not carried to the next round
  o.window_calls = 64;     // one window per round of 64 calls
  Admission a(o, clock);
  // Rounds of 64 calls offered at once, each parked at once for 11 ms on an evaluator that serves
  // `capacity` at once (the others wait for a child, 10 ms per `capacity` calls ahead). Returns
  // how many were in flight.
  auto round = [&](int capacity) {
    r.started.clear();
    r.refused.clear();
    std::vector<Slot> mine;
    for (int i = 0; i < 64; ++i) {
      a.submit(r.work("u" + std::to_string(i)));
      for (Slot& s : r.slots) {
        s.park();
        mine.push_back(std::move(s));
      }
      r.slots.clear();
    }
    const int in_flight = static_cast<int>(mine.size());
    const auto wait = 10ms * std::max(0, in_flight - capacity) / capacity;
    clock.advance(11ms + wait);
    a.expire();
    for (Slot& s : mine) {
      s.resume();
      s.add_congestion(wait);
    }
    mine.clear();
    return in_flight;
  };
  for (int i = 0; i < 10; ++i) ASSERT_EQ(round(256), 64);  // no congestion: baselines learned
  EXPECT_EQ(a.stats().max_in_flight, 256);
  EXPECT_NEAR(a.stats().downstream_waiting, 0, 1e-9);
  // The evaluator serves 16 at once: 48 of 64 wait 30 ms of their 41 ms in flight, so 64 x 30/41
  // = 46.8 were waiting on average and 17.2 served; the bound would be 17.2 + 8.6, but falls by
  // half at most in one window.
  ASSERT_EQ(round(16), 64);
  EXPECT_NEAR(a.stats().downstream_waiting, 64.0 * 30 / 41, 0.01);
  EXPECT_EQ(a.stats().max_in_flight, 32);
  // Then it settles between what the throughput needs plus one (17-18 here: since session 9 the
  // tolerance no longer multiplies it) and 16 + 8, never under the 16 served.
  int lowest = 256;
  for (int i = 0; i < 30; ++i) lowest = std::min(lowest, round(16));
  EXPECT_GE(lowest, 16);
  EXPECT_LE(a.stats().max_in_flight, 28);
  EXPECT_GE(a.stats().max_in_flight, 17);
}

// A service that is busy before it says so: 4 sandbox children (a call reports a wait only when
// all 4 are taken) on 2 CPUs, so from 3 calls in flight each takes longer (they share the CPUs)
// with no wait reported. Each call parks at once on it and needs `work_ms` of CPU.
struct CpuBoundService {
  static constexpr auto kStep = 50us;
  ManualClock& clock;
  Recorder& r;
  Admission& a;
  double work_ms = 2;  // CPU time of a call
  // The CPUs one call uses when it has them (1: the call alone takes work_ms; a Python call alone
  // uses more than one: the child runs while the zygote forks the next one and the services
  // answer).
  double cpus_per_call = 1;
  double cost_ms = 1;  // the CPU a call is expected to use, as its user's calls report it
  struct Call {
    Slot slot;
    double work_left_ms = 0;
    std::chrono::nanoseconds waited{0};  // for a child
    SteadyTime arrived{};                // when it was offered (its wait in the queue counts)
    std::string user;
  };
  std::deque<Call> in_flight;     // the first 4 hold the children
  std::vector<double> held_ms;    // of each call that ended: from its arrival, queue included
  std::vector<double> queued_ms;  // of each call that started: its wait in the queue
  std::map<std::string, std::vector<double>> held_ms_of;  // by user
  std::map<std::string, int> done_of;                     // calls that ended, by user
  int done = 0;

  // One step of 50 us, a call offered first when `offer`.
  void step(bool offer) {
    if (offer) {
      step_offering({"u" + std::to_string(done % 16)});
    } else {
      step_offering({});
    }
  }
  // One step of 50 us, a call of each of `users` offered first.
  void step_offering(const std::vector<std::string>& users) {
    for (const std::string& user : users) a.submit(r.work(user, cost_ms));
    // The calls started since the last step, and their users (the last entries of r.started);
    // taken out first: parking one may start a queued call, which r.slots then receives.
    std::vector<Slot> started = std::move(r.slots);
    r.slots.clear();
    const std::vector<std::string> started_by(r.started.end() - static_cast<long>(started.size()),
                                              r.started.end());
    for (std::size_t i = 0; i < started.size(); ++i) {
      Slot& s = started[i];
      s.park();
      const SteadyTime arrived = clock.steady() - s.queued_for();
      queued_ms.push_back(std::chrono::duration<double, std::milli>(s.queued_for()).count());
      in_flight.push_back(Call{std::move(s), work_ms, {}, arrived, started_by[i]});
    }
    clock.advance(kStep);
    const std::size_t children = std::min<std::size_t>(4, in_flight.size());
    const double share =
        std::min(cpus_per_call, 2.0 / static_cast<double>(std::max<std::size_t>(1, children)));
    for (std::size_t i = 0; i < in_flight.size(); ++i) {
      if (i < children) {
        in_flight[i].work_left_ms -= share * 0.05;
      } else {
        in_flight[i].waited += kStep;
      }
    }
    for (auto it = in_flight.begin(); it != in_flight.end();) {
      if (it->work_left_ms > 1e-9) {
        ++it;
        continue;
      }
      it->slot.resume();
      it->slot.add_congestion(it->waited);
      const double ms =
          std::chrono::duration<double, std::milli>(clock.steady() - it->arrived).count();
      held_ms.push_back(ms);
      held_ms_of[it->user].push_back(ms);
      ++done_of[it->user];
      it->slot.release();
      it = in_flight.erase(it);
      ++done;
    }
  }
  // Unloaded: one call at a time.
  void alone(int calls) {
    for (int i = 0; i < calls; ++i) {
      step(true);
      while (!in_flight.empty()) step(false);
    }
  }
  // A call offered every 0.1 ms (10x what the service serves at 2 ms a call).
  void overload(std::chrono::milliseconds duration) {
    for (int i = 0; i < duration / kStep; ++i) step(i % 2 == 0);
  }
};

// The adaptive limit with the default windows in front of a CpuBoundService, whose baselines
// were learned from 100 calls run alone (2 ms each).
struct CpuBoundRig {
  // `cpus`: the service's CPUs as admission knows them (0: not known); the model has 2.
  static AdmissionOptions gradient(int cpus) {
    AdmissionOptions o = gradient_options(256, 2);
    o.window_calls = 16;
    o.window_time = 20ms;
    o.cpus = cpus;
    return o;
  }
  explicit CpuBoundRig(int cpus_known = 2, double cpus_per_call = 1)
      : CpuBoundRig(gradient(cpus_known), cpus_per_call) {}
  CpuBoundRig(const AdmissionOptions& o, double cpus_per_call) : a(o, clock) {
    // A call alone takes 2 ms whatever CPUs it uses.
    service.cpus_per_call = cpus_per_call;
    service.work_ms = 2 * cpus_per_call;
    service.alone(100);
  }
  ManualClock clock;
  Recorder r;
  Admission a;
  CpuBoundService service{clock, r, a};
};

// Calls are offered at 10x what the service serves. The in-flight bound follows what the
// throughput needs (its rate times a baseline call: Little's law, 2 calls here) and one at hand,
// not the 4 children plus a few waiting: goodput stays at what the service can do, and an
// accepted call's p99 is within 4x its unloaded time, its queue included. (Before session 8 the
// bound swung about 6 and an accepted call's p99 was 11.4 ms, 5.7x; with session 8's 1.5 x needed
// + 1 it was 4.0 on average, p50 4.2 ms; since session 9, needed + 1: 3.5, p50 4.05 ms, p99 7.4 ms
// with 31 calls refused after waiting; since session 10, when no queued call is refused for its
// wait and calls are refused on arrival from when the calls in flight end too: 3.5, p50 4.1 ms,
// p99 7.4 ms, none refused after waiting; since session 13, with the 2 CPUs known, one call per
// CPU while calls beyond them are slower: 2.1, p50 3.1 ms, p99 4.85 ms.)
TEST(AdmissionGradient, CongestedBoundFollowsWhatTheThroughputNeeds) {
  CpuBoundRig rig;
  Admission& a = rig.a;
  CpuBoundService& service = rig.service;
  service.overload(2000ms);
  const int done_before = service.done;
  service.held_ms.clear();
  double bound_sum = 0;
  int steps = 0;
  for (; steps < 20000; ++steps) {  // one second, measured
    service.step(steps % 2 == 0);
    bound_sum += a.stats().max_in_flight;
  }
  const double goodput = service.done - done_before;  // calls in that second
  std::sort(service.held_ms.begin(), service.held_ms.end());
  const double p99 = service.held_ms[service.held_ms.size() * 99 / 100];
  // The figures, in the test's XML report (--gtest_output=xml) rather than on the console.
  RecordProperty("goodput", static_cast<int>(goodput));
  RecordProperty("bound_x100", static_cast<int>(100 * bound_sum / steps));
  RecordProperty("p50_us", static_cast<int>(1000 * service.held_ms[service.held_ms.size() / 2]));
  RecordProperty("p99_us", static_cast<int>(1000 * p99));
  RecordProperty("refused_after_waiting", static_cast<int>(a.stats().refused_after_wait));
  EXPECT_GE(goodput, 900);
  EXPECT_LE(bound_sum / steps, 2.5);
  EXPECT_LE(p99, 3 * service.work_ms);
  EXPECT_GT(a.stats().refused_on_arrival, 0u);
  EXPECT_NEAR(a.stats().needed_in_flight, 2, 0.5);
}

// The service becomes three times slower during a sustained overload (the machine is shared, or
// the calls heavier): no call runs alone any more, so every 5 s the in-flight bound is one until a
// call has (a probe), and the baseline call learns the new time.
TEST(AdmissionGradient, AProbeRelearnsTheBaselineUnderASustainedOverload) {
  CpuBoundRig rig;
  Admission& a = rig.a;
  CpuBoundService& service = rig.service;
  service.overload(1000ms);
  EXPECT_NEAR(a.stats().call_s, 0.002, 0.0005);
  service.work_ms = 6;
  service.overload(12000ms);
  EXPECT_GE(a.stats().call_s, 0.004);
  EXPECT_NEAR(a.stats().needed_in_flight, 2, 0.5);
}

// One user floods (8 calls outstanding at all times, the per-user cap: each one ended or refused
// is offered again at once) beside a polite user (a call every 50 ms), for 12 s of a sustained
// overload: two probes for a call alone. The polite user's calls are never refused (each has
// nobody ahead of it in the fair queue, and a probe's wait for the calls in flight to end does not
// run out a queued call's wait), and wait little.
TEST(AdmissionGradient, APoliteUserBesideAFlooderIsServedThroughProbes) {
  CpuBoundRig rig;
  CpuBoundService& service = rig.service;
  Recorder& r = rig.r;
  int flood_offered = 0;
  std::map<std::string, long> refused;  // by user (r.refused is emptied as it is counted)
  const auto refused_of = [&](const std::string& user) {
    for (const auto& entry : r.refused) ++refused[entry.first];
    r.refused.clear();
    return refused[user];
  };
  const int steps = 12s / CpuBoundService::kStep;
  int polite_offered = 0;
  for (int i = 0; i < steps; ++i) {
    std::vector<std::string> offers;
    const auto outstanding = flood_offered - service.done_of["flood"] - refused_of("flood");
    for (auto n = outstanding; n < 8; ++n, ++flood_offered) offers.push_back("flood");
    if (i % 1000 == 0) {
      offers.push_back("polite");
      ++polite_offered;
    }
    service.step_offering(offers);
  }
  std::vector<double>& polite = service.held_ms_of["polite"];
  std::sort(polite.begin(), polite.end());
  RecordProperty("polite_p50_us", static_cast<int>(1000 * polite[polite.size() / 2]));
  RecordProperty("polite_p99_us", static_cast<int>(1000 * polite[polite.size() * 99 / 100]));
  RecordProperty("flood_done", service.done_of["flood"]);
  EXPECT_EQ(refused_of("polite"), 0);
  ASSERT_GE(polite.size(), static_cast<std::size_t>(polite_offered - 1));
  // It waits for the next place to free among the flooder's calls, then runs beside them.
  EXPECT_LE(polite[polite.size() * 99 / 100], 4 * service.work_ms);
  EXPECT_GE(service.done_of["flood"],
            11000);  // the service's 1,000 calls a second, less the polite
}

// The bench's overload shape: 16 users, each a Poisson stream, together 3x what the service
// serves (1,000 calls a second at 2 ms a call on 2 CPUs), for 5 s after the baselines. A call is
// refused on arrival or served: none is refused after it waited (a refusal after waiting costs
// the caller the wait, and made the in-server refusal p99 in session 9's runs); goodput stays at
// what the service serves, and an accepted call's p99, its queue included, within 4.5x a call alone
// (with session 9's rules: 33 refused after waiting, p99 8.6 ms; since session 10: none, 8.95 ms,
// its queue's p99 5.2 ms; since session 11, a queued call overdue after one baseline call rather
// than two: 7.85 ms, its queue's p99 4.05 ms; since session 13, with the 2 CPUs known: 5.55 ms,
// its queue's p99 3.15 ms, served 4,936 of 5,000 against 4,982).
// What 16 Poisson users, together 3x `capacity` calls a second, got from `rig` in 5 s after 1 s
// for the bounds to settle: the calls offered and served, refused on arrival and after waiting,
// an accepted call's p99 (its queue included) and its queue's p99.
struct PoissonOverload {
  int offered = 0;
  int served = 0;
  std::uint64_t refused_on_arrival = 0;
  std::uint64_t refused_after_wait = 0;
  double p99_ms = 0;
  double queue_p99_ms = 0;
};
PoissonOverload at_three_times(CpuBoundRig& rig, double capacity) {
  Admission& a = rig.a;
  CpuBoundService& service = rig.service;
  std::mt19937_64 random(8);
  constexpr int kUsers = 16;
  const double per_step = 3.0 * capacity / kUsers * 0.00005;  // each user's calls per 50 us step
  std::exponential_distribution<double> gap(per_step);        // steps between a user's calls
  std::vector<double> due(kUsers);
  for (double& d : due) d = gap(random);
  const int warm = 1s / CpuBoundService::kStep;  // the bounds settle (not measured)
  const int steps = warm + 5s / CpuBoundService::kStep;
  PoissonOverload out;
  int done_before = 0;
  for (int i = 0; i < steps; ++i) {
    if (i == warm) {
      out.offered = 0;
      service.held_ms.clear();
      service.queued_ms.clear();
      done_before = service.done;
      out.refused_on_arrival = a.stats().refused_on_arrival;
      out.refused_after_wait = a.stats().refused_after_wait;
    }
    std::vector<std::string> offers;
    for (int u = 0; u < kUsers; ++u) {
      for (; due[u] <= i; due[u] += gap(random), ++out.offered)
        offers.push_back("u" + std::to_string(u));
    }
    service.step_offering(offers);
    if (i % 100 == 0) a.expire();  // the sweeper, every 5 ms
  }
  out.served = service.done - done_before;
  out.refused_on_arrival = a.stats().refused_on_arrival - out.refused_on_arrival;
  out.refused_after_wait = a.stats().refused_after_wait - out.refused_after_wait;
  std::vector<double>& held = service.held_ms;
  std::sort(held.begin(), held.end());
  out.p99_ms = held[held.size() * 99 / 100];
  std::vector<double>& queued = service.queued_ms;
  std::sort(queued.begin(), queued.end());
  out.queue_p99_ms = queued[queued.size() * 99 / 100];
  // The figures, in the test's XML report (--gtest_output=xml) rather than on the console.
  ::testing::Test::RecordProperty("offered", out.offered);
  ::testing::Test::RecordProperty("served", out.served);
  ::testing::Test::RecordProperty("refused_on_arrival", static_cast<int>(out.refused_on_arrival));
  ::testing::Test::RecordProperty("refused_after_waiting",
                                  static_cast<int>(out.refused_after_wait));
  ::testing::Test::RecordProperty("p99_us", static_cast<int>(1000 * out.p99_ms));
  ::testing::Test::RecordProperty("queue_p99_us", static_cast<int>(1000 * out.queue_p99_ms));
  return out;
}

TEST(AdmissionGradient, AtThreeTimesCapacityNoCallIsRefusedAfterWaiting) {
  CpuBoundRig rig;
  const PoissonOverload o = at_three_times(rig, 1000);
  EXPECT_EQ(o.refused_after_wait, 0u);
  EXPECT_GE(o.served, 4500);  // 90% of the 5,000 calls the service can serve in 5 s
  EXPECT_GE(o.refused_on_arrival, static_cast<std::uint64_t>(o.offered - o.served - 100));
  EXPECT_LE(o.p99_ms, 3.25 * rig.service.work_ms);
  // Its queue's share: a queued call stops giving way to later calls after one baseline call
  // (5.2 ms with two, session 10).
  EXPECT_LE(o.queue_p99_ms, 1.75 * rig.service.work_ms);
}

// A fixed limit of 2 with a queue-time budget of 5 ms (bench/overload's sweep: the small budgets
// that met goodput and the accepted p99 at 3x refused 39-320 calls a second after waiting). A
// queued call is served: the calls that would wait too long are refused on arrival. (Until
// session 18: 549 of 15,204 refused after waiting, the queue's p99 4.3 ms, an accepted call's 6.3;
// a queued call going first past half its budget: 6, 4.0 and 6.0 ms; refused only at twice the
// budget: none, 4.0 and 6.0 ms.)
TEST(Admission, AtThreeTimesCapacityASmallBudgetRefusesOnArrival) {
  CpuBoundRig rig(with_budget(options(2, 1000), 5ms), 1);
  const PoissonOverload p = at_three_times(rig, 1000);
  EXPECT_EQ(p.refused_after_wait, 0u);
  EXPECT_GE(p.served, 4500);
  EXPECT_LE(p.queue_p99_ms, 5);
}

// The same with calls that use 2 CPUs each when alone (500 calls a second at one or two in
// flight): one call runs at a time (two every 8 windows, to see whether they gain), goodput stays
// at 90% of what the service serves, and an accepted call's p99, its queue included, is 7.65 ms
// against 10.65 ms with the bound at two (the queue's p99 4.6 against 6.15 ms; served 2,476
// against 2,489). Its queue: a call that gives way to calls of users with less debt waits up to
// a baseline call before it goes first, and then for the call in its slot.
TEST(AdmissionGradient, AtThreeTimesCapacityCallsThatUseBothCpusRunOneAtATime) {
  CpuBoundRig rig(2, 2);
  const PoissonOverload o = at_three_times(rig, 500);
  EXPECT_EQ(o.refused_after_wait, 0u);
  EXPECT_GE(o.served, 2250);  // 90% of the 2,500 calls the service can serve in 5 s
  EXPECT_LE(o.p99_ms, 4 * 2.0);
  EXPECT_LE(o.queue_p99_ms, 5);
}

// Runs `rig` at 10x for 2 s, then measures 1 s: the calls that ended, the in-flight bound's mean
// over the steps, an accepted call's p50 and p99 (its queue included); with `record`, also in the
// test's XML report (--gtest_output=xml).
std::tuple<int, double, double, double> measure_at_ten_times(CpuBoundRig& rig,
                                                             bool record = false) {
  rig.service.overload(2000ms);
  const int done_before = rig.service.done;
  rig.service.held_ms.clear();
  double bound_sum = 0;
  const int steps = 1s / CpuBoundService::kStep;
  for (int i = 0; i < steps; ++i) {
    rig.service.step(i % 2 == 0);
    bound_sum += rig.a.stats().max_in_flight;
  }
  std::vector<double>& held = rig.service.held_ms;
  std::sort(held.begin(), held.end());
  const int done = rig.service.done - done_before;
  const double bound = bound_sum / steps;
  const double p50 = held[held.size() / 2];
  const double p99 = held[held.size() * 99 / 100];
  if (record) {
    ::testing::Test::RecordProperty("goodput", done);
    ::testing::Test::RecordProperty("bound_x100", static_cast<int>(100 * bound));
    ::testing::Test::RecordProperty("p50_us", static_cast<int>(1000 * p50));
    ::testing::Test::RecordProperty("p99_us", static_cast<int>(1000 * p99));
  }
  return {done, bound, p50, p99};
}

// The same 10x overload with the CPUs known and not known: known, the in-flight bound is one
// call per CPU while the calls beyond them are slower (it tries one more every 8 windows), and an
// accepted call takes less time for the same goodput; not known, it is what the throughput
// needs plus one at hand (3-4 calls sharing the 2 CPUs, as before session 13).
TEST(AdmissionGradient, WithTheCpusKnownCallsBeyondThemAreHeldBack) {
  const auto run = [](int cpus) {
    CpuBoundRig rig(cpus);
    return measure_at_ten_times(rig);
  };
  const auto [done_unknown, bound_unknown, p50_unknown, p99_unknown] = run(0);
  const auto [done_known, bound_known, p50_known, p99_known] = run(2);
  RecordProperty("bound_x100_unknown", static_cast<int>(100 * bound_unknown));
  RecordProperty("bound_x100_known", static_cast<int>(100 * bound_known));
  RecordProperty("p99_us_unknown", static_cast<int>(1000 * p99_unknown));
  RecordProperty("p99_us_known", static_cast<int>(1000 * p99_known));
  EXPECT_GT(bound_unknown, 3);
  EXPECT_LT(bound_known, 2.5);
  EXPECT_GE(done_known, done_unknown - 20);  // the same goodput, within 2%
  EXPECT_LT(p50_known, p50_unknown);
  EXPECT_LT(p99_known, p99_unknown);
}

// Calls that use 2 CPUs each when alone (a Python call alone uses more than one: its child runs
// while the zygote forks the next one and the services answer): at 2 in flight each takes 4 ms
// instead of 2, and the service serves 500 calls a second either way. The second call buys
// nothing but twice the time of every call: the in-flight bound is one call (it tries two every
// 8 windows), and an accepted call takes about what it takes alone, its queue included.
TEST(AdmissionGradient, WhenASecondCallBuysNothingOneRunsAtATime) {
  CpuBoundRig rig(2, 2);
  const auto [done, bound, p50, p99] = measure_at_ten_times(rig, true);
  EXPECT_LT(bound, 1.3);
  EXPECT_GE(done, 450);  // 90% of the 500 calls a second the service serves
  EXPECT_LT(p50, 4);     // a call at 2 in flight takes 4 ms without its queue
  EXPECT_LT(p99, 6);
  EXPECT_EQ(rig.a.stats().refused_after_wait, 0u);
}

// The same service, but its calls report almost no CPU (0.1 ms for a call of 2 ms alone: they
// seem to wait on something else, a slow evaluator or wiki, where a second call should gain):
// the bound is not taken to one on one window's word, it stays at two.
TEST(AdmissionGradient, CallsThatReportLittleCpuAreNotHeldToOne) {
  CpuBoundRig rig(2, 2);
  rig.service.cost_ms = 0.1;
  const auto [done, bound, p50, p99] = measure_at_ten_times(rig, true);
  EXPECT_GT(bound, 1.8);
  EXPECT_GE(done, 450);
}

// Calls that use 1.5 CPUs each when alone: at 2 in flight each takes 3 ms instead of 2, and the
// service serves 667 calls a second against 500 one at a time. The second call is worth it: the
// bound stays at two (one per CPU).
TEST(AdmissionGradient, WhenASecondCallBuysThroughputTwoRun) {
  CpuBoundRig rig(2, 1.5);
  const auto [done, bound, p50, p99] = measure_at_ten_times(rig, true);
  EXPECT_GT(bound, 1.8);
  EXPECT_GE(done, 600);  // 90% of 667
}

// Calls beyond the CPUs that are not slower (they wait on other work than CPU: here each is
// parked 8 ms on a downstream service with room for all, and uses no CPU of the service) do not
// hold the bound at the CPUs: it grows past them while calls are held back.
TEST(AdmissionGradient, CallsBeyondTheCpusThatAreNotSlowerAreLetIn) {
  ManualClock clock;
  Recorder r;
  AdmissionOptions o = gradient_options(64, 2);
  o.cpus = 2;
  o.window_calls = 16;
  o.window_time = 20ms;
  Admission a(o, clock);
  std::deque<std::pair<SteadyTime, Slot>> in_flight;  // each ends 8 ms after it started
  int started = 0;
  const auto step = [&](int offers) {
    for (int i = 0; i < offers; ++i) a.submit(r.work("u" + std::to_string(i % 16)));
    for (Slot& s : r.slots) {
      s.park();
      in_flight.emplace_back(clock.steady(), std::move(s));
      ++started;
    }
    r.slots.clear();
    clock.advance(100us);
    while (!in_flight.empty() && clock.steady() - in_flight.front().first >= 8ms) {
      Slot s = std::move(in_flight.front().second);
      in_flight.pop_front();
      s.resume();
      s.release();  // may start a queued call: r.slots, taken at the next step
    }
    if (clock.steady().time_since_epoch() % 5ms < 100us) a.expire();
  };
  for (int i = 0; i < 200; ++i) step(i % 80 == 0 ? 1 : 0);  // calls alone: the baseline, 8 ms
  for (int i = 0; i < 20000; ++i) step(1);                  // 2 s of 10,000 calls a second
  // 8 ms a call and 10,000 a second need 80 in flight: the bound stays near its ceiling of 64
  // (16,000 started), not held at the 2 CPUs (which would serve 250 a second).
  EXPECT_GT(a.stats().max_in_flight, 16);
  EXPECT_GT(started, 15 * 1000);
}

TEST(AdmissionGradient, ParseAndValidateNameTheOptions) {
  EXPECT_EQ(parse_limit_mode("gradient"), LimitMode::kGradient);
  EXPECT_EQ(parse_limit_mode("fixed"), LimitMode::kFixed);
  auto bad = parse_limit_mode("aimd");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().find("admission_limit"), std::string::npos);
  AdmissionOptions o = gradient_options(8, 9);
  auto invalid = validate(o);
  ASSERT_FALSE(invalid);
  EXPECT_NE(invalid.error().find("admission_min_concurrency"), std::string::npos);
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
