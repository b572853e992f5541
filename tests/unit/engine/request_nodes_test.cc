// The request read straight into nodes (request_nodes.h): the same nodes as the canonical view
// of its JSON tree, and the same answers; anything unusual left to the general path.
#include "orchestrator/engine/request_nodes.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "fakes.h"
#include "orchestrator/engine/engine.h"
#include "wf/zobject/zobject.h"

namespace wf::orchestrator::engine_detail {
namespace {

using json = nlohmann::json;
namespace zo = wf::zobject;

// Two node trees are the same: keys in the same order, the same strings, interned where the
// other is, an entry still lazy (an implied list type) where the other's is, on the same JSON.
void expect_same(const Node& a, const Node& b, const std::string& path) {
  ASSERT_EQ(a.is_string, b.is_string) << path;
  ASSERT_EQ(a.interned, b.interned) << path;
  if (a.interned) {
    EXPECT_EQ(&a, &b) << path;
    return;
  }
  EXPECT_EQ(a.text, b.text) << path;
  ASSERT_EQ(a.entries.size(), b.entries.size()) << path;
  for (std::size_t i = 0; i < a.entries.size(); ++i) {
    const auto& ea = a.entries[i];
    const auto& eb = b.entries[i];
    const std::string at = path + "/" + ea.key.str();
    ASSERT_EQ(ea.key.str(), eb.key.str()) << path;
    EXPECT_EQ(ea.key.id(), eb.key.id()) << at;
    // The reference's lazy entries are built here, but for the implied list types (immortal).
    if (eb.source != nullptr && eb.immortal) {
      EXPECT_EQ(ea.source, eb.source) << at;
      EXPECT_TRUE(ea.immortal) << at;
      continue;
    }
    ASSERT_EQ(ea.source, nullptr) << at;
    const NodeP& va = a.current(i);
    const NodeP& vb = b.current(i);
    ASSERT_EQ(static_cast<bool>(va), static_cast<bool>(vb)) << at;
    if (va) expect_same(*va, *vb, at);
  }
}

// EngineImpl::called_function on the JSON.
std::string function_of(const json& zobject) {
  auto f = zobject.find("Z7K1");
  if (f == zobject.end()) return {};
  const json* ref = &*f;
  if (ref->is_object() && ref->contains("Z9K1")) ref = &(*ref)["Z9K1"];
  return ref->is_string() ? ref->get<std::string>() : std::string();
}

// interpreter.cc's called_functions on the JSON (what the node walk must give).
void calls_of(const json& v, std::vector<std::string>& out, int depth) {
  if (depth > 64 || out.size() >= 32) return;
  if (v.is_array()) {
    for (const auto& e : v) calls_of(e, out, depth + 1);
    return;
  }
  if (!v.is_object()) return;
  for (const auto& [key, child] : v.items()) {
    if (key == "Z99K1") continue;
    if (key == "Z7K1") {
      const std::string* zid = nullptr;
      if (child.is_string()) {
        zid = &child.get_ref<const std::string&>();
      } else if (child.is_object() && child.size() == 2 && child.contains("Z1K1") &&
                 child.contains("Z9K1") && child["Z1K1"] == "Z9" && child["Z9K1"].is_string()) {
        zid = &child["Z9K1"].get_ref<const std::string&>();
      }
      if (zid != nullptr && zo::is_zid(*zid) && !zo::is_builtin_type(*zid)) out.push_back(*zid);
    }
    calls_of(child, out, depth + 1);
  }
}

json call(const char* fn, std::initializer_list<std::pair<std::string, json>> args) {
  json c = {{"Z1K1", "Z7"}, {"Z7K1", fn}};
  for (const auto& [k, v] : args) c[k] = v;
  return c;
}

// Requests of the usual shape, read into nodes.
std::vector<std::string> usual() {
  const json nest = call(
      "Z802",
      {{"Z802K1",
        call("Z844",
             {{"Z844K1",
               call("Z813", {{"Z813K1",
                              call("Z812", {{"Z812K1",
                                             call("Z810", {{"Z810K1", "x"},
                                                           {"Z810K2", json::array({"Z6"})}})}})}})},
              {"Z844K2",
               call("Z866",
                    {{"Z866K1", call("Z886", {{"Z886K1", call("Z868", {{"Z868K1", "Hello"}})}})},
                     {"Z866K2",
                      call("Z811",
                           {{"Z811K1", call("Z810", {{"Z810K1", "Hello"},
                                                     {"Z810K2", json::array({"Z6"})}})}})}})}})},
       {"Z802K2",
        call("Z886",
             {{"Z886K1",
               call("Z868",
                    {{"Z868K1",
                      call("Z811",
                           {{"Z811K1", call("Z810", {{"Z810K1", "World"},
                                                     {"Z810K2", json::array({"Z6"})}})}})}})}})},
       {"Z802K3", "else"}});
  const json ref = {{"Z1K1", "Z9"}, {"Z9K1", "Z801"}};
  const json typed_list =
      json::array({call("Z881", {{"Z881K1", "Z6"}}), "a", {{"Z1K1", "Z6"}, {"Z6K1", "b"}}});
  std::vector<json> zobjects = {
      nest,
      call("Z801", {{"Z801K1", "hello"}}),
      call("Z801", {{"Z801K1", "Z1"}}),
      call("Z801", {{"Z801K1", {{"Z1K1", "Z6"}, {"Z6K1", "Z1"}}}}),
      call("Z801", {{"Z801K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z6"}}}}),
      call("Z801", {{"Z801K1", "a string longer than the small-string buffer, not interned"}}),
      {{"Z1K1", "Z7"}, {"Z7K1", ref}, {"Z801K1", "hi"}},
      {{"Z1K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z7"}}}, {"Z7K1", "Z801"}, {"Z801K1", "hi"}},
      {{"Z7K1", "Z801"}, {"Z1K1", "Z7"}, {"Z801K1", "keys out of order"}},
      call("Z801", {{"Z801K1", json::array()}}),
      call("Z801", {{"Z801K1", json::array({"Z6", "a", "b", "c"})}}),
      call("Z801", {{"Z801K1", json::array({"Z1", "a", json::array({"Z6"})})}}),
      call("Z801", {{"Z801K1", typed_list}}),
      call("Z801", {{"Z801K1", json::array({"not a zid", "a"})}}),
      call("Z801", {{"Z801K1", json::array({ref, "a"})}}),
      call("Z801", {{"Z801K1", {{"Z1K1", "Z11"}, {"Z11K1", "Z1002"}, {"Z11K2", "text"}}}}),
      call("Z801", {{"Z801K1", {{"Z1K1", "Z99"}, {"Z99K1", call("Z10001", {{"Z10001K1", "q"}})}}}}),
      call("Z10001", {{"Z10001K1", call("Z10002", {{"Z10002K1", "q"}})}}),
      {{"Z1K1", "Z7"}, {"Z7K1", call("Z10003", {})}, {"K1", "local"}},
      {{"Z1K1", "Z7"}, {"Z7K1", "not a zid"}},
      {{"Z1K1", "Z7"}, {"Z7K1", {{"Z1K1", "Z6"}, {"Z9K1", "Z801"}}}},
      {{"Z1K1", "Z7"}, {"Z7K1", json::array({"Z6"})}},
      {{"Z1K1", "Z6"}, {"Z6K1", "a string, not a call"}},
      {{"Z1K1", "Z11"}, {"Z11K1", "Z1002"}},
  };
  std::vector<std::string> out;
  for (const json& z : zobjects) {
    out.push_back(json{{"zobject", z}, {"doValidate", false}, {"resultCache", false}}.dump());
    out.push_back(json{{"zobject", z}}.dump(2));  // spaces and new lines
  }
  out.push_back(json{{"zobject", nest}, {"doValidate", true}}.dump());
  out.push_back(
      R"({"resultCache": true, "zobject": {"Z1K1": "Z7", "Z7K1": "Z801", "Z801K1": "x"}})");
  return out;
}

