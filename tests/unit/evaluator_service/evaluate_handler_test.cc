// The evaluate handler with fake sandboxes: every request form of every evaluator conformance
// case (decode, route, response shape), the §3 error paths, sandbox failure mapping, metadata.

#include "evaluator/service/evaluate_handler.h"

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <mutex>
#include <regex>
#include <sstream>

#include "../codec/codec_test_support.h"
#include "conformance_check.h"
#include "evaluator/service/result_envelope.h"
#include "wf/codec/avro.h"
#include "wf/obs/log.h"

namespace wf::evaluator {
namespace {

using nlohmann::json;
using testing::check_case;
using testing::get_error;
using testing::map_get;
using testing::map_keys;

// A sandbox that records its calls and answers with whatever the test sets.
class FakeSandbox final : public Sandbox {
 public:
  explicit FakeSandbox(std::string name) : name_(std::move(name)) {}

  CallOutcome run(const CallInput& input, std::chrono::steady_clock::time_point deadline) override {
    std::lock_guard lock(mu_);
    calls.push_back(input);
    deadlines.push_back(deadline);
    if (answer) return answer(input);
    return outcome;
  }
  int ready_children() const override { return 1; }

  std::string name_;
  std::vector<CallInput> calls;
  std::vector<std::chrono::steady_clock::time_point> deadlines;
  CallOutcome outcome;
  std::function<CallOutcome(const CallInput&)> answer;

 private:
  std::mutex mu_;
};

CallOutcome ok_outcome(const json& z22) {
  CallOutcome o;
  o.status = CallOutcome::Status::kOk;
  o.output.ok = true;
  o.output.z22_json = z22.dump();
  o.cpu_ms = 12.5;
  o.peak_rss_bytes = 3'313'500;
  return o;
}

json z22_of(const json& value) {
  return {{"Z1K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z22"}}},
          {"Z22K1", value},
          {"Z22K2", {{"Z1K1", "Z9"}, {"Z9K1", "Z24"}}}};
}

http::Request json_request(const json& body) {
  http::Request r;
  r.method = "POST";
  r.path = r.target = "/wikifunctions.org/v1/evaluate/";
  r.headers.push_back({"content-type", "application/json"});
  r.body = body.dump();
  return r;
}

http::Request binary_request(std::string body) {
  http::Request r;
  r.method = "POST";
  r.path = r.target = "/wikifunctions.org/v1/evaluate/";
  r.headers.push_back({"content-type", "application/octet-stream"});
  r.body = std::move(body);
  return r;
}

struct Fixture : ::testing::Test {
  std::shared_ptr<FakeSandbox> python = std::make_shared<FakeSandbox>("python");
  std::shared_ptr<FakeSandbox> javascript = std::make_shared<FakeSandbox>("javascript");
  EvaluateOptions options;
  std::unique_ptr<EvaluateHandler> handler() {
    return make_evaluate_handler(options, python, javascript);
  }
  json send(const http::Request& r, unsigned expected_status = 200) {
    auto response = handler()->handle(r);
    EXPECT_EQ(response.status, expected_status) << response.body;
    EXPECT_EQ(response.content_type, "application/json");
    return json::parse(response.body);
  }
};

const char* kEvaluationKeys[] = {"evaluationMemoryUsage", "evaluationCpuUsage",
                                 "evaluationStartTime",   "evaluationEndTime",
                                 "evaluationDuration",    "evaluationHostname"};

// ---- Every conformance case through fakes ---------------------------------------------------

struct LogicalCall {
  std::string language, code, name;
  json args;
};

// What the case's logical request asks to run (independently of the handler's parsing).
LogicalCall logical_call(const json& request) {
  const json& z = request["zobject"];
  if (z.contains("codingLanguage")) {
    return {z["codingLanguage"], z["codeString"], z["functionName"], z["functionArguments"]};
  }
  LogicalCall c;
  c.language = z["Z7K1"]["Z8K4"]["K1"]["Z14K3"]["Z16K1"]["Z61K1"]["Z6K1"];
  c.code = z["Z7K1"]["Z8K4"]["K1"]["Z14K3"]["Z16K2"]["Z6K1"];
  c.name = z["Z7K1"]["Z8K5"]["Z9K1"];
  c.args = z;
  c.args.erase("Z1K1");
  c.args.erase("Z7K1");
  return c;
}

