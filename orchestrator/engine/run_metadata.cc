#include "orchestrator/engine/run_metadata.h"

#include <fmt/compile.h>
#include <fmt/format.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <limits>
#include <string>

#include "orchestrator/engine/fiber.h"
#include "wf/zobject/zobject.h"

namespace wf::orchestrator::engine_detail {

namespace {

// "YYYY-MM-DDTHH:MM:SS.mmmZ". The part up to the seconds is kept per thread: a run's start and
// end, and the runs of one second, share it (strftime and gmtime_r are ~1 k instructions each).
std::string iso_time(std::chrono::system_clock::time_point t) {
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
  if (milli < 0) return fmt::format("{}.{:03d}Z", std::string_view(cached, cached_size), milli);
  std::string out;
  out.reserve(cached_size + 5);
  out.append(cached, cached_size);
  out += '.';
  out += static_cast<char>('0' + milli / 100);
  out += static_cast<char>('0' + milli / 10 % 10);
  out += static_cast<char>('0' + milli % 10);
  out += 'Z';
  return out;
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
std::string memory_text(double mib) {
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

std::array<std::pair<const char*, std::string>, 6> orchestration_values(const RunStart& start) {
  auto end_wall = std::chrono::system_clock::now();
  auto end_mono = std::chrono::steady_clock::now();
  // The evaluation's own CPU time: on a fiber, the sum over the slices it ran, on any thread.
  double cpu_ms = std::round(fiber_cpu_us() - start.cpu_us) / 1000.0;
  if (cpu_ms < 0) cpu_ms = 0;
  auto duration =
      std::chrono::duration_cast<std::chrono::milliseconds>(end_mono - start.mono).count();
  return {{{"orchestrationMemoryUsage", memory_text(rss_mib())},
           {"orchestrationCpuUsage", fmt::format(FMT_COMPILE("{} ms"), cpu_ms)},
           {"orchestrationStartTime", iso_time(start.wall)},
           {"orchestrationEndTime", iso_time(end_wall)},
           {"orchestrationDuration", std::to_string(duration) + " ms"},
           {"orchestrationHostname", hostname()}}};
}

void add_orchestration_metadata(nlohmann::json& envelope, const RunStart& start) {
  namespace zo = wf::zobject;
  for (auto& [key, value] : orchestration_values(start)) {
    zo::envelope_set_metadata(envelope, key, zo::z6(value));
  }
}

}  // namespace wf::orchestrator::engine_detail
