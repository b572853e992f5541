#include "wf/limits/gate.h"

#include <gtest/gtest.h>
#include <sched.h>

#include <initializer_list>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "wf/config/config.h"
#include "wf/limits/limits_config.h"

namespace wf::limits {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

GateOptions small_options() {
  GateOptions o;
  o.identity.trusted_user_peers = loopback();
  o.limiter.classes = {{.name = "anonymous", .rate = 1, .burst = 1, .concurrency = 1},
                       {.name = "user", .concurrency = 2, .cpu_ms = 100}};
  o.limiter.background_thread = false;
  o.admission.max_concurrency = 2;
  o.admission.sweeper_thread = false;
  return o;
}

TEST(Gate, AdmitsChargesAndRefusesWithTheReason) {
  ManualClock clock;
  // Declared before the gate: they outlive it (its end refuses what is still queued).
  std::vector<Refusal> refused;
  std::vector<Admitted> running;
  auto gate = Gate::create(small_options(), clock);
  ASSERT_TRUE(gate) << gate.error();
  const Identity alice = (*gate)->identify({"127.0.0.1", "alice", std::nullopt});
  auto start = [&](Admitted a) { running.push_back(std::move(a)); };
  auto refuse = [&](const Refusal& r) { refused.push_back(r); };
  for (int i = 0; i < 3; ++i) (*gate)->admit(alice, SteadyTime::max(), start, refuse);
  ASSERT_EQ(running.size(), 2u);
  ASSERT_EQ(refused.size(), 1u);
  EXPECT_EQ(refused[0].reason, Reason::kConcurrency);
  EXPECT_EQ(refused[0].class_name, "user");
  running[0].finish(150);  // over the 100 ms budget
  running.erase(running.begin());
  (*gate)->admit(alice, SteadyTime::max(), start, refuse);
  ASSERT_EQ(refused.size(), 2u);
  EXPECT_EQ(refused[1].reason, Reason::kCpu);
}

TEST(Gate, QueuedCallsHoldTheirUsersPlaceAndGiveItBackWhenRefused) {
  ManualClock clock;
  GateOptions o = small_options();
  o.admission.max_concurrency = 1;
  std::vector<Refusal> refused;
  std::vector<Admitted> running;
  auto gate = Gate::create(o, clock);
  ASSERT_TRUE(gate);
  const Identity bob = (*gate)->identify({"127.0.0.1", "bob", std::nullopt});
  auto start = [&](Admitted a) { running.push_back(std::move(a)); };
  auto refuse = [&](const Refusal& r) { refused.push_back(r); };
  (*gate)->admit(bob, SteadyTime::max(), start, refuse);
  const auto ticket = (*gate)->admit(bob, SteadyTime::max(), start, refuse);
  EXPECT_NE(ticket, 0u);
  EXPECT_EQ(running.size(), 1u);
  // Both of bob's places are taken (one running, one queued).
  (*gate)->admit(bob, SteadyTime::max(), start, refuse);
  ASSERT_EQ(refused.size(), 1u);
  EXPECT_EQ(refused[0].reason, Reason::kConcurrency);
  // Cancelling the queued one gives its place back.
  EXPECT_TRUE((*gate)->cancel(ticket));
  (*gate)->admit(bob, SteadyTime::max(), start, refuse);
  EXPECT_EQ(refused.size(), 1u);
}

TEST(Gate, DisabledAdmitsEverything) {
  GateOptions o = small_options();
  o.enabled = false;
  auto gate = Gate::create(o);
  ASSERT_TRUE(gate);
  const Identity anon = (*gate)->identify({"192.0.2.1", std::nullopt, std::nullopt});
  int started = 0;
  for (int i = 0; i < 50; ++i) {
    (*gate)->admit(
        anon, SteadyTime::max(), [&](Admitted) { ++started; }, [](const Refusal&) {});
  }
  EXPECT_EQ(started, 50);
}

TEST(Gate, ValidateNeedsLimitsForEveryClass) {
  GateOptions o = small_options();
  o.identity.rules.push_back({"bot", {"Bot:*"}, {}});
  auto bad = Gate::create(o);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().find("'bot'"), std::string::npos);
}