TEST(RequestNodes, SameNodesAsTheCanonicalView) {
  for (const std::string& text : usual()) {
    SCOPED_TRACE(text);
    auto call = parse_call(text, {});
    ASSERT_TRUE(call.has_value());
    const json body = json::parse(text);
    const json& zobject = body["zobject"];
    NodeP reference = Node::from_canonical(zobject);
    expect_same(*call->zobject, *reference, "");
    EXPECT_EQ(call->zobject->to_json(), zo::to_normal(zobject));
    EXPECT_EQ(call->zobject->to_json().dump(), zo::normalize(zobject)->dump());
    EXPECT_EQ(call->function, function_of(zobject));
    EXPECT_EQ(call->do_validate, body.value("doValidate", false));
    EXPECT_EQ(call->result_cache, body.value("resultCache", true));
    std::vector<std::string> expected, got;
    calls_of(zobject, expected, 0);
    called_functions(*call, got);
    EXPECT_EQ(got, expected);
    EXPECT_EQ(request_json(*call), body);
  }
}

TEST(RequestNodes, CalledFunctionsWithinTheWalksBounds) {
  // More than 32 calls, and calls deeper than 64 levels: the same as the JSON walk stops at.
  json wide = call("Z801", {});
  for (int i = 0; i < 40; ++i) {
    wide["Z801K" + std::to_string(i + 1)] = call(("Z" + std::to_string(20000 + i)).c_str(), {});
  }
  json deep = call("Z30000", {});
  for (int i = 0; i < 40; ++i) {
    deep = call(("Z" + std::to_string(30001 + i)).c_str(), {{"K1", json::array({"Z1", deep})}});
  }
  for (const json& z : {wide, deep}) {
    const std::string text = json{{"zobject", z}}.dump();
    auto parsed = parse_call(text, {});
    ASSERT_TRUE(parsed.has_value());
    std::vector<std::string> expected, got;
    calls_of(z, expected, 0);
    called_functions(*parsed, got);
    EXPECT_EQ(got, expected);
    EXPECT_FALSE(got.empty());
  }
}

