// wf-loadgen: an open- or closed-loop HTTP load generator for bench/overload. Each stream sends one
// request body to one URL, as one user (X-Wikifunctions-User), over at most CONNECTIONS connections
// (like a client's or a proxy's connection pool):
// - open loop: RATE requests per second are due whatever the answers (offered load does not fall
//   when the service slows down); a due request that finds every connection busy waits in the
//   generator's backlog and is sent when one frees, its latency counted from when it was due
//   (no coordinated omission). --arrivals poisson (the default): each stream's requests are due
//   at exponentially distributed intervals (a Poisson process, what many independent callers
//   make); uniform: every 1/RATE s from a random phase; aligned: every 1/RATE s from the start,
//   so that N streams of one rate send their requests in bursts of N at once (the generator
//   before session 9 did this by accident);
// - closed loop: CONNECTIONS requests in flight, the next sent when one is answered.
// Prints one JSON line per stream, every request accounted for: offered (due), sent, answered
// (ok 2xx, refused 429/503, other: any other status or a transport error), and unanswered (sent or
// due but not answered when the run ended: a failure, not a success); latency percentiles (ms) of
// accepted and refused requests from when they were sent (the service's time), and of accepted
// requests from when they were due (the caller's time); refusals by the limit their body names
// ("limit": {"name": ...}); the generator's own CPU seconds. With several streams, a last line
// (stream "*") gives the percentiles of all streams' requests together.
//
// Its cost is part of what it measures (it shares the cores with the services): one thread runs
// one event loop for all streams, their due times on timers of that loop, and the client's I/O
// on it too (no thread that sleeps per stream, no hand-off between threads per request).
//
//   wf-loadgen --url URL --body FILE --seconds S [--arrivals poisson|uniform|aligned] [--seed N]
//              --stream NAME:USER:open:RATE[:CONNECTIONS] | --stream NAME:USER:closed:CONNECTIONS
#include <sys/resource.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdio>
#include <deque>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "wf/http/client.h"

namespace {

using Clock = std::chrono::steady_clock;
constexpr int kDefaultOpenConnections = 32;
constexpr std::size_t kMaxBacklog = 1 << 20;  // due requests waiting for a connection, at most

struct Stream {
  std::string name, user, mode;
  double rate = 0;      // open loop: requests per second
  int connections = 0;  // requests in flight at most
  std::mutex mu;
  std::vector<double> ok_ms, refused_ms, ok_due_ms;
  std::map<std::string, long long> refused_by;  // the limit each refusal names
  std::deque<Clock::time_point> backlog;        // open loop: due, not sent yet
  long long offered = 0, sent = 0, other = 0, dropped = 0;
  int in_flight = 0;
};

enum class Arrivals { kPoisson, kUniform, kAligned };

struct Run {
  std::string url, body;
  Clock::time_point end;
  wf::http::HttpClient client;
  Arrivals arrivals = Arrivals::kPoisson;
};

void send_one(Run& run, Stream& s, Clock::time_point due);

double ms_since(Clock::time_point t, Clock::time_point now) {
  return std::chrono::duration<double, std::milli>(now - t).count();
}

// The limit a refusal's JSON body names ({"limit": {"name": "queue_timeout", ...}}), or its
// status when it names none (the event loop's 503 has no "limit").
std::string refusal_name(const wf::http::ClientResponse& r) {
  const std::string_view body = r.body;
  const auto limit = body.find("\"limit\"");
  const auto name = limit == std::string_view::npos ? limit : body.find("\"name\":\"", limit);
  if (name != std::string_view::npos) {
    const auto from = name + 8;
    const auto to = body.find('"', from);
    if (to != std::string_view::npos) return std::string(body.substr(from, to - from));
  }
  return std::to_string(r.status);
}

// One answer: counted, then the connection is given its next request (closed loop: a new one
// while the run lasts; open loop: the oldest due request of the backlog).
void record(Run& run, Stream& s, Clock::time_point due, Clock::time_point sent,
            const wf::http::ClientResult& r) {
  const auto now = Clock::now();
  Clock::time_point next{};
  bool again = false;
  {
    std::lock_guard lock(s.mu);
    if (r && r->status >= 200 && r->status < 300) {
      s.ok_ms.push_back(ms_since(sent, now));
      s.ok_due_ms.push_back(ms_since(due, now));
    } else if (r && (r->status == 429 || r->status == 503)) {
      s.refused_ms.push_back(ms_since(sent, now));
      ++s.refused_by[refusal_name(*r)];
    } else {
      ++s.other;
    }
    if (s.mode == "closed") {
      again = now < run.end;
      next = now;
    } else if (!s.backlog.empty() && now < run.end) {
      again = true;
      next = s.backlog.front();
      s.backlog.pop_front();
    }
    if (again) {
      ++s.sent;
    } else {
      --s.in_flight;
    }
  }
  if (again) send_one(run, s, next);
}

// Sends a request that is counted in s.sent and s.in_flight already.
void send_one(Run& run, Stream& s, Clock::time_point due) {
  wf::http::ClientRequest req;
  req.method = "POST";
  req.url = run.url;
  req.content_type = "application/json";
  req.body = run.body;
  req.headers.push_back({"x-wikifunctions-user", s.user});
  req.deadline = Clock::now() + std::chrono::seconds(30);
  const auto sent = Clock::now();
  run.client.async_send(std::move(req), nullptr, [&run, &s, due, sent](wf::http::ClientResult r) {
    record(run, s, due, sent, r);
  });
}

// Makes requests due at the stream's rate until the end (run.arrivals), on a timer of the loop:
// sent at once on a free connection, else queued in the backlog.
class OpenLoop {
 public:
  OpenLoop(boost::asio::io_context& ioc, Run& run, Stream& s, unsigned seed,
           Clock::time_point start)
      : run_(run), s_(s), timer_(ioc), random_(seed), gap_(s.rate), start_(start) {
    at_s_ = run.arrivals == Arrivals::kAligned
                ? 0
                : std::uniform_real_distribution<double>(0, 1.0 / s.rate)(random_);
    schedule();
  }