TEST_F(Fixture, EveryConformanceCaseDecodesRoutesAndAnswers) {
  if (auto why = codec::testing::missing_cases_reason(); !why.empty()) GTEST_SKIP() << why;
  int executed = 0, refused = 0;
  for (const json& c : codec::testing::evaluator_cases()) {
    SCOPED_TRACE(c["name"].get<std::string>());
    python->calls.clear();
    javascript->calls.clear();
    const json& exp = c["expect"];
    // The fake answers what the real runtime answered upstream: the expected value, or a user
    // error in the executors' shape (Z5 without Z5K1).
    const auto answer = [&exp](const CallInput&) {
      if (exp.value("is_error", false)) {
        json error = exp.value("error", json{{"Z1K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z5"}}},
                                             {"Z5K2", {{"Z1K1", "Z6"}, {"Z6K1", "user error"}}}});
        return ok_outcome(make_error_envelope(Json(error)));
      }
      return ok_outcome(z22_of(exp["result"]));
    };
    python->answer = answer;
    javascript->answer = answer;

    const http::Request r = c.contains("request_body_base64")
                                ? binary_request(codec::testing::from_base64(
                                      c["request_body_base64"].get<std::string>()))
                                : json_request(c["request"]);
    auto response = handler()->handle(r);
    const json body = json::parse(response.body);
    for (const auto& f : check_case(c, response.status, body)) ADD_FAILURE() << f;

    const bool should_run = c["area"] != "request_errors";
    const std::size_t calls = python->calls.size() + javascript->calls.size();
    EXPECT_EQ(calls, should_run ? 1u : 0u);
    if (!should_run) {
      ++refused;
      EXPECT_TRUE(body["Z22K2"].is_object());
      EXPECT_EQ(map_keys(body["Z22K2"]), std::vector<std::string>{"errors"});
      continue;
    }
    ++executed;
    const LogicalCall want = logical_call(c["request"]);
    const bool is_python = want.language.starts_with("python");
    FakeSandbox& used = is_python ? *python : *javascript;
    ASSERT_EQ(used.calls.size(), 1u) << "routed to the wrong family";
    EXPECT_EQ(used.calls[0].code, want.code);
    EXPECT_EQ(used.calls[0].function_name, want.name);
    EXPECT_EQ(json::parse(used.calls[0].arguments_json), want.args);
    for (const char* key : kEvaluationKeys)
      EXPECT_FALSE(map_get(body["Z22K2"], key).is_null()) << key;
    EXPECT_FALSE(map_get(body["Z22K2"], "executionCpuUsage").is_null());
  }
  EXPECT_EQ(executed + refused, 32);
  EXPECT_GE(refused, 10);
}

TEST_F(Fixture, DegenerateCallFailsValidationAtTheBadListItem) {
  if (auto why = codec::testing::missing_cases_reason(); !why.empty()) GTEST_SKIP() << why;
  for (const json& c : codec::testing::evaluator_cases()) {
    if (!c["name"].get<std::string>().starts_with("eval-degenerate-function-call")) continue;
    SCOPED_TRACE(c["name"].get<std::string>());
    const http::Request r = c.contains("request_body_base64")
                                ? binary_request(codec::testing::from_base64(
                                      c["request_body_base64"].get<std::string>()))
                                : json_request(c["request"]);
    const json error = get_error(send(r));
    EXPECT_EQ(error["Z5K1"], (json{{"Z1K1", "Z9"}, {"Z9K1", "Z502"}}));
    EXPECT_EQ(error["Z5K2"]["Z6K1"],
              "Unable to validate function call. Parser errors: /Z7K1/Z8K1/K2/K1/Z1K1: must be a "
              "reference (Z9), a function call (Z7) or a literal type (Z4)");
  }
}

// ---- §3 error paths --------------------------------------------------------------------------

TEST_F(Fixture, MissingCodeStringIsBareZ507) {
  const json body = send(json_request({{"codingLanguage", "python-3"},
                                       {"functionName", "Z1"},
                                       {"functionArguments", json::object()}}));
  EXPECT_EQ(get_error(body),
            (json{{"Z1K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z5"}}},
                  {"Z5K1", "Z507"},
                  {"Z5K2",
                   {{"Z1K1", "Z6"},
                    {"Z6K1",
                     "Unable to validate function call. Parser errors: Request did not "
                     "supply codeString."}}}}));
  EXPECT_EQ(body["Z22K1"], (json{{"Z1K1", "Z9"}, {"Z9K1", "Z24"}}));
  EXPECT_TRUE(python->calls.empty());
}

TEST_F(Fixture, MissingLanguageIsZ558) {
  const json body = send(json_request({{"codeString", "x"}, {"functionName", "Z1"}}));
  EXPECT_EQ(get_error(body)["Z5K1"], (json{{"Z1K1", "Z9"}, {"Z9K1", "Z558"}}));
  EXPECT_EQ(get_error(body)["Z5K2"]["Z6K1"],
            "Unable to find programming language in function call. codingLanguage not specified");
  // An empty object (what the reference sees for an unknown content type) too.
  const json empty = send(json_request(json::object()));
  EXPECT_EQ(get_error(empty)["Z5K2"]["Z6K1"],
            "Unable to find programming language in function call. codingLanguage not specified");
}