TEST(RequestNodes, LeavesTheUnusualToTheGeneralPath) {
  const std::vector<std::string> unusual = {
      "",
      "[]",
      "{}",
      R"({"zobject": null})",
      R"({"zobject": "Z801"})",
      R"({"zobject": ["Z1"]})",
      R"({"zobject": {"Z1K1": "Z7", "Z7K1": "Z801", "Z801K1": "a\nb"}})",  // an escape
      "{\"zobject\": {\"Z1K1\": \"Z7\", \"Z7K1\": \"Z801\", \"Z801K1\": \"h\xC3\xA9\"}}",  // UTF-8
      R"({"zobject": {"Z1K1": "Z7", "Z7K1": "Z801", "Z801K1": 1}})",  // a number
      R"({"zobject": {"Z1K1": "Z7", "Z7K1": "Z801", "Z801K1": true}})",
      R"({"zobject": {"Z1K1": "Z7", "Z7K1": "Z801", "Z801K1": null}})",
      R"({"zobject": {"Z1K1": "Z7", "Z7K1": "Z801", "Z7K1": "Z802"}})",  // repeated key
      R"({"zobject": {"Z1K1": "Z7", "Z7K1": "Z801"}, "zobject": {"Z1K1": "Z7"}})",
      R"({"zobject": {"Z1K1": "Z7", "Z7K1": "Z801"}, "doValidate": "false"})",
      R"({"zobject": {"Z1K1": "Z7", "Z7K1": "Z801"}, "doValidate": false, "doValidate": true})",
      R"({"zobject": {"Z1K1": "Z7", "Z7K1": "Z801"}, "other": false})",
      R"({"zobject": {"Z1K1": "Z7", "Z7K1": "Z801"}} x)",
      R"({"zobject": {"Z1K1": "Z7", "Z7K1": "Z801"})",
      R"({"zobject": {"Z1K1": "Z5", "Z5K1": "Z500"}})",  // an error
      R"({"zobject": {"Z1K1": {"Z1K1": "Z9", "Z9K1": "Z5"}, "Z5K1": "Z500"}})",
      R"({"zobject": {"Z1K1": "Z7", "Z7K1": "Z801", "Z801K1": ["Z5"]}})",
      R"({"zobject": {"Z1K1": "Z7", "Z7K1": "Z801", "not a key": "x"}})",         // not MIXED
      R"({"zobject": {"Z1K1": "Z7", "Z7K1": "Z801", "Z801K1": {"Z6K1": "x"}}})",  // no Z1K1
      R"({"zobject": {"Z1K1": "Z7", "Z7K1": "Z801", "Z801K1": {}}})",
  };
  for (const std::string& text : unusual) {
    SCOPED_TRACE(text);
    EXPECT_FALSE(parse_call(text, {}).has_value());
  }
}

