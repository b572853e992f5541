// wf::service::admitted_async: the gate in front of an asynchronous route, with fake requests.
#include <gtest/gtest.h>

#include <optional>
#include <vector>

#include "wf/service/admission.h"

namespace wf::service {
namespace {

using limits::Gate;
using limits::GateOptions;

struct Answered {
  std::vector<http::Response> responses;
};

std::shared_ptr<http::AsyncRequest> request(Answered& out, std::string user,
                                            std::shared_ptr<http::Cancellation> cancel = nullptr) {
  http::Request r;
  r.method = "POST";
  r.path = "/wikifunctions.org/v1/evaluate";
  r.client_address = "127.0.0.1";
  r.headers.push_back({"x-wikifunctions-user", std::move(user)});
  r.deadline = http::Clock::now() + std::chrono::seconds(30);
  if (!cancel) cancel = http::Cancellation::make();
  r.cancel = cancel;
  return std::make_shared<http::AsyncRequest>(std::move(r), cancel, [&out](http::Response resp) {
    out.responses.push_back(std::move(resp));
  });
}

std::shared_ptr<Gate> gate(int max_concurrency, int user_concurrency) {
  GateOptions o;
  o.identity.trusted_user_peers = limits::loopback();
  o.limiter.classes = {{.name = "anonymous"}, {.name = "user", .concurrency = user_concurrency}};
  o.limiter.background_thread = false;
  o.admission.max_concurrency = max_concurrency;
  o.admission.sweeper_thread = false;
  return std::shared_ptr<Gate>(std::move(*Gate::create(o)));
}

// A handler that keeps the requests it gets, to answer them later.
struct Held {
  std::vector<std::shared_ptr<http::AsyncRequest>> requests;
  http::AsyncHandler handler() {
    return [this](std::shared_ptr<http::AsyncRequest> r) { requests.push_back(std::move(r)); };
  }
  void answer(std::size_t i, std::string body = "{}") {
    requests[i]->respond(http::Response::json(200, std::move(body)));
  }
};

TEST(AdmittedAsync, RefusesWithStatusRetryAfterAndBody) {
  Answered out;
  Held held;
  auto g = gate(4, 1);
  auto route = admitted_async(g, held.handler());
  route(request(out, "alice"));
  route(request(out, "alice"));
  ASSERT_EQ(held.requests.size(), 1u);
  ASSERT_EQ(out.responses.size(), 1u);
  EXPECT_EQ(out.responses[0].status, 429u);
  bool retry_after = false;
  for (const auto& h : out.responses[0].headers) retry_after |= h.name == "retry-after";
  EXPECT_TRUE(retry_after);
  EXPECT_NE(out.responses[0].body.find("\"concurrency\""), std::string::npos);
  // The answer gives the place back.
  held.answer(0);
  ASSERT_EQ(out.responses.size(), 2u);
  EXPECT_EQ(out.responses[1].status, 200u);
  route(request(out, "alice"));
  EXPECT_EQ(held.requests.size(), 2u);
}

TEST(AdmittedAsync, QueuedCallsStartWhenASlotFreesAndCpuIsCharged) {
  Answered out;
  Held held;
  auto g = gate(1, 0);
  ASSERT_TRUE(g->apply(nlohmann::json::parse(R"({"classes":[{"name":"user","cpu_ms":10}]})")));
  auto route = admitted_async(g, held.handler());
  route(request(out, "bob"));
  route(request(out, "carol"));
  EXPECT_EQ(held.requests.size(), 1u);
  EXPECT_EQ(g->admission().stats().queued, 1u);
  // bob's call reports 12 ms of CPU: over his budget of 10.
  held.answer(0, R"({"K1":"executionCpuUsage","K2":"12 ms"})");
  ASSERT_EQ(held.requests.size(), 2u);  // carol's started
  held.answer(1);
  route(request(out, "bob"));
  ASSERT_EQ(out.responses.size(), 3u);
  EXPECT_EQ(out.responses[2].status, 429u);
  EXPECT_NE(out.responses[2].body.find("\"cpu\""), std::string::npos);
}

TEST(AdmittedAsync, HangingUpWhileQueuedLeavesTheQueue) {
  Answered out;
  Held held;
  auto g = gate(1, 0);
  auto route = admitted_async(g, held.handler());
  route(request(out, "dave"));
  auto cancel = http::Cancellation::make();
  route(request(out, "erin", cancel));
  EXPECT_EQ(g->admission().stats().queued, 1u);
  cancel->cancel(http::Cancellation::Reason::kClientGone);
  EXPECT_EQ(g->admission().stats().queued, 0u);
  held.answer(0);
  EXPECT_EQ(held.requests.size(), 1u);  // erin's call never started
}

}  // namespace
}  // namespace wf::service
