// The Python runtime in-process (no sandbox): calling convention, conversions and error messages
// of evaluator-api.md §5.1/§5.3, the deliberate fixes, and the Python conformance cases.

#define PY_SSIZE_T_CLEAN
#include <Python.h>
// Python.h first, as CPython requires.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "evaluator/executors/python/python_runtime.h"

namespace wf::evaluator {
namespace {

using nlohmann::json;

LanguageRuntime* g_runtime = nullptr;

json z6(const std::string& s) {
  return {{"Z1K1", "Z6"}, {"Z6K1", s}};
}
json z9(const std::string& s) {
  return {{"Z1K1", "Z9"}, {"Z9K1", s}};
}
json z40(bool b) {
  return {{"Z1K1", z9("Z40")}, {"Z40K1", z9(b ? "Z41" : "Z42")}};
}
json call_type(const std::string& function, json arguments) {
  json type = {{"Z1K1", z9("Z7")}, {"Z7K1", z9(function)}};
  type.update(arguments);
  return type;
}
json list_type(const json& item) {
  return call_type("Z881", {{"Z881K1", item}});
}
json typed_list(const json& item_type, const std::vector<json>& items) {
  json node = {{"Z1K1", list_type(item_type)}};
  for (auto it = items.rbegin(); it != items.rend(); ++it) {
    node = {{"Z1K1", list_type(item_type)}, {"K1", *it}, {"K2", node}};
  }
  return node;
}
json pair_type(const json& k, const json& v) {
  return call_type("Z882", {{"Z882K1", k}, {"Z882K2", v}});
}

struct Result {
  CallOutput output;
  json z22;
};

Result call(const std::string& code, const json& arguments = json::object(),
            const std::string& name = "Z1000") {
  CallInput input;
  input.code = code;
  input.function_name = name;
  input.arguments_json = arguments.dump();
  input.captured_output_limit = 256;
  Result result;
  result.output = g_runtime->call(input);
  result.z22 = json::parse(result.output.z22_json);
  return result;
}

json value_of(const Result& r) {
  return r.z22.at("Z22K1");
}

std::string error_of(const Result& r) {
  const json& metadata = r.z22.at("Z22K2");
  if (!metadata.contains("K1")) return "";
  const json* node = &metadata.at("K1");
  while (node->contains("K1")) {
    const json& pair = node->at("K1");
    if (pair.at("K1").at("Z6K1") == "errors") return pair.at("K2").at("Z5K2").at("Z6K1");
    node = &node->at("K2");
  }
  return "";
}

TEST(PythonRuntime, KeywordArgumentsByKey) {
  auto r = call("def Z1000(Z1000K2, Z1000K1):\n  return Z1000K1 + '-' + Z1000K2",
                {{"Z1000K1", z6("a")}, {"Z1000K2", z6("b")}});
  EXPECT_TRUE(r.output.ok);
  EXPECT_EQ(value_of(r), z6("a-b"));
  EXPECT_EQ(r.z22.at("Z1K1"), z9("Z22"));
  EXPECT_EQ(r.z22.at("Z22K2"), z9("Z24"));
}

TEST(PythonRuntime, LambdaAssignedToTheName) {
  auto r = call("Z1000 = lambda Z1000K1: Z1000K1.upper()", {{"Z1000K1", z6("up")}});
  EXPECT_EQ(value_of(r), z6("UP"));
}

TEST(PythonRuntime, TopLevelImportsAndHelpersAreVisible) {
  auto r = call(
      "import math\ndef helper(x):\n  return str(math.floor(x))\n"
      "def Z1000():\n  return helper(2.5)");
  EXPECT_EQ(value_of(r), z6("2"));
}

TEST(PythonRuntime, PrintIsCapturedAndBounded) {
  auto r = call(
      "import sys\ndef Z1000():\n  print('hello')\n  sys.stderr.write('err')\n"
      "  return 'ok'");
  EXPECT_EQ(value_of(r), z6("ok"));
  EXPECT_EQ(r.output.captured_output, "hello\nerr");
  r = call("def Z1000():\n  for i in range(10000): print('x' * 100)\n  return 'ok'");
  EXPECT_EQ(value_of(r), z6("ok"));
  EXPECT_EQ(r.output.captured_output.size(), 256u);
}

TEST(PythonRuntime, StdinIsEmpty) {
  auto r = call("def Z1000():\n  return input()");
  EXPECT_EQ(error_of(r), "EOF when reading a line");
}

TEST(PythonRuntime, BooleansNoneAndStrings) {
  EXPECT_EQ(value_of(call("def Z1000(Z1000K1):\n  return not Z1000K1", {{"Z1000K1", z40(true)}})),
            z40(false));
  EXPECT_EQ(value_of(call("def Z1000():\n  return None")), json({{"Z1K1", z9("Z21")}}));
  auto r = call("def Z1000(Z1000K1):\n  return str(Z1000K1 is None)",
                {{"Z1000K1", {{"Z1K1", z9("Z21")}}}});
  EXPECT_EQ(value_of(r), z6("True"));
  EXPECT_EQ(value_of(call("def Z1000():\n  return 'h\\u00e9llo \\u0633'")),
            z6("h\u00e9llo \u0633"));
}

TEST(PythonRuntime, ListsAreTypedWithTheCommonItemType) {
  // Strings keep the bare "Z6" type of their Z1K1 (a quirk of the original executor).
  EXPECT_EQ(value_of(call("def Z1000():\n  return ['a', 'b']")),
            typed_list("Z6", {z6("a"), z6("b")}));
  EXPECT_EQ(value_of(call("def Z1000():\n  return []")), typed_list(z9("Z1"), {}));
  EXPECT_EQ(value_of(call("def Z1000():\n  return ('a', True)")),
            typed_list(z9("Z1"), {z6("a"), z40(true)}));
  EXPECT_EQ(value_of(call("def Z1000():\n  return (x for x in [True])")),
            typed_list(z9("Z40"), {z40(true)}));
}

TEST(PythonRuntime, ListArgumentsBecomeLists) {
  json list = typed_list(z9("Z6"), {z6("x"), z6("y"), z6("z")});
  auto r = call("def Z1000(Z1000K1):\n  return '|'.join(Z1000K1) + str(type(Z1000K1).__name__)",
                {{"Z1000K1", list}});
  EXPECT_EQ(value_of(r), z6("x|y|zlist"));
}

TEST(PythonRuntime, PairsKeepTheirOriginalType) {
  json type = pair_type(z9("Z6"), z9("Z6"));
  json pair = {{"Z1K1", type}, {"K1", z6("a")}, {"K2", z6("b")}};
  auto r = call("def Z1000(Z1000K1):\n  return ZPair(Z1000K1.K2, Z1000K1.K1, Z1000K1.Z1K1)",
                {{"Z1000K1", pair}});
  EXPECT_EQ(value_of(r), json({{"Z1K1", type}, {"K1", z6("b")}, {"K2", z6("a")}}));
  r = call("def Z1000():\n  return ZPair('a', True)");
  EXPECT_EQ(value_of(r).at("Z1K1"), pair_type("Z6", z9("Z40")));
}

TEST(PythonRuntime, DictsBecomeTypedMaps) {
  auto r = call("def Z1000():\n  return {'k': True}");
  json pair = {{"Z1K1", pair_type("Z6", z9("Z40"))}, {"K1", z6("k")}, {"K2", z40(true)}};
  json expected = {{"Z1K1", call_type("Z883", {{"Z883K1", "Z6"}, {"Z883K2", z9("Z40")}})},
                   {"K1", typed_list(pair_type("Z6", z9("Z40")), {pair})}};
  EXPECT_EQ(value_of(r), expected);
  // ... and back.
  r = call("def Z1000(Z1000K1):\n  return str(Z1000K1)", {{"Z1000K1", expected}});
  EXPECT_EQ(value_of(r), z6("{'k': True}"));
}

TEST(PythonRuntime, OtherObjectsBecomeZObjects) {
  json object = {{"Z1K1", z9("Z10001")}, {"Z10001K2", z6("two")}, {"Z10001K1", z40(false)}};
  auto r = call("def Z1000(Z1000K1):\n  Z1000K1.Z10001K3 = 'three'\n  return Z1000K1",
                {{"Z1000K1", object}});
  json expected = object;
  expected["Z10001K3"] = z6("three");
  EXPECT_EQ(value_of(r), expected);
  EXPECT_EQ(r.output.z22_json.find(R"("Z22K1":{"Z1K1":{"Z1K1":"Z9","Z9K1":"Z10001"},"Z10001K1")"),
            r.output.z22_json.find("\"Z22K1\""))
      << "keys are sorted: " << r.output.z22_json;
  r = call("def Z1000():\n  return ZObject('Z10002', Z10002K1='v')");
  EXPECT_EQ(value_of(r), json({{"Z1K1", "Z10002"}, {"Z10002K1", z6("v")}}));
}

// Issue 10: the original failed here ('str' object has no attribute 'get'); a reference is now a
// ZReference (a str equal to the ZID) that stays a reference when returned.
TEST(PythonRuntime, ReferencesInsideArgumentsReachTheCode) {
  json type = {{"Z1K1", z9("Z4")}, {"Z4K1", z9("Z6")}};
  auto r = call("def Z1000(Z1000K1):\n  return Z1000K1.Z4K1", {{"Z1000K1", type}});
  EXPECT_EQ(value_of(r), z9("Z6"));
  r = call("def Z1000(Z1000K1):\n  return Z1000K1 == 'Z6021' and Z1000K1.Z9K1 == 'Z6021'",
           {{"Z1000K1", z9("Z6021")}});
  EXPECT_EQ(value_of(r), json({{"Z1K1", z9("Z40")}, {"Z40K1", z9("Z41")}}));
}

TEST(PythonRuntime, UnserializableResults) {
  EXPECT_EQ(error_of(call("def Z1000():\n  return 5")),
            "Could not serialize input Python object: 5");
  EXPECT_EQ(error_of(call("def Z1000():\n  return 1.5")),
            "Could not serialize input Python object: 1.5");
  auto r = call("def Z1000():\n  class A:\n    def __repr__(self): return '<A>'\n  return A()");
  EXPECT_EQ(error_of(r), "Could not serialize input Python object: <A>");
  EXPECT_EQ(value_of(r), z9("Z24"));
}

TEST(PythonRuntime, ErrorMessages) {
  EXPECT_EQ(error_of(call("def Z1000(:\n  pass")), "invalid syntax");
  EXPECT_EQ(error_of(call("def Z1000():\n  return (1")), "'(' was never closed");
  EXPECT_EQ(error_of(call("def Z1000():\n  raise ValueError('bad value', 2)")), "bad value");
  EXPECT_EQ(error_of(call("def Z1000():\n  raise KeyError(42)")), "42");
  // Without arguments: the exception's type name (the original executor crashed here).
  EXPECT_EQ(error_of(call("def Z1000():\n  raise ValueError()")), "ValueError");
  EXPECT_EQ(error_of(call("def Z1000():\n  return 1 / 0")), "division by zero");
  EXPECT_EQ(error_of(call("def Z1001():\n  return 'x'")), "name 'Z1000' is not defined");
  EXPECT_EQ(error_of(call("import sys\ndef Z1000():\n  sys.exit('bye')")), "bye");
  EXPECT_EQ(error_of(call("def Z1000(Z1000K1):\n  return Z1000K1")),
            "Z1000() missing 1 required positional argument: 'Z1000K1'");
  EXPECT_EQ(error_of(call("def Z1000():\n  return W.Call('Z801', Z801K1='x')")),
            "Non-reentrant executor tried to call back to the orchestrator");
}

TEST(PythonRuntime, ErrorEnvelopeShape) {
  auto r = call("def Z1000():\n  raise Exception('boom')");
  EXPECT_TRUE(r.output.ok);
  EXPECT_FALSE(r.output.out_of_memory);
  EXPECT_EQ(r.z22.at("Z22K1"), z9("Z24"));
  const json& metadata = r.z22.at("Z22K2");
  EXPECT_EQ(metadata.at("Z1K1"), call_type("Z883", {{"Z883K1", z9("Z6")}, {"Z883K2", z9("Z1")}}));
  const json& pair = metadata.at("K1").at("K1");
  EXPECT_EQ(pair.at("K2"),
            json({{"Z1K1", z9("Z5")}, {"Z5K2", z6("boom")}}));  // no Z5K1, as the original
}

TEST(PythonRuntime, MemoryErrorRaisedByUserCodeIsNotTheMemoryLimit) {
  // Only a failed allocation is the sandbox's memory limit (issue 11 item 3): user code that
  // raises MemoryError itself, with or without the texts the runtimes use, gets its own error.
  auto r = call("def Z1000():\n  raise MemoryError()");
  EXPECT_FALSE(r.output.out_of_memory);
  EXPECT_TRUE(r.output.ok);
  EXPECT_EQ(error_of(r), "MemoryError");
  r = call("def Z1000():\n  raise MemoryError('out of memory: memory limit reached')");
  EXPECT_FALSE(r.output.out_of_memory);
  EXPECT_EQ(error_of(r), "out of memory: memory limit reached");
}

TEST(PythonRuntime, PreloadedModulesWork) {
  auto r = call(
      "import datetime, decimal, fractions, random, string, unicodedata, itertools, functools\n"
      "import collections, re, json\n"
      "def Z1000():\n"
      "  d = datetime.datetime.strptime('2024-02-29', '%Y-%m-%d')\n"
      "  return ','.join([d.strftime('%d.%m'), str(decimal.Decimal('1.10') + 1),\n"
      "    str(fractions.Fraction(1, 3) * 3), unicodedata.name('a'), 'b\\u00fccher.de'.encode("
      "'idna').decode(), str(random.random() < 1)])");
  EXPECT_EQ(value_of(r), z6("29.02,2.10,1,LATIN SMALL LETTER A,xn--bcher-kva.de,True"))
      << r.output.z22_json;
}

// The stored modules' marshalled code lies in one read-only mapping of a memfd, not on the heap
// (fork copies no page-table entries for it): every entry is a read-only view into that mapping,
// which a call cannot write, and the imports above run from it.
TEST(PythonRuntime, StoredModulesAreReadOnlyViewsOfTheMappedStore) {
  auto r = call(
      "import sys\n"
      "def Z1000():\n"
      "  views = [entry[0] for entry in sys.meta_path[0].stored.values()]\n"
      "  kinds = {type(v).__name__ for v in views}\n"
      "  try:\n"
      "    views[0][0] = 0\n"
      "    written = 'written'\n"
      "  except TypeError:\n"
      "    written = 'refused'\n"
      "  mapped = any('wf-module-store' in line for line in open('/proc/self/maps'))\n"
      "  return (f'{len(views) > 0},{sorted(kinds)},{all(v.readonly for v in views)},'\n"
      "          f'{written},{mapped}')");
  EXPECT_EQ(value_of(r), z6("True,['memoryview'],True,refused,True")) << r.output.z22_json;
}

// The driver is loaded into one region of its own (compact_region.h), so the objects every call
// touches share a few pages: its functions, their code objects and its classes lie within the
// ~230 KiB it takes (made by CPython's allocators, code objects larger than 512 bytes were on the
// malloc heap and the rest in pymalloc's arenas, gigabytes apart).
TEST(PythonRuntime, DriverObjectsLieTogetherInOneRegion) {
  auto r = call(
      "import sys\n"
      "def Z1000():\n"
      "  d = sys.modules['_wf_driver']\n"
      "  objects = [d.run_call, d.run_call.__code__, d._encode, d._encode.__code__,\n"
      "             d._json_loads.__code__, d._namespace.__code__, d._BoundedText, d._DebugLog,\n"
      "             d._Converters, d._Converters.to_native.__code__, d.W]\n"
      "  span = max(map(id, objects)) - min(map(id, objects))\n"
      "  return 'together' if span < 1 << 20 else f'{span} bytes apart'");
  EXPECT_EQ(value_of(r), z6("together")) << r.output.z22_json;
  // Calls after the load still work from CPython's allocators (the region is closed): a result
  // large enough to need growing blocks.
  r = call("def Z1000():\n  return ','.join(str(i) for i in range(20000))");
  EXPECT_EQ(value_of(r).at("Z6K1").get<std::string>().size(), 108889u);
}

// How many objects CPython's free lists hold, from sys._debugmallocstats (written to fd 2).
long free_list_objects() {
  std::FILE* capture = std::tmpfile();
  if (capture == nullptr) return -1;
  std::fflush(stderr);
  const int saved = ::dup(2);
  ::dup2(::fileno(capture), 2);
  PyObject* stats = PySys_GetObject("_debugmallocstats");  // borrowed
  PyObject* done = stats != nullptr ? PyObject_CallNoArgs(stats) : nullptr;
  Py_XDECREF(done);
  PyErr_Clear();
  std::fflush(stderr);
  ::dup2(saved, 2);
  ::close(saved);
  std::rewind(capture);
  long total = done != nullptr ? 0 : -1;
  char line[512];
  while (std::fgets(line, sizeof(line), capture) != nullptr) {
    long count = 0;
    char what[64] = {};
    if (std::sscanf(line, " %ld free %63s", &count, what) == 2 &&
        (std::strstr(line, "PyTupleObject") != nullptr ||
         std::strstr(line, "PyListObject") != nullptr ||
         std::strstr(line, "PyDictObject") != nullptr ||
         std::strstr(line, "PyFloatObject") != nullptr)) {
      total += count;
    }
  }
  std::fclose(capture);
  return total;
}

// Outside a sandbox child (the supervisor and the zygote, just before children are forked),
// warm_up() ends with a full collection, which empties the free lists: a child's new tuples,
// lists, dicts and floats then come from its own memory, not from blocks on pages it shares with
// the zygote (a copy-on-write fault each). A call refills them (a few hundred here).
TEST(PythonRuntime, WarmUpOutsideAChildLeavesTheFreeListsEmpty) {
  call("def Z1000():\n  return str([(i, [i], {i: i}, i / 2) for i in range(300)])");
  ASSERT_GT(free_list_objects(), 100);
  g_runtime->warm_up();
  EXPECT_EQ(free_list_objects(), 0);
}

TEST(PythonRuntime, LoneSurrogatesStillGiveValidJson) {
  auto r = call("def Z1000():\n  return '\\ud800'");
  EXPECT_EQ(value_of(r), z6("\ufffd"));
  r = call("def Z1000():\n  return '\\ud83d\\ude00'");  // a valid pair written as surrogates
  EXPECT_EQ(value_of(r), z6("\U0001F600"));
}

// The driver reads the request's JSON with the C scanner and writes the answer with the C encoder
// directly (python_driver.py, _json_loads and _encode): what json.loads and json.dumps would do,
// including the texts the scanner does not take whole and the encoder's circular-reference check.
TEST(PythonRuntime, RequestJsonIsReadAndAnswerWrittenAsTheJsonModuleDoes) {
  const std::string code = "def Z1000(Z1000K1):\n  return Z1000K1 + '\\u00fc'";
  CallInput input;
  input.code = code;
  input.function_name = "Z1000";
  input.captured_output_limit = 256;
  // Whitespace around and inside the request's arguments (json.loads takes those).
  input.arguments_json = " \n{ \"Z1000K1\" : {\"Z1K1\": \"Z6\", \"Z6K1\": \"a\\u00e9\\\"\"} }\n ";
  CallOutput out = g_runtime->call(input);
  json z22 = json::parse(out.z22_json);
  EXPECT_EQ(z22.at("Z22K1"), z6("a\u00e9\"\u00fc")) << out.z22_json;
  // The answer: compact separators, non-ASCII characters as UTF-8, not \u escapes.
  EXPECT_EQ(out.z22_json.find(": "), std::string::npos) << out.z22_json;
  EXPECT_EQ(out.z22_json.find(", "), std::string::npos) << out.z22_json;
  EXPECT_NE(out.z22_json.find("\"a\u00e9\\\"\u00fc\""), std::string::npos) << out.z22_json;

  // A long answer: the C encoder hands it over in several chunks.
  input.code = "def Z1000(Z1000K1):\n  return [Z1000K1 + str(i) for i in range(30000)]";
  out = g_runtime->call(input);
  z22 = json::parse(out.z22_json);
  ASSERT_TRUE(z22.at("Z22K1").is_array()) << out.z22_json.substr(0, 200);
  EXPECT_EQ(z22.at("Z22K1").size(), 30001u);
  EXPECT_EQ(z22.at("Z22K1").back(), z6("a\u00e9\"29999")) << out.z22_json.size();
  EXPECT_GT(out.z22_json.size(), 300000u);  // more than one chunk
  input.code = code;

  // What json.loads refuses is refused with its message.
  input.arguments_json = R"({"Z1000K1": {"Z1K1": "Z6", "Z6K1": "a"}} x)";
  z22 = json::parse(g_runtime->call(input).z22_json);
  EXPECT_EQ(z22.at("Z22K1"), z9("Z24"));
  EXPECT_NE(z22.dump().find("Extra data: line 1 column"), std::string::npos) << z22.dump();
  input.arguments_json = "\xef\xbb\xbf{}";
  z22 = json::parse(g_runtime->call(input).z22_json);
  EXPECT_NE(z22.dump().find("Unexpected UTF-8 BOM"), std::string::npos) << z22.dump();

  // A converter's cyclic result: the encoder's circular-reference check, not a recursion error.
  input.arguments_json = R"({"Z1000K1": {"Z1K1": "Z6", "Z6K1": "a"}})";
  input.converters_json =
      R"({"result": {"converter": {"functionName": "cyclic", "code": )"
      R"("def cyclic(v):\n  d = {'Z1K1': 'Z6'}\n  d['Z6K1'] = [d]\n  return d"}}})";
  z22 = json::parse(g_runtime->call(input).z22_json);
  EXPECT_EQ(z22.at("Z22K1"), z9("Z24"));
  EXPECT_NE(z22.dump().find("Circular reference detected"), std::string::npos) << z22.dump();
}

// The Python conformance cases of the evaluator (converted executor unit tests).
json without_z1k1(const json& value) {
  if (!value.is_object()) return value;
  json out = json::object();
  for (const auto& [key, item] : value.items()) {
    if (key != "Z1K1") out[key] = without_z1k1(item);
  }
  return out;
}

TEST(PythonRuntime, ConformanceCases) {
  std::filesystem::path dir = WF_CONFORMANCE_EVALUATOR_CASES;
  if (!std::filesystem::exists(dir)) GTEST_SKIP() << "no conformance cases at " << dir;
  int checked = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::string file = entry.path().filename().string();
    if (file.rfind("eval-py-", 0) != 0) continue;
    json test_case = json::parse(std::ifstream(entry.path()));
    const json& request = test_case.at("request").at("zobject");
    const json& expect = test_case.at("expect");
    auto r =
        call(request.at("codeString"), request.at("functionArguments"), request.at("functionName"));
    if (expect.value("is_error", false)) {
      EXPECT_EQ(value_of(r), z9("Z24")) << file;
      if (expect.contains("error")) {
        EXPECT_EQ(error_of(r), expect.at("error").at("Z5K2").at("Z6K1")) << file;
      }
    } else {
      EXPECT_EQ(without_z1k1(value_of(r)), expect.at("result")) << file << "\n"
                                                                << r.output.z22_json;
      EXPECT_EQ(error_of(r), "") << file;
    }
    ++checked;
  }
  EXPECT_GE(checked, 8);
}

}  // namespace
}  // namespace wf::evaluator

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  static std::unique_ptr<wf::evaluator::LanguageRuntime> runtime =
      wf::evaluator::make_python_runtime();
  std::string error;
  if (!runtime->initialize(error)) {
    std::fprintf(stderr, "python runtime: %s\n", error.c_str());
    return 1;
  }
  wf::evaluator::g_runtime = runtime.get();
  return RUN_ALL_TESTS();
}
