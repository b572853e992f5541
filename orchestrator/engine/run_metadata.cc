#include "orchestrator/engine/run_metadata.h"

#include <fmt/compile.h>
#include <fmt/format.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <limits>
#include <string>

#include "orchestrator/engine/fiber.h"
#include "wf/zobject/zobject.h"

namespace wf::orchestrator::engine_detail {

namespace {

// "YYYY-MM-DDTHH:MM:SS.mmmZ", written to `out` (48 bytes); its size. The part up to the
// seconds is kept per thread: a run's start and end, and the runs of one second, share it
// (strftime and gmtime_r are ~1 k instructions each).
std::size_t write_iso_time(char* out, std::chrono::system_clock::time_point t) {
  constexpr std::size_t kOut = 48;
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  thread_local std::time_t cached_secs = std::numeric_limits<std::time_t>::min();
  thread_local char cached[32];
  thread_local std::size_t cached_size = 0;
  if (secs != cached_secs) {
    std::tm tm{};
    gmtime_r(&secs, &tm);
    cached_size = std::strftime(cached, sizeof cached, "%Y-%m-%dT%H:%M:%S", &tm);
    cached_secs = secs;
  }
  const int milli = static_cast<int>(ms % 1000);
  if (milli < 0) {
    const auto r =
        fmt::format_to_n(out, kOut, "{}.{:03d}Z", std::string_view(cached, cached_size), milli);
    return std::min<std::size_t>(r.size, kOut);
  }
  std::memcpy(out, cached, cached_size);
  char* p = out + cached_size;
  *p++ = '.';
  *p++ = static_cast<char>('0' + milli / 100);
  *p++ = static_cast<char>('0' + milli / 10 % 10);
  *p++ = static_cast<char>('0' + milli % 10);
  *p++ = 'Z';
  return static_cast<std::size_t>(p - out);
}

const std::string& hostname() {
  static const std::string name = [] {
    char buf[256] = {0};
    if (gethostname(buf, sizeof buf - 1) != 0) return std::string("localhost");
    return std::string(buf);
  }();
  return name;
}

}  // namespace

double thread_cpu_us() {
  rusage ru{};
  if (getrusage(RUSAGE_THREAD, &ru) != 0) return 0;
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

namespace {

double read_rss_mib() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  long pages_total = 0;
  long pages_rss = 0;
  int n = std::fscanf(f, "%ld %ld", &pages_total, &pages_rss);
  std::fclose(f);
  if (n != 2) return 0;
  return static_cast<double>(pages_rss) * static_cast<double>(sysconf(_SC_PAGESIZE)) /
         (1024.0 * 1024.0);
}

}  // namespace

// Reading /proc costs several system calls (~10 us); the figure is informational, so it is
// refreshed at most every 100 ms and shared by all requests.
double rss_mib() {
  using std::chrono::steady_clock;
  static std::atomic<double> cached{0};
  static std::atomic<steady_clock::rep> next{0};
  auto now = steady_clock::now().time_since_epoch().count();
  auto due = next.load(std::memory_order_relaxed);
  if (now >= due && next.compare_exchange_strong(due, now + 100'000'000)) {
    cached.store(read_rss_mib(), std::memory_order_relaxed);
  }
  double v = cached.load(std::memory_order_relaxed);
  return v > 0 ? v : read_rss_mib();
}

namespace {

// "12.34 MiB"; the figure changes at most every 100 ms (rss_mib), so its text is kept per thread.
const std::string& memory_text(double mib) {
  thread_local double last = -1;
  thread_local std::string text;
  if (mib != last) {
    text = fmt::format(FMT_COMPILE("{:.2f} MiB"), mib);
    last = mib;
  }
  return text;
}

}  // namespace

RunStart run_start() {
  return RunStart{std::chrono::system_clock::now(), std::chrono::steady_clock::now(),
                  fiber_cpu_us()};
}

std::size_t write_cpu_ms(char* out, double rounded_us) {
  constexpr std::size_t kOut = 40;
  double cpu_ms = rounded_us / 1000.0;
  if (cpu_ms < 0) cpu_ms = 0;
  // For a whole number n of µs below 1e15, fmt's shortest text of n / 1000.0 is n / 1000's
  // digits with the fraction's trailing zeros dropped: that decimal rounds to the double, and any
  // other with as few digits or fewer is at least 1e-3 away, beyond half a unit in the last place
  // (< 1e-4 below 1e12). fmt writes it in fixed notation from 1e-3 up to 1e16. -0.0, NaN and
  // larger figures take fmt.
  if (!std::signbit(cpu_ms) && rounded_us < 1e15 && rounded_us == std::floor(rounded_us)) {
    const auto n = cpu_ms > 0 ? static_cast<std::uint64_t>(rounded_us) : std::uint64_t{0};
    char* p = std::to_chars(out, out + kOut, n / 1000).ptr;
    if (const auto frac = static_cast<unsigned>(n % 1000); frac != 0) {
      *p++ = '.';
      *p++ = static_cast<char>('0' + frac / 100);
      if (frac % 100 != 0) *p++ = static_cast<char>('0' + frac / 10 % 10);
      if (frac % 10 != 0) *p++ = static_cast<char>('0' + frac % 10);
    }
    std::memcpy(p, " ms", 3);
    return static_cast<std::size_t>(p + 3 - out);
  }
  const auto r = fmt::format_to_n(out, kOut, FMT_COMPILE("{} ms"), cpu_ms);
  return std::min<std::size_t>(r.size, kOut);
}

OrchestrationTexts::OrchestrationTexts(const RunStart& start) {
  auto end_wall = std::chrono::system_clock::now();
  auto end_mono = std::chrono::steady_clock::now();
  // The evaluation's own CPU time: on a fiber, the sum over the slices it ran, on any thread.
  sizes_[0] = static_cast<std::uint8_t>(
      write_cpu_ms(cpu_.data(), std::round(fiber_cpu_us() - start.cpu_us)));
  memory_ = memory_text(rss_mib());
  sizes_[1] = static_cast<std::uint8_t>(write_iso_time(start_.data(), start.wall));
  sizes_[2] = static_cast<std::uint8_t>(write_iso_time(end_.data(), end_wall));
  auto duration =
      std::chrono::duration_cast<std::chrono::milliseconds>(end_mono - start.mono).count();
  char* p = std::to_chars(duration_.data(), duration_.data() + duration_.size(), duration).ptr;
  std::memcpy(p, " ms", 3);
  sizes_[3] = static_cast<std::uint8_t>(p + 3 - duration_.data());
}

std::string_view OrchestrationTexts::value(std::size_t i) const {
  switch (i) {
    case 0:
      return memory_;
    case 1:
      return {cpu_.data(), sizes_[0]};
    case 2:
      return {start_.data(), sizes_[1]};
    case 3:
      return {end_.data(), sizes_[2]};
    case 4:
      return {duration_.data(), sizes_[3]};
    default:
      return hostname();
  }
}

void add_orchestration_metadata(nlohmann::json& envelope, const RunStart& start) {
  namespace zo = wf::zobject;
  const OrchestrationTexts texts(start);
  for (std::size_t i = 0; i < OrchestrationTexts::kCount; ++i) {
    zo::envelope_set_metadata(envelope, OrchestrationTexts::kKeys[i], zo::z6(texts.value(i)));
  }
}

}  // namespace wf::orchestrator::engine_detail
