// One test per built-in function through Engine::evaluate, with no wiki configured (the
// bundled fallback definitions serve Z41/Z42/Z1002...).
#include <gtest/gtest.h>

#include "fakes.h"
#include "orchestrator/engine/engine.h"

namespace wf::orchestrator::testing {
namespace {

using json = nlohmann::json;

class Builtins : public ::testing::Test {
 protected:
  json run(const json& call, bool validate = true) {
    CallContext ctx;
    ctx.deadline = Clock::now() + std::chrono::seconds(10);
    return engine_->evaluate({{"zobject", call}, {"doValidate", validate}}, ctx);
  }
  static json error_of(const json& r) {
    for (std::size_t i = 1; i < r["Z22K2"]["K1"].size(); ++i) {
      if (r["Z22K2"]["K1"][i]["K1"] == "errors") return r["Z22K2"]["K1"][i]["K2"];
    }
    return nullptr;
  }
  static std::string error_code(const json& r) {
    json e = error_of(r);
    return e.is_object() && e["Z5K1"].is_string() ? e["Z5K1"].get<std::string>() : "";
  }
  std::unique_ptr<Engine> engine_ = make_engine({}, nullptr, nullptr);
};

json T() {
  return {{"Z1K1", "Z40"}, {"Z40K1", "Z41"}};
}
json F() {
  return {{"Z1K1", "Z40"}, {"Z40K1", "Z42"}};
}

TEST_F(Builtins, Z801EchoExpandsReferences) {
  EXPECT_EQ(run({{"Z1K1", "Z7"}, {"Z7K1", "Z801"}, {"Z801K1", "Z41"}})["Z22K1"], T());
  json r = run({{"Z1K1", "Z7"}, {"Z7K1", "Z801"}, {"Z801K1", "Z6"}});
  EXPECT_EQ(r["Z22K1"]["Z4K1"], "Z6");
}

TEST_F(Builtins, Z802IfIsLazy) {
  json call = {{"Z1K1", "Z7"},
               {"Z7K1", "Z802"},
               {"Z802K1", T()},
               {"Z802K2", "yes"},
               {"Z802K3", {{"Z1K1", "Z7"}, {"Z7K1", "Z811"}, {"Z811K1", json::array({"Z6"})}}}};
  EXPECT_EQ(run(call)["Z22K1"], "yes");  // the failing else-branch never runs
  call["Z802K1"] = F();
  EXPECT_EQ(error_code(run(call)), "Z506");
}

TEST_F(Builtins, Z803ValueByKeyAndMissingKey) {
  json key = {{"Z1K1", "Z39"}, {"Z39K1", {{"Z1K1", "Z6"}, {"Z6K1", "Z60K1"}}}};
  json obj = {{"Z1K1", "Z60"}, {"Z60K1", "tlh"}};
  EXPECT_EQ(run({{"Z1K1", "Z7"}, {"Z7K1", "Z803"}, {"Z803K1", key}, {"Z803K2", obj}})["Z22K1"],
            "tlh");
  key["Z39K1"]["Z6K1"] = "Z60K9";
  json r = run({{"Z1K1", "Z7"}, {"Z7K1", "Z803"}, {"Z803K1", key}, {"Z803K2", obj}});
  EXPECT_EQ(error_code(r), "Z507");
  EXPECT_NE(r.dump().find("Object did not contain key \\\"Z60K9\\\""), std::string::npos);
}

TEST_F(Builtins, Z804ValuesByKeys) {
  json keys = json::array({"Z39",
                           {{"Z1K1", "Z39"}, {"Z39K1", {{"Z1K1", "Z6"}, {"Z6K1", "Z60K1"}}}},
                           {{"Z1K1", "Z39"}, {"Z39K1", {{"Z1K1", "Z6"}, {"Z6K1", "Z60K7"}}}},
                           {{"Z1K1", "Z39"}, {"Z39K1", {{"Z1K1", "Z6"}, {"Z6K1", "Z60K8"}}}}});
  json r = run({{"Z1K1", "Z7"},
                {"Z7K1", "Z804"},
                {"Z804K1", keys},
                {"Z804K2", {{"Z1K1", "Z60"}, {"Z60K1", "tlh"}}}});
  EXPECT_NE(r.dump().find("Object did not contain key(s): Z60K7,Z60K8"), std::string::npos)
      << r.dump();
}

TEST_F(Builtins, Z805ReifyAndZ808Abstract) {
  json obj = {{"Z1K1", "Z60"}, {"Z60K1", "tlh"}};
  json reified = run({{"Z1K1", "Z7"}, {"Z7K1", "Z805"}, {"Z805K1", obj}})["Z22K1"];
  ASSERT_TRUE(reified.is_array());
  EXPECT_EQ(reified.size(), 3u);
  json back = run({{"Z1K1", "Z7"}, {"Z7K1", "Z808"}, {"Z808K1", reified}}, false);
  EXPECT_EQ(back["Z22K1"], obj) << back.dump();
}

TEST_F(Builtins, Z810Z811Z812Z813Lists) {
  json list = json::array({"Z6", "a", "b"});
  EXPECT_EQ(run({{"Z1K1", "Z7"}, {"Z7K1", "Z811"}, {"Z811K1", list}})["Z22K1"], "a");
  EXPECT_EQ(run({{"Z1K1", "Z7"}, {"Z7K1", "Z812"}, {"Z812K1", list}})["Z22K1"],
            json::array({"Z6", "b"}));
  EXPECT_EQ(run({{"Z1K1", "Z7"}, {"Z7K1", "Z813"}, {"Z813K1", list}})["Z22K1"], F());
  EXPECT_EQ(run({{"Z1K1", "Z7"}, {"Z7K1", "Z813"}, {"Z813K1", json::array({"Z6"})}})["Z22K1"], T());
  json cons = run({{"Z1K1", "Z7"}, {"Z7K1", "Z810"}, {"Z810K1", "z"}, {"Z810K2", list}})["Z22K1"];
  ASSERT_TRUE(cons.is_array());
  EXPECT_EQ(cons.size(), 4u);
  EXPECT_EQ(cons[1], "z");
  json empty_head = run({{"Z1K1", "Z7"}, {"Z7K1", "Z811"}, {"Z811K1", json::array({"Z6"})}});
  EXPECT_EQ(error_code(empty_head), "Z506");
  EXPECT_NE(empty_head.dump().find("An empty list has no head."), std::string::npos);
}

TEST_F(Builtins, Z820TriggerMetadataAndThrow) {
  json r = run({{"Z1K1", "Z7"}, {"Z7K1", "Z820"}, {"Z820K1", "mykey"}, {"Z820K2", "v"}});
  EXPECT_EQ(error_code(r), "Z526");
  EXPECT_NE(r.dump().find("mykey"), std::string::npos);
  json thrown = {{"Z1K1", "Z5"},
                 {"Z5K1", {{"Z1K1", "Z50"}, {"Z50K1", json::array({"Z1"})}}},
                 {"Z5K2", "custom"}};
  json t = run({{"Z1K1", "Z7"}, {"Z7K1", "Z820"}, {"Z820K1", "errors"}, {"Z820K2", thrown}}, false);
  EXPECT_NE(error_of(t).dump().find("custom"), std::string::npos) << t.dump();
}

TEST_F(Builtins, Z821Z822Pairs) {
  json pair = {{"Z1K1", {{"Z1K1", "Z7"}, {"Z7K1", "Z882"}, {"Z882K1", "Z6"}, {"Z882K2", "Z6"}}},
               {"K1", "first"},
               {"K2", "second"}};
  EXPECT_EQ(run({{"Z1K1", "Z7"}, {"Z7K1", "Z821"}, {"Z821K1", pair}})["Z22K1"], "first");
  EXPECT_EQ(run({{"Z1K1", "Z7"}, {"Z7K1", "Z822"}, {"Z822K1", pair}})["Z22K1"], "second");
}

TEST_F(Builtins, Z823GetEnvelope) {
  json quoted = {{"Z1K1", "Z99"}, {"Z99K1", {{"Z1K1", "Z7"}, {"Z7K1", "Z801"}, {"Z801K1", "x"}}}};
  json r = run({{"Z1K1", "Z7"}, {"Z7K1", "Z823"}, {"Z823K1", quoted}});
  EXPECT_EQ(r["Z22K1"]["K1"], "x");
  EXPECT_EQ(r["Z22K1"]["K2"]["Z1K1"]["Z7K1"], "Z883");
}

TEST_F(Builtins, Z828FetchesBuiltinDefinition) {
  json quoted = {{"Z1K1", "Z99"}, {"Z99K1", "Z801"}};
  json r = run({{"Z1K1", "Z7"}, {"Z7K1", "Z828"}, {"Z828K1", quoted}});
  EXPECT_EQ(r["Z22K1"]["Z1K1"], "Z2") << r.dump();
  EXPECT_TRUE(r["Z22K1"].contains("Z2K3"));
}

TEST_F(Builtins, Z844Z866Z888Equality) {
  EXPECT_EQ(run({{"Z1K1", "Z7"}, {"Z7K1", "Z844"}, {"Z844K1", T()}, {"Z844K2", T()}})["Z22K1"],
            T());
  EXPECT_EQ(run({{"Z1K1", "Z7"}, {"Z7K1", "Z844"}, {"Z844K1", T()}, {"Z844K2", F()}})["Z22K1"],
            F());
  EXPECT_EQ(run({{"Z1K1", "Z7"}, {"Z7K1", "Z866"}, {"Z866K1", "ab"}, {"Z866K2", "ab"}})["Z22K1"],
            T());
  EXPECT_EQ(run({{"Z1K1", "Z7"}, {"Z7K1", "Z866"}, {"Z866K1", "ab"}, {"Z866K2", "Ab"}})["Z22K1"],
            F());
  json q = {{"Z1K1", "Z86"}, {"Z86K1", "q"}};
  json r = {{"Z1K1", "Z86"}, {"Z86K1", "r"}};
  EXPECT_EQ(run({{"Z1K1", "Z7"}, {"Z7K1", "Z888"}, {"Z888K1", q}, {"Z888K2", r}})["Z22K1"], F());
}

TEST_F(Builtins, Z860LanguageCode) {
  EXPECT_EQ(run({{"Z1K1", "Z7"}, {"Z7K1", "Z860"}, {"Z860K1", "en"}})["Z22K1"],
            json({{"Z1K1", "Z60"}, {"Z60K1", "en"}}));
  EXPECT_EQ(error_code(run({{"Z1K1", "Z7"}, {"Z7K1", "Z860"}, {"Z860K1", "xx-nope"}})), "Z517");
}

TEST_F(Builtins, Z868Z886CodePoints) {
  json r = run({{"Z1K1", "Z7"}, {"Z7K1", "Z868"}, {"Z868K1", "a\xF0\x9F\x98\x80"}});
  ASSERT_EQ(r["Z22K1"].size(), 3u) << r.dump();
  EXPECT_EQ(r["Z22K1"][2]["Z86K1"], "\xF0\x9F\x98\x80");
  json back = run({{"Z1K1", "Z7"}, {"Z7K1", "Z886"}, {"Z886K1", r["Z22K1"]}});
  EXPECT_EQ(back["Z22K1"], "a\xF0\x9F\x98\x80");
}

// The code points of ASCII characters are shared nodes (made once per process) and the list Z868
// makes of them is settled (nothing to evaluate): they read, compare, prepend and echo as any
// other code point, in one request and the next.
TEST_F(Builtins, Z868SharedAsciiCodePointsReadAsAnyOther) {
  const auto call = [](const std::string& fn, const json& a1, const json& a2 = nullptr) {
    json c = {{"Z1K1", "Z7"}, {"Z7K1", fn}, {fn + "K1", a1}};
    if (!a2.is_null()) c[fn + "K2"] = a2;
    return c;
  };
  const json h = {{"Z1K1", "Z86"}, {"Z86K1", "H"}};
  for (int round = 0; round < 2; ++round) {
    json r = run(call("Z868", "Hé"));
    EXPECT_EQ(r["Z22K1"], json::array({"Z86", h, {{"Z1K1", "Z86"}, {"Z86K1", "\xC3\xA9"}}}))
        << r.dump();
    EXPECT_EQ(run(call("Z811", call("Z868", "Hi")))["Z22K1"], h);
    // Echoed, the list shows its item type as the built-in wrote it: by its ZID.
    EXPECT_EQ(run(call("Z801", call("Z868", "H")))["Z22K1"], json::array({"Z86", h}));
    EXPECT_EQ(run(call("Z888", call("Z811", call("Z868", "Hx")),
                       call("Z811", call("Z868", "H"))))["Z22K1"],
              T());
    EXPECT_EQ(run(call("Z888", call("Z811", call("Z868", "a")),
                       call("Z811", call("Z868", "b"))))["Z22K1"],
              F());
    // A shared code point prepended to a settled list, and the list read back as a string.
    json joined =
        run(call("Z886", call("Z810", call("Z811", call("Z868", "x")), call("Z868", "yé"))));
    EXPECT_EQ(joined["Z22K1"], "xyé") << joined.dump();
    // The settled list's tail, and its empty end.
    EXPECT_EQ(run(call("Z886", call("Z812", call("Z868", "abc"))))["Z22K1"], "bc");
    EXPECT_EQ(run(call("Z813", call("Z812", call("Z868", "a"))))["Z22K1"], T());
  }
}

// A list a built-in makes names its item type by ZID (the reference writes the type as the
// ZID's string, which binding an argument does not expand): echoed, prepended to, passed along,
// it comes back in canonical form with the ZID first, as Z868's own answer does. A list read
// from the request shows the expanded Z4 of its item type once an argument bound it, as before.
TEST_F(Builtins, BuiltListsKeepTheirItemTypeByZid) {
  const auto call = [](const std::string& fn, const json& a1, const json& a2 = nullptr) {
    json c = {{"Z1K1", "Z7"}, {"Z7K1", fn}, {fn + "K1", a1}};
    if (!a2.is_null()) c[fn + "K2"] = a2;
    return c;
  };
  const auto cp = [](const std::string& text) { return json{{"Z1K1", "Z86"}, {"Z86K1", text}}; };
  for (int round = 0; round < 2; ++round) {
    // Shared (ASCII) and unshared code points, one echo and two.
    EXPECT_EQ(run(call("Z801", call("Z868", "H")))["Z22K1"], json::array({"Z86", cp("H")}));
    json r = run(call("Z801", call("Z801", call("Z868",
                                                "\xC3\xA9"
                                                "a"))));
    EXPECT_EQ(r["Z22K1"], json::array({"Z86", cp("\xC3\xA9"), cp("a")})) << r.dump();
    // Prepended to: the new cell takes the list's item type, still the ZID.
    r = run(call("Z801", call("Z810", call("Z811", call("Z868", "x")), call("Z868", "yz"))));
    EXPECT_EQ(r["Z22K1"], json::array({"Z86", cp("x"), cp("y"), cp("z")})) << r.dump();
    // Without validation, and its tail.
    EXPECT_EQ(run(call("Z801", call("Z868", "ab")), false)["Z22K1"],
              json::array({"Z86", cp("a"), cp("b")}));
    EXPECT_EQ(run(call("Z812", call("Z801", call("Z868", "ab"))))["Z22K1"],
              json::array({"Z86", cp("b")}));
    // The type was still resolved for the checks: an echoed list reads as a list of Z86.
    EXPECT_EQ(run(call("Z886", call("Z801", call("Z868", "Hi"))))["Z22K1"], "Hi");
    EXPECT_EQ(run(call("Z888", call("Z811", call("Z801", call("Z868", "H"))), cp("H")))["Z22K1"],
              T());
    // A list from the request: its item type expanded, as the reference shows it.
    r = run(call("Z801", json::array({"Z6", "a"})));
    ASSERT_EQ(r["Z22K1"].size(), 2u) << r.dump();
    EXPECT_TRUE(r["Z22K1"][0].is_object()) << r.dump();
    EXPECT_EQ(r["Z22K1"][0]["Z4K1"], "Z6") << r.dump();
  }
}

TEST_F(Builtins, Z881Z882Z883Types) {
  json l = run({{"Z1K1", "Z7"}, {"Z7K1", "Z881"}, {"Z881K1", "Z6"}})["Z22K1"];
  EXPECT_EQ(l["Z1K1"], "Z4");
  EXPECT_EQ(l["Z4K1"]["Z7K1"], "Z881");
  EXPECT_EQ(l["Z4K3"], "Z831");
  json p = run({{"Z1K1", "Z7"}, {"Z7K1", "Z882"}, {"Z882K1", "Z6"}, {"Z882K2", "Z40"}})["Z22K1"];
  EXPECT_EQ(p["Z4K1"]["Z7K1"], "Z882");
  EXPECT_EQ(
      error_code(run({{"Z1K1", "Z7"}, {"Z7K1", "Z883"}, {"Z883K1", "Z40"}, {"Z883K2", "Z1"}})),
      "Z516");
}

TEST_F(Builtins, Z889ListEqualityUsesFunction) {
  json call = {{"Z1K1", "Z7"},
               {"Z7K1", "Z889"},
               {"Z889K1", json::array({"Z6", "a", "b"})},
               {"Z889K2", json::array({"Z6", "a", "b"})},
               {"Z889K3", "Z866"}};
  EXPECT_EQ(run(call)["Z22K1"], T());
  call["Z889K2"] = json::array({"Z6", "a"});
  EXPECT_EQ(run(call)["Z22K1"], F());
}

TEST_F(Builtins, Z899Unquote) {
  json q = {{"Z1K1", "Z99"}, {"Z99K1", "Z11"}};
  EXPECT_EQ(run({{"Z1K1", "Z7"}, {"Z7K1", "Z899"}, {"Z899K1", q}})["Z22K1"], "Z11");
}

TEST_F(Builtins, ArgumentErrors) {
  EXPECT_EQ(error_code(run({{"Z1K1", "Z7"}, {"Z7K1", "Z801"}})), "Z507");
  EXPECT_EQ(
      error_code(run({{"Z1K1", "Z7"}, {"Z7K1", "Z801"}, {"Z801K1", "a"}, {"Z801K2", "b"}}, false)),
      "Z507");
  EXPECT_EQ(
      error_code(run({{"Z1K1", "Z7"}, {"Z7K1", "Z844"}, {"Z844K1", "x"}, {"Z844K2", T()}}, false)),
      "Z506");
}

}  // namespace
}  // namespace wf::orchestrator::testing
