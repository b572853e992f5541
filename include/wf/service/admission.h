#pragma once
// Between an HTTP route and the limits module (which knows nothing of HTTP): what a request says
// about its caller, and the HTTP answer to a refusal. Both services use it in front of their
// evaluate route.

#include <memory>
#include <string_view>

#include "wf/http/message.h"
#include "wf/http/server.h"
#include "wf/limits/gate.h"

namespace wf::service {

// The peer address, the user header (named by the gate's identity options) and X-Forwarded-For.
// The views point into `request`.
limits::CallerInfo caller_info(const http::Request& request, std::string_view user_header);

// True when the caller asks for refusals as a Z22 envelope: header X-Wikifunctions-Envelope with
// any value but "0", "false" or "no" (docs/limits.md says who should, and why).
bool wants_envelope(const http::Request& request);

// 429 or 503 with Retry-After and the JSON body (or the Z22) of limits::render().
http::Response refusal_response(const limits::Refusal& refusal, bool envelope);

// An asynchronous route behind the gate: the call starts when admitted (perhaps later, from the
// fair queue, on the thread that freed a slot), or is answered with the refusal. A caller that
// hangs up while queued leaves the queue. The call's slot and its user's place are given back when
// it answers, charged with the CPU its response reports. A 429 to a caller refused less than a
// second before (who ignores Retry-After) is sent 200 ms late, so that a flood in a loop slows
// down.
http::AsyncHandler admitted_async(std::shared_ptr<limits::Gate> gate, http::AsyncHandler handler);

// GET /_admin/limits (the limits in force and their state) and PUT /_admin/limits (a change:
// limits::Gate::apply), on the admin listener (loopback, optional bearer token); docs/limits.md.
void add_limits_admin_routes(http::Server& server, std::shared_ptr<limits::Gate> gate);

}  // namespace wf::service