TEST_F(Fixture, LanguageDetailNamesTheMissingStep) {
  const json z7 = {
      {"Z1K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z7"}}},
      {"Z7K1", {{"Z1K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z8"}}}, {"Z8K4", json::object()}}}};
  const json body = send(json_request({{"zobject", z7}}));
  EXPECT_EQ(get_error(body)["Z5K2"]["Z6K1"],
            "Unable to find programming language in function call. Z7K1.Z8K4.K1 is missing");
}

TEST_F(Fixture, UnknownLanguagesHaveNoExecutor) {
  for (const std::string lang : {"lua", "Java", "python-1", "Python-3", "Z620", ""}) {
    const json body =
        send(json_request({{"codingLanguage", lang}, {"codeString", "x"}, {"functionName", "Z1"}}));
    const std::string msg = get_error(body)["Z5K2"]["Z6K1"];
    if (lang.empty()) {
      EXPECT_NE(msg.find("codingLanguage not specified"), std::string::npos);
    } else {
      EXPECT_EQ(msg, "No executor found for programming language " + lang + ".");
      EXPECT_EQ(get_error(body)["Z5K1"]["Z9K1"], "Z558");
    }
  }
  EXPECT_TRUE(python->calls.empty());
  EXPECT_TRUE(javascript->calls.empty());
}

TEST_F(Fixture, EveryLanguageCodeAndZidRoutesToItsFamily) {
  python->outcome = ok_outcome(z22_of({{"Z1K1", "Z6"}, {"Z6K1", "py"}}));
  javascript->outcome = ok_outcome(z22_of({{"Z1K1", "Z6"}, {"Z6K1", "js"}}));
  const std::vector<std::string> py = {"python",     "python-3",   "python-3-5", "python-3-6",
                                       "python-3-8", "python-3-9", "Z610",       "Z611",
                                       "Z612",       "Z613",       "Z614",       "Z615"};
  std::vector<std::string> js = {"javascript", "Z600"};
  for (int i = 1; i <= 8; ++i) js.push_back("Z60" + std::to_string(i));
  for (const char* es :
       {"es5", "es2015", "es2016", "es2017", "es2018", "es2019", "es2020", "es2021"}) {
    js.push_back(std::string("javascript-") + es);
  }
  for (const auto& lang : py) {
    const json body =
        send(json_request({{"codingLanguage", lang}, {"codeString", "c"}, {"functionName", "Z1"}}));
    EXPECT_EQ(body["Z22K1"]["Z6K1"], "py") << lang;
  }
  for (const auto& lang : js) {
    const json body =
        send(json_request({{"codingLanguage", lang}, {"codeString", "c"}, {"functionName", "Z1"}}));
    EXPECT_EQ(body["Z22K1"]["Z6K1"], "js") << lang;
  }
  EXPECT_EQ(python->calls.size(), py.size());
  EXPECT_EQ(javascript->calls.size(), js.size());
}

TEST_F(Fixture, AbsentSandboxMeansNoExecutor) {
  auto h = make_evaluate_handler(options, nullptr, javascript);
  auto response = h->handle(
      json_request({{"codingLanguage", "python-3"}, {"codeString", "c"}, {"functionName", "Z1"}}));
  EXPECT_EQ(get_error(json::parse(response.body))["Z5K2"]["Z6K1"],
            "No executor found for programming language python-3.");
}

