// bench_sandbox: cost of the sandbox per language family.
//   * overhead of a trivial call through Sandbox::run: p50/p99 at concurrency 1, back to back
//     (each call may have to wait for the pool to refill: this measures the refill rate) and
//     paced (one call every 5 ms, as a single client with some think time sees it), and, for
//     Python, the same call in-process for comparison;
//   * throughput of trivial calls at concurrency 8;
//   * pool refill rate: children forked, locked down and warmed per second (a 32-child pool
//     filling from empty);
//   * CPU per call split by process (service, zygote, children) from /proc/<pid>/stat and
//     getrusage, which stays meaningful on a loaded machine, and minor page faults per call;
//   * RSS of the zygote.
// Targets (brief): p50 <= 1 ms, p99 <= 5 ms at concurrency 1; >= 1,000 Python and >= 500
// JavaScript calls/s at concurrency 8 on 2 cores.
// Usage: bench_sandbox [--calls N] [--seconds S] [--language python|javascript]

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "evaluator/executors/python/python_runtime.h"
#include "evaluator/sandbox/sandbox.h"
#ifdef WF_BENCH_HAVE_JAVASCRIPT
#include "evaluator/executors/javascript/javascript_runtime.h"
#endif

namespace {

using namespace wf::evaluator;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

struct Language {
  std::string name;
  std::function<std::unique_ptr<LanguageRuntime>()> make;
  CallInput trivial;
};

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  std::size_t index = static_cast<std::size_t>(p * static_cast<double>(values.size() - 1) + 0.5);
  return values[std::min(index, values.size() - 1)];
}

double rss_mib(int pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atof(line.c_str() + 6) / 1024.0;
  }
  return 0;
}

// CPU seconds of a process (utime+stime) and of its reaped children (cutime+cstime).
struct ProcessCpu {
  double self = 0;
  double children = 0;
  double faults = 0;           // minflt
  double children_faults = 0;  // cminflt
};
ProcessCpu process_cpu(int pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  std::size_t close = text.rfind(')');
  ProcessCpu cpu;
  if (close == std::string::npos) return cpu;
  std::vector<std::string> fields;
  std::size_t at = close + 2;
  while (at < text.size()) {
    std::size_t space = text.find(' ', at);
    if (space == std::string::npos) space = text.size();
    fields.push_back(text.substr(at, space - at));
    at = space + 1;
  }
  // fields[0] is field 3 (state); minflt=10 cminflt=11 utime=14 stime=15 cutime=16 cstime=17.
  double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
  if (fields.size() > 14) {
    cpu.faults = std::atof(fields[7].c_str());
    cpu.children_faults = std::atof(fields[8].c_str());
    cpu.self = (std::atof(fields[11].c_str()) + std::atof(fields[12].c_str())) / tick;
    cpu.children = (std::atof(fields[13].c_str()) + std::atof(fields[14].c_str())) / tick;
  }
  return cpu;
}

double own_cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

SandboxLimits limits(int pool) {
  SandboxLimits l;
  l.wall = 10s;
  l.pool_size = pool;
  return l;
}

void refill_rate(const Language& language) {
  constexpr int kPool = 32;
  auto sandbox = start_sandbox(language.name, limits(kPool));
  auto start = Clock::now();
  int ready = 0;
  while ((ready = sandbox->query_stats().ready_children) < kPool && Clock::now() - start < 60s) {
    std::this_thread::sleep_for(1ms);
  }
  double ms = ms_since(start);
  SandboxStats stats = sandbox->query_stats();
  std::printf(
      "%-10s pool refill: %d children ready in %.1f ms = %.0f children/s "
      "(mean fork->ready %.2f ms)\n",
      language.name.c_str(), ready, ms, ready / ms * 1000.0, stats.mean_fork_to_ready_ms);
}

