// JSON text -> ZObject (zobject::parse with its depth limit): a value or an error, never a crash;
// a parsed value is no deeper than the limit.
// The same text as an evaluate request's zobject, read straight into the engine's nodes
// (orchestrator/engine/request_nodes.h): when that reader takes it, the JSON tree's path would
// take it the same way (plain JSON, a valid MIXED call within the limits) and the nodes' JSON is
// the zobject's normal form.
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_target.h"
#include "orchestrator/engine/request_nodes.h"
#include "wf/zobject/zobject.h"

namespace {

void check_request(std::string_view body) {
  namespace ed = wf::orchestrator::engine_detail;
  ed::RequestLimits limits;
  limits.max_json_depth = 64;
  limits.max_zobject_depth = 32;
  auto call = ed::parse_call(body, limits);
  if (!call) return;
  auto tree = nlohmann::json::parse(body, nullptr, false);
  WF_FUZZ_CHECK(!tree.is_discarded() && tree.is_object() && tree.contains("zobject"));
  const nlohmann::json& zobject = tree["zobject"];
  WF_FUZZ_CHECK(wf::zobject::check_mixed(zobject).empty());
  WF_FUZZ_CHECK(wf::zobject::depth(zobject, limits.max_zobject_depth + 1) <=
                limits.max_zobject_depth);
  WF_FUZZ_CHECK(call->zobject->to_json() == wf::zobject::to_normal(zobject));
  std::vector<std::string> called;
  ed::called_functions(*call, called);
  WF_FUZZ_CHECK(called.size() <= 64);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  constexpr int kDepth = 64;
  check_request(text);
  check_request(std::string(R"({"zobject":)") + std::string(text) + "}");
  auto parsed = wf::zobject::parse(text, kDepth);
  if (!parsed) {
    WF_FUZZ_CHECK(!parsed.error().message.empty());
    return 0;
  }
  WF_FUZZ_CHECK(wf::zobject::depth(*parsed, kDepth + 1) <= kDepth);
  return 0;
}
