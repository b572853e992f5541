// Cancellation of one request (ports.h).
#include "orchestrator/engine/ports.h"

namespace wf::orchestrator {

void Cancellation::request(Reason reason) {
  if (reason == Reason::kNone) return;
  Reason expected = Reason::kNone;
  if (!reason_.compare_exchange_strong(expected, reason, std::memory_order_acq_rel)) return;
  std::vector<std::pair<std::uint64_t, std::function<void()>>> hooks;
  {
    std::lock_guard lock(mu_);
    hooks.swap(hooks_);
  }
  for (auto& [token, hook] : hooks) hook();
}

std::uint64_t Cancellation::on_cancel(std::function<void()> hook) {
  {
    std::lock_guard lock(mu_);
    if (!requested()) {
      hooks_.emplace_back(next_, std::move(hook));
      return next_++;
    }
  }
  hook();
  return 0;
}

void Cancellation::remove(std::uint64_t token) {
  std::lock_guard lock(mu_);
  for (auto it = hooks_.begin(); it != hooks_.end(); ++it) {
    if (it->first == token) {
      hooks_.erase(it);
      return;
    }
  }
}

std::string_view reason_name(Cancellation::Reason reason) {
  static constexpr std::string_view kNames[] = {"none", "client_gone", "deadline", "shutdown"};
  return kNames[static_cast<int>(reason)];
}

}  // namespace wf::orchestrator
