// The evaluator conformance cases for JavaScript (eval-javascript-*.json, eval-js-*.json), run
// against the runtime directly and compared as /work/shared/conformance/run.py compares them.
// Cases that test the service's request handling (no code to run) are not the runtime's and are
// counted as not applicable.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "runtime_harness.h"

namespace wf::evaluator::testing {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

json without_z1k1(const json& x) {
  if (x.is_object()) {
    json out = json::object();
    for (auto it = x.begin(); it != x.end(); ++it) {
      if (it.key() != "Z1K1") {
        out[it.key()] = without_z1k1(it.value());
      }
    }
    return out;
  }
  if (x.is_array()) {
    json out = json::array();
    for (const auto& v : x) {
      out.push_back(without_z1k1(v));
    }
    return out;
  }
  return x;
}

bool is_void(const json& x) {
  if (x == "Z24" ||
      (x.is_object() && x.value("Z1K1", json()) == "Z9" && x.value("Z9K1", json()) == "Z24")) {
    return true;
  }
  if (x.is_object() && x.contains("Z1K1")) {
    const json& t = x["Z1K1"];
    return t == "Z21" ||
           (t.is_object() && t.value("Z1K1", json()) == "Z9" && t.value("Z9K1", json()) == "Z21");
  }
  return false;
}

// Extracts the runtime's CallInput from a case request; false if the request has no code.
bool extract(const json& request, CallInput& input) {
  json z = request.contains("zobject") ? request["zobject"] : request;
  if (z.contains("codeString")) {
    input.code = z["codeString"];
    input.function_name = z["functionName"];
    input.arguments_json = z.value("functionArguments", json::object()).dump();
    return true;
  }
  try {
    const json& z8 = z.at("Z7K1");
    input.code = z8.at("Z8K4").at("K1").at("Z14K3").at("Z16K2").at("Z6K1");
    input.function_name = z8.at("Z8K5").at("Z9K1");
    json args = json::object();
    for (auto it = z.begin(); it != z.end(); ++it) {
      if (it.key() != "Z1K1" && it.key() != "Z7K1") {
        args[it.key()] = it.value();
      }
    }
    input.arguments_json = args.dump();
    return true;
  } catch (const json::exception&) {
    return false;
  }
}

TEST(JsConformance, EvaluatorCasesForJavascript) {
  const fs::path dir = WF_CONFORMANCE_EVALUATOR_CASES;
  if (!fs::is_directory(dir)) {
    GTEST_SKIP() << "no conformance cases at " << dir << " (set WF_CONFORMANCE_EVALUATOR_CASES)";
  }
  int ran = 0;
  int not_applicable = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (!(name.starts_with("eval-javascript-") || name.starts_with("eval-js-"))) {
      continue;
    }
    std::ifstream in(entry.path());
    const json c = json::parse(in);
    CallInput input;
    if (!extract(c.at("request"), input)) {
      ++not_applicable;
      continue;
    }
    SCOPED_TRACE(name);
    ++ran;
    CallOutput out = runtime().call(input);
    ASSERT_TRUE(out.ok) << out.error_message;
    const json& expect = c.at("expect");
    const bool loose = expect.value("compare", "exact") == "without_z1k1";
    const json result = result_of(out);
    const json error = error_of(out);
    if (expect.contains("result")) {
      if (expect["result"] == "Z24") {
        EXPECT_TRUE(is_void(result)) << result.dump();
      } else if (loose) {
        EXPECT_EQ(without_z1k1(result), without_z1k1(expect["result"]));
      } else {
        EXPECT_EQ(result, expect["result"]);
      }
    }
    if (expect.contains("is_error")) {
      EXPECT_EQ(!error.is_null() && !is_void(error), expect["is_error"].get<bool>())
          << out.z22_json;
    }
    if (expect.contains("error")) {
      EXPECT_EQ(loose ? without_z1k1(error) : error,
                loose ? without_z1k1(expect["error"]) : expect["error"]);
    }
    if (expect.contains("error_message_contains")) {
      EXPECT_NE(error.dump().find(expect["error_message_contains"].get<std::string>()),
                std::string::npos);
    }
  }
  EXPECT_GE(ran, 10) << "expected the JavaScript cases of the corpus (not applicable: "
                     << not_applicable << ")";
  RecordProperty("cases_run", ran);
  RecordProperty("cases_not_applicable", not_applicable);
}

}  // namespace
}  // namespace wf::evaluator::testing