// A chain of calls `levels` zobject levels deep: {"Z1K1":"Z7","Z7K1":"Z801","Z801K1": ...}.
std::string chain(int levels) {
  std::string text = R"({"zobject": )";
  for (int i = 1; i < levels; ++i) text += R"({"Z1K1": "Z7", "Z7K1": "Z801", "Z801K1": )";
  text += R"("x")";
  for (int i = 1; i < levels; ++i) text += "}";
  return text + "}";
}

TEST(RequestNodes, DepthLimitsAsTheGeneralPath) {
  RequestLimits limits;
  limits.max_zobject_depth = 10;
  limits.max_json_depth = 128;
  EXPECT_EQ(zo::depth(json::parse(chain(10))["zobject"], 100), 10);
  EXPECT_TRUE(parse_call(chain(10), limits).has_value());
  EXPECT_FALSE(parse_call(chain(11), limits).has_value());
  // The body's nesting: the body is 1, the zobject 2, its deepest call (levels - 1) + 1.
  limits.max_zobject_depth = 128;
  limits.max_json_depth = 10;
  EXPECT_TRUE(parse_call(chain(10), limits).has_value());
  EXPECT_FALSE(parse_call(chain(11), limits).has_value());
  // A list element counts a level, as an argument does.
  limits.max_json_depth = 128;
  limits.max_zobject_depth = 3;
  EXPECT_TRUE(
      parse_call(R"({"zobject": {"Z1K1": "Z7", "Z7K1": "Z801", "Z801K1": ["Z6", "a"]}})", limits)
          .has_value());
  EXPECT_FALSE(
      parse_call(R"({"zobject": {"Z1K1": "Z7", "Z7K1": "Z801", "Z801K1": ["Z6", ["Z6"]]}})", limits)
          .has_value());
}

TEST(RequestNodes, ListLengthLimit) {
  auto list_of = [](std::size_t n) {
    std::string text = R"({"zobject": {"Z1K1": "Z7", "Z7K1": "Z813", "Z813K1": ["Z6")";
    for (std::size_t i = 0; i < n; ++i) text += R"(, "a")";
    return text + "]}}";
  };
  // Longer lists are the general path's (its lazy view builds the cells that are read).
  EXPECT_TRUE(parse_call(list_of(64), {}).has_value());
  EXPECT_FALSE(parse_call(list_of(65), {}).has_value());
  EXPECT_FALSE(parse_call(list_of(zo::kMaxListElements + 1), {}).has_value());
  // And so are large bodies.
  std::string large = R"({"zobject": {"Z1K1": "Z7", "Z7K1": "Z801", "Z801K1": ")";
  large += std::string(16 << 10, 'a') + "\"}}";
  EXPECT_FALSE(parse_call(large, {}).has_value());
}

