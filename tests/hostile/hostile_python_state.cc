// Hostile Python through Sandbox::run: state that one call leaves for the next, and a sandbox
// that keeps serving correct answers after a run of hostile calls.

#include <fstream>
#include <iterator>
#include <set>
#include <sstream>

#include "hostile_python_fixture.h"
#include "wf/sanitizer.h"

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

// Every child is forked from the same zygote memory: the random module must be reseeded per
// child (PyOS_AfterFork_Child runs random's at-fork hook); os.urandom and SystemRandom read the
// kernel.
TEST_F(HostilePython, RandomStateIsDistinctPerChild) {
  std::set<std::string> seen;
  for (int i = 0; i < 8; ++i) {
    CallOutcome out =
        run("import os, random\n"
            "def Z1():\n"
            "  return '%x/%s/%x' % (random.getrandbits(64), os.urandom(16).hex(), "
            "random.SystemRandom().getrandbits(64))");
    EXPECT_STATUS(out, Status::kOk);
    std::string value = z22_string(out.output.z22_json);
    std::size_t first = value.find('/');
    std::size_t second = value.find('/', first + 1);
    ASSERT_NE(second, std::string::npos) << value;
    seen.insert("r" + value.substr(0, first));
    seen.insert("u" + value.substr(first + 1, second - first - 1));
    seen.insert("s" + value.substr(second + 1));
  }
  EXPECT_EQ(seen.size(), 24u);
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

// The supervisor moves the initialised interpreter's memory into a sealed file image
// (evaluator/sandbox/file_image.h) before it forks the zygote: the zygote's memory is then
// file-backed, and what is anonymous is what the zygote itself wrote since: its warm-up call and
// its loop (~3 MB in wf-evaluator). Without the image the zygote held ~8.4 MB of anonymous memory.
TEST_F(HostilePython, TheZygoteForksFromAFileImage) {
  if (WF_ASAN || WF_TSAN) {
    // rebase_onto_file_image does nothing under a sanitizer: its shadow memory is its own.
    GTEST_SKIP() << "the zygote keeps anonymous memory under a sanitizer (no file image)";
  }
  const int zygote = sandbox_->stats().zygote_pid;
  ASSERT_GT(zygote, 0);
  std::ifstream rollup("/proc/" + std::to_string(zygote) + "/smaps_rollup");
  std::string text((std::istreambuf_iterator<char>(rollup)), std::istreambuf_iterator<char>());
  const std::size_t at = text.find("\nAnonymous:");
  ASSERT_NE(at, std::string::npos) << text;
  const long anonymous_kb = std::stol(text.substr(at + 11));
  EXPECT_LT(anonymous_kb, 5 * 1024) << text;
  std::ifstream maps("/proc/" + std::to_string(zygote) + "/maps");
  std::stringstream lines;
  lines << maps.rdbuf();
  EXPECT_NE(lines.str().find("wf-zygote-image"), std::string::npos) << lines.str();
  // Children forked from it answer, each from the same image.
  for (int i = 0; i < 3; ++i) {
    CallOutcome out =
        run("import json, re\ndef Z1():\n  return json.dumps(re.findall('a', 'aba'))");
    EXPECT_STATUS(out, Status::kOk);
    EXPECT_EQ(z22_string(out.output.z22_json), "[\"a\", \"a\"]");
  }
}

}  // namespace
}  // namespace wf::evaluator::hostile
