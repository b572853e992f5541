#include "wf/service/admission.h"

#include <mutex>

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
  http::Response r =
      http::Response::refusal_with_body(reply.status, std::move(reply.body), refusal.retry_after);
  r.content_type = "application/json; charset=utf-8";
  return r;
}

}  // namespace wf::service

namespace wf::service {

namespace {

// A 429 to a caller who keeps calling after one (refusal.repeated: they ignore Retry-After) is
// sent this much later (a timer on the connection, no thread): a client that floods in a loop then
// costs five requests a second per connection instead of thousands, and the event loop stays with
// the others. The refusal itself is decided at once; a first refusal is answered at once.
constexpr auto kHoldRepeatedRefusal = std::chrono::milliseconds(200);

// An admitted call's admission, told by the work when it parks on I/O and resumes (the engine's
// fibers, the evaluator client: wf/io_wait.h). Those calls and the answer may come from different
// threads (a shutdown answers a call whose fiber is still parked): one lock orders them, and
// nothing after the answer touches the slot.
class HeldAdmission final : public IoWaitObserver {
 public:
  explicit HeldAdmission(limits::Admitted admitted) : admitted_(std::move(admitted)) {}
  void parked() override {
    std::lock_guard lock(mu_);
    if (!finished_) admitted_.slot.park();
  }
  void resumed() override {
    std::lock_guard lock(mu_);
    if (!finished_) admitted_.slot.resume();
  }
  void congested(std::chrono::nanoseconds waited) override {
    std::lock_guard lock(mu_);
    if (!finished_) admitted_.slot.add_congestion(waited);
  }
  // Ends the admission with the CPU the answer reports (read only when it is charged: the text
  // is scanned three times).
  void finish(std::string_view answer) {
    std::lock_guard lock(mu_);
    if (finished_) return;
    finished_ = true;
    admitted_.finish(admitted_.charges_cpu() ? limits::reported_cpu_ms(answer) : 0.0);
  }

 private:
  std::mutex mu_;
  bool finished_ = false;
  limits::Admitted admitted_;
};

// Runs `handler` for an admitted call; its answer ends the admission (slot, user's place, CPU
// charge) before it goes to the client. The same request goes on (one per call, not a copy:
// bench/slow_calls, memory per in-flight call), carrying the caller's identity
// (http::Request::caller) and the admission as the work's IoWaitObserver.
void start_admitted(const http::AsyncHandler& handler,
                    const std::shared_ptr<http::AsyncRequest>& ar, limits::Admitted admitted,
                    const std::string& caller) {
  auto held = std::make_shared<HeldAdmission>(std::move(admitted));
  ar->request.caller = caller;
  ar->request.io_wait = held;
  ar->before_answer([held](http::Response& response) { held->finish(response.body); });
  handler(ar);
}

}  // namespace

http::AsyncHandler admitted_async(std::shared_ptr<limits::Gate> gate, http::AsyncHandler handler) {
  const std::string user_header = gate->user_header();
  return [gate, handler = std::move(handler), user_header](std::shared_ptr<http::AsyncRequest> ar) {
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
    auto refuse = [ar, envelope, waiting](const limits::Refusal& refusal) {
      waiting->done();
      ar->respond_after(refusal.repeated ? kHoldRepeatedRefusal : std::chrono::milliseconds(0),
                        refusal_response(refusal, envelope));
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