// The wait for a sandbox child because none was free goes to the orchestrator in a header (its
// adaptive admission limit counts it as congestion); a call that did not wait has none.
TEST_F(Fixture, PoolWaitIsReportedInAHeader) {
  const http::Request request =
      json_request({{"codingLanguage", "python-3"}, {"codeString", "c"}, {"functionName", "Z1"}});
  auto header = [](const http::Response& r) -> std::string {
    for (const auto& h : r.headers) {
      if (h.name == "x-wikifunctions-pool-wait-ms") return h.value;
    }
    return "none";
  };
  python->outcome = ok_outcome(z22_of({{"Z1K1", "Z6"}, {"Z6K1", "x"}}));
  EXPECT_EQ(header(handler()->handle(request)), "none");
  python->outcome.pool_wait = std::chrono::microseconds(12'500);
  const http::Response waited = handler()->handle(request);
  EXPECT_EQ(waited.status, 200u);
  EXPECT_EQ(header(waited), "12.500");
  // Also on a refusal (the wait ran out).
  python->outcome.status = CallOutcome::Status::kUnavailable;
  python->outcome.pool_wait = std::chrono::milliseconds(300);
  const http::Response refused = handler()->handle(request);
  EXPECT_EQ(refused.status, 503u);
  EXPECT_EQ(header(refused), "300.000");
}

// At log_level debug each call writes one "sandbox call cost" line with its request id, the wait
// for a child, the time in it and whether it was warm; above debug, none.
TEST_F(Fixture, DebugLineSaysWhereACallsTimeWent) {
  http::Request request =
      json_request({{"codingLanguage", "python-3"}, {"codeString", "c"}, {"functionName", "Z7"}});
  request.request_id = "polite-17";
  python->outcome = ok_outcome(z22_of({{"Z1K1", "Z6"}, {"Z6K1", "x"}}));
  python->outcome.pool_wait = std::chrono::microseconds(2'500);
  python->outcome.in_child = std::chrono::microseconds(4'250);
  python->outcome.child_warm = 0;
  auto cost_lines = [&](spdlog::level::level_enum level) {
    wf::obs::install_ecs_logger("evaluate-handler-test", "0", level);
    ::testing::internal::CaptureStdout();
    EXPECT_EQ(handler()->handle(request).status, 200u);
    spdlog::default_logger()->flush();
    std::istringstream lines(::testing::internal::GetCapturedStdout());
    std::vector<json> found;
    for (std::string line; std::getline(lines, line);) {
      json j = json::parse(line, nullptr, false);
      if (!j.is_discarded() && j.value("event.action", "") == "sandbox-call-cost")
        found.push_back(j);
    }
    return found;
  };
  EXPECT_TRUE(cost_lines(spdlog::level::info).empty());
  const std::vector<json> found = cost_lines(spdlog::level::debug);
  wf::obs::install_ecs_logger("evaluate-handler-test", "0", spdlog::level::info);
  ASSERT_EQ(found.size(), 1u);
  const json& j = found[0];
  EXPECT_EQ(j.value("http.request.id", ""), "polite-17") << j;
  EXPECT_EQ(j.value("event.outcome", ""), "ok") << j;
  EXPECT_EQ(j.value("wf.function", ""), "Z7") << j;
  EXPECT_DOUBLE_EQ(j.value("wf.pool_wait_ms", 0.0), 2.5) << j;
  EXPECT_DOUBLE_EQ(j.value("wf.in_child_ms", 0.0), 4.25) << j;
  EXPECT_EQ(j.value("wf.child_warm", -2), 0) << j;
  EXPECT_DOUBLE_EQ(j.value("wf.child_cpu_ms", 0.0), 12.5) << j;
  EXPECT_GT(j.value("event.duration", 0LL), 0LL) << j;
}

TEST_F(Fixture, InvalidWholeZ7IsZ502WithParserErrors) {
  const json z7 = {{"Z1K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z7"}}},
                   {"Z7K1",
                    {{"Z1K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z8"}}},
                     {"Z8K4",
                      {{"Z1K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z10"}}},
                       {"K1",
                        {{"Z1K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z14"}}},
                         {"Z14K3",
                          {{"Z1K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z16"}}},
                           {"Z16K1",
                            {{"Z1K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z61"}}},
                             {"Z61K1", {{"Z1K1", "Z6"}, {"Z6K1", "python-3"}}}}},
                           {"Z16K2", {{"Z1K1", "Z6"}, {"Z6K1", "def Z1(): pass"}}}}}}}}},
                     {"Z8K5", {{"Z1K1", "Z9"}, {"Z9K1", "Z1"}}}}},
                   {"Z1K1x", {{"Z1K1", "Z6"}, {"Z6K1", "bad key"}}},
                   {"Z1K2", 5}};
  const json body = send(json_request({{"reentrant", false}, {"zobject", z7}}));
  const json error = get_error(body);
  EXPECT_EQ(error["Z5K1"], (json{{"Z1K1", "Z9"}, {"Z9K1", "Z502"}}));
  const std::string msg = error["Z5K2"]["Z6K1"];
  EXPECT_TRUE(msg.starts_with("Unable to validate function call. Parser errors: ")) << msg;
  EXPECT_NE(msg.find("Z1K1x"), std::string::npos) << msg;
  EXPECT_NE(msg.find("/Z1K2: must be object, not number"), std::string::npos) << msg;
  EXPECT_TRUE(python->calls.empty());
}

