#include "wf/limits/clock.h"

namespace wf::limits {
namespace {

class RealClock final : public Clock {
 public:
  SteadyTime steady() const override { return std::chrono::steady_clock::now(); }
  WallTime wall() const override { return std::chrono::system_clock::now(); }
};

}  // namespace

const Clock& system_clock() {
  static const RealClock clock;
  return clock;
}

SteadyTime ManualClock::steady() const {
  return SteadyTime{} + std::chrono::hours(1) + std::chrono::nanoseconds(offset_ns_.load());
}

WallTime ManualClock::wall() const {
  // 2026-01-01T00:00:00Z: a whole minute, so that windows start at offset 0.
  return WallTime{} + std::chrono::seconds(1767225600) +
         std::chrono::nanoseconds(offset_ns_.load());
}

}  // namespace wf::limits