 private:
  void schedule() {
    const auto due =
        start_ + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(at_s_));
    if (due >= run_.end) return;
    timer_.expires_at(due);
    timer_.async_wait([this, due](boost::system::error_code ec) {
      if (ec) return;
      arrive(due);
      at_s_ += run_.arrivals == Arrivals::kPoisson ? gap_(random_) : 1.0 / s_.rate;
      schedule();
    });
  }

  void arrive(Clock::time_point due) {
    bool send = false;
    {
      std::lock_guard lock(s_.mu);
      ++s_.offered;
      if (s_.in_flight < s_.connections) {
        ++s_.in_flight;
        ++s_.sent;
        send = true;
      } else if (s_.backlog.size() < kMaxBacklog) {
        s_.backlog.push_back(due);
      } else {
        ++s_.dropped;
      }
    }
    if (send) send_one(run_, s_, due);
  }

  Run& run_;
  Stream& s_;
  boost::asio::steady_timer timer_;
  std::mt19937_64 random_;
  std::exponential_distribution<double> gap_;
  Clock::time_point start_;
  double at_s_ = 0;
};

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto i = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1));
  return v[i];
}

std::string report(const Stream& s, double seconds, double cpu_s) {
  const auto answered = static_cast<long long>(s.ok_ms.size() + s.refused_ms.size()) + s.other;
  std::ostringstream o;
  o << "{\"stream\":\"" << s.name << "\",\"mode\":\"" << s.mode
    << "\",\"connections\":" << s.connections << ",\"offered\":" << s.offered
    << ",\"sent\":" << s.sent << ",\"ok\":" << s.ok_ms.size()
    << ",\"refused\":" << s.refused_ms.size() << ",\"other\":" << s.other
    << ",\"unanswered\":" << s.offered - answered << ",\"dropped\":" << s.dropped
    << ",\"ok_per_s\":" << static_cast<double>(s.ok_ms.size()) / seconds
    << ",\"ok_p50_ms\":" << percentile(s.ok_ms, 0.50)
    << ",\"ok_p99_ms\":" << percentile(s.ok_ms, 0.99)
    << ",\"ok_due_p50_ms\":" << percentile(s.ok_due_ms, 0.50)
    << ",\"ok_due_p99_ms\":" << percentile(s.ok_due_ms, 0.99)
    << ",\"refused_p50_ms\":" << percentile(s.refused_ms, 0.50)
    << ",\"refused_p99_ms\":" << percentile(s.refused_ms, 0.99) << ",\"refused_by\":{";
  const char* comma = "";
  for (const auto& [name, count] : s.refused_by) {
    o << comma << "\"" << name << "\":" << count;
    comma = ",";
  }
  o << "},\"generator_cpu_s\":" << cpu_s << "}";
  return o.str();
}

// All streams' requests together (stream "*"): their sums, and percentiles over all of them.
void pool(const std::vector<std::unique_ptr<Stream>>& streams, Stream& all) {
  all.name = "*";
  all.mode = "all";
  for (const auto& s : streams) {
    all.connections += s->connections;
    all.offered += s->offered;
    all.sent += s->sent;
    all.other += s->other;
    all.dropped += s->dropped;
    all.ok_ms.insert(all.ok_ms.end(), s->ok_ms.begin(), s->ok_ms.end());
    all.ok_due_ms.insert(all.ok_due_ms.end(), s->ok_due_ms.begin(), s->ok_due_ms.end());
    all.refused_ms.insert(all.refused_ms.end(), s->refused_ms.begin(), s->refused_ms.end());
    for (const auto& [name, count] : s->refused_by) all.refused_by[name] += count;
  }
}

