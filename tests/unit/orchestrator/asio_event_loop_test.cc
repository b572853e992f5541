// The engine's EventLoop port over a server's event loops: which thread is "on the loop", and
// where defer() runs its function.
#include "orchestrator/asio_event_loop.h"

#include <gtest/gtest.h>

#include <boost/asio/post.hpp>
#include <chrono>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "wf/http/io.h"

namespace wf::orchestrator {
namespace {

using namespace std::chrono_literals;

http::ServerOptions two_loops() {
  http::ServerOptions o;
  o.port = 0;
  o.access_log = false;
  o.io_threads = 2;
  o.worker_threads = 0;
  o.admin_port = -1;
  return o;
}

// Runs `fn` on a thread of `loop` and waits (bounded) for its result.
template <typename F>
auto on(boost::asio::io_context& loop, F fn) {
  std::packaged_task<decltype(fn())()> task(std::move(fn));
  auto result = task.get_future();
  boost::asio::post(loop, [&task] { task(); });
  EXPECT_EQ(result.wait_for(30s), std::future_status::ready);
  return result.get();
}

TEST(AsioEventLoop, EachLoopThreadIsOnTheLoopAndDefersToItself) {
  http::Server server(two_loops());
  http::Server other(two_loops());
  server.start();
  other.start();
  const std::vector<boost::asio::io_context*> loops = server.io_contexts();
  ASSERT_EQ(loops.size(), 2u);
  auto event_loop = make_event_loop(loops);

  // Off the loops: not on the loop, and defer() is a post to the first loop.
  EXPECT_EQ(http::current_event_loop(), nullptr);
  EXPECT_FALSE(event_loop->running_in_this_thread());
  std::promise<boost::asio::io_context*> ran_on;
  event_loop->defer([&ran_on] { ran_on.set_value(http::current_event_loop()); });
  auto where = ran_on.get_future();
  ASSERT_EQ(where.wait_for(30s), std::future_status::ready);
  EXPECT_EQ(where.get(), loops[0]);

  // On each loop's thread: on the loop, and defer() runs there, after the current handler.
  for (boost::asio::io_context* loop : loops) {
    std::promise<std::string> deferred;
    const std::string order = on(*loop, [&] {
      std::string seen = http::current_event_loop() == loop ? "here" : "elsewhere";
      seen += event_loop->running_in_this_thread() ? " on" : " off";
      const auto id = std::this_thread::get_id();
      event_loop->defer([&deferred, id, loop] {
        deferred.set_value(std::this_thread::get_id() == id && http::current_event_loop() == loop
                               ? "same thread"
                               : "another thread");
      });
      return seen + " handler-done";
    });
    EXPECT_EQ(order, "here on handler-done");
    auto d = deferred.get_future();
    ASSERT_EQ(d.wait_for(30s), std::future_status::ready);
    EXPECT_EQ(d.get(), "same thread");
  }

  // Another server's loop thread runs a loop, but not one of these.
  const std::string elsewhere = on(other.io_context(), [&] {
    return std::string(http::current_event_loop() == &other.io_context() ? "its own" : "none") +
           (event_loop->running_in_this_thread() ? " on" : " off");
  });
  EXPECT_EQ(elsewhere, "its own off");

  // One thread asked by two event loops in turn (each remembers its own answer per thread, found
  // once): the other server's loop is on for its own port only, each time; and a port made after
  // one is gone (perhaps at its address) finds its answer anew.
  auto other_event_loop = make_event_loop(other.io_contexts());
  const auto ask_both = [&] {
    std::string seen;
    for (int i = 0; i < 3; ++i) {
      seen += event_loop->running_in_this_thread() ? "on " : "off ";
      seen += other_event_loop->running_in_this_thread() ? "on " : "off ";
    }
    return seen;
  };
  EXPECT_EQ(on(other.io_context(), ask_both), "off on off on off on ");
  EXPECT_EQ(on(*loops[1], ask_both), "on off on off on off ");
  other_event_loop.reset();
  other_event_loop = make_event_loop({loops[1]});
  EXPECT_EQ(on(*loops[1], ask_both), "on on on on on on ");
  EXPECT_EQ(on(*loops[0], ask_both), "on off on off on off ");
  other_event_loop.reset();

  event_loop.reset();
  other.stop();
  EXPECT_EQ(other.run_until_signal(), 0);
  server.stop();
  EXPECT_EQ(server.run_until_signal(), 0);
}

}  // namespace
}  // namespace wf::orchestrator