// A text whose slot in the reader's per-thread caches (ThreadCache) is the slot of `taken`, or
// with `beside` the other slot of its pair (the caches keep two ways): `make(i)` for the first i.
template <typename Make>
std::string colliding(const std::string& taken, Make&& make, bool beside = false) {
  ThreadCache<int> slots;
  const int* target = &slots.slot(taken);
  if (beside) target = &slots.slots[static_cast<std::size_t>(target - slots.slots.data()) ^ 1];
  for (int i = 0; i < 1000000; ++i) {
    std::string text = make(i);
    if (text != taken && &slots.slot(text) == target) return text;
  }
  return {};
}

// The reader remembers per thread what it learnt of a key or a ZID (request_nodes.cc,
// known_key and known_reference): a second read, and a read of another text in the same slot,
// give what a first read gives.
TEST(RequestNodes, WhatItRemembersOfATextHoldsForTheNextRequest) {
  const auto literals_of = [](const std::string& text) {
    auto call = parse_call(text, {});
    EXPECT_TRUE(call.has_value()) << text;
    return call ? call->literals : BodyLiterals{};
  };
  // Inline code as a key: unusual every time, not only when first met.
  const std::string code =
      R"({"zobject": {"Z1K1": "Z7", "Z7K1": "Z801", "Z801K1": {"Z1K1": "Z16", "Z16K1": "Z600",)"
      R"( "Z16K2": "def f(): pass"}}})";
  for (int i = 0; i < 2; ++i) EXPECT_TRUE(literals_of(code).unusual);
  // A ZID no bundled definition serves counts as not local every time; one served never does.
  const std::string remote = R"({"zobject": {"Z1K1": "Z7", "Z7K1": "Z99999", "Z99999K1": "Z801"}})";
  for (int i = 0; i < 2; ++i) {
    const BodyLiterals l = literals_of(remote);
    EXPECT_EQ(l.not_local, 1);
    EXPECT_EQ(l.calls, 1);
    EXPECT_FALSE(l.unusual);
  }
  // Three keys, and three ZIDs, in one pair of slots, read in turn: each read is its own
  // text's, whichever way holds it or whichever it pushed out.
  const auto key_of = [](int i) { return "Z" + std::to_string(i + 1) + "K1"; };
  const auto zid_of = [](int i) { return "Z" + std::to_string(i + 100); };
  const std::string key_a = "Z801K1";
  const std::string key_b = colliding(key_a, key_of);
  const std::string key_c = colliding(key_a, key_of, true);
  const std::string zid_a = "Z866";
  const std::string zid_b = colliding(zid_a, zid_of);
  const std::string zid_c = colliding(zid_a, zid_of, true);
  for (const std::string* t : {&key_b, &key_c, &zid_b, &zid_c}) ASSERT_FALSE(t->empty());
  for (int round = 0; round < 2; ++round) {
    for (const auto& [key, zid] :
         {std::pair{key_a, zid_a}, std::pair{key_b, zid_b}, std::pair{key_c, zid_c},
          std::pair{key_a, zid_b}, std::pair{key_b, zid_c}, std::pair{key_c, zid_a}}) {
      const json zobject = {{"Z1K1", "Z7"}, {"Z7K1", "Z801"}, {key, zid}, {"K1", {zid, zid}}};
      const std::string text = json{{"zobject", zobject}}.dump();
      SCOPED_TRACE(text);
      auto call = parse_call(text, {});
      ASSERT_TRUE(call.has_value());
      expect_same(*call->zobject, *Node::from_canonical(zobject), "");
      EXPECT_EQ(call->zobject->to_json(), zo::to_normal(zobject));
    }
  }
  // A text that is not a key, in the slot of one that is, is still no key (nor a string value
  // in the slot of a ZID a reference).
  const std::string not_key = colliding(key_a, [](int i) { return "Z" + std::to_string(i) + "Q"; });
  ASSERT_FALSE(not_key.empty());
  const std::string not_zid = colliding(zid_a, [](int i) { return "z" + std::to_string(i); });
  ASSERT_FALSE(not_zid.empty());
  ASSERT_TRUE(parse_call(json{{"zobject", call("Z801", {{key_a, zid_a}})}}.dump(), {}));
  EXPECT_FALSE(parse_call(json{{"zobject", call("Z801", {{not_key, "x"}})}}.dump(), {}));
  const json with_string = call("Z801", {{"Z801K1", not_zid}});
  auto read = parse_call(json{{"zobject", with_string}}.dump(), {});
  ASSERT_TRUE(read.has_value());
  expect_same(*read->zobject, *Node::from_canonical(with_string), "");
  EXPECT_EQ(read->literals.not_local, 0);
}

