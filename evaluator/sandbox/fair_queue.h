#pragma once
// Who gets the next sandbox child: calls waiting for a child, served fairly across flows.
//
// A flow is one piece of code (a hash of its code string, in one language's sandbox) asked for
// by one caller (the user the calling orchestrator names in X-Wikifunctions-Caller, when the
// evaluator trusts it, else the orchestrator's address). The function's id, its arguments and the
// request are not part of it: the same code under many function ids is one flow. Waiting calls
// are served round robin, first across callers, then across the caller's flows (deficit round
// robin where every grant costs one child), so a flow with thousands of queued calls gets one
// child per turn like a flow with one. A flow holds at most `children_per_flow` children at a
// time; its further calls queue (at most `queued_per_flow`), and calls of other flows get the
// next child at once. See docs/limits.md "Sandbox children".
//
// Not thread-safe: the sandbox's core uses it on its strand. Memory is bounded: one small entry
// per queued call (at most `queued_total`), one record per flow with queued calls or held
// children.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace wf::evaluator::sandbox_internal {

struct FairQueueOptions {
  std::size_t children_per_flow = 16;  // children one flow may hold at once; 0 = no cap
  std::size_t queued_per_flow = 2048;  // calls of one flow waiting for a child
  std::size_t queued_total = 8192;     // calls waiting for a child, all flows together
};

// The flow of a call: its caller and a hash of its code (see above).
struct FlowKey {
  std::string caller;
  std::uint64_t code = 0;
  bool operator==(const FlowKey&) const = default;
};
// SipHash-2-4 under a key drawn once per process: a code string whose hash equals another
// code's would share that code's children and queue, so the hash must be one whose collisions
// cannot be computed offline (std::hash is MurmurHash-style, with seed-independent collisions).
std::uint64_t code_hash(std::string_view code);
std::uint64_t siphash24(std::uint64_t k0, std::uint64_t k1, std::string_view text);

class FairQueue {
 public:
  using Ticket = std::uint64_t;

  enum class Admission {
    kQueued,     // waits for a child (pop() hands it out)
    kFlowFull,   // the flow already has queued_per_flow calls waiting
    kTotalFull,  // queued_total calls are waiting
  };
  struct Pushed {
    Admission admission = Admission::kQueued;
    bool at_cap = false;  // queued behind its own flow: the flow held all its children, or held
                          // and had waiting as many calls as it may hold children
  };
  struct Counts {
    std::size_t queued = 0;         // calls waiting for a child
    std::size_t queued_at_cap = 0;  // ... of them in flows that hold all their children
    std::size_t held = 0;           // children held by calls
    std::size_t flows = 0;          // flows with queued calls or held children
    std::size_t flows_at_cap = 0;
    std::size_t callers = 0;  // callers with queued calls or held children
  };

  explicit FairQueue(FairQueueOptions options) : options_(options) {}

  Pushed push(const FlowKey& key, Ticket ticket);
  // Takes back a queued call (it ended while waiting). False when it is not queued (handed out).
  bool remove(const FlowKey& key, Ticket ticket);
  // True when a queued call may have a child now (its flow is below its cap).
  bool eligible() const { return eligible_flows_ > 0; }
  // The next call to give a child to; its flow holds one more child from now on.
  std::optional<Ticket> pop();
  // A child held by a call of `key` is given back (the call ended, or runs again elsewhere).
  void release(const FlowKey& key);
  Counts counts() const;

 private:
  struct Flow {
    std::deque<Ticket> queue;
    std::size_t held = 0;
    bool in_ring = false;  // listed in its caller's ring (may be stale: checked when reached)
  };
  struct Caller {
    std::unordered_map<std::uint64_t, Flow> flows;
    std::deque<std::uint64_t> ring;  // flows to serve, round robin
    bool in_ring = false;
  };

  bool eligible(const Flow& flow) const {
    return !flow.queue.empty() &&
           (options_.children_per_flow == 0 || flow.held < options_.children_per_flow);
  }
  // Keeps eligible_flows_ and the rings right after `flow` changed (was_eligible: before).
  void update(const std::string& caller_name, Caller& caller, std::uint64_t code, Flow& flow,
              bool was_eligible);
  void forget_if_idle(const std::string& caller_name, Caller& caller, std::uint64_t code);

  FairQueueOptions options_;
  std::unordered_map<std::string, Caller> callers_;
  std::deque<std::string> ring_;  // callers to serve, round robin
  std::size_t queued_ = 0;
  std::size_t held_ = 0;
  std::size_t eligible_flows_ = 0;
};

}  // namespace wf::evaluator::sandbox_internal
