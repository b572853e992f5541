#include "wf/service/admission.h"

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

namespace wf::service {

limits::CallerInfo caller_info(const http::Request& request, std::string_view user_header) {
  limits::CallerInfo caller;
  caller.peer = request.client_address;
  if (!user_header.empty()) caller.user_header = request.header(user_header);
  caller.forwarded_for = request.header("x-forwarded-for");
  return caller;
}

bool wants_envelope(const http::Request& request) {
  const auto v = request.header("x-wikifunctions-envelope");
  return v && !v->empty() && *v != "0" && *v != "false" && *v != "no";
}

http::Response refusal_response(const limits::Refusal& refusal, bool envelope) {
  limits::RefusalReply reply = limits::render(refusal, envelope);
  http::Response r = http::Response::json(reply.status, std::move(reply.body));
  r.content_type = "application/json; charset=utf-8";
  r.headers.push_back({"retry-after", std::move(reply.retry_after)});
  return r;
}

}  // namespace wf::service

namespace wf::service {

namespace {

constexpr auto kHoldRepeatedRefusal = std::chrono::milliseconds(200);
constexpr std::size_t kMaxHeld = 4096;

// Holds the 429s of callers who keep calling after one (refusal.repeated: they ignore Retry-After)
// for kHoldRepeatedRefusal before they are sent: a client that floods in a loop then costs five
// requests a second per connection instead of thousands, and the event loop stays with the others.
// The refusal itself is decided at once; a first refusal is answered at once. One thread; at most
// kMaxHeld answers held (beyond, they go at once); the held ones go at once when it ends.
class HeldReplies {
 public:
  HeldReplies() : thread_([this] { run(); }) {}
  ~HeldReplies() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  HeldReplies(const HeldReplies&) = delete;
  HeldReplies& operator=(const HeldReplies&) = delete;

  void hold(std::shared_ptr<http::AsyncRequest> ar, http::Response response) {
    {
      std::lock_guard lock(mu_);
      if (!stopping_ && held_.size() < kMaxHeld) {
        held_.push_back({std::chrono::steady_clock::now() + kHoldRepeatedRefusal, std::move(ar),
                         std::move(response)});
        cv_.notify_one();
        return;
      }
    }
    ar->respond(std::move(response));
  }

 private:
  struct Held {
    std::chrono::steady_clock::time_point due;
    std::shared_ptr<http::AsyncRequest> ar;
    http::Response response;
  };
  // All are held equally long: the front is due first.
  void run() {
    std::unique_lock lock(mu_);
    while (!stopping_) {
      if (held_.empty()) {
        cv_.wait(lock);
        continue;
      }
      if (std::chrono::steady_clock::now() < held_.front().due) {
        cv_.wait_until(lock, held_.front().due);
        continue;
      }
      Held h = std::move(held_.front());
      held_.pop_front();
      lock.unlock();
      h.ar->respond(std::move(h.response));
      lock.lock();
    }
    std::deque<Held> rest = std::move(held_);
    lock.unlock();
    for (Held& h : rest) h.ar->respond(std::move(h.response));
  }

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::deque<Held> held_;
  std::thread thread_;  // last: it starts once the rest is built
};

// Runs `handler` for an admitted call; its answer ends the admission (slot, user's place, CPU
// charge) before it goes to the client. The same request goes on (one per call, not a copy:
// bench/slow_calls, memory per in-flight call), carrying the caller's identity
// (http::Request::caller).
void start_admitted(const http::AsyncHandler& handler,
                    const std::shared_ptr<http::AsyncRequest>& ar, limits::Admitted admitted,
                    const std::string& caller) {
  auto held = std::make_shared<limits::Admitted>(std::move(admitted));
  ar->request.caller = caller;
  ar->before_answer(
      [held](http::Response& response) { held->finish(limits::reported_cpu_ms(response.body)); });
  handler(ar);
}

}  // namespace

http::AsyncHandler admitted_async(std::shared_ptr<limits::Gate> gate, http::AsyncHandler handler) {
  const std::string user_header = gate->user_header();
  auto held = std::make_shared<HeldReplies>();
  return [gate, handler = std::move(handler), user_header,
          held](std::shared_ptr<http::AsyncRequest> ar) {
    const limits::Identity who = gate->identify(caller_info(ar->request, user_header));
    const bool envelope = wants_envelope(ar->request);
    // While queued, the work's callbacks hold `waiting`; a hang-up takes the call out of the queue.
    // (The callbacks may run on another thread before admit() returns: hence the mutex.)
    struct Waiting {
      std::mutex mu;
      bool decided = false;
      http::Cancellation::Registration on_cancel;
      void done() {
        std::lock_guard lock(mu);
        decided = true;
        on_cancel.reset();
      }
    };
    auto waiting = std::make_shared<Waiting>();
    auto start = [handler, ar, waiting, caller = who.key](limits::Admitted admitted) {
      waiting->done();
      start_admitted(handler, ar, std::move(admitted), caller);
    };
    auto refuse = [ar, envelope, waiting, held](const limits::Refusal& refusal) {
      waiting->done();
      if (refusal.repeated) {
        held->hold(ar, refusal_response(refusal, envelope));
      } else {
        ar->respond(refusal_response(refusal, envelope));
      }
    };
    const std::uint64_t ticket =
        gate->admit(who, ar->request.deadline, std::move(start), std::move(refuse));
    if (ticket == 0 || !ar->cancel) return;
    auto registration =
        ar->cancel->on_cancel([gate, ticket](http::Cancellation::Reason) { gate->cancel(ticket); });
    std::lock_guard lock(waiting->mu);
    if (!waiting->decided) waiting->on_cancel = std::move(registration);
  };
}

void add_limits_admin_routes(http::Server& server, std::shared_ptr<limits::Gate> gate) {
  server.add_admin_route("GET", "/_admin/limits", "admin", [gate](const http::Request&) {
    return http::Response::json(200, gate->describe().dump());
  });
  server.add_admin_route("PUT", "/_admin/limits", "admin", [gate](const http::Request& req) {
    const auto body = nlohmann::json::parse(req.body, nullptr, false);
    if (auto ok = gate->apply(body); !ok) {
      return http::Response::error(400, "bad_request", ok.error());
    }
    return http::Response::json(200, gate->describe().dump());
  });
}

}  // namespace wf::service
