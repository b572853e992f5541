#include "evaluator/sandbox/fair_queue.h"

#include <sys/random.h>

#include <algorithm>
#include <array>
#include <chrono>

namespace wf::evaluator::sandbox_internal {
namespace {

std::uint64_t rotl(std::uint64_t x, int b) {
  return (x << b) | (x >> (64 - b));
}

struct SipState {
  std::uint64_t v0, v1, v2, v3;
  void round() {
    v0 += v1;
    v1 = rotl(v1, 13) ^ v0;
    v0 = rotl(v0, 32);
    v2 += v3;
    v3 = rotl(v3, 16) ^ v2;
    v0 += v3;
    v3 = rotl(v3, 21) ^ v0;
    v2 += v1;
    v1 = rotl(v1, 17) ^ v2;
    v2 = rotl(v2, 32);
  }
  void absorb(std::uint64_t m) {
    v3 ^= m;
    round();
    round();
    v0 ^= m;
  }
};

std::uint64_t load_le(const unsigned char* p, std::size_t n) {
  std::uint64_t m = 0;
  for (std::size_t i = 0; i < n; ++i) m |= static_cast<std::uint64_t>(p[i]) << (8 * i);
  return m;
}

std::array<std::uint64_t, 2> process_key() {
  std::array<std::uint64_t, 2> key{};
  if (::getrandom(key.data(), sizeof(key), 0) != static_cast<ssize_t>(sizeof(key))) {
    // No entropy source: the clocks still keep the key out of reach of offline computation.
    key[0] =
        static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    key[1] =
        static_cast<std::uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());
  }
  return key;
}

}  // namespace

