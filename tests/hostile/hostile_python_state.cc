// Hostile Python through Sandbox::run: state that one call leaves for the next, and a sandbox
// that keeps serving correct answers after a run of hostile calls.

#include <set>

#include "hostile_python_fixture.h"

namespace wf::evaluator::hostile {
namespace {

TEST_F(HostilePython, NothingLeaksIntoTheNextCall) {
  CallOutcome first =
      run("import builtins, sys, json, os, random\n"
          "def Z1():\n"
          "  builtins.planted = 'evil'\n"
          "  builtins.len = lambda x: 42\n"
          "  json.dumps = None\n"
          "  sys.modules['planted_module'] = sys\n"
          "  sys.modules['_wf_driver']._serialize = lambda v: {'Z1K1': 'Z6', 'Z6K1': 'hijacked'}\n"
          "  os.environ['PLANTED'] = '1'\n"
          "  random.seed(1)\n"
          "  return 'planted'");
  EXPECT_STATUS(first, Status::kOk);
  EXPECT_EQ(z22_string(first.output.z22_json), "hijacked");  // only its own call is affected
  CallOutcome second =
      run("import builtins, sys, json, os\n"
          "def Z1():\n"
          "  return ','.join([str(hasattr(builtins, 'planted')), str(len([1])), json.dumps([1]),\n"
          "                   str('planted_module' in sys.modules), str(os.getenv('PLANTED'))])");
  EXPECT_STATUS(second, Status::kOk);
  EXPECT_EQ(z22_string(second.output.z22_json), "False,1,[1],False,None");
}

TEST_F(HostilePython, RandomDiffersBetweenCalls) {
  std::set<std::string> seen;
  for (int i = 0; i < 5; ++i) {
    CallOutcome out = run("import random\ndef Z1():\n  return str(random.random())");
    EXPECT_STATUS(out, Status::kOk);
    seen.insert(z22_string(out.output.z22_json));
  }
  EXPECT_EQ(seen.size(), 5u);
}

TEST_F(HostilePython, KeepsAnsweringCorrectlyAfterHostileCalls) {
  const char* hostile[] = {
      "import os\ndef Z1():\n  os.fork()",
      "def Z1():\n  x = bytearray(10**9)",
      "import os\ndef Z1():\n  os.kill(1, 9)",
      "def Z1():\n  return open('/etc/shadow').read()",
  };
  for (const char* code : hostile) run(code);
  for (int i = 0; i < 10; ++i) {
    std::string argument = "v" + std::to_string(i);
    CallOutcome out = run("def Z1(Z1K1):\n  return Z1K1[::-1]", 5000ms,
                          R"({"Z1K1":{"Z1K1":"Z6","Z6K1":")" + argument + "\"}}");
    EXPECT_STATUS(out, Status::kOk);
    EXPECT_EQ(z22_string(out.output.z22_json), std::string(argument.rbegin(), argument.rend()));
  }
  EXPECT_EQ(sandbox_->stats().setup_failures, 0u);
}

}  // namespace
}  // namespace wf::evaluator::hostile
