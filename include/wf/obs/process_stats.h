#pragma once
// Figures about this process read from the kernel (/proc/self, getrusage): for metrics and for the
// orchestration*/evaluation* metadata of every call.

#include <cstdint>
#include <string_view>

namespace wf::obs {

struct ProcessStats {
  double cpu_seconds = 0;            // user + system
  std::uint64_t resident_bytes = 0;  // RSS
  std::uint64_t virtual_bytes = 0;
  std::uint64_t open_fds = 0;
  std::uint64_t max_fds = 0;
  std::uint64_t threads = 0;
};

ProcessStats read_process_stats();
// Cheap: only RSS (one read of /proc/self/statm).
std::uint64_t resident_bytes();
// user+system CPU of the whole process, in microseconds (getrusage).
double cpu_micros();
// Seconds since the epoch when the process started.
double process_start_time_seconds();
// Names the calling thread, as top -H, perf, ps -L and /proc/<pid>/task/<tid>/comm show it:
// wf-loop-N (HTTP event loops), wf-engine-N (the engine's CPU threads), wf-retire, wf-admission,
// wf-limits-sync, wf-client. The kernel keeps 15 bytes; a longer name is cut there.
void name_this_thread(std::string_view name);

}  // namespace wf::obs
