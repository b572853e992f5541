// The memcached-backed shared counters against a real memcached on loopback, started and stopped
// by the test (skipped when the binary is missing).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "wf/limits/limiter.h"
#include "wf/limits/shared_counters.h"

namespace wf::limits {
namespace {

using namespace std::chrono_literals;

int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

class Memcached : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access(MEMCACHED_BIN, X_OK) != 0) GTEST_SKIP() << "no " << MEMCACHED_BIN;
    port_ = free_port();
    pid_ = fork();
    if (pid_ == 0) {
      const std::string port = std::to_string(port_);
      // memcached refuses to run as root unless told which user to be.
      const char* user = geteuid() == 0 ? "root" : "";
      if (*user != '\0') {
        execl(MEMCACHED_BIN, "memcached", "-l", "127.0.0.1", "-p", port.c_str(), "-U", "0", "-m",
              "16", "-u", user, static_cast<char*>(nullptr));
      } else {
        execl(MEMCACHED_BIN, "memcached", "-l", "127.0.0.1", "-p", port.c_str(), "-U", "0", "-m",
              "16", static_cast<char*>(nullptr));
      }
      _exit(127);
    }
    // Ready when a counter answers (at most 5 s).
    auto c = make_memcached_counters({servers(), 200ms});
    ASSERT_TRUE(c);
    for (int i = 0; i < 100; ++i) {
      if ((*c)->add("wf:test:ready", 0, 10s)) return;
      std::this_thread::sleep_for(50ms);
    }
    FAIL() << "memcached did not start on port " << port_;
  }
  void TearDown() override {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
    }
  }
  std::string servers() const { return "127.0.0.1:" + std::to_string(port_); }
  int port_ = 0;
  pid_t pid_ = -1;
};

TEST_F(Memcached, AddCreatesIncrementsAndReads) {
  auto c = make_memcached_counters({servers(), 200ms});
  ASSERT_TRUE(c);
  EXPECT_EQ((*c)->add("wf:test:k", 3, 10s).value(), 3u);
  EXPECT_EQ((*c)->add("wf:test:k", 4, 10s).value(), 7u);
  EXPECT_EQ((*c)->add("wf:test:k", 0, 10s).value(), 7u);
  EXPECT_EQ((*c)->add("wf:test:other", 0, 10s).value(), 0u);
}

TEST_F(Memcached, TwoLimitersShareAUsersBudgetAndFallBackWhenItStops) {
  auto shared_a = make_memcached_counters({servers(), 100ms});
  auto shared_b = make_memcached_counters({servers(), 100ms});
  ASSERT_TRUE(shared_a && shared_b);
  LimiterOptions o;
  o.classes = {{.name = "user", .cpu_ms = 100}};
  o.background_thread = false;
  Limiter a(o, system_clock(), std::move(*shared_a));
  Limiter b(o, system_clock(), std::move(*shared_b));
  Identity x{"user:x", "user"};
  a.acquire(x)->charge_cpu(70);
  b.acquire(x)->charge_cpu(70);
  a.maintain();
  b.maintain();
  auto refused = b.acquire(x);
  // Unless the 60 s window turned between the two charges, b now knows about 140 ms.
  if (refused) GTEST_SKIP() << "the CPU window turned during the test";
  EXPECT_EQ(refused.error().reason, Reason::kCpu);
  EXPECT_TRUE(refused.error().shared);

  kill(pid_, SIGTERM);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
  Identity y{"user:y", "user"};
  (void)a.acquire(y);
  const auto t0 = std::chrono::steady_clock::now();
  a.maintain();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);  // short timeouts
  EXPECT_FALSE(a.stats().shared_up);
  EXPECT_TRUE(a.acquire(y));  // per-replica limits go on
}

}  // namespace
}  // namespace wf::limits
