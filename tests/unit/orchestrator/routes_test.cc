// The evaluate route's decisions, with the real engine and no wiki or evaluator.
#include "orchestrator/routes.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace wf::orchestrator {
namespace {

constexpr const char* kFormType = "application/x-www-form-urlencoded";

class RoutesTest : public ::testing::Test {
 protected:
  std::unique_ptr<Engine> engine = make_engine(EngineOptions{}, nullptr, nullptr);
  RouteOptions options;

  static http::Request post(std::string body, std::string content_type = "application/json") {
    http::Request r;
    r.method = "POST";
    r.path = "/wikifunctions.org/v1/evaluate/";
    r.body = std::move(body);
    r.headers.push_back({"content-type", std::move(content_type)});
    r.deadline = http::Clock::now() + std::chrono::seconds(5);
    return r;
  }
  static std::string call(const nlohmann::json& zobject, bool validate = false) {
    return nlohmann::json{{"zobject", zobject}, {"doValidate", validate}}.dump();
  }
};

TEST_F(RoutesTest, SmallBuiltInCallsRunInline) {
  EXPECT_TRUE(can_run_inline(*engine, options,
                             post(call({{"Z1K1", "Z7"}, {"Z7K1", "Z801"}, {"Z801K1", "hi"}}))));
  const nlohmann::json nested = {
      {"Z1K1", "Z7"},
      {"Z7K1", "Z802"},
      {"Z802K1", {{"Z1K1", "Z7"}, {"Z7K1", "Z866"}, {"Z866K1", "a"}, {"Z866K2", "a"}}},
      {"Z802K2", "yes"},
      {"Z802K3", "no"}};
  EXPECT_TRUE(can_run_inline(*engine, options, post(call(nested))));
}

TEST_F(RoutesTest, AnythingThatMayBlockGoesToAWorker) {
  // A function that is not built in (wiki or objects directory, maybe code).
  EXPECT_FALSE(can_run_inline(*engine, options,
                              post(call({{"Z1K1", "Z7"}, {"Z7K1", "Z10001"}, {"Z10001K1", "x"}}))));
  // Z41 (true) is fetched from the wiki by the reference.
  EXPECT_FALSE(can_run_inline(*engine, options,
                              post(call({{"Z1K1", "Z7"}, {"Z7K1", "Z801"}, {"Z801K1", "Z41"}}))));
  // Static validation.
  EXPECT_FALSE(can_run_inline(
      *engine, options, post(call({{"Z1K1", "Z7"}, {"Z7K1", "Z801"}, {"Z801K1", "hi"}}, true))));
  // An inline function with a code implementation built only from built-in types.
  const nlohmann::json code_impl = {{"Z1K1", "Z14"},
                                    {"Z14K3",
                                     {{"Z1K1", "Z16"},
                                      {"Z16K1", {{"Z1K1", "Z61"}, {"Z61K1", "python"}}},
                                      {"Z16K2", "def f(): pass"}}}};
  EXPECT_FALSE(can_run_inline(
      *engine, options,
      post(call(
          {{"Z1K1", "Z7"},
           {"Z7K1", {{"Z1K1", "Z8"}, {"Z8K4", nlohmann::json::array({"Z14", code_impl})}}}}))));
  // Escapes could hide anything.
  EXPECT_FALSE(can_run_inline(*engine, options,
                              post(R"({"zobject":{"Z1K1":"Z7","Z7K1":"Z801","Z801K1":"a\"b"}})")));
  // Large bodies, other content types.
  EXPECT_FALSE(can_run_inline(
      *engine, options,
      post(call({{"Z1K1", "Z7"}, {"Z7K1", "Z801"}, {"Z801K1", std::string(5000, 'x')}}))));
  EXPECT_FALSE(
      can_run_inline(*engine, options, post("zobject=x", "application/x-www-form-urlencoded")));
  options.max_inline_body_bytes = 0;
  EXPECT_FALSE(can_run_inline(*engine, options,
                              post(call({{"Z1K1", "Z7"}, {"Z7K1", "Z801"}, {"Z801K1", "hi"}}))));
}

TEST_F(RoutesTest, SmallCodeCallsStartOnTheLoop) {
  // One call of a function that is not built in (maybe code), with small built-in arguments.
  EXPECT_TRUE(may_start_on_loop(
      *engine, options, post(call({{"Z1K1", "Z7"}, {"Z7K1", "Z10002"}, {"Z10002K1", "hello"}}))));
  EXPECT_TRUE(may_start_on_loop(
      *engine, options,
      post(call({{"Z1K1", "Z7"}, {"Z7K1", "Z10021"}, {"Z10021K1", {"Z6", "a", "b"}}}))));
}

TEST_F(RoutesTest, HeavyCallsStartOnTheCpuThreads) {
  // Large arguments.
  EXPECT_FALSE(may_start_on_loop(
      *engine, options,
      post(call({{"Z1K1", "Z7"}, {"Z7K1", "Z10002"}, {"Z10002K1", std::string(4000, 'x')}}))));
  // A nested call (each may be code), a second function that is not built in.
  EXPECT_FALSE(may_start_on_loop(
      *engine, options,
      post(call({{"Z1K1", "Z7"},
                 {"Z7K1", "Z10002"},
                 {"Z10002K1", {{"Z1K1", "Z7"}, {"Z7K1", "Z10001"}, {"Z10001K1", "x"}}}}))));
  EXPECT_FALSE(may_start_on_loop(
      *engine, options, post(call({{"Z1K1", "Z7"}, {"Z7K1", "Z10002"}, {"Z10002K1", "Z10001"}}))));
  // Static validation, escapes, inline code, other content types, no call at all.
  EXPECT_FALSE(may_start_on_loop(
      *engine, options,
      post(call({{"Z1K1", "Z7"}, {"Z7K1", "Z10002"}, {"Z10002K1", "hello"}}, true))));
  EXPECT_FALSE(may_start_on_loop(
      *engine, options, post(R"({"zobject":{"Z1K1":"Z7","Z7K1":"Z10002","Z10002K1":"a\"b"}})")));
  const nlohmann::json code_impl = {{"Z1K1", "Z14"},
                                    {"Z14K3",
                                     {{"Z1K1", "Z16"},
                                      {"Z16K1", {{"Z1K1", "Z61"}, {"Z61K1", "python"}}},
                                      {"Z16K2", "def f(): pass"}}}};
  EXPECT_FALSE(may_start_on_loop(
      *engine, options,
      post(call(
          {{"Z1K1", "Z7"},
           {"Z7K1", {{"Z1K1", "Z8"}, {"Z8K4", nlohmann::json::array({"Z14", code_impl})}}}}))));
  EXPECT_FALSE(
      may_start_on_loop(*engine, options, post("zobject=x", "application/x-www-form-urlencoded")));
  EXPECT_FALSE(may_start_on_loop(*engine, options, post(R"({"zobject":"Z10002"})")));
  options.max_loop_start_bytes = 0;
  EXPECT_FALSE(may_start_on_loop(
      *engine, options, post(call({{"Z1K1", "Z7"}, {"Z7K1", "Z10002"}, {"Z10002K1", "hello"}}))));
}

// The route reads a usual body into the engine's nodes before it places the evaluation
// (read_request): the counts found while reading give the verdicts the scan of the text gives,
// for both decisions, and the evaluation that takes the nodes answers as one that reads the text.
TEST_F(RoutesTest, ABodyReadAheadIsPlacedAsTheScanPlacesIt) {
  const nlohmann::json code_impl = {{"Z1K1", "Z14"},
                                    {"Z14K3",
                                     {{"Z1K1", "Z16"},
                                      {"Z16K1", {{"Z1K1", "Z61"}, {"Z61K1", "python"}}},
                                      {"Z16K2", "def f(): pass"}}}};
  const nlohmann::json z10001_ref = {{"Z1K1", "Z9"}, {"Z9K1", "Z10001"}};
  const std::vector<std::string> bodies = {
      call({{"Z1K1", "Z7"}, {"Z7K1", "Z801"}, {"Z801K1", "hi"}}),
      call({{"Z1K1", "Z7"},
            {"Z7K1", "Z802"},
            {"Z802K1", {{"Z1K1", "Z7"}, {"Z7K1", "Z866"}, {"Z866K1", "a"}, {"Z866K2", "a"}}},
            {"Z802K2", "yes"},
            {"Z802K3", "no"}}),
      call({{"Z1K1", "Z7"}, {"Z7K1", "Z10002"}, {"Z10002K1", "hello"}}),
      call({{"Z1K1", "Z7"}, {"Z7K1", "Z10021"}, {"Z10021K1", {"Z6", "a", "b"}}}),
      call({{"Z1K1", "Z7"}, {"Z7K1", "Z10002"}, {"Z10002K1", "Z10001"}}),
      call({{"Z1K1", "Z7"},
            {"Z7K1", "Z10002"},
            {"Z10002K1", {{"Z1K1", "Z7"}, {"Z7K1", "Z10001"}, {"Z10001K1", "x"}}}}),
      call({{"Z1K1", "Z7"}, {"Z7K1", "Z801"}, {"Z801K1", "Z41"}}),
      call({{"Z1K1", "Z7"}, {"Z7K1", "Z10002"}, {"Z10002K1", "hello"}}, true),
      call({{"Z1K1", "Z7"}, {"Z7K1", "Z801"}, {"Z801K1", "doValidate"}}),
      call({{"Z1K1", "Z7"}, {"Z7K1", "Z801"}, {"Z801K1", "Z16K2"}}),
      call({{"Z1K1", "Z7"},
            {"Z7K1", {{"Z1K1", "Z8"}, {"Z8K4", nlohmann::json::array({"Z14", code_impl})}}}}),
      // A list whose item type is not a ZID: each cell's type is read again from the text, and
      // its one reference that is not built in still counts once (may start on the loop).
      call({{"Z1K1", "Z7"},
            {"Z7K1", "Z801"},
            {"Z801K1", nlohmann::json::array({z10001_ref, "a", "b", "c"})}}),
      call({{"Z1K1", "Z7"}, {"Z7K1", "Z801"}, {"Z801K1", std::string(3000, 'x')}}),
  };
  int usual = 0;
  for (const std::string& body : bodies) {
    SCOPED_TRACE(body);
    const http::Request request = post(body);
    const auto read = read_request(*engine, options, request);
    ASSERT_NE(read, nullptr);
    usual += read->usual ? 1 : 0;
    EXPECT_EQ(can_run_inline(*engine, options, request, read.get()),
              can_run_inline(*engine, options, request));
    EXPECT_EQ(may_start_on_loop(*engine, options, request, read.get()),
              may_start_on_loop(*engine, options, request));
  }
  EXPECT_EQ(usual, static_cast<int>(bodies.size()));
  // The verdicts themselves, for the cases the scan's own tests above do not cover.
  const auto placed = [&](std::size_t i) {
    const http::Request request = post(bodies[i]);
    const auto read = read_request(*engine, options, request);
    return std::pair{can_run_inline(*engine, options, request, read.get()),
                     may_start_on_loop(*engine, options, request, read.get())};
  };
  EXPECT_EQ(placed(8), std::pair(false, false));  // "doValidate" as a string value
  EXPECT_EQ(placed(9), std::pair(false, false));  // a "Z16K..." literal
  EXPECT_EQ(placed(11), std::pair(false, true));  // one reference not built in, read per cell
  EXPECT_EQ(placed(1), std::pair(true, false));   // built-ins only
  // Not read (another content type, an escape): the scan decides, the general path answers.
  EXPECT_EQ(read_request(*engine, options, post("zobject=x", kFormType)), nullptr);
  const http::Request escaped =
      post(R"({"zobject":{"Z1K1":"Z7","Z7K1":"Z801","Z801K1":"h\u0069"},"doValidate":false})");
  const auto not_usual = read_request(*engine, options, escaped);
  ASSERT_NE(not_usual, nullptr);
  EXPECT_FALSE(not_usual->usual);
  EXPECT_FALSE(can_run_inline(*engine, options, escaped, not_usual.get()));
  auto answer = handle_evaluate(*engine, options, escaped, call_context(escaped), not_usual);
  ASSERT_EQ(answer.status, 200u) << answer.body;
  EXPECT_EQ(nlohmann::json::parse(answer.body)["Z22K1"], "hi");
}

TEST_F(RoutesTest, AnEvaluationTakesTheNodesReadAndAReplayReadsTheTextAgain) {
  const http::Request request = post(call({{"Z1K1", "Z7"},
                                           {"Z7K1", "Z802"},
                                           {"Z802K1", {{"Z1K1", "Z7"}, {"Z7K1", "Z844"}}},
                                           {"Z802K2", "yes"},
                                           {"Z802K3", "no"}}));
  const auto read = read_request(*engine, options, request);
  ASSERT_TRUE(read != nullptr && read->usual);
  const CallContext ctx = call_context(request);
  const auto plain = handle_evaluate(*engine, options, request, ctx);
  const auto first = handle_evaluate(*engine, options, request, ctx, read);
  const auto again = handle_evaluate(*engine, options, request, ctx, read);  // taken: re-read
  ASSERT_EQ(plain.status, 200u) << plain.body;
  const auto without_times = [](const std::string& body) {
    auto z22 = nlohmann::json::parse(body);
    return z22["Z22K1"];
  };
  EXPECT_EQ(without_times(first.body), without_times(plain.body)) << first.body;
  EXPECT_EQ(without_times(again.body), without_times(plain.body)) << again.body;
  EXPECT_EQ(read.use_count(), 1);  // the evaluations let go of their references
}

TEST_F(RoutesTest, EvaluateAnswersZ22AndHttpErrors) {
  auto ok = handle_evaluate(*engine, options,
                            post(call({{"Z1K1", "Z7"}, {"Z7K1", "Z801"}, {"Z801K1", "hi"}})));
  EXPECT_EQ(ok.status, 200u);
  EXPECT_EQ(nlohmann::json::parse(ok.body)["Z22K1"], "hi");
  EXPECT_EQ(handle_evaluate(*engine, options, post("{not json")).status, 400u);
  EXPECT_EQ(handle_evaluate(*engine, options, post("[1,2]")).status, 400u);
  EXPECT_EQ(handle_evaluate(*engine, options, post("x", "text/plain")).status, 415u);
  options.max_json_depth = 16;
  EXPECT_EQ(
      handle_evaluate(*engine, options, post(std::string(100, '[') + std::string(100, ']'))).status,
      400u);
}

// Bodies of the usual shape are read by the plain parser (codec/plain_json.h); the body's depth
// bound and the answers to escapes, numbers and duplicate keys are those of the full parser.
TEST_F(RoutesTest, PlainBodiesKeepTheDepthBoundAndTheFullParsersAnswers) {
  // {"zobject": <a Z801 call whose argument is an object nested `depth` levels>}
  const auto nested_call = [](int depth) {
    std::string value = "\"x\"";
    for (int i = 0; i < depth; ++i) value = R"({"Z1K1":"Z6","K1":)" + value + "}";
    return R"({"zobject":{"Z1K1":"Z7","Z7K1":"Z801","Z801K1":)" + value +
           R"(},"doValidate":false})";
  };
  options.max_json_depth = 16;
  // The body itself and the call are two levels: 14 more fit, 15 do not.
  auto deep = handle_evaluate(*engine, options, post(nested_call(15)));
  EXPECT_EQ(deep.status, 400u) << deep.body;
  EXPECT_NE(deep.body.find("deeper than 16"), std::string::npos) << deep.body;
  EXPECT_EQ(handle_evaluate(*engine, options, post(nested_call(14))).status, 200u);
  options.max_json_depth = 1024;  // beyond the plain parser's own bound: the full parser reads it
  EXPECT_EQ(handle_evaluate(*engine, options, post(nested_call(200))).status, 200u);
  // An escape, a number and a repeated key: not the plain parser's, the same answers as before.
  auto escaped = handle_evaluate(
      *engine, options,
      post(R"({"zobject":{"Z1K1":"Z7","Z7K1":"Z801","Z801K1":"h\u0069"},"doValidate":false})"));
  ASSERT_EQ(escaped.status, 200u) << escaped.body;
  EXPECT_EQ(nlohmann::json::parse(escaped.body)["Z22K1"], "hi");
  auto twice = handle_evaluate(
      *engine, options,
      post(R"({"zobject":{"Z1K1":"Z7","Z7K1":"Z801","Z801K1":"a","Z801K1":"b"},"timeout":1})"));
  ASSERT_EQ(twice.status, 200u) << twice.body;
  EXPECT_EQ(nlohmann::json::parse(twice.body)["Z22K1"], "b");  // the last one, as nlohmann reads
}

std::string form_encode(std::string_view text) {
  std::string encoded;
  for (unsigned char c : text) {
    if (std::isalnum(c)) {
      encoded += static_cast<char>(c);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      encoded += buf;
    }
  }
  return encoded;
}

constexpr const char* kForm = kFormType;

TEST_F(RoutesTest, FormEncodedBodiesAreAccepted) {
  const std::string zobject = R"({"Z1K1":"Z7","Z7K1":"Z801","Z801K1":"a b&c"})";
  auto r = handle_evaluate(*engine, options,
                           post("zobject=" + form_encode(zobject) + "&doValidate=false", kForm));
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(nlohmann::json::parse(r.body)["Z22K1"], "a b&c");
  // '+' is a space in a form body.
  r = handle_evaluate(*engine, options,
                      post(R"(zobject={"Z1K1":"Z7","Z7K1":"Z801","Z801K1":"a+b"})", kForm));
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(nlohmann::json::parse(r.body)["Z22K1"], "a b");
}

// The evaluate route keeps of a request's headers only its first Content-Type (a call waiting on
// an evaluator keeps no others), and the body is read by it as before.
TEST_F(RoutesTest, OnlyTheContentTypeHeaderIsKeptAndStillDecidesHowTheBodyIsRead) {
  const std::string zobject = R"({"Z1K1":"Z7","Z7K1":"Z801","Z801K1":"a b"})";
  http::Request r = post("zobject=" + form_encode(zobject) + "&doValidate=false", kForm);
  r.headers.insert(r.headers.begin(), {"user-agent", std::string(100, 'u')});
  r.headers.push_back({"content-type", "application/json"});  // a second one is not the one
  r.headers.push_back({"x-forwarded-for", "192.0.2.7"});
  keep_content_type_only(r);
  ASSERT_EQ(r.headers.size(), 1u);
  EXPECT_EQ(r.headers[0].name, "content-type");
  EXPECT_EQ(r.headers[0].value, kForm);
  EXPECT_EQ(r.headers.capacity(), 1u);
  auto answer = handle_evaluate(*engine, options, r);
  ASSERT_EQ(answer.status, 200u) << answer.body;
  EXPECT_EQ(nlohmann::json::parse(answer.body)["Z22K1"], "a b");
  // Without a Content-Type none is left (and the body is read as JSON, as before).
  http::Request bare = post(call({{"Z1K1", "Z7"}, {"Z7K1", "Z801"}, {"Z801K1", "hi"}}));
  bare.headers = {{"accept", "*/*"}};
  keep_content_type_only(bare);
  EXPECT_TRUE(bare.headers.empty());
  answer = handle_evaluate(*engine, options, bare);
  ASSERT_EQ(answer.status, 200u) << answer.body;
  EXPECT_EQ(nlohmann::json::parse(answer.body)["Z22K1"], "hi");
}

// The evaluate route frees the request's ids once its CallContext has them: the context keeps
// them, the request keeps what the evaluation reads of it (body, Content-Type, deadline).
TEST_F(RoutesTest, TheRequestsIdsAreFreedOnceTheCallContextHasThem) {
  http::Request r = post(call({{"Z1K1", "Z7"}, {"Z7K1", "Z801"}, {"Z801K1", "ids"}}));
  r.headers = {{"content-type", "application/json"}};
  r.target = r.path = "/wikifunctions.org/v1/evaluate/";
  r.request_id = "0123456789abcdef0123456789abcdef";
  r.trace.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
  r.trace.span_id = "00f067aa0ba902b7";
  r.trace.parent_id = "b7ad6b7169203331";
  r.caller = "user:Somebody With A Long Name";
  r.client_address = "2001:db8:85a3::8a2e:370:7334";
  r.deadline = http::Clock::now() + std::chrono::seconds(30);
  const CallContext ctx = call_context(r);
  release_request_ids(r);
  const std::size_t empty = std::string().capacity();
  for (const std::string* s :
       {&r.target, &r.path, &r.request_id, &r.trace.trace_id, &r.trace.span_id, &r.trace.parent_id,
        &r.caller, &r.client_address}) {
    EXPECT_TRUE(s->empty()) << *s;
    EXPECT_EQ(s->capacity(), empty);
  }
  EXPECT_EQ(ctx.request_id, "0123456789abcdef0123456789abcdef");
  EXPECT_EQ(ctx.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(ctx.span_id, "00f067aa0ba902b7");
  EXPECT_EQ(ctx.caller, "user:Somebody With A Long Name");
  EXPECT_EQ(ctx.traceparent, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  EXPECT_EQ(r.header("content-type"), "application/json");
  EXPECT_EQ(r.deadline, ctx.deadline);
  auto answer = handle_evaluate(*engine, options, r, ctx);
  ASSERT_EQ(answer.status, 200u) << answer.body;
  EXPECT_EQ(nlohmann::json::parse(answer.body)["Z22K1"], "ids");
}

// The evaluate route's context takes the request's ids (moved, not copied: the route frees them
// next), and is the context call_context builds.
TEST_F(RoutesTest, TheRouteTakesTheIdsIntoTheCallContext) {
  http::Request r = post(call({{"Z1K1", "Z7"}, {"Z7K1", "Z801"}, {"Z801K1", "taken"}}));
  r.request_id = "0123456789abcdef0123456789abcdef";
  r.trace.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
  r.trace.span_id = "00f067aa0ba902b7";
  r.caller = "user:Somebody With A Long Name";
  r.deadline = http::Clock::now() + std::chrono::seconds(30);
  const CallContext copied = call_context(r);
  const CallContext ctx = take_call_context(r);
  EXPECT_EQ(ctx.request_id, copied.request_id);
  EXPECT_EQ(ctx.trace_id, copied.trace_id);
  EXPECT_EQ(ctx.span_id, copied.span_id);
  EXPECT_EQ(ctx.caller, copied.caller);
  EXPECT_EQ(ctx.traceparent, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  EXPECT_EQ(ctx.deadline, r.deadline);
  EXPECT_EQ(copied.request_id, "0123456789abcdef0123456789abcdef");
  for (const std::string* s : {&r.request_id, &r.trace.trace_id, &r.trace.span_id, &r.caller}) {
    EXPECT_TRUE(s->empty()) << *s;
  }
  const auto answer = handle_evaluate(*engine, options, r, ctx);
  ASSERT_EQ(answer.status, 200u) << answer.body;
  EXPECT_EQ(nlohmann::json::parse(answer.body)["Z22K1"], "taken");
}

// A field value is a value: it cannot close the JSON object and add fields of its own.
TEST_F(RoutesTest, FormFieldsCannotOverrideTheRequest) {
  const std::string crafted =
      R"({"Z1K1":"Z7","Z7K1":"Z801","Z801K1":"mine"},"zobject":{"Z1K1":"Z7","Z7K1":"Z801","Z801K1":"injected"})";
  auto r = handle_evaluate(*engine, options, post("zobject=" + form_encode(crafted), kForm));
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(r.body.find("injected"), std::string::npos) << r.body;
  // Not JSON: the string it is, which is not a function call (Z539), as the original answers.
  EXPECT_NE(r.body.find("Z539"), std::string::npos) << r.body;

  const std::string validate = R"(null,"doValidate":true)";
  r = handle_evaluate(*engine, options, post("zobject=" + form_encode(validate), kForm));
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_NE(r.body.find("Z539"), std::string::npos) << r.body;
}

// An empty zobject field is a missing zobject: the void envelope without errors
// (orchestrator-api.md §2), not a 400.
TEST_F(RoutesTest, EmptyFormZObjectIsAMissingOne) {
  for (const char* body : {"zobject=", "zobject=&doValidate=false", "doValidate=true", ""}) {
    SCOPED_TRACE(body);
    auto r = handle_evaluate(*engine, options, post(body, kForm));
    ASSERT_EQ(r.status, 200u) << r.body;
    const auto z22 = nlohmann::json::parse(r.body);
    EXPECT_EQ(z22["Z22K1"], "Z24");
    EXPECT_EQ(r.body.find("\"errors\""), std::string::npos) << r.body;
  }
}

TEST_F(RoutesTest, FormBodiesAreReadLikeTheOriginal) {
  // Raw JSON, as `curl -d 'zobject={...}'` sends it.
  auto r = handle_evaluate(
      *engine, options,
      post(R"(zobject={"Z1K1":"Z7","Z7K1":"Z801","Z801K1":"[raw] 100%"}&doValidate=false)", kForm));
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(nlohmann::json::parse(r.body)["Z22K1"], "[raw] 100%");
  // A '%' that starts no escape is itself: here a string, not a function call.
  r = handle_evaluate(*engine, options, post("zobject=%zz", kForm));
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_NE(r.body.find("Z539"), std::string::npos) << r.body;
  // JSON nested beyond the body limit is refused as it is for a JSON body.
  options.max_json_depth = 16;
  r = handle_evaluate(*engine, options,
                      post("zobject=" + std::string(100, '[') + std::string(100, ']'), kForm));
  EXPECT_EQ(r.status, 400u) << r.body;
}

}  // namespace
}  // namespace wf::orchestrator
