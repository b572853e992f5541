#pragma once
// A per-request cancellation signal, shared by whoever works on the request: the server raises it
// when the client hangs up, the deadline passes or a drain runs out of time; handlers, the HTTP
// client and the sandbox register callbacks that abort their work. Thread-safe; no Asio here.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string_view>
#include <thread>

namespace wf::http {

class Cancellation {
 public:
  enum class Reason {
    kNone,        // not cancelled
    kClientGone,  // the client closed or reset its connection
    kDeadline,    // the request's deadline passed
    kShutdown,    // the server's drain ran out of time
    kAbandoned,   // the caller no longer needs the result (e.g. another branch answered)
  };

  // Unregisters its callback when destroyed (or reset). If the callback is running on another
  // thread at that moment, the destructor waits for it to return, so state the callback touches
  // may be destroyed right after the registration. (So do not drop a registration while holding
  // a lock its callback takes.)
  class Registration {
   public:
    Registration() = default;
    Registration(Registration&& other) noexcept;
    Registration& operator=(Registration&& other) noexcept;
    Registration(const Registration&) = delete;
    Registration& operator=(const Registration&) = delete;
    ~Registration();
    void reset();

   private:
    friend class Cancellation;
    struct State;
    Registration(std::weak_ptr<State> state, std::uint64_t id);
    std::weak_ptr<State> state_;
    std::uint64_t id_ = 0;
  };

  Cancellation();
  static std::shared_ptr<Cancellation> make() { return std::make_shared<Cancellation>(); }

  bool cancelled() const { return reason() != Reason::kNone; }
  Reason reason() const;
  // Raises the signal and runs the registered callbacks on this thread, each once (the server
  // raises it on the connection's strand: callbacks post their real work to their own executor).
  // Only the first call counts: returns false (and changes nothing) if already cancelled or
  // `reason` is kNone.
  bool cancel(Reason reason);
  // Runs `callback` once when cancelled; at once, on this thread, if already cancelled (then the
  // returned registration is empty). Callbacks must be quick and must not throw.
  [[nodiscard]] Registration on_cancel(std::function<void(Reason)> callback);

 private:
  std::shared_ptr<Registration::State> state_;
};

// "client_gone", "deadline", "shutdown", "abandoned", "none": metric label and log text.
std::string_view to_string(Cancellation::Reason reason);

}  // namespace wf::http
