#include "wf/http/cancellation.h"

namespace wf::http {

struct Cancellation::Registration::State {
  std::mutex mu;
  std::condition_variable done;
  std::atomic<Reason> reason{Reason::kNone};
  std::map<std::uint64_t, std::function<void(Reason)>> callbacks;
  std::uint64_t next_id = 1;
  std::uint64_t running_id = 0;  // the callback cancel() runs now, 0 if none
  std::thread::id running_thread;

  void unregister(std::uint64_t id) {
    std::unique_lock lock(mu);
    if (callbacks.erase(id) > 0) return;
    // Running right now: wait unless it is this thread (a callback dropping its own registration).
    if (running_thread == std::this_thread::get_id()) return;
    done.wait(lock, [&] { return running_id != id; });
  }
};

Cancellation::Registration::Registration(std::weak_ptr<State> state, std::uint64_t id)
    : state_(std::move(state)), id_(id) {}

Cancellation::Registration::Registration(Registration&& other) noexcept
    : state_(std::move(other.state_)), id_(other.id_) {
  other.id_ = 0;
}

Cancellation::Registration& Cancellation::Registration::operator=(Registration&& other) noexcept {
  if (this != &other) {
    reset();
    state_ = std::move(other.state_);
    id_ = other.id_;
    other.id_ = 0;
  }
  return *this;
}

Cancellation::Registration::~Registration() {
  reset();
}

void Cancellation::Registration::reset() {
  if (id_ == 0) return;
  if (auto s = state_.lock()) s->unregister(id_);
  state_.reset();
  id_ = 0;
}

Cancellation::Cancellation() : state_(std::make_shared<Registration::State>()) {}

Cancellation::Reason Cancellation::reason() const {
  return state_->reason.load(std::memory_order_acquire);
}

bool Cancellation::cancel(Reason reason) {
  if (reason == Reason::kNone) return false;
  Registration::State& s = *state_;
  std::unique_lock lock(s.mu);
  if (s.reason.load() != Reason::kNone) return false;
  s.reason.store(reason, std::memory_order_release);
  s.running_thread = std::this_thread::get_id();
  while (!s.callbacks.empty()) {
    auto node = s.callbacks.extract(s.callbacks.begin());
    s.running_id = node.key();
    lock.unlock();
    node.mapped()(reason);
    lock.lock();
    s.running_id = 0;
    s.done.notify_all();
  }
  s.running_thread = {};
  return true;
}

Cancellation::Registration Cancellation::on_cancel(std::function<void(Reason)> callback) {
  Registration::State& s = *state_;
  {
    std::lock_guard lock(s.mu);
    if (s.reason.load() == Reason::kNone) {
      const std::uint64_t id = s.next_id++;
      s.callbacks.emplace(id, std::move(callback));
      return Registration(state_, id);
    }
  }
  callback(s.reason.load());
  return {};
}

std::string_view to_string(Cancellation::Reason reason) {
  static constexpr std::string_view kNames[] = {"none", "client_gone", "deadline", "shutdown",
                                                "abandoned"};
  return kNames[static_cast<int>(reason)];
}

}  // namespace wf::http
