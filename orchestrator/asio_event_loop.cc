#include "orchestrator/asio_event_loop.h"

#include <boost/asio/defer.hpp>
#include <boost/asio/io_context.hpp>
#include <utility>

namespace wf::orchestrator {
namespace {

class AsioEventLoop final : public EventLoop {
 public:
  explicit AsioEventLoop(boost::asio::io_context& ioc) : ioc_(ioc) {}

  bool running_in_this_thread() const override {
    return ioc_.get_executor().running_in_this_thread();
  }

  // Asio's defer from a thread of the loop queues `fn` on that thread's own queue, run after the
  // current handler with no wake-up of another thread (a post would wake one); from any other
  // thread it is a post.
  void defer(std::function<void()> fn) override { boost::asio::defer(ioc_, std::move(fn)); }

 private:
  boost::asio::io_context& ioc_;
};

}  // namespace

std::shared_ptr<EventLoop> make_event_loop(boost::asio::io_context& ioc) {
  return std::make_shared<AsioEventLoop>(ioc);
}

}  // namespace wf::orchestrator