TEST_F(Fixture, UnversionedAndVersionedWholeZ7AreRun) {
  if (auto why = codec::testing::missing_cases_reason(); !why.empty()) GTEST_SKIP() << why;
  python->outcome = ok_outcome(z22_of({{"Z1K1", "Z6"}, {"Z6K1", "13"}}));
  json cases = codec::testing::evaluator_cases();
  json z7;
  for (const auto& c : cases) {
    if (c["name"] == "eval-javascript-addition-json") z7 = c["request"]["zobject"];
  }
  ASSERT_TRUE(z7.is_object());
  for (const auto& body :
       {*codec::encode_unversioned(z7), *codec::encode_zobject_request(false, z7)}) {
    javascript->calls.clear();
    javascript->outcome = ok_outcome(z22_of({{"Z1K1", "Z6"}, {"Z6K1", "13"}}));
    const json out = send(binary_request(body));
    EXPECT_EQ(out["Z22K1"]["Z6K1"], "13");
    ASSERT_EQ(javascript->calls.size(), 1u);
    EXPECT_EQ(json::parse(javascript->calls[0].arguments_json)["Z1000K1"]["Z6K1"], "5");
  }
}

TEST_F(Fixture, OrchestratorRequestV004IsRun) {
  codec::CodeRequest req;
  req.remaining_time_ms = 5000;
  req.coding_language = "python-3";
  req.code_string = "def Z10(Z10K1): return Z10K1";
  req.function_name = "Z10";
  const json args = {{"Z10K1", {{"Z1K1", "Z6"}, {"Z6K1", "x"}}}};
  python->outcome = ok_outcome(z22_of({{"Z1K1", "Z6"}, {"Z6K1", "x"}}));
  const json out = send(binary_request(*codec::encode_code_request(req, args)));
  EXPECT_EQ(out["Z22K1"]["Z6K1"], "x");
  ASSERT_EQ(python->calls.size(), 1u);
  EXPECT_EQ(python->calls[0].code, req.code_string);
  EXPECT_EQ(python->calls[0].function_name, "Z10");
  EXPECT_EQ(json::parse(python->calls[0].arguments_json), args);
}

// ---- HTTP-level answers ----------------------------------------------------------------------

TEST_F(Fixture, OversizeBodyIs413) {
  options.max_body_bytes = 10;
  auto response = handler()->handle(json_request({{"codingLanguage", "python-3-9-and-more"}}));
  EXPECT_EQ(response.status, 413u);
}

TEST_F(Fixture, BrokenJsonIs400AndGarbageBinaryIsExplained) {
  http::Request r = json_request(json::object());
  r.body = "{\"codingLanguage\":";
  EXPECT_EQ(handler()->handle(r).status, 400u);
  const json body = send(binary_request(codec::testing::from_hex("05 30 2e 30 2e 34 00 01")));
  const std::string msg = get_error(body)["Z5K2"]["Z6K1"];
  EXPECT_TRUE(msg.starts_with("Unable to find programming language in function call. ")) << msg;
  EXPECT_NE(msg.find("versioned Avro"), std::string::npos) << msg;
}

// ---- Sandbox outcomes --------------------------------------------------------------------------

json run_with(Fixture& f, CallOutcome outcome, unsigned status = 200) {
  f.python->outcome = std::move(outcome);
  return f.send(
      json_request({{"codingLanguage", "python-3"}, {"codeString", "c"}, {"functionName", "Z1"}}),
      status);
}

TEST_F(Fixture, SandboxFailuresMapToSpecificErrors) {
  using S = CallOutcome::Status;
  struct Row {
    S status;
    std::string detail, code, message;
  };
  const std::vector<Row> rows = {
      {S::kTimeout, "wall limit", "Z558", "Function call timed out"},
      {S::kCpuLimit, "CPU limit of 5 s reached", "Z558",
       "Function call timed out: CPU limit of 5 s reached"},
      {S::kMemoryLimit, "memory limit of 256 MiB reached", "Z507",
       "Function call ran out of memory: memory limit of 256 MiB reached"},
      {S::kOutputTooLarge, "the result has 5 bytes; the limit is 4 bytes", "Z507",
       "Function call result is too large: the result has 5 bytes; the limit is 4 bytes"},
      {S::kForbidden, "a forbidden system call was made", "Z507",
       "Function call attempted a forbidden operation: a forbidden system call was made"},
      {S::kCrashed, "killed by SIGSEGV", "Z507", "Function call crashed: killed by SIGSEGV"},
      {S::kCrashed, "", "Z507", "Function call crashed."},
  };
  for (const auto& row : rows) {
    CallOutcome o;
    o.status = row.status;
    o.detail = row.detail;
    o.cpu_ms = 5000;
    o.peak_rss_bytes = 1 << 20;
    const json body = run_with(*this, o);
    const json error = get_error(body);
    EXPECT_EQ(error["Z5K1"], (json{{"Z1K1", "Z9"}, {"Z9K1", row.code}}));
    EXPECT_EQ(error["Z5K2"], (json{{"Z1K1", "Z6"}, {"Z6K1", row.message}}));
    EXPECT_EQ(body["Z22K1"], (json{{"Z1K1", "Z9"}, {"Z9K1", "Z24"}}));
    EXPECT_EQ(map_get(body["Z22K2"], "executionCpuUsage"),
              (json{{"Z1K1", "Z6"}, {"Z6K1", "5000.000 ms"}}));
    EXPECT_EQ(map_get(body["Z22K2"], "executionMemoryUsage"),
              (json{{"Z1K1", "Z6"}, {"Z6K1", "1.00 MiB"}}));
  }
}

