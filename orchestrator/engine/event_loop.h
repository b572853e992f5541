#pragma once
// The engine's view of the service's event loop (the I/O threads the HTTP server and client run
// on), so that an evaluation whose I/O ends there can go on there instead of crossing to the CPU
// threads and back (fiber.h, Resume::kLoop). The service implements it over Asio; tests use any
// thread with a queue. Optional: without one, every slice after a park runs on the CPU threads.

#include <functional>

namespace wf::orchestrator {

class EventLoop {
 public:
  virtual ~EventLoop() = default;
  // True on a thread that runs the loop (inside one of its handlers).
  virtual bool running_in_this_thread() const = 0;
  // Runs `fn` on the loop after the current handler: when called from the loop, on the same
  // thread without waking another (Asio's defer); from elsewhere, as a post.
  virtual void defer(std::function<void()> fn) = 0;
};

}  // namespace wf::orchestrator
