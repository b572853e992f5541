#include "runtime_harness.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>

namespace wf::evaluator::testing {
namespace {

std::unique_ptr<LanguageRuntime> g_runtime;

void on_alarm(int) {
  g_runtime->request_interrupt();
}

void write_all(int fd, const std::string& data) {
  std::size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n <= 0) {
      return;
    }
    done += static_cast<std::size_t>(n);
  }
}

}  // namespace

LanguageRuntime& runtime() {
  return *g_runtime;
}

CallOutput call(const std::string& code, const std::string& function_name,
                const std::string& arguments_json) {
  return g_runtime->call({code, function_name, arguments_json});
}

ChildResult call_in_child(const std::string& code, const std::string& function_name,
                          const std::string& arguments_json, std::chrono::milliseconds alarm_after,
                          std::uint64_t memory_bytes, std::uint64_t memory_budget,
                          AlarmClock clock) {
  ChildResult result;
  int fds[2];
  if (::pipe(fds) != 0) {
    ADD_FAILURE() << "pipe failed";
    return result;
  }
  const auto start = std::chrono::steady_clock::now();
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    g_runtime->after_fork();
    if (memory_budget != 0) {
      g_runtime->set_memory_budget(memory_budget);
    }
    if (memory_bytes != 0) {
      // As the sandbox computes it: what the zygote maps + the budget + the runtime's overhead.
      unsigned long pages = 0;
      if (std::FILE* f = std::fopen("/proc/self/statm", "r")) {
        if (std::fscanf(f, "%lu", &pages) != 1) {
          pages = 0;
        }
        std::fclose(f);
      }
      const rlim_t limit = pages * static_cast<rlim_t>(::sysconf(_SC_PAGESIZE)) + memory_bytes +
                           g_runtime->address_space_overhead();
      rlimit rl{limit, limit};
      ::setrlimit(RLIMIT_AS, &rl);
    }
    if (alarm_after.count() > 0) {
      const bool cpu = clock == AlarmClock::kCpu;
      struct sigaction sa {};
      sa.sa_handler = &on_alarm;
      ::sigaction(cpu ? SIGPROF : SIGALRM, &sa, nullptr);
      itimerval it{};
      it.it_value.tv_sec = alarm_after.count() / 1000;
      it.it_value.tv_usec = (alarm_after.count() % 1000) * 1000;
      ::setitimer(cpu ? ITIMER_PROF : ITIMER_REAL, &it, nullptr);
    }
    CallOutput out = g_runtime->call({code, function_name, arguments_json});
    nlohmann::json j = {{"ok", out.ok},
                        {"z22", out.z22_json},
                        {"error", out.error_message},
                        {"oom", out.out_of_memory},
                        {"printed", out.captured_output}};
    write_all(fds[1], j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    ::close(fds[1]);
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string data;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n <= 0) {
      break;
    }
    data.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  rusage usage{};
  ::wait4(pid, &result.wait_status, 0, &usage);
  result.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - start);
  const auto ms = [](const timeval& t) {
    return std::chrono::milliseconds(t.tv_sec * 1000 + t.tv_usec / 1000);
  };
  result.cpu = ms(usage.ru_utime) + ms(usage.ru_stime);
  if (!data.empty()) {
    auto j = nlohmann::json::parse(data);
    result.output.ok = j["ok"];
    result.output.z22_json = j["z22"];
    result.output.error_message = j["error"];
    result.output.out_of_memory = j["oom"];
    result.output.captured_output = j["printed"];
  }
  return result;
}

nlohmann::json result_of(const CallOutput& out) {
  if (!out.ok) {
    return nullptr;
  }
  return nlohmann::json::parse(out.z22_json).at("Z22K1");
}

nlohmann::json error_of(const CallOutput& out) {
  if (!out.ok) {
    return nullptr;
  }
  nlohmann::json meta = nlohmann::json::parse(out.z22_json).at("Z22K2");
  // Walk the normal-form typed list of pairs.
  if (!meta.is_object() || !meta.contains("K1")) {
    return nullptr;
  }
  nlohmann::json tail = meta["K1"];
  while (tail.is_object() && tail.contains("K1")) {
    const nlohmann::json& pair = tail["K1"];
    if (pair.value("K1", nlohmann::json::object()).value("Z6K1", "") == "errors") {
      return pair["K2"];
    }
    tail = tail["K2"];
  }
  return nullptr;
}

std::string error_message_of(const CallOutput& out) {
  nlohmann::json e = error_of(out);
  if (e.is_null()) {
    return "";
  }
  return e.at("Z5K2").at("Z6K1").get<std::string>();
}

nlohmann::json list_type(const nlohmann::json& item_type) {
  return {{"Z1K1", z9("Z7")}, {"Z7K1", z9("Z881")}, {"Z881K1", item_type}};
}

nlohmann::json typed_list(const nlohmann::json& item_type,
                          const std::vector<nlohmann::json>& items) {
  const nlohmann::json type = list_type(item_type);
  nlohmann::json result = {{"Z1K1", type}};
  nlohmann::json* tail = &result;
  for (const auto& item : items) {
    (*tail)["K1"] = item;
    (*tail)["K2"] = {{"Z1K1", type}};
    tail = &(*tail)["K2"];
  }
  return result;
}

nlohmann::json pair_type(const nlohmann::json& k, const nlohmann::json& v) {
  return {{"Z1K1", z9("Z7")}, {"Z7K1", z9("Z882")}, {"Z882K1", k}, {"Z882K2", v}};
}

}  // namespace wf::evaluator::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  wf::evaluator::testing::g_runtime = wf::evaluator::make_javascript_runtime();
  std::string error;
  if (!wf::evaluator::testing::g_runtime->initialize(error)) {
    std::fprintf(stderr, "JavaScript runtime failed to initialise: %s\n", error.c_str());
    return 1;
  }
  return RUN_ALL_TESTS();
}