// The reader knows a key or a ZID of up to eight bytes by one word of its bytes, orders keys by
// it, and reads a word at once where eight bytes of the body follow the text (request_nodes.cc,
// word_of): keys and ZIDs of every length around eight, in and out of order, some at the very end
// of the body, read as the canonical view reads them, and a repeated key of each length is
// still the general path's.
TEST(RequestNodes, KeysAndZidsOfEveryLengthAsTheCanonicalView) {
  const std::vector<std::string> keys = {"K1",       "K10",       "Z2K1",      "Z80K1",
                                         "Z801K1",   "Z801K12",   "Z10002K1",  "Z10002K10",
                                         "Z10002K2", "Z100021K1", "Z1000210K1"};
  const std::vector<std::string> zids = {"Z1",         "Z12",     "Z123",     "Z1234",
                                         "Z12345",     "Z123456", "Z1234567", "Z12345678",
                                         "Z123456789", "Z10002",  "Z801"};
  for (std::size_t shift = 0; shift < keys.size(); ++shift) {
    // The keys rotated (out of order but for shift 0), each with a ZID of another length.
    std::string text = R"({"zobject":{"Z1K1":"Z7","Z7K1":"Z801")";
    json zobject = {{"Z1K1", "Z7"}, {"Z7K1", "Z801"}};
    for (std::size_t i = 0; i < keys.size(); ++i) {
      const std::string& key = keys[(i + shift) % keys.size()];
      const std::string& zid = zids[(i + 2 * shift) % zids.size()];
      text += ",\"" + key + "\":\"" + zid + "\"";
      zobject[key] = zid;
    }
    text += "}}";  // no space: the last ZID ends three bytes before the body does
    SCOPED_TRACE(text);
    auto call = parse_call(text, {});
    ASSERT_TRUE(call.has_value());
    expect_same(*call->zobject, *Node::from_canonical(zobject), "");
    EXPECT_EQ(call->zobject->to_json(), zo::to_normal(zobject));
    std::vector<std::string> order;
    for (const auto& e : call->zobject->entries) order.push_back(e.key.str());
    EXPECT_TRUE(std::is_sorted(order.begin(), order.end())) << ::testing::PrintToString(order);
  }
  // The ZID at the very end, read both ways (a word at once, and byte by byte).
  for (const std::string& zid : zids) {
    const json zobject = {{"Z1K1", "Z7"}, {"Z7K1", "Z801"}, {"Z801K1", zid}};
    for (const std::string& text :
         {json{{"zobject", zobject}}.dump(),
          R"({"zobject":{"Z1K1":"Z7","Z7K1":"Z801","Z801K1":")" + zid + "\"}}"}) {
      SCOPED_TRACE(text);
      auto call = parse_call(text, {});
      ASSERT_TRUE(call.has_value());
      expect_same(*call->zobject, *Node::from_canonical(zobject), "");
    }
  }
  // "Z5" is never read here, wherever it stands; nor is a key given twice, of any length.
  EXPECT_FALSE(parse_call(R"({"zobject":{"Z1K1":"Z7","Z7K1":"Z801","Z801K1":"Z5"}})", {}));
  EXPECT_FALSE(parse_call(R"({"zobject":{"Z1K1":"Z7","Z7K1":"Z5"}})", {}));
  for (const std::string& key : keys) {
    SCOPED_TRACE(key);
    const std::string once = R"({"zobject":{"Z1K1":"Z7","Z7K1":"Z801",")" + key + R"(":"a"}})";
    ASSERT_TRUE(parse_call(once, {}).has_value());
    const std::string twice =
        R"({"zobject":{")" + key + R"(":"a","Z1K1":"Z7","Z7K1":"Z801",")" + key + R"(":"b"}})";
    EXPECT_FALSE(parse_call(twice, {}).has_value());
  }
}

}  // namespace
}  // namespace wf::orchestrator::engine_detail

