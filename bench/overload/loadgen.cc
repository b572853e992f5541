// wf-loadgen: an open- or closed-loop HTTP load generator for bench/overload. Each stream sends one
// request body to one URL, as one user (X-Wikifunctions-User), either at a fixed rate whatever the
// answers (open loop: offered load does not fall when the service slows down) or with a fixed
// number of requests in flight (closed loop). Prints one JSON line per stream: counts by outcome
// and latency percentiles of accepted (2xx) and refused (429/503) requests, in milliseconds.
//
//   wf-loadgen --url URL --body FILE --seconds S
//              --stream NAME:USER:open:RATE | --stream NAME:USER:closed:CONNECTIONS  [...]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "wf/http/client.h"

namespace {

using Clock = std::chrono::steady_clock;
constexpr int kMaxInFlight = 8192;  // open loop: beyond this the generator, not the service, lags

struct Stream {
  std::string name, user, mode;
  double value = 0;  // rate (open) or connections (closed)
  std::mutex mu;
  std::vector<double> ok_ms, refused_ms;
  long long other = 0, skipped = 0, sent = 0;
  std::atomic<int> in_flight{0};
};

struct Run {
  std::string url, body;
  Clock::time_point end;
  wf::http::HttpClient client;
};

void send_one(Run& run, Stream& s, bool closed);

void record(Run& run, Stream& s, Clock::time_point t0, const wf::http::ClientResult& r,
            bool closed) {
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  {
    std::lock_guard lock(s.mu);
    if (r && r->status >= 200 && r->status < 300) {
      s.ok_ms.push_back(ms);
    } else if (r && (r->status == 429 || r->status == 503)) {
      s.refused_ms.push_back(ms);
    } else {
      ++s.other;
    }
  }
  s.in_flight.fetch_sub(1);
  if (closed && Clock::now() < run.end) send_one(run, s, true);
}

void send_one(Run& run, Stream& s, bool closed) {
  wf::http::ClientRequest req;
  req.method = "POST";
  req.url = run.url;
  req.content_type = "application/json";
  req.body = run.body;
  req.headers.push_back({"x-wikifunctions-user", s.user});
  req.deadline = Clock::now() + std::chrono::seconds(30);
  s.in_flight.fetch_add(1);
  {
    std::lock_guard lock(s.mu);
    ++s.sent;
  }
  const auto t0 = Clock::now();
  run.client.async_send(std::move(req), nullptr, [&run, &s, t0, closed](wf::http::ClientResult r) {
    record(run, s, t0, r, closed);
  });
}

// Sends at s.value per second until the end, from this thread.
void open_loop(Run& run, Stream& s) {
  const auto start = Clock::now();
  const double interval_s = 1.0 / s.value;
  for (long long i = 0;; ++i) {
    const auto due = start + std::chrono::duration_cast<Clock::duration>(
                                 std::chrono::duration<double>(i * interval_s));
    if (due >= run.end) break;
    std::this_thread::sleep_until(due);
    if (s.in_flight.load() >= kMaxInFlight) {
      std::lock_guard lock(s.mu);
      ++s.skipped;
      continue;
    }
    send_one(run, s, false);
  }
}

double percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto i = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1));
  return v[i];
}

std::string report(Stream& s, double seconds) {
  std::lock_guard lock(s.mu);
  std::ostringstream o;
  o << "{\"stream\":\"" << s.name << "\",\"sent\":" << s.sent << ",\"ok\":" << s.ok_ms.size()
    << ",\"refused\":" << s.refused_ms.size() << ",\"other\":" << s.other
    << ",\"skipped\":" << s.skipped
    << ",\"ok_per_s\":" << static_cast<double>(s.ok_ms.size()) / seconds
    << ",\"ok_p50_ms\":" << percentile(s.ok_ms, 0.50)
    << ",\"ok_p99_ms\":" << percentile(s.ok_ms, 0.99)
    << ",\"refused_p50_ms\":" << percentile(s.refused_ms, 0.50)
    << ",\"refused_p99_ms\":" << percentile(s.refused_ms, 0.99) << "}";
  return o.str();
}

bool parse_stream(const std::string& spec, Stream& s) {
  std::vector<std::string> parts;
  std::stringstream in(spec);
  for (std::string p; std::getline(in, p, ':');) parts.push_back(p);
  if (parts.size() != 4 || (parts[2] != "open" && parts[2] != "closed")) return false;
  s.name = parts[0];
  s.user = parts[1];
  s.mode = parts[2];
  s.value = std::atof(parts[3].c_str());
  return s.value > 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string url, body_file;
  double seconds = 5;
  std::vector<std::unique_ptr<Stream>> streams;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--url") {
      url = value;
    } else if (flag == "--body") {
      body_file = value;
    } else if (flag == "--seconds") {
      seconds = std::atof(value.c_str());
    } else if (flag == "--stream") {
      auto s = std::make_unique<Stream>();
      if (!parse_stream(value, *s)) {
        std::fprintf(stderr, "bad --stream '%s': NAME:USER:open:RATE or NAME:USER:closed:N\n",
                     value.c_str());
        return 2;
      }
      streams.push_back(std::move(s));
    }
  }
  std::ifstream f(body_file);
  std::stringstream body;
  body << f.rdbuf();
  if (url.empty() || body.str().empty() || streams.empty() || !(seconds > 0) || seconds > 120) {
    std::fprintf(stderr,
                 "usage: wf-loadgen --url URL --body FILE --seconds S (<= 120) --stream ...\n");
    return 2;
  }
  wf::http::ClientOptions options;
  options.max_idle_per_host = 1024;
  Run run{url, body.str(),
          Clock::now() +
              std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds)),
          wf::http::HttpClient(options)};
  std::vector<std::thread> senders;
  for (auto& s : streams) {
    if (s->mode == "open") {
      senders.emplace_back([&run, &s] { open_loop(run, *s); });
    } else {
      for (int c = 0; c < static_cast<int>(s->value); ++c) send_one(run, *s, true);
    }
  }
  for (auto& t : senders) t.join();
  std::this_thread::sleep_until(run.end);
  // Let the last answers arrive (bounded).
  for (int i = 0; i < 300; ++i) {
    bool idle = true;
    for (auto& s : streams) idle = idle && s->in_flight.load() == 0;
    if (idle) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  for (auto& s : streams) std::printf("%s\n", report(*s, seconds).c_str());
  return 0;
}