TEST(Gate, ApplyChangesLimitsAtRunTime) {
  ManualClock clock;
  auto gate = Gate::create(small_options(), clock);
  ASSERT_TRUE(gate);
  ASSERT_TRUE((*gate)->apply(json::parse(
      R"({"classes": [{"name": "user", "concurrency": 5}], "admission": {"max_concurrency": 9}})")));
  const json d = (*gate)->describe();
  EXPECT_EQ(d["classes"][1]["concurrency"], 5);
  EXPECT_EQ(d["classes"][1]["cpu_ms"], 100);  // untouched
  EXPECT_EQ(d["admission"]["max_concurrency"], 9);
  auto bad = (*gate)->apply(json::parse(R"({"classes": [{"name": "nobody", "rate": 1}]})"));
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().find("nobody"), std::string::npos);
  EXPECT_FALSE((*gate)->apply(json::parse(R"({"classes": [{"name": "user", "rate": -3}]})")));
  EXPECT_FALSE((*gate)->apply(json::parse(R"({"colour": "red"})")));
  EXPECT_EQ((*gate)->describe()["classes"][1]["concurrency"], 5);
}

TEST(Refusal, RendersStatusRetryAfterAndBody) {
  Refusal r;
  r.reason = Reason::kRate;
  r.class_name = "anonymous";
  r.limit = 5;
  r.retry_after = 1200ms;
  r.resets_at = WallTime{} + std::chrono::seconds(1767225600);
  const RefusalReply reply = render(r, false);
  EXPECT_EQ(reply.status, 429u);
  EXPECT_EQ(reply.retry_after, "2");
  const json body = json::parse(reply.body);
  EXPECT_EQ(body["type"], "limit_exceeded");
  EXPECT_EQ(body["limit"]["name"], "rate");
  EXPECT_EQ(body["limit"]["class"], "anonymous");
  EXPECT_EQ(body["retry_after_ms"], 1200);
  EXPECT_EQ(body["resets_at"], "2026-01-01T00:00:00.000Z");
  EXPECT_NE(body["detail"].get<std::string>().find("5 calls per second"), std::string::npos);

  r.reason = Reason::kQueueFull;
  r.retry_after = 10ms;
  const RefusalReply overload = render(r, false);
  EXPECT_EQ(overload.status, 503u);
  EXPECT_EQ(overload.retry_after, "1");
  EXPECT_EQ(json::parse(overload.body)["type"], "overloaded");
}

// The plain body as nlohmann::json built and dumped it until session 15: the body written by hand
// must give the same bytes.
std::string body_as_nlohmann(const Refusal& r) {
  const unsigned status = reason_status(r.reason);
  const json body = {
      {"status", status},
      {"type", status == 429 ? "limit_exceeded" : "overloaded"},
      {"title", status == 429 ? "Too Many Requests" : "Service Unavailable"},
      {"detail", describe(r)},
      {"limit",
       {{"name", reason_name(r.reason)},
        {"class", r.class_name},
        {"value", r.limit},
        {"shared", r.shared}}},
      {"retry_after_ms", r.retry_after.count()},
      {"resets_at", json::parse(render(r, false).body)["resets_at"]},
  };
  return body.dump();
}

TEST(Refusal, PlainBodyIsTheBytesNlohmannWrites) {
  const Reason reasons[] = {Reason::kRate,      Reason::kConcurrency,  Reason::kCpu,
                            Reason::kQueueFull, Reason::kQueueTimeout, Reason::kTooManyUsers,
                            Reason::kDraining};
  const std::string classes[] = {"anonymous", "", "bots \"trusted\" \\ a\tb\nc\b\f\x01\x1f\x7f",
                                 "Benutzer \xC3\xA4\xE2\x82\xAC\xF0\x9F\x98\x80"};
  const double limits[] = {5, 0.5, 1e-3, 12345.678, 1e21, 0};
  int checked = 0;
  for (const Reason reason : reasons) {
    for (const std::string& name : classes) {
      for (const double limit : limits) {
        Refusal r;
        r.reason = reason;
        r.class_name = name;
        r.limit = limit;
        r.retry_after = std::chrono::milliseconds(checked * 37);
        r.resets_at = WallTime{} + std::chrono::milliseconds(1767225600123 + checked);
        r.shared = checked % 2 == 1;
        ASSERT_EQ(render(r, false).body, body_as_nlohmann(r))
            << "class " << name << ", limit " << limit;
        ++checked;
      }
    }
  }
  EXPECT_EQ(checked, 7 * 4 * 6);
}

