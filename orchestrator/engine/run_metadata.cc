#include "orchestrator/engine/run_metadata.h"

#include <fmt/format.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <string>

#include "wf/zobject/zobject.h"

namespace wf::orchestrator::engine_detail {

namespace {

std::string iso_time(std::chrono::system_clock::time_point t) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:03d}Z", buf, static_cast<int>(ms % 1000));
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

double rss_mib() {
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

RunStart run_start() {
  return RunStart{std::chrono::system_clock::now(), std::chrono::steady_clock::now(),
                  thread_cpu_us()};
}

void add_orchestration_metadata(nlohmann::json& envelope, const RunStart& start) {
  namespace zo = wf::zobject;
  auto end_wall = std::chrono::system_clock::now();
  auto end_mono = std::chrono::steady_clock::now();
  double cpu_ms = (thread_cpu_us() - start.cpu_us) / 1000.0;
  if (cpu_ms < 0) cpu_ms = 0;
  auto duration =
      std::chrono::duration_cast<std::chrono::milliseconds>(end_mono - start.mono).count();
  zo::envelope_set_metadata(envelope, "orchestrationMemoryUsage",
                            zo::z6(fmt::format("{:.2f} MiB", rss_mib())));
  zo::envelope_set_metadata(envelope, "orchestrationCpuUsage",
                            zo::z6(fmt::format("{} ms", cpu_ms)));
  zo::envelope_set_metadata(envelope, "orchestrationStartTime", zo::z6(iso_time(start.wall)));
  zo::envelope_set_metadata(envelope, "orchestrationEndTime", zo::z6(iso_time(end_wall)));
  zo::envelope_set_metadata(envelope, "orchestrationDuration",
                            zo::z6(fmt::format("{} ms", duration)));
  zo::envelope_set_metadata(envelope, "orchestrationHostname", zo::z6(hostname()));
}

}  // namespace wf::orchestrator::engine_detail