double process_cpu_s() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

bool parse_stream(const std::string& spec, Stream& s) {
  std::vector<std::string> parts;
  std::stringstream in(spec);
  for (std::string p; std::getline(in, p, ':');) parts.push_back(p);
  if (parts.size() < 4 || parts.size() > 5) return false;
  s.name = parts[0];
  s.user = parts[1];
  s.mode = parts[2];
  const double value = std::atof(parts[3].c_str());
  if (s.mode == "open" && value > 0) {
    s.rate = value;
    s.connections = parts.size() == 5 ? std::atoi(parts[4].c_str()) : kDefaultOpenConnections;
  } else if (s.mode == "closed" && parts.size() == 4 && value >= 1) {
    s.connections = static_cast<int>(value);
  } else {
    return false;
  }
  return s.connections >= 1 && s.connections <= 4096;
}

}  // namespace

int main(int argc, char** argv) {
  std::string url, body_file;
  double seconds = 5;
  Arrivals arrivals = Arrivals::kPoisson;
  unsigned seed = static_cast<unsigned>(std::random_device{}());
  std::vector<std::unique_ptr<Stream>> streams;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--url") {
      url = value;
    } else if (flag == "--body") {
      body_file = value;
    } else if (flag == "--seconds") {
      seconds = std::atof(value.c_str());
    } else if (flag == "--seed") {
      seed = static_cast<unsigned>(std::strtoul(value.c_str(), nullptr, 10));
    } else if (flag == "--arrivals") {
      if (value == "poisson") {
        arrivals = Arrivals::kPoisson;
      } else if (value == "uniform") {
        arrivals = Arrivals::kUniform;
      } else if (value == "aligned") {
        arrivals = Arrivals::kAligned;
      } else {
        std::fprintf(stderr, "bad --arrivals '%s': poisson, uniform or aligned\n", value.c_str());
        return 2;
      }
    } else if (flag == "--stream") {
      auto s = std::make_unique<Stream>();
      if (!parse_stream(value, *s)) {
        std::fprintf(
            stderr,
            "bad --stream '%s': NAME:USER:open:RATE[:CONNECTIONS] or NAME:USER:closed:CONNECTIONS "
            "(connections 1..4096)\n",
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
                 "usage: wf-loadgen --url URL --body FILE --seconds S (<= 120) "
                 "[--arrivals poisson|uniform|aligned] [--seed N] --stream ...\n");
    return 2;
  }
  boost::asio::io_context ioc(1);
  wf::http::ClientOptions options;
  options.max_idle_per_host = 4096;
  options.io_context = &ioc;
  const auto end = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                      std::chrono::duration<double>(seconds));
  Run run{url, body.str(), end, wf::http::HttpClient(options)};
  run.arrivals = arrivals;
  const auto start = Clock::now();
  std::vector<std::unique_ptr<OpenLoop>> open_loops;
  unsigned stream_seed = seed;
  for (auto& s : streams) {
    if (s->mode == "open") {
      open_loops.push_back(std::make_unique<OpenLoop>(ioc, run, *s, stream_seed, start));
      stream_seed = stream_seed * 2654435761u + 1;  // another sequence for each stream
      continue;
    }
    {
      std::lock_guard lock(s->mu);
      s->in_flight = s->connections;
      s->sent = s->connections;
    }
    for (int c = 0; c < s->connections; ++c) send_one(run, *s, start);
  }
  ioc.run_until(end);
  // Let the answers in flight arrive (bounded: what is still out after 3 s counts as unanswered).
  for (int i = 0; i < 300; ++i) {
    bool idle = true;
    for (auto& s : streams) {
      std::lock_guard lock(s->mu);
      idle = idle && s->in_flight == 0;
    }
    if (idle) break;
    if (ioc.stopped()) ioc.restart();  // it ran out of work
    ioc.run_for(std::chrono::milliseconds(10));
  }
  const double cpu_s = process_cpu_s();
  for (auto& s : streams) {
    std::lock_guard lock(s->mu);
    if (s->mode == "closed") s->offered = s->sent;
    std::printf("%s\n", report(*s, seconds, cpu_s).c_str());
  }
  if (streams.size() > 1) {
    std::vector<std::unique_lock<std::mutex>> locks;
    for (auto& s : streams) locks.emplace_back(s->mu);
    Stream all;
    pool(streams, all);
    std::printf("%s\n", report(all, seconds, cpu_s).c_str());
  }
  std::fflush(stdout);
  // Requests still in flight hold references to the streams: leave without destroying them.
  std::_Exit(0);
}
