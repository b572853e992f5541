#include "orchestrator/routes.h"

#include <fmt/format.h>
#include <prometheus/counter.h>

#include <algorithm>
#include <atomic>
#include <boost/url/params_view.hpp>
#include <boost/url/parse_query.hpp>
#include <cctype>
#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>
#include <utility>

#include "wf/codec/avro.h"
#include "wf/codec/plain_json.h"
#include "wf/obs/metrics.h"
#include "wf/service/admission.h"

namespace wf::orchestrator {
namespace {

prometheus::Family<prometheus::Counter>& call_counter() {
  static auto& family =
      prometheus::BuildCounter()
          .Name("wf_orchestrator_calls_total")
          .Help(
              "Function calls answered, by outcome: ok (a result) or error (a Z5 in the envelope).")
          .Register(obs::registry());
  return family;
}

// application/x-www-form-urlencoded bodies (accepted by the original):
// zobject=<JSON>&doValidate=true. Each field is decoded on its own and placed into the request as a
// JSON value, never pasted into JSON text: a value cannot add or override fields. An empty or
// absent zobject is a missing one (a void Z22); a zobject that is not JSON is the string it is (a
// Z539 envelope, as the original answers for a string).
bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// Form bodies as clients send them (curl -d 'zobject={"Z1K1":…}') hold bytes a URL query may
// not, and the original's parser took them as they are: those bytes, and a '%' that starts no
// escape, are percent-encoded here so that parse_query decodes them back to themselves.
std::string as_query(std::string_view body) {
  static constexpr std::string_view kQueryChars = "-._~!$&'()*+,;=:@/?";
  std::string out;
  out.reserve(body.size());
  for (std::size_t i = 0; i < body.size(); ++i) {
    const char c = body[i];
    const bool escape =
        c == '%' && i + 2 < body.size() && is_hex(body[i + 1]) && is_hex(body[i + 2]);
    if (std::isalnum(static_cast<unsigned char>(c)) ||
        kQueryChars.find(c) != std::string_view::npos || escape) {
      out += c;
    } else {
      out += fmt::format("%{:02X}", static_cast<unsigned char>(c));
    }
  }
  return out;
}

std::expected<nlohmann::json, std::string> form_to_request(std::string_view raw,
                                                           const codec::DecodeLimits& limits) {
  const std::string body = as_query(raw);
  auto query = boost::urls::parse_query(body);
  if (!query) {
    return std::unexpected(
        fmt::format("the form body is not application/x-www-form-urlencoded ({}): send "
                    "zobject=<percent-encoded JSON>&doValidate=false, or JSON with Content-Type "
                    "application/json",
                    query.error().message()));
  }
  boost::urls::encoding_opts opts;
  opts.space_as_plus = true;
  nlohmann::json request = {{"zobject", nullptr}, {"doValidate", false}};
  // parse_query() has accepted the body, so this view of it does not throw.
  for (const boost::urls::param& field : boost::urls::params_view(body, opts)) {
    if (field.key == "doValidate") {
      request["doValidate"] = field.value == "true" || field.value == "1";
    } else if (field.key == "zobject") {
      auto value = codec::parse_json<nlohmann::json>(field.value, limits);
      if (!value && nlohmann::json::accept(field.value)) {  // JSON, but beyond the limits
        return std::unexpected(
            fmt::format("the zobject field is refused: {}", value.error().message));
      }
      request["zobject"] = field.value.empty() ? nlohmann::json(nullptr)
                           : value             ? std::move(*value)
                                               : nlohmann::json(field.value);
    }
  }
  return request;
}

bool reference_like(std::string_view s) {
  // ^[A-JL-Z][1-9][0-9]*$ (zobjects.md §1): what normalisation turns into a reference.
  if (s.size() < 2 || s[0] < 'A' || s[0] > 'Z' || s[0] == 'K' || s[1] < '1' || s[1] > '9')
    return false;
  for (std::size_t i = 2; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
  }
  return true;
}

void count_call(bool has_error) {
  // Each series is looked up once, when it is first used.
  if (has_error) {
    static prometheus::Counter& error_calls = call_counter().Add({{"outcome", "error"}});
    error_calls.Increment();
  } else {
    static prometheus::Counter& ok_calls = call_counter().Add({{"outcome", "ok"}});
    ok_calls.Increment();
  }
}

http::Response z22_response(std::string z22) {
  http::Response r = http::Response::json(200, std::move(z22));
  r.content_type = "application/json; charset=utf-8";
  return r;
}

// The JSON text of a request body, or empty for another content type (a form body's text is
// not its request). As handle_evaluate reads it: no Content-Type is JSON.
std::string_view json_body(const http::Request& request) {
  const auto ct = request.header("content-type");
  if (ct && (ct->find("json") == std::string_view::npos ||
             ct->find("application/x-www-form-urlencoded") != std::string_view::npos)) {
    return {};
  }
  return request.body;
}

// A repeated request answered from the result cache on the calling thread (docs/result-cache.md,
// "The fast path of a hit"): no parse, no evaluation fiber.
// `body`: json_body(request).
std::optional<http::Response> answer_cached(Engine& engine, std::string_view body,
                                            const CallContext& ctx) {
  if (body.empty()) return std::nullopt;
  bool has_error = false;
  auto z22 = engine.answer_cached(body, ctx, &has_error);
  if (!z22) return std::nullopt;
  count_call(has_error);
  return z22_response(std::move(*z22));
}

// What a scan of a request body's JSON string literals found, without parsing it (the two
// event-loop checks below read it with their own policies).
struct Literals {
  int calls = 0;  // "Z7" literals
  // Reference-like literals (a quoted ZID) the engine does not serve from memory.
  int not_local = 0;
};

// Walks the string literals of a small JSON request body: nullopt when the body is larger than
// `max_bytes`, not JSON, has a literal with an escape or no end, asks for static validation, has
// inline code (Z14K3, Z16…: an evaluator call), or has more than `max_not_local` references the
// engine does not serve from memory (the walk stops there).
std::optional<Literals> scan_literals(const Engine& engine, const http::Request& request,
                                      std::size_t max_bytes, int max_not_local,
                                      const ReadBody* read) {
  const std::string_view body = request.body;
  if (body.size() > max_bytes) return std::nullopt;
  if (read != nullptr && read->usual) {  // counted while the body was read: no second scan
    if (read->unusual || read->not_local > max_not_local) return std::nullopt;
    return Literals{read->calls, read->not_local};
  }
  if (const auto ct = request.header("content-type");
      ct && ct->find("json") == std::string_view::npos) {
    return std::nullopt;
  }
  Literals found;
  std::size_t i = 0;
  while ((i = body.find('"', i)) != std::string_view::npos) {
    const std::size_t end = body.find('"', i + 1);
    if (end == std::string_view::npos) return std::nullopt;
    const std::string_view text = body.substr(i + 1, end - i - 1);
    if (text.find('\\') != std::string_view::npos) return std::nullopt;
    if (text == "doValidate") {
      const std::size_t v = body.find_first_not_of(" \t\r\n:", end + 1);
      if (v == std::string_view::npos || body.compare(v, 5, "false") != 0) return std::nullopt;
    }
    if (text == "Z14K3" || text.starts_with("Z16K")) return std::nullopt;
    if (text == "Z7") ++found.calls;
    if (reference_like(text) && !engine.serves_locally(text) && ++found.not_local > max_not_local) {
      return std::nullopt;
    }
    i = end + 1;
  }
  return found;
}

}  // namespace

bool can_run_inline(const Engine& engine, const RouteOptions& options, const http::Request& request,
                    const ReadBody* read) {
  // Anything unusual (escapes, code, validation, a reference that is not built in) goes to a
  // worker.
  return scan_literals(engine, request, options.max_inline_body_bytes, 0, read).has_value();
}

bool may_start_on_loop(const Engine& engine, const RouteOptions& options,
                       const http::Request& request, const ReadBody* read) {
  const auto found = scan_literals(engine, request, options.max_loop_start_bytes, 1, read);
  return found && found->calls == 1;
}

namespace {

// The request's body as the engine takes it, or the 4xx that answers it. Kept out of line: its
// frame (parser, messages: ~1 KiB) is gone before the evaluation starts, so a call that parks on
// the evaluator keeps less of its fiber's stack (bench/slow_calls: memory per in-flight call).
[[gnu::noinline]] std::expected<nlohmann::json, http::Response> evaluate_body(
    const RouteOptions& options, const http::Request& request) {
  const std::string_view content_type = request.header("content-type").value_or("application/json");
  codec::DecodeLimits limits;
  limits.max_depth = options.max_json_depth;
  std::expected<nlohmann::json, std::string> body;
  if (content_type.find("application/x-www-form-urlencoded") != std::string_view::npos) {
    body = form_to_request(request.body, limits);
    if (!body) return std::unexpected(http::Response::error(400, "bad_request", body.error()));
  } else if (content_type.find("json") == std::string_view::npos) {
    return std::unexpected(http::Response::error(
        415, "unsupported_media_type",
        fmt::format("Content-Type '{}' is not accepted: send application/json", content_type)));
  } else if (auto plain = codec::parse_plain_json(
                 request.body, static_cast<int>(std::min<std::size_t>(limits.max_depth,
                                                                      codec::kMaxPlainDepth)))) {
    // The usual request (strings without escapes, no numbers): one scan, the same value as
    // nlohmann's parser gives (plain_json.h), within the same depth bound.
    body = std::move(*plain);
  } else if (auto parsed = codec::parse_json<nlohmann::json>(request.body, limits)) {
    body = std::move(*parsed);
  } else {
    return std::unexpected(http::Response::error(
        400, "bad_request", fmt::format("the body is not valid JSON: {}", parsed.error().message)));
  }
  if (!body->is_object()) {
    return std::unexpected(http::Response::error(
        400, "bad_request",
        R"(the body must be a JSON object: {"zobject": <function call>, "doValidate": false})"));
  }
  return std::move(*body);
}

[[gnu::noinline]] http::Response evaluate_parsed(Engine& engine, const nlohmann::json& body,
                                                 const http::Request& request,
                                                 const CallContext& ctx) {
  bool has_error = false;
  std::string z22 = engine.evaluate_text(body, json_body(request), ctx, &has_error);
  count_call(has_error);
  return z22_response(std::move(z22));
}

}  // namespace

namespace {

// read_request of json_body(request).
std::shared_ptr<ReadBody> read_json(Engine& engine, const RouteOptions& options,
                                    std::string_view body) {
  if (body.empty()) return nullptr;
  return engine.read_body(
      body, static_cast<int>(std::min<std::size_t>(options.max_json_depth, codec::kMaxPlainDepth)));
}

}  // namespace

std::shared_ptr<ReadBody> read_request(Engine& engine, const RouteOptions& options,
                                       const http::Request& request) {
  return read_json(engine, options, json_body(request));
}

http::Response handle_evaluate(Engine& engine, const RouteOptions& options,
                               const http::Request& request) {
  return handle_evaluate(engine, options, request, call_context(request));
}

http::Response handle_evaluate(Engine& engine, const RouteOptions& options,
                               const http::Request& request, const CallContext& ctx,
                               std::shared_ptr<ReadBody> read) {
  // The usual request is read straight into the engine's nodes; any other (another content type,
  // escapes, numbers, an invalid call, ...) is parsed below, with its refusals.
  // With `read` (read_request) it was read already, and it is not the usual one when
  // evaluate_read gives nullopt.
  if (read != nullptr) {
    bool has_error = false;
    if (auto z22 = engine.evaluate_read(std::move(read), ctx, &has_error)) {
      count_call(has_error);
      return z22_response(std::move(*z22));
    }
  } else if (const std::string_view json = json_body(request); !json.empty()) {
    bool has_error = false;
    const int depth =
        static_cast<int>(std::min<std::size_t>(options.max_json_depth, codec::kMaxPlainDepth));
    if (auto z22 = engine.evaluate_body(json, depth, ctx, &has_error)) {
      count_call(has_error);
      return z22_response(std::move(*z22));
    }
  }
  auto body = evaluate_body(options, request);
  if (!body) return std::move(body.error());
  return evaluate_parsed(engine, *body, request, ctx);
}

void keep_content_type_only(http::Request& request) {
  std::vector<http::Header> kept;
  for (http::Header& h : request.headers) {
    if (h.name == "content-type") {  // the server's names are lowercase
      kept.push_back(std::move(h));
      break;
    }
  }
  request.headers = std::move(kept);
}

void release_request_ids(http::Request& request) {
  for (std::string* s : {&request.method, &request.target, &request.path, &request.query,
                         &request.request_id, &request.trace.trace_id, &request.trace.span_id,
                         &request.trace.parent_id, &request.client_address, &request.caller}) {
    std::string().swap(*s);
  }
}

namespace {

// A request's context: its ids, trace and caller copied from a const request, moved from one
// given as an rvalue (each member moved alone: the rest is read after).
template <class Req>
CallContext context_of(Req&& request) {
  CallContext ctx;
  ctx.traceparent = request.trace.traceparent();
  ctx.request_id = std::forward<Req>(request).request_id;
  ctx.trace_id = std::forward<Req>(request).trace.trace_id;
  ctx.span_id = std::forward<Req>(request).trace.span_id;
  ctx.caller = std::forward<Req>(request).caller;
  ctx.deadline = request.deadline;
  ctx.cancel = request.cancel;
  ctx.io_wait = request.io_wait;
  return ctx;
}

}  // namespace

CallContext call_context(const http::Request& request) {
  return context_of(request);
}

CallContext take_call_context(http::Request& request) {
  return context_of(std::move(request));
}

void add_orchestrator_routes(http::Server& server, std::shared_ptr<Engine> engine,
                             RouteOptions options, std::shared_ptr<limits::Gate> gate) {
  // Asynchronous: a cached result (answer_cached) and a small call of built-ins are answered on
  // the event loop, a small code call starts there (and goes on there after a small evaluator
  // answer: EngineOptions::event_loop); any other runs on an evaluation fiber on the engine's CPU
  // threads, which parks (holding no thread) while the wiki or an evaluator answers. The request's
  // cancellation (hang-up, deadline, shutdown) stops it. With a gate, the caller's limits and
  // admission control (fair queue) come first.
  auto in_progress = std::make_shared<std::atomic<int>>(0);
  http::AsyncHandler evaluate = [engine, options,
                                 in_progress](std::shared_ptr<http::AsyncRequest> ar) {
    // The gate has read the caller's headers before this runs; the call reads only the
    // Content-Type, and the others would stay while it waits on an evaluator.
    keep_content_type_only(ar->request);
    // The request's context, built once (ids and trace moved to it, traceparent written): the
    // cache lookup, the fiber's log context and the evaluation share it.
    auto ctx = std::make_shared<const CallContext>(take_call_context(ar->request));
    release_request_ids(ar->request);
    // A repeated call whose result is cached (and still valid) is answered here and now.
    const std::string_view json = json_body(ar->request);
    if (auto hit = answer_cached(*engine, json, *ctx)) {
      ar->respond(std::move(*hit));
      return;
    }
    // The usual body is read into the engine's nodes once, here: what its literals say decides
    // where it runs (no scan of the text), and the evaluation takes the nodes.
    std::shared_ptr<ReadBody> read = read_json(*engine, options, json);
    if (can_run_inline(*engine, options, ar->request, read.get())) {
      // Starts on the event loop; should it ever wait for I/O, it continues on the CPU threads.
      engine->spawn_here(ctx, [engine, options, ar, ctx, read]() mutable {
        ar->respond(handle_evaluate(*engine, options, ar->request, *ctx, std::move(read)));
      });
      return;
    }
    // A small code call starts here too (may_start_on_loop), and parks when it sends its code.
    const bool start_here = may_start_on_loop(*engine, options, ar->request, read.get());
    if (in_progress->fetch_add(1) >= options.max_in_progress) {
      in_progress->fetch_sub(1);
      ar->respond(http::Response::refusal(
          503, "overloaded",
          fmt::format("{} evaluations are in progress, the limit (max_pending_work); retry after a "
                      "second",
                      options.max_in_progress)));
      return;
    }
    // Replayable (Engine::spawn): up to its answer it only reads the request, so a call whose
    // code runs long gives its fiber back meanwhile and runs again once the evaluator answers.
    // A replay (null `read`) reads the body again.
    auto work = [engine, options, ar, in_progress, ctx, read = std::move(read)]() mutable {
      http::Response response =
          handle_evaluate(*engine, options, ar->request, *ctx, std::exchange(read, nullptr));
      // Its place is given back before the answer: answering ends the call's admission, which
      // may start the next queued call at once, on this thread, through this handler.
      in_progress->fetch_sub(1);
      ar->respond(std::move(response));
    };
    if (start_here) {
      engine->spawn_here(ctx, std::move(work), true);
    } else {
      engine->spawn(ctx, std::move(work), true);
    }
  };
  if (gate) evaluate = service::admitted_async(std::move(gate), std::move(evaluate));
  server.add_async_route("POST", "/{domain}/v1/evaluate", "evaluate", std::move(evaluate));
  // The original answers GET on the evaluate route with "OK" (a health check some tooling uses).
  server.add_route("GET", "/{domain}/v1/evaluate", "evaluate_get", http::Dispatch::kInline,
                   [](const http::Request&) {
                     http::Response r = http::Response::json(200, "OK");
                     r.content_type = "text/plain; charset=utf-8";
                     return r;
                   });
  server.add_route("GET", "/robots.txt", "robots", http::Dispatch::kInline,
                   [](const http::Request&) {
                     http::Response r = http::Response::json(200, "User-agent: *\nDisallow: /\n");
                     r.content_type = "text/plain; charset=utf-8";
                     return r;
                   });
}

}  // namespace wf::orchestrator
