#include "wf/obs/process_stats.h"

#include <dirent.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <string>

namespace wf::obs {
namespace {

std::uint64_t count_dir_entries(const char* path) {
  DIR* dir = opendir(path);
  if (dir == nullptr) return 0;
  std::uint64_t n = 0;
  while (const dirent* e = readdir(dir)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(dir);
  return n;
}

}  // namespace

std::uint64_t resident_bytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long size = 0, resident = 0;
  const int got = std::fscanf(f, "%lu %lu", &size, &resident);
  std::fclose(f);
  if (got != 2) return 0;
  return static_cast<std::uint64_t>(resident) * static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
}

double cpu_micros() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  const auto us = [](const timeval& tv) {
    return static_cast<double>(tv.tv_sec) * 1e6 + static_cast<double>(tv.tv_usec);
  };
  return us(ru.ru_utime) + us(ru.ru_stime);
}

ProcessStats read_process_stats() {
  ProcessStats s;
  s.cpu_seconds = cpu_micros() / 1e6;
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f != nullptr) {
    unsigned long size = 0, resident = 0;
    if (std::fscanf(f, "%lu %lu", &size, &resident) == 2) {
      const auto page = static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
      s.virtual_bytes = size * page;
      s.resident_bytes = resident * page;
    }
    std::fclose(f);
  }
  // The directory stream itself holds one descriptor while we count.
  const std::uint64_t fds = count_dir_entries("/proc/self/fd");
  s.open_fds = fds > 0 ? fds - 1 : 0;
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) s.max_fds = rl.rlim_cur;
  s.threads = count_dir_entries("/proc/self/task");
  return s;
}

double process_start_time_seconds() {
  static const double start = [] {
    // Field 22 of /proc/self/stat is the start time in clock ticks after boot.
    std::ifstream stat("/proc/self/stat");
    std::string line;
    std::getline(stat, line);
    const auto close = line.rfind(')');
    double ticks = 0;
    if (close != std::string::npos) {
      const char* p = line.c_str() + close + 2;
      for (int field = 3; field < 22 && *p != '\0'; ++p) {
        if (*p == ' ') ++field;
      }
      ticks = std::strtod(p, nullptr);
    }
    std::ifstream uptime_file("/proc/uptime");
    double uptime = 0;
    uptime_file >> uptime;
    const double now = static_cast<double>(std::time(nullptr));
    const double boot = now - uptime;
    return boot + ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
  }();
  return start;
}

void name_this_thread(std::string_view name) {
  char cut[16] = {};
  name.copy(cut, sizeof cut - 1);
  ::pthread_setname_np(::pthread_self(), cut);
}

}  // namespace wf::obs
