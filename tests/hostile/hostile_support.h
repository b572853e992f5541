#pragma once
// Shared by the hostile tests of every language: one sandbox per test process, calls with a
// deadline, Z22 error extraction, a loopback listener that must see nothing, temp paths that
// must not appear, and a probe that keeps calling while a hostile call runs (the service must
// keep serving during every hostile test, not only after it).

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "evaluator/sandbox/sandbox.h"

namespace wf::evaluator::hostile {

using Clock = std::chrono::steady_clock;
using Status = CallOutcome::Status;
using namespace std::chrono_literals;

inline const char* status_name(Status status) {
  switch (status) {
    case Status::kOk:
      return "kOk";
    case Status::kTimeout:
      return "kTimeout";
    case Status::kCpuLimit:
      return "kCpuLimit";
    case Status::kMemoryLimit:
      return "kMemoryLimit";
    case Status::kOutputTooLarge:
      return "kOutputTooLarge";
    case Status::kForbidden:
      return "kForbidden";
    case Status::kCrashed:
      return "kCrashed";
    case Status::kUnavailable:
      return "kUnavailable";
    case Status::kCancelled:
      return "kCancelled";
    case Status::kThrottled:
      return "kThrottled";
  }
  return "?";
}

// Limits of the hostile sandboxes: a wall limit far above the CPU limit so that a busy shared
// machine does not turn CPU-limit cases into timeouts (a child that ignores SIGXCPU runs to the
// hard limit, 2 s of CPU, which took over 15 s of wall time at load ~20); tests that want a
// timeout pass a deadline.
inline SandboxLimits hostile_limits() {
  SandboxLimits limits;
  limits.wall = std::chrono::milliseconds(60000);
  limits.cpu = std::chrono::seconds(1);
  limits.memory_bytes = 128u << 20;
  limits.output_bytes = 1u << 20;
  limits.captured_output_bytes = 16u << 10;
  limits.pool_size = 2;
  return limits;
}

// The error message (Z5K2.Z6K1) under "errors" of a Z22, "" if none or not a Z22.
inline std::string z22_error(const std::string& z22_json) {
  auto z22 = nlohmann::json::parse(z22_json, nullptr, false);
  if (!z22.is_object() || !z22.contains("Z22K2")) return "";
  const nlohmann::json* node = &z22["Z22K2"];
  if (!node->contains("K1")) return "";
  node = &(*node)["K1"];
  while (node->is_object() && node->contains("K1")) {
    const auto& pair = (*node)["K1"];
    if (pair.value("K1", nlohmann::json::object()).value("Z6K1", "") == "errors") {
      return pair["K2"]["Z5K2"].value("Z6K1", "");
    }
    node = &(*node)["K2"];
  }
  return "";
}

// Z22K1.Z6K1 of a Z22 whose value is a string, "" otherwise.
inline std::string z22_string(const std::string& z22_json) {
  auto z22 = nlohmann::json::parse(z22_json, nullptr, false);
  if (!z22.is_object() || !z22.contains("Z22K1") || !z22["Z22K1"].is_object()) return "";
  return z22["Z22K1"].value("Z6K1", "");
}

// "the request's deadline (N ms) was reached" (a call the request's deadline bounded) -> N; -1
// for any other detail (the wall limit's names "wall-clock limit of N ms").
inline long long deadline_ms_in(const std::string& detail) {
  long long ms = -1;
  if (std::sscanf(detail.c_str(), "the request's deadline (%lld ms) was reached", &ms) != 1) {
    return -1;
  }
  return ms;
}

// A listening TCP socket on 127.0.0.1 (free port); connections_seen() accepts without blocking.
class LoopbackListener {
 public:
  LoopbackListener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = 0;
    ::bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address));
    ::listen(fd_, 16);
    socklen_t length = sizeof(address);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
  }
  ~LoopbackListener() { ::close(fd_); }
  int port() const { return port_; }
  int connections_seen() {
    int seen = 0;
    for (;;) {
      int client = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) break;
      ++seen;
      ::close(client);
    }
    return seen;
  }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// Runs a trivial call on `sandbox` every 50 ms from its own thread until stop(); every probe must
// answer `expected` (a substring of its Z22) within its 60 s deadline: a sandbox that stops
// serving fails it, a loaded machine that is slow to fork a child does not.
class ServingProbe {
 public:
  ServingProbe(Sandbox& sandbox, CallInput trivial, std::string expected)
      : sandbox_(sandbox), trivial_(std::move(trivial)), expected_(std::move(expected)) {
    thread_ = std::thread([this] { loop(); });
  }
  ServingProbe(const ServingProbe&) = delete;
  ServingProbe& operator=(const ServingProbe&) = delete;
  ~ServingProbe() { stop(); }

  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int calls() const { return calls_; }
  std::string failures() {
    std::lock_guard lock(mutex_);
    return failures_;
  }
  double max_ms() const { return max_ms_; }

 private:
  // At least one probe, even when the test is over before the thread got going.
  void loop() {
    do {
      auto start = Clock::now();
      CallOutcome out = sandbox_.run(trivial_, start + 60s);
      double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
      max_ms_ = std::max(max_ms_.load(), ms);
      ++calls_;
      if (out.status != Status::kOk || out.output.z22_json.find(expected_) == std::string::npos) {
        std::lock_guard lock(mutex_);
        failures_ += std::string(status_name(out.status)) + ": " + out.detail + "; ";
      }
      for (int i = 0; i < 10 && !stop_; ++i) std::this_thread::sleep_for(5ms);
    } while (!stop_);
  }

  Sandbox& sandbox_;
  CallInput trivial_;
  std::string expected_;
  std::atomic<bool> stop_{false};
  std::atomic<int> calls_{0};
  std::atomic<double> max_ms_{0};
  std::mutex mutex_;
  std::string failures_;
  std::thread thread_;
};

inline std::string temp_path(const std::string& tag) {
  return "/tmp/wf_hostile_" + tag + "_" + std::to_string(::getpid());
}

inline bool path_exists(const std::string& path) {
  return ::access(path.c_str(), F_OK) == 0;
}

}  // namespace wf::evaluator::hostile
