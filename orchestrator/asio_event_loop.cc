#include "orchestrator/asio_event_loop.h"

#include <algorithm>
#include <atomic>
#include <boost/asio/defer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <cstdint>
#include <utility>

#include "wf/http/server.h"

namespace wf::orchestrator {
namespace {

// Each AsioEventLoop's identity for the per-thread answer below: a number never reused (an
// address could be, by a later object).
std::atomic<std::uint64_t> g_next_id{1};

// What this thread's loop is to one AsioEventLoop (`owner`): the loop if it is one of its loops,
// else null. A loop thread runs one loop for its whole life (http::current_event_loop() is set
// when it starts), so the answer, found once by a scan of the loops, holds for the thread's life.
struct ThreadLoop {
  std::uint64_t owner = 0;
  boost::asio::io_context* loop = nullptr;
};
thread_local ThreadLoop t_loop;

class AsioEventLoop final : public EventLoop {
 public:
  explicit AsioEventLoop(std::vector<boost::asio::io_context*> loops)
      : loops_(std::move(loops)), id_(g_next_id.fetch_add(1, std::memory_order_relaxed)) {}

  bool running_in_this_thread() const override { return current() != nullptr; }

  // Asio's defer from a loop's thread queues `fn` on that loop, run after the current handler on
  // the same thread, with no wake-up; from any other thread it is a post to the first loop.
  void defer(std::function<void()> fn) override {
    if (boost::asio::io_context* here = current()) {
      boost::asio::defer(*here, std::move(fn));
    } else {
      boost::asio::post(*loops_.front(), std::move(fn));
    }
  }

 private:
  // The loop this thread runs, if it is one of ours: on every defer() a compare with the
  // thread's remembered answer; the loops are scanned once per thread (and again only when the
  // thread serves another AsioEventLoop in between, as in tests).
  boost::asio::io_context* current() const {
    if (t_loop.owner == id_) return t_loop.loop;
    boost::asio::io_context* here = http::current_event_loop();
    if (here != nullptr && std::find(loops_.begin(), loops_.end(), here) == loops_.end()) {
      here = nullptr;
    }
    t_loop = {id_, here};
    return here;
  }

  std::vector<boost::asio::io_context*> loops_;
  const std::uint64_t id_;
};

}  // namespace

std::shared_ptr<EventLoop> make_event_loop(std::vector<boost::asio::io_context*> loops) {
  return std::make_shared<AsioEventLoop>(std::move(loops));
}

}  // namespace wf::orchestrator