void measure(const Language& language, int calls, double seconds) {
  auto start = Clock::now();
  auto sandbox = start_sandbox(language.name, limits(4));
  double start_ms = ms_since(start);
  SandboxStats stats = sandbox->query_stats();
  std::printf("%-10s start_sandbox %.1f ms; zygote pid %d RSS %.1f MiB\n", language.name.c_str(),
              start_ms, stats.zygote_pid, rss_mib(stats.zygote_pid));

  // Concurrency 1.
  std::vector<double> latencies;
  latencies.reserve(static_cast<std::size_t>(calls));
  int failures = 0;
  for (int i = 0; i < calls; ++i) {
    auto t = Clock::now();
    CallOutcome out = sandbox->run(language.trivial, Clock::now() + 10s);
    latencies.push_back(ms_since(t));
    if (out.status != CallOutcome::Status::kOk) ++failures;
  }
  std::printf(
      "%-10s concurrency 1: %d calls, p50 %.3f ms, p90 %.3f ms, p99 %.3f ms, max %.3f ms"
      ", failures %d\n",
      language.name.c_str(), calls, percentile(latencies, 0.5), percentile(latencies, 0.9),
      percentile(latencies, 0.99), percentile(latencies, 1.0), failures);
  std::printf("%-10s mean fork->ready of a child: %.3f ms\n", language.name.c_str(),
              sandbox->query_stats().mean_fork_to_ready_ms);

  // Concurrency 1, paced: one call every 5 ms.
  latencies.clear();
  failures = 0;
  for (int i = 0; i < calls; ++i) {
    auto next = Clock::now() + 5ms;
    auto t = Clock::now();
    CallOutcome out = sandbox->run(language.trivial, Clock::now() + 10s);
    latencies.push_back(ms_since(t));
    if (out.status != CallOutcome::Status::kOk) ++failures;
    std::this_thread::sleep_until(next);
  }
  std::printf(
      "%-10s concurrency 1, paced (5 ms): p50 %.3f ms, p90 %.3f ms, p99 %.3f ms, max %.3f ms"
      ", failures %d\n",
      language.name.c_str(), percentile(latencies, 0.5), percentile(latencies, 0.9),
      percentile(latencies, 0.99), percentile(latencies, 1.0), failures);

  // Concurrency 8, with the CPU it costs (service + zygote + children), which does not depend
  // on what else runs on the machine.
  ProcessCpu zygote_before = process_cpu(stats.zygote_pid);
  double own_before = own_cpu_seconds();
  std::atomic<long> done{0};
  std::atomic<long> failed{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  auto begin = Clock::now();
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      while (!stop.load(std::memory_order_relaxed)) {
        CallOutcome out = sandbox->run(language.trivial, Clock::now() + 10s);
        if (out.status != CallOutcome::Status::kOk) ++failed;
        ++done;
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& thread : threads) thread.join();
  double elapsed = ms_since(begin) / 1000.0;
  std::this_thread::sleep_for(1200ms);  // let the zygote reap the last children
  sandbox->query_stats();
  ProcessCpu zygote_after = process_cpu(stats.zygote_pid);
  double own = own_cpu_seconds() - own_before;
  double total_calls = static_cast<double>(done.load());
  double service_ms = own / total_calls * 1000;
  double zygote_ms = (zygote_after.self - zygote_before.self) / total_calls * 1000;
  double children_ms = (zygote_after.children - zygote_before.children) / total_calls * 1000;
  double per_call = service_ms + zygote_ms + children_ms;
  std::printf(
      "%-10s CPU per call: service %.3f ms + zygote %.3f ms + child %.3f ms = %.3f ms "
      "-> at most %.0f calls/s on 2 idle cores\n",
      language.name.c_str(), service_ms, zygote_ms, children_ms, per_call, 2000.0 / per_call);
  std::printf("%-10s minor page faults per call: zygote %.1f, child %.1f\n", language.name.c_str(),
              (zygote_after.faults - zygote_before.faults) / total_calls,
              (zygote_after.children_faults - zygote_before.children_faults) / total_calls);
  if (stats.supervisor_pid > 0) {
    std::printf("%-10s supervisor CPU since start-up (runtime initialisation): %.3f s\n",
                language.name.c_str(), process_cpu(stats.supervisor_pid).self);
  }
  std::printf("%-10s concurrency 8: %ld calls in %.2f s = %.0f calls/s, failures %ld\n",
              language.name.c_str(), done.load(), elapsed, static_cast<double>(done) / elapsed,
              failed.load());
  std::printf("%-10s zygote RSS after the run %.1f MiB\n", language.name.c_str(),
              rss_mib(stats.zygote_pid));
}

}  // namespace

const RuntimeEntry kRuntimes[] = {
    {"python", make_python_runtime},
#ifdef WF_BENCH_HAVE_JAVASCRIPT
    {"javascript", +[] { return make_javascript_runtime(); }},
#endif
};

int main(int argc, char** argv) {
  // Sandboxes re-execute this program as their supervisor.
  if (auto code = run_sandbox_supervisor_if_requested(argc, argv, kRuntimes)) return *code;
  int calls = 2000;
  double seconds = 5;
  std::string only;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--calls") == 0) calls = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--seconds") == 0) seconds = std::atof(argv[i + 1]);
    if (std::strcmp(argv[i], "--language") == 0) only = argv[i + 1];
  }
  std::vector<Language> languages;
  CallInput python;
  python.code = "def Z1(Z1K1):\n  return Z1K1";
  python.function_name = "Z1";
  python.arguments_json = R"({"Z1K1":{"Z1K1":"Z6","Z6K1":"x"}})";
  languages.push_back({"python", [] { return make_python_runtime(); }, python});
#ifdef WF_BENCH_HAVE_JAVASCRIPT
  CallInput javascript;
  javascript.code = "function Z1(Z1K1) { return Z1K1; }";
  javascript.function_name = "Z1";
  javascript.arguments_json = python.arguments_json;
  languages.push_back({"javascript", [] { return make_javascript_runtime(); }, javascript});
#endif
  for (const auto& language : languages) {
    if (!only.empty() && language.name != only) continue;
    refill_rate(language);
    measure(language, calls, seconds);
  }
  // The same trivial call in-process, for the sandbox's share of the latency.
  if (only.empty() || only == "python") {
    auto runtime = make_python_runtime();
    std::string error;
    if (runtime->initialize(error)) {
      std::vector<double> latencies;
      for (int i = 0; i < calls; ++i) {
        auto t = Clock::now();
        runtime->call(python);
        latencies.push_back(ms_since(t));
      }
      std::printf("%-10s in-process call (no sandbox): p50 %.3f ms, p99 %.3f ms\n", "python",
                  percentile(latencies, 0.5), percentile(latencies, 0.99));
    }
  }
  return 0;
}
