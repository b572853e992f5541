#pragma once
// The process-wide Prometheus registry and the metric families every service shares.
// The /metrics route serialises registry() plus the process collector (CPU, memory, fds, threads).

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <functional>
#include <string>
#include <string_view>

namespace wf::obs {

// The registry all metrics of this process live in. Created on first use; never destroyed.
prometheus::Registry& registry();

// Sets wf_build_info{service,version,commit} = 1. Call once at start-up.
void set_build_info(std::string_view service, std::string_view version, std::string_view commit);

// The Prometheus text exposition (format 0.0.4) of registry() and the process metrics.
// Runs the scrape hooks first.
std::string render_metrics();

// Registers a function that refreshes gauges just before each scrape (e.g. the sandbox pool
// size). Hooks must be cheap and thread-safe; they live for the whole process.
void add_scrape_hook(std::function<void()> hook);

// Counts a "should never happen" that the service survives (STYLE.md: bug checks). Also logs.
void count_bug(std::string_view where, std::string_view what);

// Buckets for request latencies in seconds: 0.5 ms … 30 s.
const prometheus::Histogram::BucketBoundaries& latency_buckets();
// Buckets for body sizes in bytes: 64 B … 16 MiB.
const prometheus::Histogram::BucketBoundaries& size_buckets();

}  // namespace wf::obs