TEST_F(Fixture, UnavailableSandboxIs503WithRetryAfter) {
  CallOutcome o;
  o.status = CallOutcome::Status::kUnavailable;
  o.detail = "zygote down";
  python->outcome = o;
  auto response = handler()->handle(
      json_request({{"codingLanguage", "python-3"}, {"codeString", "c"}, {"functionName", "Z1"}}));
  EXPECT_EQ(response.status, 503u);
  bool retry_after = false;
  for (const auto& h : response.headers) retry_after = retry_after || h.name == "retry-after";
  EXPECT_TRUE(retry_after);
  EXPECT_NE(response.body.find("zygote down"), std::string::npos);
}

TEST_F(Fixture, ThrottledSandboxIs429WithRetryAfterNamingTheOptions) {
  CallOutcome o;
  o.status = CallOutcome::Status::kThrottled;
  o.detail = "this code already has 2048 calls waiting";
  python->outcome = o;
  http::Request request =
      json_request({{"codingLanguage", "python-3"}, {"codeString", "c"}, {"functionName", "Z1"}});
  request.client_address = "10.1.2.3";
  auto response = handler()->handle(request);
  EXPECT_EQ(response.status, 429u);
  bool retry_after = false;
  for (const auto& h : response.headers) retry_after = retry_after || h.name == "retry-after";
  EXPECT_TRUE(retry_after);
  EXPECT_NE(response.body.find("2048 calls waiting"), std::string::npos) << response.body;
  EXPECT_NE(response.body.find("sandbox_children_per_flow"), std::string::npos) << response.body;
  // The caller (with the code, the call's flow in the sandbox's fair queue) is the peer address.
  ASSERT_EQ(python->calls.size(), 1u);
  EXPECT_EQ(python->calls[0].caller, "10.1.2.3");
}

// The user the orchestrator forwards is the fair queue's caller, but only from a trusted peer.
TEST_F(Fixture, TheForwardedCallerIsBelievedOnlyFromTrustedPeers) {
  http::Request request =
      json_request({{"codingLanguage", "python-3"}, {"codeString", "c"}, {"functionName", "Z1"}});
  request.headers.push_back({"x-wikifunctions-caller", "user:Alice"});
  request.client_address = "127.0.0.1";
  handler()->handle(request);
  request.client_address = "10.1.2.3";  // not in the default (loopback)
  handler()->handle(request);
  ASSERT_EQ(python->calls.size(), 2u);
  EXPECT_EQ(python->calls[0].caller, "fwd user:Alice");
  EXPECT_EQ(python->calls[1].caller, "10.1.2.3");

  const auto trusted = *limits::parse_cidr_list("10.0.0.0/8");
  EXPECT_EQ(fair_queue_caller(request, trusted), "fwd user:Alice");
  EXPECT_EQ(fair_queue_caller(request, {}), "10.1.2.3");
  for (std::string bad : {std::string(), std::string("a\nb"), std::string(300, 'x')}) {
    request.headers.back().value = bad;
    EXPECT_EQ(fair_queue_caller(request, trusted), "10.1.2.3") << bad;
  }
  request.headers.pop_back();
  EXPECT_EQ(fair_queue_caller(request, trusted), "10.1.2.3");
}

TEST_F(Fixture, NonsenseAndEmptyRuntimeAnswers) {
  CallOutcome o = ok_outcome(json::object());
  o.output.z22_json = "not json";
  EXPECT_EQ(get_error(run_with(*this, o))["Z5K2"]["Z6K1"],
            "Executor returned some nonsense: not json.");
  o.output.z22_json = "  ";
  EXPECT_EQ(get_error(run_with(*this, o))["Z5K2"]["Z6K1"], "Executor returned an empty response.");
  o.output.z22_json = "[1]";
  EXPECT_EQ(get_error(run_with(*this, o))["Z5K2"]["Z6K1"], "Executor returned some nonsense: [1].");
}

