#pragma once
// The engine's EventLoop port over the HTTP server's Asio event loops (one io_context per loop
// thread): evaluations resume on the loop thread their evaluator answer arrived on, after a small
// answer (orchestrator/engine/event_loop.h).

#include <memory>
#include <vector>

#include "orchestrator/engine/event_loop.h"

namespace boost::asio {
class io_context;
}

namespace wf::orchestrator {

// `loops` (Server::io_contexts(), each run by one thread) must outlive the returned object's
// users (the engine).
std::shared_ptr<EventLoop> make_event_loop(std::vector<boost::asio::io_context*> loops);

}  // namespace wf::orchestrator
