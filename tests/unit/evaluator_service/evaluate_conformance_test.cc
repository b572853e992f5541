// Every evaluator conformance case through the real handler with the REAL sandboxes and language
// runtimes (embedded CPython and SpiderMonkey behind the zygote/seccomp sandbox). This binary is
// also the sandboxes' supervisor image (main() below).

#include <gtest/gtest.h>

#include "../../support/sandbox_test_main.h"
#include "../codec/codec_test_support.h"
#include "conformance_check.h"
#include "evaluator/executors/javascript/javascript_runtime.h"
#include "evaluator/executors/python/python_runtime.h"
#include "evaluator/service/evaluate_handler.h"

namespace wf::evaluator {
namespace {

using nlohmann::json;

// The parameter is the case's file name, so that test names stay short; the case is read again.
std::vector<std::string> case_files() {
  std::vector<std::string> names;
  for (const json& c : codec::testing::evaluator_cases()) names.push_back(c["name"]);
  return names;
}

class RealSandboxes : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() {
    SandboxLimits limits;
    limits.pool_size = 2;
    python_ = std::shared_ptr<Sandbox>(start_sandbox("python", limits));
    javascript_ = std::shared_ptr<Sandbox>(start_sandbox("javascript", limits));
  }
  static void TearDownTestSuite() {
    python_.reset();
    javascript_.reset();
  }
  static std::shared_ptr<Sandbox> python_;
  static std::shared_ptr<Sandbox> javascript_;
};

std::shared_ptr<Sandbox> RealSandboxes::python_;
std::shared_ptr<Sandbox> RealSandboxes::javascript_;

TEST_P(RealSandboxes, PassesItsExpectations) {
  const json c = codec::testing::read_json_file(std::string(WF_CONFORMANCE_DIR) +
                                                "/cases/evaluator/" + GetParam() + ".json");
  http::Request r;
  r.method = "POST";
  r.path = r.target = "/wikifunctions.org/v1/evaluate/";
  if (c.contains("request_body_base64")) {
    r.headers.push_back(
        {"content-type", c.value("request_content_type", "application/octet-stream")});
    r.body = codec::testing::from_base64(c["request_body_base64"].get<std::string>());
  } else {
    r.headers.push_back({"content-type", "application/json"});
    r.body = c["request"].dump();
  }
  EvaluateOptions options;
  auto handler = make_evaluate_handler(options, python_, javascript_);
  const http::Response response = handler->handle(r);
  const json body = json::parse(response.body);
  for (const auto& failure : testing::check_case(c, response.status, body)) {
    ADD_FAILURE() << failure << "\nresponse: " << response.body.substr(0, 2000);
  }
  // Executed calls report their cost (evaluator-api.md §6).
  if (c["area"] != "request_errors") {
    for (const char* key : {"evaluationDuration", "executionCpuUsage", "executionMemoryUsage"}) {
      EXPECT_FALSE(testing::map_get(body["Z22K2"], key).is_null()) << key;
    }
  }
}

std::string case_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string name = info.param;
  for (char& ch : name) {
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  }
  return name;
}

INSTANTIATE_TEST_SUITE_P(Evaluator, RealSandboxes, ::testing::ValuesIn(case_files()), case_name);

}  // namespace
}  // namespace wf::evaluator

int main(int argc, char** argv) {
  using namespace wf::evaluator;
  static const RuntimeEntry kRuntimes[] = {
      {"python", make_python_runtime}, {"javascript", +[] { return make_javascript_runtime(); }}};
  return wf::evaluator::testing::sandbox_test_main(argc, argv, kRuntimes);
}
