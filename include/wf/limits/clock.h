#pragma once
// The time source of the limits module, injected so that tests control it. steady() measures
// intervals (token refill, queue time); wall() numbers the fixed windows that replicas share
// through memcached (they must agree on them, which steady clocks of different hosts do not).

#include <atomic>
#include <chrono>

namespace wf::limits {

using SteadyTime = std::chrono::steady_clock::time_point;
using WallTime = std::chrono::system_clock::time_point;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual SteadyTime steady() const = 0;
  virtual WallTime wall() const = 0;
};

// The real clocks. One shared instance: system_clock().
const Clock& system_clock();

// A clock that moves only when told to; thread-safe. Starts at an arbitrary fixed point.
class ManualClock final : public Clock {
 public:
  SteadyTime steady() const override;
  WallTime wall() const override;
  void advance(std::chrono::nanoseconds d) { offset_ns_ += d.count(); }

 private:
  std::atomic<long long> offset_ns_{0};
};

}  // namespace wf::limits
