// The built-ins table (builtin_table.h): every bundled function's built-in implementation is
// declared once, with the arity of the function it implements; families extend a table.
#include "orchestrator/engine/builtin_table.h"

#include <gtest/gtest.h>

#include <map>
#include <stdexcept>

#include "orchestrator/engine/definitions.h"
#include "orchestrator/engine/definitions_data.h"

namespace wf::orchestrator::engine_detail {
namespace {

// Built-in implementation ZID -> number of arguments of the bundled function that lists it.
std::map<std::string, std::size_t> bundled_builtins() {
  std::map<std::string, std::size_t> out;
  const Definitions& defs = Definitions::instance();
  for (std::size_t i = 0; i < definitions_data::kInternalCount; ++i) {
    auto z2 = defs.served(definitions_data::kInternal[i].name);
    if (!z2) continue;
    const json& v = (*z2)["Z2K2"];
    if (!v.is_object() || v.value("Z1K1", json()) != json{{"Z1K1", "Z9"}, {"Z9K1", "Z8"}}) continue;
    std::size_t arity = 0;
    for (const json* n = &v["Z8K1"]; n->is_object() && n->contains("K1"); n = &(*n)["K2"]) ++arity;
    for (const json* n = &v["Z8K4"]; n->is_object() && n->contains("K1"); n = &(*n)["K2"]) {
      const json& z14 = (*n)["K1"];
      if (z14.is_object() && z14.contains("Z14K4")) {
        out[z14["Z14K4"].value("Z6K1", z14["Z14K4"].value("Z9K1", ""))] = arity;
      }
    }
  }
  return out;
}

TEST(BuiltinTable, EveryBundledBuiltinIsDeclaredWithItsFunctionsArity) {
  auto bundled = bundled_builtins();
  ASSERT_GT(bundled.size(), 40u);
  for (const auto& [zid, arity] : bundled) {
    const BuiltinSpec* spec = builtin_table().find(zid);
    ASSERT_NE(spec, nullptr) << zid << " is bundled but not in the table";
    EXPECT_EQ(spec->arity, arity) << zid;
  }
}

// served_json() is the object served() shares, for every bundled ZID, and null for the rest:
// the per-string "is it a built-in?" questions (can_run_inline, the resolver) get the same answer.
TEST(Definitions, ServedJsonIsTheServedObject) {
  const Definitions& defs = Definitions::instance();
  std::size_t served = 0;
  for (std::size_t i = 0; i < definitions_data::kInternalCount; ++i) {
    const std::string_view zid = definitions_data::kInternal[i].name;
    auto z2 = defs.served(zid);
    EXPECT_EQ(defs.served_json(zid), z2.get()) << zid;
    served += z2 ? 1 : 0;
  }
  EXPECT_GT(served, 100u);
  ASSERT_NE(defs.served_json("Z801"), nullptr);
  EXPECT_EQ((*defs.served_json("Z801"))["Z2K1"], defs.served("Z801")->at("Z2K1"));
  EXPECT_EQ(defs.served_json("Z10001"), nullptr);  // the example library is not bundled
  EXPECT_EQ(defs.served_json("Z8011"), nullptr);
  // ZIDs are looked up by number when written canonically: other spellings of a served ZID's
  // number are not it, and numbers beyond the table are not served.
  EXPECT_NE(defs.served_json("Z6"), nullptr);
  for (const char* other : {"Z0801", "Z801 ", "z801", "Z801K1", "Z", "", "K801", "Z99999",
                            "Z100000", "Z18446744073709551617", "Z8o1"}) {
    EXPECT_EQ(defs.served_json(other), nullptr) << other;
    EXPECT_EQ(defs.served(other), nullptr) << other;
  }
  EXPECT_EQ(defs.served_json(""), nullptr);
  EXPECT_EQ(defs.served_json("naturalLanguages"), nullptr);  // a data file, not an object
}

TEST(BuiltinTable, IfTakesItsBranchesUnevaluated) {
  const BuiltinSpec* z902 = builtin_table().find("Z902");
  ASSERT_NE(z902, nullptr);
  EXPECT_FALSE(z902->is_lazy(0));
  EXPECT_TRUE(z902->is_lazy(1));
  EXPECT_TRUE(z902->is_lazy(2));
  EXPECT_FALSE(builtin_table().find("Z901")->is_lazy(0));
  EXPECT_EQ(builtin_table().find("Z9999"), nullptr);
}

Envelope answer_nothing(const BuiltinCall& c) {
  return c.ok(nullptr);
}

void register_test_family(BuiltinTable& t) {
  t.add("Z60001", {.arity = 1, .fn = answer_nothing});
}

TEST(BuiltinTable, AFamilyFromAnotherFileExtendsATable) {
  BuiltinTable t;
  register_core_builtins(t);
  register_test_family(t);
  ASSERT_NE(t.find("Z60001"), nullptr);
  EXPECT_EQ(t.find("Z60001")->arity, 1u);
  EXPECT_NE(t.find("Z901"), nullptr);
}

TEST(BuiltinTable, DeclarationMistakesAreRefused) {
  BuiltinTable t;
  register_core_builtins(t);
  EXPECT_THROW(t.add("Z901", {.arity = 1, .fn = answer_nothing}), std::logic_error);
  EXPECT_THROW(t.add("Z60002", {.arity = 1}), std::logic_error);
  EXPECT_THROW(t.add("Z60003", {.arity = 1, .lazy = lazy_args({2}), .fn = answer_nothing}),
               std::logic_error);
}

}  // namespace
}  // namespace wf::orchestrator::engine_detail