// ---- Metadata ------------------------------------------------------------------------------

TEST_F(Fixture, MetadataKeysOrderAndFormats) {
  CallOutcome o = ok_outcome(z22_of({{"Z1K1", "Z6"}, {"Z6K1", "r"}}));
  o.output.captured_output = "hello from print\n";
  const json body = run_with(*this, o);
  const json& meta = body["Z22K2"];
  ASSERT_TRUE(testing::is_zmap(meta)) << meta.dump();
  EXPECT_EQ(map_keys(meta),
            (std::vector<std::string>{
                "evaluationMemoryUsage", "evaluationCpuUsage", "evaluationStartTime",
                "evaluationEndTime", "evaluationDuration", "evaluationHostname",
                "executionMemoryUsage", "executionCpuUsage", "executionOutput"}));
  const auto text = [&](const char* key) { return map_get(meta, key)["Z6K1"].get<std::string>(); };
  EXPECT_TRUE(std::regex_match(text("evaluationMemoryUsage"), std::regex(R"(\d+\.\d\d MiB)")));
  EXPECT_TRUE(std::regex_match(text("evaluationCpuUsage"), std::regex(R"(\d+\.\d{3} ms)")));
  const std::regex iso(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)");
  EXPECT_TRUE(std::regex_match(text("evaluationStartTime"), iso)) << text("evaluationStartTime");
  EXPECT_TRUE(std::regex_match(text("evaluationEndTime"), iso));
  EXPECT_LE(text("evaluationStartTime"), text("evaluationEndTime"));
  EXPECT_TRUE(std::regex_match(text("evaluationDuration"), std::regex(R"(\d+ ms)")));
  EXPECT_FALSE(text("evaluationHostname").empty());
  EXPECT_EQ(text("executionMemoryUsage"), "3.16 MiB");  // 3'313'500 bytes, like the spec example
  EXPECT_EQ(text("executionCpuUsage"), "12.500 ms");
  EXPECT_EQ(text("executionOutput"), "hello from print\n");
  // The map is normal form: typed list nodes, pair types, Z6 keys.
  const json pair_type = {{"Z1K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z7"}}},
                          {"Z7K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z882"}}},
                          {"Z882K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z6"}}},
                          {"Z882K2", {{"Z1K1", "Z9"}, {"Z9K1", "Z1"}}}};
  EXPECT_EQ(meta["K1"]["K1"]["Z1K1"], pair_type);
  EXPECT_EQ(meta["K1"]["Z1K1"]["Z881K1"], pair_type);
  EXPECT_EQ(meta["K1"]["K1"]["K1"], (json{{"Z1K1", "Z6"}, {"Z6K1", "evaluationMemoryUsage"}}));
}

TEST_F(Fixture, MetadataIsAppendedToTheRuntimesErrorMap) {
  // The Python executor's error map quirk: pair type keys Z883K1/Z883K2 (evaluator-api.md §5.3).
  const json quirky_pair = {{"Z1K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z7"}}},
                            {"Z7K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z882"}}},
                            {"Z883K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z6"}}},
                            {"Z883K2", {{"Z1K1", "Z9"}, {"Z9K1", "Z1"}}}};
  const json list_type = {{"Z1K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z7"}}},
                          {"Z7K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z881"}}},
                          {"Z881K1", quirky_pair}};
  const json user_error = {{"Z1K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z5"}}},
                           {"Z5K2", {{"Z1K1", "Z6"}, {"Z6K1", "division by zero"}}}};
  const json runtime_z22 = {{"Z1K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z22"}}},
                            {"Z22K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z24"}}},
                            {"Z22K2",
                             {{"Z1K1",
                               {{"Z1K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z7"}}},
                                {"Z7K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z883"}}},
                                {"Z883K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z6"}}},
                                {"Z883K2", {{"Z1K1", "Z9"}, {"Z9K1", "Z1"}}}}},
                              {"K1",
                               {{"Z1K1", list_type},
                                {"K1",
                                 {{"Z1K1", quirky_pair},
                                  {"K1", {{"Z1K1", "Z6"}, {"Z6K1", "errors"}}},
                                  {"K2", user_error}}},
                                {"K2", {{"Z1K1", list_type}}}}}}}};
  const json body = run_with(*this, ok_outcome(runtime_z22));
  EXPECT_EQ(get_error(body), user_error);
  const auto keys = map_keys(body["Z22K2"]);
  ASSERT_EQ(keys.size(), 9u);
  EXPECT_EQ(keys[0], "errors");
  EXPECT_EQ(keys[1], "evaluationMemoryUsage");
  // New nodes keep the runtime's list type; the final tail is empty.
  const json& second = body["Z22K2"]["K1"]["K2"];
  EXPECT_EQ(second["Z1K1"], list_type);
  EXPECT_EQ(body["Z22K2"]["K1"]["K2"]["K2"]["K2"]["K2"]["K2"]["K2"]["K2"]["K2"]["K2"],
            (json{{"Z1K1", list_type}}));
}