namespace wf::orchestrator::testing {
namespace {

using json = nlohmann::json;

// The orchestration* values differ between two runs: blank them (canonical metadata).
json mask(json r) {
  if (!r.is_object() || !r.contains("Z22K2") || !r["Z22K2"].is_object()) return r;
  json& k1 = r["Z22K2"]["K1"];
  if (!k1.is_array()) return r;
  for (auto& p : k1) {
    if (!p.is_object() || !p.contains("K1") || !p["K1"].is_string()) continue;
    if (p["K1"].get<std::string>().starts_with("orchestration")) p["K2"] = "X";
  }
  return r;
}

TEST(RequestNodes, EngineAnswersAsFromTheJsonTree) {
  auto engine = make_engine({}, nullptr, nullptr);
  int read = 0;
  for (const std::string& text : engine_detail::usual()) {
    SCOPED_TRACE(text);
    bool has_error = false;
    auto answer = engine->evaluate_body(text, 128, CallContext{}, &has_error);
    ASSERT_TRUE(answer.has_value());
    ++read;
    bool expected_error = !has_error;
    std::string expected =
        engine->evaluate_text(json::parse(text), text, CallContext{}, &expected_error);
    EXPECT_EQ(mask(json::parse(*answer)), mask(json::parse(expected)));
    EXPECT_EQ(has_error, expected_error);
  }
  EXPECT_GT(read, 40);
  // The unusual request is left to the caller.
  EXPECT_FALSE(engine->evaluate_body(R"({"zobject": null})", 128, CallContext{}, nullptr));
}

TEST(RequestNodes, SameResultCacheKeyAsTheJsonTree) {
  EngineOptions options;
  options.result_cache_bytes = 1 << 20;
  auto engine = make_engine(options, nullptr, nullptr);
  const std::string text =
      R"({"zobject": {"Z1K1": "Z7", "Z7K1": "Z801", "Z801K1": ["Z6", "a", "b"]}})";
  const std::string other =
      R"({"zobject": {"Z7K1": "Z801", "Z801K1": ["Z6", "a", "b"], "Z1K1": "Z7"}})";
  // Stored from the nodes, served to the JSON tree of the same call (keys in another order).
  auto first = engine->evaluate_body(text, 128, CallContext{}, nullptr);
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->find("resultCache"), std::string::npos) << *first;
  std::string second = engine->evaluate_text(json::parse(other), CallContext{}, nullptr);
  EXPECT_NE(second.find(R"("resultCache")"), std::string::npos) << second;
  // And the other way round.
  const std::string third_text =
      R"({"zobject": {"Z1K1": "Z7", "Z7K1": "Z801", "Z801K1": ["Z6", "c"]}})";
  engine->evaluate_text(json::parse(third_text), CallContext{}, nullptr);
  auto third = engine->evaluate_body(third_text, 128, CallContext{}, nullptr);
  ASSERT_TRUE(third.has_value());
  EXPECT_NE(third->find(R"("resultCache")"), std::string::npos) << *third;
}

}  // namespace
}  // namespace wf::orchestrator::testing