// SipHash-2-4 (Aumasson and Bernstein, "SipHash: a fast short-input PRF", 2012).
std::uint64_t siphash24(std::uint64_t k0, std::uint64_t k1, std::string_view text) {
  SipState s{k0 ^ 0x736f6d6570736575ull, k1 ^ 0x646f72616e646f6dull, k0 ^ 0x6c7967656e657261ull,
             k1 ^ 0x7465646279746573ull};
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const std::size_t whole = text.size() / 8 * 8;
  for (std::size_t i = 0; i < whole; i += 8) s.absorb(load_le(p + i, 8));
  s.absorb(load_le(p + whole, text.size() - whole) |
           (static_cast<std::uint64_t>(text.size()) << 56));
  s.v2 ^= 0xff;
  for (int i = 0; i < 4; ++i) s.round();
  return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

std::uint64_t code_hash(std::string_view code) {
  static const std::array<std::uint64_t, 2> key = process_key();
  return siphash24(key[0], key[1], code);
}

FairQueue::Pushed FairQueue::push(const FlowKey& key, Ticket ticket) {
  if (queued_ >= options_.queued_total) return {Admission::kTotalFull, false};
  Caller& caller = callers_[key.caller];
  Flow& flow = caller.flows[key.code];
  // Behind its own flow: the flow holds all its children, or already has as many calls waiting
  // as it may still take children (a flow's 2,000th queued call waits for its cap, not the pool).
  const bool at_cap = options_.children_per_flow != 0 &&
                      flow.held + flow.queue.size() >= options_.children_per_flow;
  if (flow.queue.size() >= options_.queued_per_flow) {
    forget_if_idle(key.caller, caller, key.code);  // a per-flow bound of 0 refuses every call
    return {Admission::kFlowFull, at_cap};
  }
  const bool was = eligible(flow);
  flow.queue.push_back(ticket);
  ++queued_;
  update(key.caller, caller, key.code, flow, was);
  return {Admission::kQueued, at_cap};
}

bool FairQueue::remove(const FlowKey& key, Ticket ticket) {
  auto c = callers_.find(key.caller);
  if (c == callers_.end()) return false;
  auto f = c->second.flows.find(key.code);
  if (f == c->second.flows.end()) return false;
  Flow& flow = f->second;
  auto it = std::find(flow.queue.begin(), flow.queue.end(), ticket);
  if (it == flow.queue.end()) return false;
  const bool was = eligible(flow);
  flow.queue.erase(it);
  --queued_;
  update(key.caller, c->second, key.code, flow, was);
  forget_if_idle(key.caller, c->second, key.code);
  return true;
}

std::optional<FairQueue::Ticket> FairQueue::pop() {
  // Each pass takes a caller off the ring; every eligible flow is in its caller's ring and every
  // caller with an eligible flow in ring_, so this ends within one turn of the rings.
  while (eligible_flows_ > 0 && !ring_.empty()) {
    const std::string name = std::move(ring_.front());
    ring_.pop_front();
    auto c = callers_.find(name);
    if (c == callers_.end()) continue;
    Caller& caller = c->second;
    caller.in_ring = false;
    while (!caller.ring.empty()) {
      const std::uint64_t code = caller.ring.front();
      caller.ring.pop_front();
      auto f = caller.flows.find(code);
      if (f == caller.flows.end()) continue;
      Flow& flow = f->second;
      flow.in_ring = false;
      if (!eligible(flow)) continue;  // at its cap: back in the ring when a child comes back
      const Ticket ticket = flow.queue.front();
      flow.queue.pop_front();
      --queued_;
      ++flow.held;
      ++held_;
      update(name, caller, code, flow, true);
      if (!caller.ring.empty() && !caller.in_ring) {
        ring_.push_back(name);
        caller.in_ring = true;
      }
      return ticket;
    }
  }
  return std::nullopt;
}

void FairQueue::release(const FlowKey& key) {
  auto c = callers_.find(key.caller);
  if (c == callers_.end()) return;
  auto f = c->second.flows.find(key.code);
  if (f == c->second.flows.end() || f->second.held == 0) return;
  Flow& flow = f->second;
  const bool was = eligible(flow);
  --flow.held;
  --held_;
  update(key.caller, c->second, key.code, flow, was);
  forget_if_idle(key.caller, c->second, key.code);
}

FairQueue::Counts FairQueue::counts() const {
  Counts counts;
  counts.queued = queued_;
  counts.held = held_;
  counts.callers = callers_.size();
  for (const auto& [name, caller] : callers_) {
    counts.flows += caller.flows.size();
    for (const auto& [code, flow] : caller.flows) {
      if (options_.children_per_flow != 0 && flow.held >= options_.children_per_flow) {
        ++counts.flows_at_cap;
        counts.queued_at_cap += flow.queue.size();
      }
    }
  }
  return counts;
}

void FairQueue::update(const std::string& caller_name, Caller& caller, std::uint64_t code,
                       Flow& flow, bool was_eligible) {
  const bool now = eligible(flow);
  if (now && !was_eligible) ++eligible_flows_;
  if (!now && was_eligible) --eligible_flows_;
  if (!now) return;
  if (!flow.in_ring) {
    caller.ring.push_back(code);
    flow.in_ring = true;
  }
  if (!caller.in_ring) {
    ring_.push_back(caller_name);
    caller.in_ring = true;
  }
}

// Drops the records of a flow with nothing queued and nothing held, and of a caller without
// flows, ring entries included (so that neither map nor ring grows with flows that come and go).
void FairQueue::forget_if_idle(const std::string& caller_name, Caller& caller, std::uint64_t code) {
  auto f = caller.flows.find(code);
  if (f == caller.flows.end() || !f->second.queue.empty() || f->second.held != 0) return;
  if (f->second.in_ring) std::erase(caller.ring, code);
  caller.flows.erase(f);
  if (!caller.flows.empty()) return;
  if (caller.in_ring) std::erase(ring_, caller_name);
  callers_.erase(caller_name);  // `caller` (and a caller_name that referred into it) ends here
}

}  // namespace wf::evaluator::sandbox_internal
