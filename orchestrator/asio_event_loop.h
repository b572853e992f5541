#pragma once
// The engine's EventLoop port over an Asio io_context (the HTTP server's): evaluations resume on
// its threads after a small evaluator answer (orchestrator/engine/event_loop.h).

#include <memory>

#include "orchestrator/engine/event_loop.h"

namespace boost::asio {
class io_context;
}

namespace wf::orchestrator {

// `ioc` must outlive the returned object's users (the engine).
std::shared_ptr<EventLoop> make_event_loop(boost::asio::io_context& ioc);

}  // namespace wf::orchestrator
