// An evaluator's answer to the orchestrator: parsed as the client parses it
// (orchestrator/evaluator_client.cc) and handed to the engine through its CodeRunner port, which
// takes the Z22 apart and checks the result against the function's return type. The envelope the
// engine answers with is always a Z22.
#include <memory>
#include <string_view>

#include "fuzz_target.h"
#include "orchestrator/engine/code_answer.h"
#include "orchestrator/engine/engine.h"

namespace wo = wf::orchestrator;
using nlohmann::json;

namespace {

// Answers every code call with the current input.
class InputEvaluator final : public wo::CodeRunner {
 public:
  void run(const wo::CodeCall&, const wo::CallContext&, Done done) override {
    if (answer.z22.is_discarded()) {
      return done(
          std::unexpected(wo::CodeRunError{wo::CodeRunError::Kind::kFailed, "invalid JSON"}));
    }
    done(answer);
  }
  wo::CodeAnswer answer;
};

// Z8 returning Z1 (anything) or Z6, with one Python implementation.
json call_with_code(const char* return_type) {
  const json code = {{"Z1K1", "Z14"},
                     {"Z14K1", "Z10900"},
                     {"Z14K3",
                      {{"Z1K1", "Z16"},
                       {"Z16K1", {{"Z1K1", "Z61"}, {"Z61K1", "python-3"}}},
                       {"Z16K2", "def Z10900(Z10900K1):\n    return Z10900K1"}}}};
  const json z8 = {
      {"Z1K1", "Z8"},
      {"Z8K1", json::array({"Z17",
                            {{"Z1K1", "Z17"},
                             {"Z17K1", "Z6"},
                             {"Z17K2", "Z10900K1"},
                             {"Z17K3", {{"Z1K1", "Z12"}, {"Z12K1", json::array({"Z11"})}}}}})},
      {"Z8K2", return_type},
      {"Z8K3", json::array({"Z20"})},
      {"Z8K4", json::array({"Z14", code})},
      {"Z8K5", "Z10900"}};
  return {{"zobject", {{"Z1K1", "Z7"}, {"Z7K1", z8}, {"Z10900K1", "x"}}}, {"doValidate", false}};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static auto evaluator = std::make_shared<InputEvaluator>();
  static auto engine = wo::make_engine({}, nullptr, evaluator);
  static const json kRequests[] = {call_with_code("Z1"), call_with_code("Z6")};
  if (size == 0) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  evaluator->answer = wo::read_code_answer(text);
  // Read in parts or whole, the answer is what nlohmann reads.
  const json whole = json::parse(text, nullptr, false);
  WF_FUZZ_CHECK(whole.is_discarded() ? evaluator->answer.z22.is_discarded()
                                     : wo::whole_z22(evaluator->answer) == whole);
  wo::CallContext ctx;
  ctx.deadline = wo::Clock::now() + std::chrono::seconds(10);
  const json z22 = engine->evaluate(kRequests[data[0] & 1], ctx);
  WF_FUZZ_CHECK(z22.is_object() && z22.contains("Z22K1") && z22.contains("Z22K2"));
  return 0;
}
