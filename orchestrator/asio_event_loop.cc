#include "orchestrator/asio_event_loop.h"

#include <algorithm>
#include <boost/asio/defer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <utility>

#include "wf/http/server.h"

namespace wf::orchestrator {
namespace {

class AsioEventLoop final : public EventLoop {
 public:
  explicit AsioEventLoop(std::vector<boost::asio::io_context*> loops) : loops_(std::move(loops)) {}

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
  // The loop this thread runs, if it is one of ours: the server's thread-local pointer, set when
  // the loop thread started (one load, where a scan asked each loop's executor in turn).
  boost::asio::io_context* current() const {
    boost::asio::io_context* here = http::current_event_loop();
    if (here == nullptr) return nullptr;
    return std::find(loops_.begin(), loops_.end(), here) != loops_.end() ? here : nullptr;
  }

  std::vector<boost::asio::io_context*> loops_;
};

}  // namespace

std::shared_ptr<EventLoop> make_event_loop(std::vector<boost::asio::io_context*> loops) {
  return std::make_shared<AsioEventLoop>(std::move(loops));
}

}  // namespace wf::orchestrator