// nlohmann's dump throws on invalid UTF-8 (type_error 316): a class name that is not UTF-8 made a
// refusal throw. Now each invalid byte is U+FFFD and the body is JSON.
TEST(Refusal, ClassNameThatIsNotUtf8IsReplacedNotThrown) {
  Refusal r;
  r.reason = Reason::kConcurrency;
  r.class_name = "bad\xFF\xC3";
  r.limit = 8;
  RefusalReply reply;
  ASSERT_NO_THROW(reply = render(r, false));
  const json body = json::parse(reply.body);
  EXPECT_EQ(body["limit"]["class"], "bad\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(body["limit"]["name"], "concurrency");
  EXPECT_EQ(reply.status, 429u);
}

TEST(Refusal, EnvelopeIsAZ22WithAZ500) {
  Refusal r;
  r.reason = Reason::kCpu;
  r.class_name = "user";
  r.limit = 1000;
  const RefusalReply reply = render(r, true);
  EXPECT_EQ(reply.status, 429u);
  const json z22 = json::parse(reply.body);
  EXPECT_EQ(z22["Z1K1"], "Z22");
  EXPECT_EQ(z22["Z22K1"], "Z24");
  const std::string text = z22["Z22K2"].dump();
  EXPECT_NE(text.find("Z500"), std::string::npos);
  EXPECT_NE(text.find("CPU-time budget"), std::string::npos);
  EXPECT_NE(text.find("limitExceeded"), std::string::npos);
}

// A Z22 as the orchestrator answers it, whose metadata map holds `entries` (key, value).
std::string z22_with_metadata(std::initializer_list<std::pair<std::string, std::string>> entries) {
  std::string out =
      R"({"Z1K1":"Z22","Z22K1":"x","Z22K2":{"Z1K1":{"Z1K1":"Z7","Z7K1":"Z883"},"K1":["Z882")";
  for (const auto& [key, value] : entries) {
    out += R"(,{"Z1K1":"Z882","K1":")" + key + R"(","K2":")" + value + R"("})";
  }
  return out + "]}}";
}

TEST(ReportedCpu, SumsOrchestrationAndExecutionCpu) {
  const std::string z22 = z22_with_metadata({{"executionCpuUsage", "12.5 ms"},
                                             {"orchestrationCpuUsage", "3.25 ms"},
                                             {"orchestrationMemoryUsage", "30.1 MiB"}});
  EXPECT_DOUBLE_EQ(reported_cpu_ms(z22), 15.75);
  EXPECT_DOUBLE_EQ(reported_cpu_ms(R"({"Z22K1":"Z24"})"), 0);
  EXPECT_DOUBLE_EQ(reported_cpu_ms(R"({"K1":"executionCpuUsage","K2":"12)"), 0);
}

TEST(ReportedCpu, ACachedAnswerChargesOnlyItsOrchestration) {
  const std::string z22 = z22_with_metadata({{"executionCpuUsage", "12.5 ms"},
                                             {"orchestrationCpuUsage", "0.5 ms"},
                                             {"resultCache", "local"}});
  EXPECT_DOUBLE_EQ(reported_cpu_ms(z22), 0.5);
}

TEST(ReportedCpu, TheOrchestratorsTotalOfEvaluatorCpuCountsNestedCodeOnce) {
  // A composition whose code ran in an evaluator twice: the envelope carries the top-level
  // implementation's metadata (none here) and the orchestrator's total of every code call.
  const std::string z22 = z22_with_metadata(
      {{"orchestrationCpuUsage", "2 ms"}, {"orchestrationEvaluatorCpuUsage", "40.5 ms"}});
  EXPECT_DOUBLE_EQ(reported_cpu_ms(z22), 42.5);
  // A top-level code call: its executionCpuUsage is part of the total, not added to it.
  const std::string top = z22_with_metadata({{"executionCpuUsage", "12.5 ms"},
                                             {"orchestrationCpuUsage", "1 ms"},
                                             {"orchestrationEvaluatorCpuUsage", "12.5 ms"}});
  EXPECT_DOUBLE_EQ(reported_cpu_ms(top), 13.5);
}

TEST(LimitsConfig, DefaultsBuildAValidGate) {
  auto cfg = config::load(orchestrator_limit_options(), {},
                          [](const char*) -> const char* { return nullptr; });
  ASSERT_TRUE(cfg) << cfg.error();
  auto o = orchestrator_gate_options(*cfg);
  ASSERT_TRUE(o) << o.error();
  EXPECT_EQ(o->identity.user_header, "X-Wikifunctions-User");
  ASSERT_EQ(o->limiter.classes.size(), 3u);
  EXPECT_EQ(o->limiter.classes[1].name, "user");
  EXPECT_EQ(o->limiter.classes[1].concurrency, 8);
  // Adaptive, at most 256 calls in flight: calls waiting on an evaluator hold no thread, and the
  // in-flight bound falls to what the throughput needs only under congestion (docs/limits.md).
  EXPECT_EQ(o->admission.limit, LimitMode::kGradient);
  EXPECT_EQ(o->admission.max_concurrency, 256);
  // admission_cpus 0: the CPUs this process may run on (its affinity mask).
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(sched_getaffinity(0, sizeof set, &set), 0);
  EXPECT_EQ(o->admission.cpus, CPU_COUNT(&set));
  EXPECT_GE(o->admission.cpus, 1);
  EXPECT_EQ(o->limiter.classes[2].name, "local");
  EXPECT_EQ(o->limiter.classes[2].concurrency, 8);
  EXPECT_EQ(o->limiter.classes[2].rate, 0);
  auto gate = Gate::create(*o);
  ASSERT_TRUE(gate);
  // Loopback without a header is a local caller; with one, the named user; from elsewhere, an
  // anonymous address.
  EXPECT_EQ((*gate)->identify({"127.0.0.1", std::nullopt, std::nullopt}).class_name, "local");
  EXPECT_EQ((*gate)->identify({"127.0.0.1", "Alice", std::nullopt}).class_name, "user");
  EXPECT_EQ((*gate)->identify({"192.0.2.4", "Alice", std::nullopt}).class_name, "anonymous");
  EXPECT_EQ((*gate)->identify({"127.0.0.1", std::nullopt, "192.0.2.4"}).class_name, "anonymous");
}

TEST(LimitsConfig, ExtraClassesAndBadValuesNameTheFix) {
  auto env = [](const char* name) -> const char* {
    if (std::string_view(name) == "WF_LIMITS_CLASSES")
      return R"([{"name":"bot","users":["Bot:*"],"rate":50,"concurrency":16}])";
    return nullptr;
  };
  auto cfg = config::load(orchestrator_limit_options(), {}, env);
  ASSERT_TRUE(cfg);
  auto o = orchestrator_gate_options(*cfg);
  ASSERT_TRUE(o) << o.error();
  ASSERT_EQ(o->limiter.classes.size(), 4u);
  EXPECT_EQ(o->identity.rules[0].users[0], "Bot:*");

  auto bad_cidr =
      config::load(orchestrator_limit_options(), {"--limits-trusted-peers", "10.0.0.0/99"},
                   [](const char*) -> const char* { return nullptr; });
  ASSERT_TRUE(bad_cidr);
  auto err = orchestrator_gate_options(*bad_cidr);
  ASSERT_FALSE(err);
  EXPECT_NE(err.error().find("limits_trusted_peers"), std::string::npos);

  auto bad_json = config::load(orchestrator_limit_options(), {"--limits-classes", "[{\"name\":1}]"},
                               [](const char*) -> const char* { return nullptr; });
  ASSERT_TRUE(bad_json);
  EXPECT_FALSE(orchestrator_gate_options(*bad_json));
}

TEST(LimitsConfig, EvaluatorLimitsPerCallingOrchestrator) {
  auto cfg = config::load(evaluator_limit_options(), {"--limits-caller-concurrency", "2"},
                          [](const char*) -> const char* { return nullptr; });
  ASSERT_TRUE(cfg);
  auto o = evaluator_gate_options(*cfg);
  ASSERT_TRUE(o) << o.error();
  std::vector<Admitted> running;
  auto gate = Gate::create(*o);
  ASSERT_TRUE(gate);
  // The header means nothing to the evaluator: callers are addresses.
  const Identity a = (*gate)->identify({"127.0.0.1", "someone", std::nullopt});
  EXPECT_EQ(a.key, "ip:127.0.0.1");
  EXPECT_EQ(a.class_name, "caller");
  int refused = 0;
  for (int i = 0; i < 3; ++i) {
    (*gate)->admit(
        a, SteadyTime::max(), [&](Admitted x) { running.push_back(std::move(x)); },
        [&](const Refusal&) { ++refused; });
  }
  EXPECT_EQ(running.size(), 2u);
  EXPECT_EQ(refused, 1);
}

}  // namespace
}  // namespace wf::limits

namespace wf::limits {
namespace {

TEST(Gate, AdmitNowNeverQueues) {
  ManualClock clock;
  GateOptions o = small_options();
  o.admission.max_concurrency = 1;
  auto gate = Gate::create(o, clock);
  ASSERT_TRUE(gate);
  const Identity a = (*gate)->identify({"127.0.0.1", "a", std::nullopt});
  const Identity b = (*gate)->identify({"127.0.0.1", "b", std::nullopt});
  auto first = (*gate)->admit_now(a);
  ASSERT_TRUE(first);
  auto second = (*gate)->admit_now(b);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().reason, Reason::kQueueFull);
  EXPECT_EQ(reason_status(second.error().reason), 503u);
  first->finish(1);
  EXPECT_TRUE((*gate)->admit_now(b));
  // b's refused attempt did not keep its per-user place.
  EXPECT_TRUE((*gate)->admit_now(b));
}

}  // namespace
}  // namespace wf::limits