TEST(ResultEnvelope, MapSetReplacesExistingKeys) {
  Json map = make_metadata_map();
  ASSERT_TRUE(map_set(map, "a", z6("1")));
  ASSERT_TRUE(map_set(map, "b", z6("2")));
  ASSERT_TRUE(map_set(map, "a", z6("3")));
  const json j = json(map);
  EXPECT_EQ(map_keys(j), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(map_get(j, "a"), (json{{"Z1K1", "Z6"}, {"Z6K1", "3"}}));
  Json not_a_map = Json{{"Z1K1", "Z6"}, {"Z6K1", "x"}};
  EXPECT_FALSE(map_set(not_a_map, "a", z6("1")));
  EXPECT_TRUE(is_void(Json{{"Z1K1", "Z9"}, {"Z9K1", "Z24"}}));
  EXPECT_TRUE(is_void(Json{{"Z1K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z21"}}}}));
  EXPECT_FALSE(is_void(z6("Z24")));
}

TEST_F(Fixture, VoidMetadataBecomesAMapAndNonMapIsLeftAlone) {
  const json body = run_with(*this, ok_outcome(z22_of({{"Z1K1", "Z6"}, {"Z6K1", "r"}})));
  EXPECT_TRUE(testing::is_zmap(body["Z22K2"]));
  json odd = z22_of({{"Z1K1", "Z6"}, {"Z6K1", "r"}});
  odd["Z22K2"] = {{"Z1K1", "Z6"}, {"Z6K1", "not a map"}};
  EXPECT_EQ(run_with(*this, ok_outcome(odd))["Z22K2"], odd["Z22K2"]);
}

TEST_F(Fixture, EarlyErrorsCarryNoMetadata) {
  const json body = send(json_request({{"codingLanguage", "lua"}, {"codeString", "c"}}));
  EXPECT_EQ(map_keys(body["Z22K2"]), std::vector<std::string>{"errors"});
}

// ---- Deadlines ----------------------------------------------------------------------------

TEST_F(Fixture, DeadlineIsTheEarlierOfRequestAndTimeout) {
  python->outcome = ok_outcome(z22_of({{"Z1K1", "Z6"}, {"Z6K1", "r"}}));
  options.timeout = std::chrono::milliseconds(15000);
  http::Request r =
      json_request({{"codingLanguage", "python-3"}, {"codeString", "c"}, {"functionName", "Z1"}});
  const auto before = std::chrono::steady_clock::now();
  r.deadline = before + std::chrono::milliseconds(500);
  send(r);
  ASSERT_EQ(python->deadlines.size(), 1u);
  EXPECT_EQ(python->deadlines[0], r.deadline);
  r.deadline = before + std::chrono::hours(1);
  send(r);
  EXPECT_LE(python->deadlines[1],
            std::chrono::steady_clock::now() + std::chrono::milliseconds(15000));
  EXPECT_GE(python->deadlines[1], before + std::chrono::milliseconds(15000));
  r.deadline = {};  // unset: the service timeout alone
  send(r);
  EXPECT_GE(python->deadlines[2], before + std::chrono::milliseconds(15000));
}

TEST_F(Fixture, PositiveRemainingTimeLowersTheDeadline) {
  python->outcome = ok_outcome(z22_of({{"Z1K1", "Z6"}, {"Z6K1", "r"}}));
  options.timeout = std::chrono::milliseconds(15000);
  const auto before = std::chrono::steady_clock::now();
  send(json_request({{"codingLanguage", "python-3"},
                     {"codeString", "c"},
                     {"functionName", "Z1"},
                     {"remainingTime", 300.0}}));
  ASSERT_EQ(python->deadlines.size(), 1u);
  EXPECT_GE(python->deadlines[0], before + std::chrono::milliseconds(300));
  EXPECT_LE(python->deadlines[0],
            std::chrono::steady_clock::now() + std::chrono::milliseconds(300));
  // The original orchestrator sends a large negative remainingTime: it is ignored.
  send(json_request({{"codingLanguage", "python-3"},
                     {"codeString", "c"},
                     {"functionName", "Z1"},
                     {"remainingTime", -1.7e12}}));
  ASSERT_EQ(python->deadlines.size(), 2u);
  EXPECT_GE(python->deadlines[1], before + std::chrono::milliseconds(15000));
}

}  // namespace
}  // namespace wf::evaluator
