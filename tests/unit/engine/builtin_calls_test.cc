// Nested calls of built-in functions take a direct path (builtin_calls.cc): each request here is
// evaluated with and without it, and the answers (value, errors, implementation metadata) must
// be the same, successes and failures alike.
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "fakes.h"
#include "orchestrator/engine/builtins_support.h"
#include "orchestrator/engine/engine.h"
#include "orchestrator/engine/node.h"
#include "wf/obs/metrics.h"

namespace wf::orchestrator::testing {
namespace {

using json = nlohmann::json;

json fcall(const char* zid, std::initializer_list<std::pair<const char*, json>> args) {
  json c = {{"Z1K1", "Z7"}, {"Z7K1", zid}};
  for (const auto& [k, v] : args) c[k] = v;
  return c;
}

json echo(const json& v) {
  return fcall("Z801", {{"Z801K1", v}});
}

const json kEmpty = json::array({"Z6"});
const json kTrue = {{"Z1K1", "Z40"}, {"Z40K1", "Z41"}};

// The 14-call nest of bench/orchestrator_e2e.
json nest14() {
  json is_empty =
      fcall("Z813",
            {{"Z813K1",
              fcall("Z812", {{"Z812K1", fcall("Z810", {{"Z810K1", "x"}, {"Z810K2", kEmpty}})}})}});
  json hello = fcall("Z886", {{"Z886K1", fcall("Z868", {{"Z868K1", "Hello"}})}});
  json first =
      fcall("Z811", {{"Z811K1", fcall("Z810", {{"Z810K1", "Hello"}, {"Z810K2", kEmpty}})}});
  json cond = fcall("Z844", {{"Z844K1", is_empty},
                             {"Z844K2", fcall("Z866", {{"Z866K1", hello}, {"Z866K2", first}})}});
  json world = fcall(
      "Z886",
      {{"Z886K1",
        fcall("Z868", {{"Z868K1", fcall("Z811", {{"Z811K1", fcall("Z810", {
                                                                              {"Z810K1", "World"},
                                                                              {"Z810K2", kEmpty},
                                                                          })}})}})}});
  return fcall("Z802", {{"Z802K1", cond}, {"Z802K2", world}, {"Z802K3", "else"}});
}

// A wiki function whose composition calls built-ins on its argument (argument references).
json wiki_objects() {
  json label = {{"Z1K1", "Z12"}, {"Z12K1", json::array({"Z11"})}};
  json fn = {
      {"Z1K1", "Z2"},
      {"Z2K1", {{"Z1K1", "Z6"}, {"Z6K1", "Z10001"}}},
      {"Z2K2",
       {{"Z1K1", "Z8"},
        {"Z8K1",
         json::array(
             {"Z17", {{"Z1K1", "Z17"}, {"Z17K1", "Z6"}, {"Z17K2", "Z10001K1"}, {"Z17K3", label}}})},
        {"Z8K2", "Z40"},
        {"Z8K3", json::array({"Z20"})},
        {"Z8K4", json::array({"Z14", "Z10002"})},
        {"Z8K5", "Z10001"}}},
      {"Z2K3", label}};
  json arg = {{"Z1K1", "Z18"}, {"Z18K1", "Z10001K1"}};
  json body = fcall(
      "Z866", {{"Z866K1",
                fcall("Z811", {{"Z811K1", fcall("Z810", {{"Z810K1", arg}, {"Z810K2", kEmpty}})}})},
               {"Z866K2", echo(arg)}});
  json impl = {{"Z1K1", "Z2"},
               {"Z2K1", {{"Z1K1", "Z6"}, {"Z6K1", "Z10002"}}},
               {"Z2K2", {{"Z1K1", "Z14"}, {"Z14K1", "Z10001"}, {"Z14K2", body}}},
               {"Z2K3", label}};
  return {{"Z10001", fn}, {"Z10002", impl}};
}

// What must not depend on the path: the value and every metadata entry but the timings.
json comparable(const json& envelope) {
  json out = {{"value", envelope.value("Z22K1", json())}, {"meta", json::array()}};
  const json& meta = envelope["Z22K2"];
  if (!meta.is_object() || !meta.contains("K1") || !meta["K1"].is_array()) return out;
  const json& pairs = meta["K1"];
  for (std::size_t i = 1; i < pairs.size(); ++i) {
    const std::string key = pairs[i].value("K1", "");
    if (key.rfind("orchestration", 0) == 0) continue;
    out["meta"].push_back(pairs[i]);
  }
  return out;
}

std::unique_ptr<Engine> make(bool direct) {
  EngineOptions options;
  options.direct_builtin_calls = direct;
  return make_engine(options, std::make_shared<FakeWiki>(wiki_objects(), std::filesystem::path()),
                     nullptr);
}

json evaluate(const json& call, bool direct) {
  static const std::unique_ptr<Engine> with = make(true);
  static const std::unique_ptr<Engine> without = make(false);
  return (direct ? with : without)
      ->evaluate({{"zobject", call}, {"doValidate", false}}, CallContext{});
}

struct Case {
  const char* name;
  json call;
};

std::vector<Case> cases() {
  const json list = json::array({"Z6", "a", "b"});
  return {
      {"nest14", nest14()},
      {"local keys", echo(fcall("Z810", {{"K1", "x"}, {"K2", kEmpty}}))},
      {"missing argument", echo(fcall("Z810", {{"Z810K1", "x"}}))},
      {"invalid key", echo(fcall("Z811", {{"Z811K1", list}, {"Z811K9", "x"}}))},
      {"argument of the wrong type",
       echo(fcall("Z866",
                  {{"Z866K1", echo(fcall("Z813", {{"Z813K1", kEmpty}}))}, {"Z866K2", "a"}}))},
      {"error in an argument",
       echo(fcall("Z811", {{"Z811K1", fcall("Z812", {{"Z812K1", kEmpty}})}}))},
      {"error in a lazy branch",
       echo(fcall("Z802",
                  {{"Z802K1", fcall("Z844", {{"Z844K1", echo(true)}, {"Z844K2", echo(true)}})},
                   {"Z802K2", fcall("Z811", {{"Z811K1", kEmpty}})},
                   {"Z802K3", "no"}}))},
      {"list result", echo(fcall("Z812", {{"Z812K1", list}}))},
      {"string list", echo(fcall("Z810", {{"Z810K1", "c"}, {"Z810K2", list}}))},
      // Z881 of a bundled type, and of the item type of a list whose type was resolved (a part
      // of a per-process list-type template): the answer is a per-process Z4 (held_list_type).
      {"list type of a bundled type", echo(fcall("Z881", {{"Z881K1", "Z86"}}))},
      {"list type of a list type",
       echo(fcall("Z881", {{"Z881K1", fcall("Z881", {{"Z881K1", "Z6"}})}}))},
      {"list type of a wiki type", echo(fcall("Z881", {{"Z881K1", "Z10001"}}))},
      // Several calls of Z881 of the same item type in one request are answered by one Z4
      // (held_list_type's per-request memo): each answer must still read as its own.
      {"the same list type twice",
       echo(json::array({"Z1", fcall("Z881", {{"Z881K1", "Z86"}}),
                         fcall("Z881", {{"Z881K1", "Z86"}}),
                         fcall("Z881", {{"Z881K1", fcall("Z881", {{"Z881K1", "Z6"}})}}),
                         fcall("Z881", {{"Z881K1", fcall("Z881", {{"Z881K1", "Z6"}})}})}))},
      {"lists of the same type, read as lists",
       echo(json::array(
           {"Z1", fcall("Z812", {{"Z812K1", fcall("Z868", {{"Z868K1", "abc"}})}}),
            fcall("Z810",
                  {{"Z810K1", fcall("Z811", {{"Z811K1", fcall("Z868", {{"Z868K1", "d"}})}})},
                   {"Z810K2", fcall("Z868", {{"Z868K1", "ef"}})}}),
            fcall("Z813", {{"Z813K1", fcall("Z868", {{"Z868K1", "g"}})}})}))},
      {"prepend to a prepended list",
       echo(fcall("Z810", {{"Z810K1", "c"},
                           {"Z810K2", fcall("Z810", {{"Z810K1", "b"}, {"Z810K2", list}})}}))},
      {"head of a prepended code point list",
       echo(fcall("Z811", {{"Z811K1", fcall("Z810", {{"Z810K1", fcall("Z868", {{"Z868K1", "ab"}})},
                                                     {"Z810K2", kEmpty}})}}))},
      {"not a list", echo(fcall("Z811", {{"Z811K1", "abc"}}))},
      // Lists whose cells' types are implied (Z881 of a ZID, per-process JSON) passed as
      // arguments again and again: the first resolution of each item type runs the direct Z881
      // call, the later ones take its Z4 (Interpreter::implied_z4_). Item types bundled (Z6,
      // Z86), Z1 (an empty array), and a ZID that is not a bundled type (a wiki function), which
      // held_list_type does not hold.
      {"list types of one item type, many times",
       echo(fcall(
           "Z844",
           {{"Z844K1",
             fcall("Z813",
                   {{"Z813K1", fcall("Z812",
                                     {{"Z812K1", fcall("Z810",
                                                       {
                                                           {"Z810K1", "x"},
                                                           {"Z810K2", kEmpty},
                                                       })}})}})},
            {"Z844K2", fcall("Z813", {{"Z813K1", kEmpty}})}}))},
      {"list types of several item types",
       echo(json::array(
           {"Z1", fcall("Z811", {{"Z811K1", fcall("Z810", {{"Z810K1", "a"}, {"Z810K2", kEmpty}})}}),
            fcall("Z812",
                  {{"Z812K1",
                    fcall("Z810", {{"Z810K1",
                                    fcall("Z811", {{"Z811K1", fcall("Z868", {{"Z868K1", "ab"}})}})},
                                   {"Z810K2", json::array({"Z86"})}})}}),
            fcall("Z813", {{"Z813K1", json::array()}}), fcall("Z813", {{"Z813K1", json::array()}}),
            fcall("Z813", {{"Z813K1", json::array({"Z10001"})}}),
            fcall("Z812", {{"Z812K1", fcall("Z810", {{"Z810K1", "b"},
                                                     {"Z810K2", json::array({"Z10001"})}})}}),
            fcall("Z811", {{"Z811K1", fcall("Z810", {{"Z810K1", "c"},
                                                     {"Z810K2", json::array({"Z10001"})}})}})}))},
      // Values with nothing for eager evaluation to look into (Interpreter::eager): strings,
      // Booleans, references, empty lists; and one whose key holds a call under a key that is
      // not skipped, which eager evaluation must still run.
      {"flat values as arguments",
       echo(fcall("Z844",
                  {{"Z844K1", fcall("Z866", {{"Z866K1", echo("a")}, {"Z866K2", "a"}})},
                   {"Z844K2", fcall("Z844", {{"Z844K1", echo(kTrue)}, {"Z844K2", kTrue}})}}))},
      {"a call under a key of a pair",
       echo(fcall(
           "Z821",
           {{"Z821K1",
             {{"Z1K1", {{"Z1K1", "Z7"}, {"Z7K1", "Z882"}, {"Z882K1", "Z6"}, {"Z882K2", "Z6"}}},
              {"K1", echo("a")},
              {"K2", "b"}}}}))},
      // Calls inside values (run by eager evaluation, and replaced by their results) and a
      // quoted call (never run): a nested direct call leaves its Z7K1 as written, and no
      // answer may show the difference.
      {"calls inside a list literal",
       echo(json::array({"Z1", echo("a"), fcall("Z866", {{"Z866K1", "a"}, {"Z866K2", "b"}})}))},
      {"head of a list literal with a call",
       echo(fcall("Z811", {{"Z811K1", json::array({"Z1", fcall("Z868", {{"Z868K1", "ab"}})})}}))},
      {"quoted call", echo({{"Z1K1", "Z99"}, {"Z99K1", fcall("Z811", {{"Z811K1", kEmpty}})}})},
      {"wiki composition", echo(fcall("Z10001", {{"Z10001K1", "a"}}))},
      {"wiki composition, wrong type", echo(fcall("Z10001", {{"Z10001K1", kEmpty}}))},
      {"unknown function", echo(fcall("Z10099", {{"Z10099K1", "a"}}))},
  };
}

TEST(BuiltinCalls, DirectPathAnswersAsTheGeneralPath) {
  for (const auto& c : cases()) {
    SCOPED_TRACE(c.name);
    json direct = evaluate(c.call, true);
    json general = evaluate(c.call, false);
    EXPECT_EQ(comparable(direct), comparable(general))
        << "direct:  " << direct.dump() << "\ngeneral: " << general.dump();
  }
}

// The same calls as the outermost call (the nest already is one): the direct path then answers
// through answer() as the general path does (return type checked, implementationType in the
// metadata, errors of arguments and of the built-in alike).
TEST(BuiltinCalls, DirectPathAtTheTopLevelAnswersAsTheGeneralPath) {
  int top_level = 0;
  for (const auto& c : cases()) {
    if (c.call.value("Z7K1", json()) != "Z801") continue;
    SCOPED_TRACE(c.name);
    const json& call = c.call["Z801K1"];
    json direct = evaluate(call, true);
    json general = evaluate(call, false);
    EXPECT_EQ(comparable(direct), comparable(general))
        << "direct:  " << direct.dump() << "\ngeneral: " << general.dump();
    ++top_level;
  }
  EXPECT_GE(top_level, 15);
}

TEST(BuiltinCalls, TopLevelBuiltInCallsSayBuiltIn) {
  for (bool direct : {true, false}) {
    SCOPED_TRACE(direct ? "direct" : "general");
    // A value, and an error raised by the built-in itself: both name the implementation type.
    for (const json& call : {fcall("Z811", {{"Z811K1", json::array({"Z6", "a"})}}),
                             fcall("Z811", {{"Z811K1", kEmpty}})}) {
      const json meta = comparable(evaluate(call, direct))["meta"];
      EXPECT_NE(meta.dump().find(R"("K1":"implementationType","K2":"BuiltIn")"), std::string::npos)
          << meta.dump();
      EXPECT_NE(meta.dump().find(R"("K1":"implementationId","K2":{"Z1K1":"Z6","Z6K1":"Z911"})"),
                std::string::npos)
          << meta.dump();
    }
  }
  EXPECT_EQ(
      evaluate(fcall("Z811", {{"Z811K1", json::array({"Z6", "a"})}}), true).value("Z22K1", json()),
      "a");
}

TEST(BuiltinCalls, NestReturnsWorldAndErrorsStayErrors) {
  EXPECT_EQ(evaluate(nest14(), true).value("Z22K1", json()), "World");
  const json missing = comparable(evaluate(echo(fcall("Z810", {{"Z810K1", "x"}})), true));
  EXPECT_NE(missing["meta"].dump().find("Could not find argument Z810K2."), std::string::npos)
      << missing.dump();
  const json invalid =
      comparable(evaluate(echo(fcall("Z811", {{"Z811K1", kEmpty}, {"Z811K9", "x"}})), true));
  EXPECT_NE(invalid["meta"].dump().find("Invalid key for function call: Z811K9."),
            std::string::npos)
      << invalid.dump();
}

// Eager evaluation of an argument (Interpreter::eager) passes over a value with nothing to look
// into (a string, a Boolean, an empty list) without walking it, and still runs a call held under
// a key it does not skip: the first of a pair whose first is a call is that call's value.
TEST(BuiltinCalls, EagerEvaluationRunsCallsInsideValuesAndPassesFlatOnes) {
  const json pair_type = {{"Z1K1", "Z7"}, {"Z7K1", "Z882"}, {"Z882K1", "Z6"}, {"Z882K2", "Z6"}};
  for (bool direct : {true, false}) {
    SCOPED_TRACE(direct ? "direct" : "general");
    const json pair = {{"Z1K1", pair_type}, {"K1", echo("a")}, {"K2", "b"}};
    EXPECT_EQ(evaluate(fcall("Z821", {{"Z821K1", pair}}), direct).value("Z22K1", json()), "a");
    const json flat = {{"Z1K1", pair_type}, {"K1", {{"Z1K1", "Z6"}, {"Z6K1", "a"}}}, {"K2", "b"}};
    EXPECT_EQ(evaluate(fcall("Z822", {{"Z822K1", flat}}), direct).value("Z22K1", json()), "b");
    EXPECT_EQ(evaluate(fcall("Z844", {{"Z844K1", echo(kTrue)}, {"Z844K2", kTrue}}), direct)
                  .value("Z22K1", json()),
              kTrue);
  }
}

// The keys eager evaluation skips (a type's and a function's parts, a Boolean's identity, a
// quote) are exactly Z1K1, Z4K1-Z4K8, Z8K1-Z8K5, Z40K1 and Z99K1: a call held under one of them
// is left as it is, under any other key (however alike) it is run (Z803, value by key).
TEST(BuiltinCalls, EagerEvaluationSkipsExactlyTheTypeAndFunctionKeys) {
  const auto value_at = [](const std::string& key) {
    const json object = {{"Z1K1", "Z10001"}, {key, echo("a")}};
    return evaluate(
               fcall("Z803", {{"Z803K1", {{"Z1K1", "Z39"}, {"Z39K1", key}}}, {"Z803K2", object}}),
               true)
        .value("Z22K1", json());
  };
  for (const char* key : {"Z4K1", "Z4K5", "Z4K8", "Z8K1", "Z8K5", "Z40K1", "Z99K1"}) {
    SCOPED_TRACE(key);
    const json v = value_at(key);
    ASSERT_TRUE(v.is_object()) << v.dump();
    EXPECT_EQ(v.value("Z7K1", json()), "Z801") << v.dump();
  }
  for (const char* key : {"K1", "Z1K2", "Z4K9", "Z8K6", "Z8K9", "Z2K1", "Z14K1", "Z40K2", "Z41K1",
                          "Z99K2", "Z4K11", "Z10001K1"}) {
    SCOPED_TRACE(key);
    EXPECT_EQ(value_at(key), "a");
  }
}

// A value whose type is a built-in type by reference (a Boolean) checked against a declared type:
// the same type or Z1 passes, another built-in type is Z506 over Z518 naming the value's type, as
// the general steps of type_check answer.
TEST(BuiltinCalls, BuiltInTypedValuesCheckAgainstDeclaredTypes) {
  for (bool direct : {true, false}) {
    SCOPED_TRACE(direct ? "direct" : "general");
    EXPECT_EQ(evaluate(fcall("Z844", {{"Z844K1", echo(kTrue)},
                                      {"Z844K2", fcall("Z813", {{"Z813K1", kEmpty}})}}),
                       direct)
                  .value("Z22K1", json()),
              kTrue);
    EXPECT_EQ(evaluate(fcall("Z811",
                             {{"Z811K1", fcall("Z810", {{"Z810K1", kTrue}, {"Z810K2", kEmpty}})}}),
                       direct)
                  .value("Z22K1", json()),
              kTrue);
    const json wrong = comparable(evaluate(
        fcall("Z866", {{"Z866K1", fcall("Z813", {{"Z813K1", kEmpty}})}, {"Z866K2", "a"}}), direct));
    const std::string errors = wrong["meta"].dump();
    EXPECT_NE(errors.find(R"("Z5K1":"Z506")"), std::string::npos) << errors;
    EXPECT_NE(errors.find(R"("Z5K1":"Z518")"), std::string::npos) << errors;
    EXPECT_NE(errors.find(R"("Z506K1":"Z6","Z506K2":"Z40")"), std::string::npos) << errors;
    EXPECT_NE(errors.find(R"("Z518K1":"Z40")"), std::string::npos) << errors;
  }
}

// A built-in that answers a shared node (Node::interned: a one-character string object, a
// code point, a Boolean) leaves it as every thread reads it: BuiltinCall::ok gives a value without
// a scope the request's empty frame, and writing it into a shared node was a data race between
// requests.
TEST(BuiltinCalls, SharedNodesAnsweredByBuiltInsKeepNoScope) {
  for (bool direct : {true, false}) {
    SCOPED_TRACE(direct ? "direct" : "general");
    EXPECT_EQ(evaluate(fcall("Z811", {{"Z811K1", json::array({"Z6", "a"})}}), direct)
                  .value("Z22K1", json()),
              "a");
    EXPECT_EQ(evaluate(fcall("Z844", {{"Z844K1", kTrue}, {"Z844K2", kTrue}}), direct)
                  .value("Z22K1", json()),
              kTrue);
  }
  const engine_detail::NodeP a = engine_detail::z6_node("a");
  ASSERT_TRUE(a->interned);
  EXPECT_EQ(a->scope, nullptr);
  const engine_detail::NodeP yes = engine_detail::bool_node(true);
  ASSERT_TRUE(yes->interned);
  EXPECT_EQ(yes->scope, nullptr);
}

// wf_orchestrator_implementations_total{type="BuiltIn"} after `rounds` evaluations of `call`,
// less before (the registry is the process's: other tests' counts cancel out).
double builtin_runs(const json& call, bool direct, int rounds) {
  const auto count = [] {
    const std::string text = wf::obs::render_metrics();
    const std::string series = R"(wf_orchestrator_implementations_total{type="BuiltIn"})";
    const auto at = text.find("\n" + series + " ");
    return at == std::string::npos ? 0.0 : std::stod(text.substr(at + series.size() + 2));
  };
  const double before = count();
  for (int i = 0; i < rounds; ++i) evaluate(call, direct);
  return count() - before;
}

// The direct path counts its built-in runs once a request, when the request ends (one atomic
// add, not one per call): every run is counted once, as the general path counts each at once.
TEST(BuiltinCalls, BuiltInRunsAreCountedOnceEachAsTheGeneralPathCountsThem) {
  const json list = json::array({"Z6", "a", "b"});
  for (const json& call : {nest14(), echo(fcall("Z811", {{"Z811K1", list}})),
                           echo(fcall("Z811", {{"Z811K1", kEmpty}}))}) {
    SCOPED_TRACE(call.dump());
    const double general = builtin_runs(call, false, 1);
    EXPECT_GT(general, 0);
    EXPECT_EQ(builtin_runs(call, true, 1), general);
    EXPECT_EQ(builtin_runs(call, true, 3), 3 * general);
  }
}

// Requests on several threads share the process-wide parts of the direct path (signatures,
// the list type template, interned nodes): every answer must stay right, and nothing may crash
// (the direct path once wrote a request's frame into an interned node that every thread reads).
TEST(BuiltinCalls, ConcurrentRequestsOnOneEngine) {
  const std::unique_ptr<Engine> engine = make(true);
  const json list = json::array({"Z6", "a", "b"});
  const std::vector<json> calls = {
      nest14(),
      echo(fcall("Z10001", {{"Z10001K1", "a"}})),  // a composition
      echo(fcall("Z811", {{"Z811K1", list}})),     // a typed list argument
      echo(fcall("Z812", {{"Z812K1", list}})),     // a typed list result
      echo(fcall("Z810", {{"Z810K1", "c"}, {"Z810K2", list}})),
  };
  // The answers of one thread alone (the nest's is checked against its known value).
  std::vector<json> expected;
  for (const auto& call : calls) {
    expected.push_back(engine->evaluate({{"zobject", call}, {"doValidate", false}}, CallContext{})
                           .value("Z22K1", json()));
  }
  ASSERT_EQ(expected[0], "World");
  ASSERT_EQ(expected[1], (json{{"Z1K1", "Z40"}, {"Z40K1", "Z41"}}));  // "a" == first of ["a"]
  ASSERT_EQ(expected[2], "a");
  constexpr int kThreads = 4;
  constexpr int kRounds = 3000;
  std::atomic<int> wrong{0};
  std::atomic<int> done{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kRounds; ++i) {
        const std::size_t k = (t + i) % calls.size();
        json r = engine->evaluate({{"zobject", calls[k]}, {"doValidate", false}}, CallContext{});
        if (r.value("Z22K1", json()) != expected[k] && wrong++ == 0) {
          ADD_FAILURE() << "expected " << expected[k].dump() << ", got " << r.dump();
        }
        ++done;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(done.load(), kThreads * kRounds);
  EXPECT_EQ(wrong.load(), 0);
}

// Interned nodes are shared by every request and thread: no request may leave its frame in one
// (the direct path's declared types Z1, Z6 are references, interned).
TEST(BuiltinCalls, InternedNodesKeepNoScope) {
  namespace ed = wf::orchestrator::engine_detail;
  const std::unique_ptr<Engine> engine = make(true);
  const json list = json::array({"Z6", "a", "b"});
  for (const json& call : {nest14(), echo(fcall("Z811", {{"Z811K1", list}})),
                           echo(fcall("Z10001", {{"Z10001K1", "a"}}))}) {
    engine->evaluate({{"zobject", call}, {"doValidate", false}}, CallContext{});
  }
  for (const char* zid : {"Z1", "Z6", "Z40", "Z881"}) {
    SCOPED_TRACE(zid);
    ed::NodeP ref = ed::z9_node(zid);
    ASSERT_TRUE(ref->interned);
    EXPECT_EQ(ref->scope, nullptr);
  }
}

}  // namespace
}  // namespace wf::orchestrator::testing
