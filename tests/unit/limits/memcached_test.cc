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
#include <cstdint>
#include <cstdlib>
#include <string>
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

// The pid in the stats of the memcached answering on 127.0.0.1:`port`, or -1 (nobody answers
// within 500 ms, or not with stats).
pid_t memcached_pid(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  const timeval wait{0, 500000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &wait, sizeof wait);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  std::string answer;
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      send(fd, "stats\r\n", 7, MSG_NOSIGNAL) == 7) {
    char buffer[4096];
    while (answer.find("END\r\n") == std::string::npos) {
      const ssize_t n = recv(fd, buffer, sizeof buffer, 0);
      if (n <= 0) break;
      answer.append(buffer, static_cast<std::size_t>(n));
    }
  }
  close(fd);
  const auto at = answer.find("STAT pid ");
  return at == std::string::npos ? -1 : static_cast<pid_t>(std::atol(answer.c_str() + at + 9));
}

class Memcached : public ::testing::Test {
 protected:
  // The port is found free, then memcached binds it: in between another process can take it (a
  // client's connection, another test's memcached under ctest -j), and this memcached exits while
  // the port may answer for the other one. Ready means that the memcached answering on the port
  // is this one (the pid in its stats); one that exited is started again on another port.
  void SetUp() override {
    if (access(MEMCACHED_BIN, X_OK) != 0) GTEST_SKIP() << "no " << MEMCACHED_BIN;
    for (int attempt = 0; attempt < 10; ++attempt) {
      port_ = free_port();
      pid_ = start(port_);
      ASSERT_GT(pid_, 0) << "fork failed";
      const auto until = std::chrono::steady_clock::now() + 30s;
      while (waitpid(pid_, nullptr, WNOHANG) != pid_) {
        if (memcached_pid(port_) == pid_) return;
        if (std::chrono::steady_clock::now() >= until) {
          FAIL() << "memcached did not answer on port " << port_ << " within 30 s";
        }
        std::this_thread::sleep_for(20ms);
      }
      pid_ = -1;  // it could not bind the port (status 71, EX_OSERR): another one
    }
    FAIL() << "memcached did not start in 10 tries";
  }
  static pid_t start(int port_number) {
    const pid_t pid = fork();
    if (pid == 0) {
      const std::string port = std::to_string(port_number);
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
    return pid;
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
  a.maintain();  // its push is refused: the limiter falls back
  EXPECT_FALSE(a.stats().shared_up);
  EXPECT_TRUE(a.acquire(y));  // per-replica limits go on
}

}  // namespace
}  // namespace wf::limits
