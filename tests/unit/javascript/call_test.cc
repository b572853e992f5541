// evaluator-api.md §5.2: how code is run, errors, the deliberate fixes (awaited Promises,
// captured console, no require/process), and modern syntax.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>

#include "runtime_harness.h"

namespace wf::evaluator::testing {
namespace {

using nlohmann::json;

TEST(JsCall, SuccessEnvelopeIsNormalFormZ22) {
  CallOutput out = call(
      "function Z1000(Z1000K1, Z1000K2) { return (parseInt(Z1000K1) + "
      "parseInt(Z1000K2)).toString(); }",
      "Z1000", json{{"Z1000K1", z6("5")}, {"Z1000K2", z6("8")}}.dump());
  ASSERT_TRUE(out.ok) << out.error_message;
  EXPECT_EQ(json::parse(out.z22_json),
            (json{{"Z1K1", z9("Z22")}, {"Z22K1", z6("13")}, {"Z22K2", z9("Z24")}}));
}

TEST(JsCall, ErrorEnvelopeCarriesMessageInAMap) {
  CallOutput out = call("function Z1() { throw new Error('boom'); }", "Z1");
  ASSERT_TRUE(out.ok) << out.error_message;
  const json z22 = json::parse(out.z22_json);
  EXPECT_EQ(z22["Z22K1"], z9("Z24"));
  EXPECT_EQ(z22["Z22K2"]["Z1K1"]["Z7K1"], z9("Z883"));
  EXPECT_EQ(error_of(out), (json{{"Z1K1", z9("Z5")}, {"Z5K2", z6("boom")}}));
}

TEST(JsCall, ErrorMessages) {
  struct Case {
    std::string code;
    std::string message;
  } cases[] = {
      {"function Z1() { throw new TypeError('bad type'); }", "bad type"},
      {"function Z1() { throw 'plain string'; }", "plain string"},
      {"function Z1() { return undefinedName; }", "undefinedName is not defined"},
      {"function Z2() { return 'x'; }", "Z1 is not defined"},
      {"const Z1 = 5;", "Z1 is not a function"},
      {"function Z1() { 'use strict'; undeclared = 1; return 'x'; }",
       "assignment to undeclared variable undeclared"},
  };
  for (const auto& c : cases) {
    CallOutput out = call(c.code, "Z1");
    ASSERT_TRUE(out.ok) << out.error_message;
    EXPECT_EQ(error_message_of(out), c.message) << c.code;
  }
}

TEST(JsCall, SyntaxErrorIsAUserError) {
  CallOutput out = call(
      "function Z1000( Z1000K1, Z1000K2 ) { return (parseInt(Z1000K1) + "
      "parseInt(Z1000K2)).toString();",
      "Z1000", json{{"Z1000K1", z6("5")}, {"Z1000K2", z6("8")}}.dump());
  ASSERT_TRUE(out.ok) << out.error_message;
  EXPECT_EQ(result_of(out), z9("Z24"));
  EXPECT_NE(error_message_of(out), "");
}

TEST(JsCall, LambdaAndConstDefinitionsWork) {
  EXPECT_EQ(result_of(call("const Z1 = (a) => a + '!';", "Z1", json{{"Z1K1", z6("x")}}.dump())),
            z6("x!"));
  EXPECT_EQ(
      result_of(call("let helper = (s) => s.toUpperCase();\nfunction Z1(a) { return helper(a); }",
                     "Z1", json{{"Z1K1", z6("x")}}.dump())),
      z6("X"));
}

TEST(JsCall, ReturnedPromiseIsAwaited) {
  EXPECT_EQ(result_of(call("async function Z1(a) { await null; return a + '?'; }", "Z1",
                           json{{"Z1K1", z6("ok")}}.dump())),
            z6("ok?"));
  EXPECT_EQ(result_of(call("function Z1() { return Promise.resolve(['p']); }", "Z1")),
            typed_list(z9("Z6"), {z6("p")}));
  EXPECT_EQ(error_message_of(call("async function Z1() { throw new Error('async boom'); }", "Z1")),
            "async boom");
  // Top-level await in the code works: the code is the body of an async function.
  EXPECT_EQ(
      result_of(call("const v = await Promise.resolve('tla');\nfunction Z1() { return v; }", "Z1")),
      z6("tla"));
}

TEST(JsCall, NeverSettlingPromiseIsAnErrorNotAHang) {
  CallOutput out = call("function Z1() { return new Promise(() => {}); }", "Z1");
  ASSERT_TRUE(out.ok) << out.error_message;
  EXPECT_NE(error_message_of(out).find("never settled"), std::string::npos);
}

TEST(JsCall, ConsoleIsCapturedNotMixedIntoTheResult) {
  CallOutput out = call(
      "function Z1() { console.log('hello', 42, {a: [1]}); console.error('oops'); return 'r'; }",
      "Z1");
  ASSERT_TRUE(out.ok) << out.error_message;
  EXPECT_EQ(result_of(out), z6("r"));
  EXPECT_EQ(out.captured_output, "hello 42 { a: [ 1 ] }\noops\n");
  EXPECT_EQ(out.z22_json.find("hello"), std::string::npos);
}

TEST(JsCall, ConsoleFloodIsBounded) {
  CallOutput out = call(
      "function Z1() { for (let i = 0; i < 100000; i++) console.log('line ' + i); return 'done'; }",
      "Z1");
  ASSERT_TRUE(out.ok) << out.error_message;
  EXPECT_EQ(result_of(out), z6("done"));
  EXPECT_LE(out.captured_output.size(), 16u << 10);
  EXPECT_NE(out.captured_output.find("[output truncated]"), std::string::npos);
  EXPECT_EQ(out.captured_output.rfind("line 0\n", 0), 0u);
}

TEST(JsCall, CapturedOutputLimitComesFromTheInput) {
  CallInput input{"function Z1() { console.log('x'.repeat(1000)); return 'r'; }", "Z1", "{}"};
  input.captured_output_limit = 100;
  CallOutput out = runtime().call(input);
  EXPECT_EQ(result_of(out), z6("r"));
  EXPECT_LE(out.captured_output.size(), 100u);
  EXPECT_NE(out.captured_output.find("[output truncated]"), std::string::npos);
}

TEST(JsCall, OutputIsPerCall) {
  (void)call("function Z1() { console.log('first'); return 'a'; }", "Z1");
  CallOutput out = call("function Z1() { return 'b'; }", "Z1");
  EXPECT_EQ(out.captured_output, "");
}

TEST(JsCall, NoHostObjectsInScope) {
  CallOutput out = call(
      "function Z1() { return [typeof require, typeof process, typeof module, typeof setTimeout, "
      "typeof fetch, "
      "typeof ZObject, typeof ZPair, typeof console].join(','); }",
      "Z1");
  EXPECT_EQ(result_of(out),
            z6("undefined,undefined,undefined,undefined,undefined,function,function,object"));
}

TEST(JsCall, ModernSyntaxWorks) {
  const std::string code = R"JS(
    class Counter {
      #n = 0;
      static label = 'c';
      inc() { return ++this.#n; }
    }
    class Sub extends Counter { twice() { this.inc(); return this.inc(); } }
    function Z1(Z1K1) {
      const c = new Sub();
      let big = 2n ** 64n;
      const o = { deep: { v: 'x' } };
      const re = /(?<word>\w+)/u.exec('named groups');
      const parts = [
        `${Counter.label}${c.twice()}`,
        big.toString(),
        o?.deep?.v ?? 'none',
        o.missing?.v ?? 'none',
        [1, 2, 3].at(-1).toString(),
        re.groups.word,
        [...'ab'].map((ch) => ch.toUpperCase()).join(''),
        Object.entries({k: 1}).flat().join('='),
        [3, 1, 2].sort().join(''),
        'a-b-c'.replaceAll('-', ''),
        Z1K1.padStart(3, '*'),
        new Intl.NumberFormat('en-US').format(1234567),
      ];
      return parts.join('|');
    }
  )JS";
  CallOutput out = call(code, "Z1", json{{"Z1K1", z6("x")}}.dump());
  EXPECT_EQ(result_of(out),
            z6("c2|18446744073709551616|x|none|3|named|AB|k=1|123|abc|**x|1,234,567"))
      << out.z22_json;
}

TEST(JsCall, DeepRecursionIsACatchableUserError) {
  CallOutput out =
      call("function f(n) { return f(n + 1) + 1; }\nfunction Z1() { return String(f(0)); }", "Z1");
  ASSERT_TRUE(out.ok) << out.error_message;
  EXPECT_EQ(error_message_of(out), "too much recursion");
}

TEST(JsCall, InvalidFunctionNameIsRejected) {
  CallOutput out = call("function Z1() { return 'x'; }", "Z1; evil()");
  ASSERT_TRUE(out.ok);
  EXPECT_NE(error_message_of(out).find("not a valid JavaScript identifier"), std::string::npos);
}

TEST(JsCall, MalformedArgumentsJsonIsAUserError) {
  CallOutput out = call("function Z1(a) { return 'x'; }", "Z1", "{not json");
  ASSERT_TRUE(out.ok);
  EXPECT_NE(error_message_of(out), "");
}

TEST(JsCall, GlobalsOfTheLibraryCannotBeBrokenMidCall) {
  // User code replacing JSON/Object helpers does not break serialisation of its own result.
  CallOutput out = call(
      "function Z1() { JSON.stringify = () => 'hijacked'; Object.keys = () => []; return ['ok']; }",
      "Z1");
  EXPECT_EQ(result_of(out), typed_list(z9("Z6"), {z6("ok")}));
}

TEST(JsRuntime, ReportsWhatTheSandboxNeeds) {
  EXPECT_STREQ(runtime().name(), "javascript");
  const auto syscalls = runtime().extra_syscalls();
  for (const char* name : {"mprotect", "getrusage", "rt_sigreturn"}) {
    EXPECT_NE(std::find(syscalls.begin(), syscalls.end(), name), syscalls.end()) << name;
  }
  // Headroom on top of the zygote's VmSize (which already holds the ~2.1 GB JIT reservation).
  EXPECT_GT(runtime().address_space_overhead(), 0u);
  EXPECT_LT(runtime().address_space_overhead(), 512ull << 20);
  unsigned long pages = 0;
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(std::fscanf(f, "%lu", &pages), 1);
  std::fclose(f);
  EXPECT_GT(pages * 4096ull, 2000ull << 20) << "JS_Init's JIT reservation is part of VmSize";
}

}  // namespace
}  // namespace wf::evaluator::testing
