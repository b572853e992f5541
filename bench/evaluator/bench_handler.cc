// The evaluator service's own work per call, without a sandbox: the evaluate handler with a fake
// sandbox that answers at once with what the Python runtime writes for an identity call
// (decode, checks, metadata, the answer's text), for both request forms the service gets (the
// JSON form of bench/evaluator_e2e, the Avro 0.0.4 form the orchestrator sends); and the answer
// alone, through the DOM path and through the pass-through (result_text.h).
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "evaluator/service/evaluate_handler.h"
#include "evaluator/service/result_text.h"
#include "evaluator_metadata_sample.h"
#include "wf/codec/avro.h"

namespace {

using namespace wf::evaluator;

// What the Python driver writes for `def Z1(Z1K1): return Z1K1` with "x".
const std::string kRuntimeZ22 =
    R"({"Z1K1":{"Z1K1":"Z9","Z9K1":"Z22"},"Z22K1":{"Z1K1":"Z6","Z6K1":"x"},)"
    R"("Z22K2":{"Z1K1":"Z9","Z9K1":"Z24"}})";

class AnsweringSandbox final : public Sandbox {
 public:
  CallOutcome run(const CallInput&, std::chrono::steady_clock::time_point) override {
    CallOutcome o;
    o.status = CallOutcome::Status::kOk;
    o.output.ok = true;
    o.output.z22_json = kRuntimeZ22;
    o.cpu_ms = 1.2;
    o.peak_rss_bytes = 14u << 20;
    return o;
  }
  int ready_children() const override { return 1; }
};

void BM_AnswerDom(benchmark::State& state) {
  const auto meta = sample::service_metadata();
  for (auto _ : state) {
    auto z22 = wf::codec::parse_json<Json>(kRuntimeZ22);
    set_metadata(*z22, meta);
    benchmark::DoNotOptimize(z22->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  }
}
BENCHMARK(BM_AnswerDom);

void BM_AnswerPassThrough(benchmark::State& state) {
  const auto meta = sample::service_metadata();
  for (auto _ : state) benchmark::DoNotOptimize(pass_through_z22(kRuntimeZ22, meta));
}
BENCHMARK(BM_AnswerPassThrough);

wf::http::Request request(std::string body, const char* content_type) {
  wf::http::Request r;
  r.method = "POST";
  r.path = r.target = "/wikifunctions.org/v1/evaluate/";
  r.headers.push_back({"content-type", content_type});
  r.body = std::move(body);
  return r;
}

void run_handler(benchmark::State& state, const wf::http::Request& r) {
  auto handler = make_evaluate_handler({}, std::make_shared<AnsweringSandbox>(), nullptr);
  for (auto _ : state) benchmark::DoNotOptimize(handler->handle(r));
}

void BM_HandleJsonRequest(benchmark::State& state) {
  run_handler(state, request(R"({"codingLanguage":"python","codeString":"def Z1(Z1K1):\n    )"
                             R"(return Z1K1","functionName":"Z1","functionArguments":)"
                             R"({"Z1K1":{"Z1K1":"Z6","Z6K1":"x"}}})",
                             "application/json"));
}
BENCHMARK(BM_HandleJsonRequest);

void BM_HandleAvroRequest(benchmark::State& state) {
  wf::codec::CodeRequest call;
  call.remaining_time_ms = 20000;
  call.coding_language = "python-3";
  call.code_string = "def Z10002(Z10002K1):\n    return Z10002K1.upper()";
  call.function_name = "Z10002";
  const nlohmann::json arguments = {{"Z10002K1", {{"Z1K1", "Z6"}, {"Z6K1", "hello"}}}};
  run_handler(
      state, request(*wf::codec::encode_code_request(call, arguments), "application/octet-stream"));
}
BENCHMARK(BM_HandleAvroRequest);

}  // namespace

BENCHMARK_MAIN();
