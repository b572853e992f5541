// Node::from_canonical: the lazy normal-form view of a request gives the same normal form as
// zobject::normalize, read in any order, partly read, cloned, or not read at all.
#include "orchestrator/engine/node.h"

#include <gtest/gtest.h>

#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "orchestrator/engine/interpreter.h"
#include "wf/sanitizer.h"
#include "wf/zobject/zobject.h"

namespace {

using json = nlohmann::json;
namespace ed = wf::orchestrator::engine_detail;
namespace zo = wf::zobject;

std::vector<json> inputs() {
  json label = {{"Z1K1", "Z11"}, {"Z11K1", "Z1002"}, {"Z11K2", "label"}};
  return {
      json("hello"),
      json("Z801"),
      json::array({"Z6", "a", "b", "c"}),
      json::array(),
      json::array({"Z11", label, label}),
      {{"Z1K1", "Z7"}, {"Z7K1", "Z801"}, {"Z801K1", json::array({"Z6", "x", json::array({"Z6"})})}},
      // mixed: a normal-form reference and string beside canonical ones
      {{"Z1K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z7"}}},
       {"Z7K1", "Z866"},
       {"Z866K1", {{"Z1K1", "Z6"}, {"Z6K1", "Z1"}}},
       {"Z866K2", "Z1"}},
      // a normal-form list object inside a canonical call
      {{"Z1K1", "Z7"},
       {"Z7K1", "Z813"},
       {"Z813K1", *zo::normalize(json::array({"Z40", {{"Z1K1", "Z40"}, {"Z40K1", "Z41"}}}))}},
      // an error normalization made passes through as it is (its strings stay bare); another
      // Z5 is normalised as any object
      {{"Z1K1", "Z7"},
       {"Z7K1", "Z801"},
       {"Z801K1", {{"Z1K1", "Z5"}, {"Z5K1", {{"Z1K1", "Z502"}, {"Z502K1", "x"}}}}}},
      {{"Z1K1", "Z5"}, {"Z5K1", {{"Z1K1", "Z501"}, {"Z501K1", "y"}}}},
      {{"Z1K1", "Z5"}, {"Z5K1", "Z507"}, {"Z5K2", {{"Z1K1", "Z507"}, {"Z507K1", "z"}}}},
  };
}

// Reads every entry, depth first (materialising the whole view).
void read_all(const ed::NodeP& n, int depth = 0) {
  if (!n || n->is_string || depth > 64) return;
  for (std::size_t i = 0; i < n->entries.size(); ++i) read_all(n->current(i), depth + 1);
}

TEST(Node, CanonicalViewIsTheNormalFormUnread) {
  for (const json& in : inputs()) {
    ASSERT_TRUE(zo::check_mixed(in).empty()) << in.dump();
    EXPECT_EQ(ed::Node::from_canonical(in)->to_json(), *zo::normalize(in)) << in.dump();
  }
}

TEST(Node, CanonicalViewIsTheNormalFormRead) {
  for (const json& in : inputs()) {
    ed::NodeP n = ed::Node::from_canonical(in);
    read_all(n);
    EXPECT_EQ(n->to_json(), *zo::normalize(in)) << in.dump();
  }
}

TEST(Node, CanonicalListReadHalfwayAndClonedIsTheNormalForm) {
  json in = json::array({"Z6", "a", "b", "c", "d"});
  ed::NodeP list = ed::Node::from_canonical(in);
  ed::NodeP second = list->get("K2");  // materialises the first node and the second
  ASSERT_TRUE(second && second->has("K1"));
  EXPECT_EQ(second->get("K1")->str(), "b");
  EXPECT_EQ(list->to_json(), *zo::normalize(in));
  EXPECT_EQ(list->clone(true)->to_json(), *zo::normalize(in));
  // The tail from the third element is still lazy and gives the normal form of that suffix.
  EXPECT_EQ(second->get("K2")->to_json(), *zo::normalize(json::array({"Z6", "c", "d"})));
}

TEST(Node, KeysOfEqualContentAreEqualWhateverIsRead) {
  json in = {{"Z1K1", "Z7"}, {"Z7K1", "Z881"}, {"Z881K1", "Z6"}};
  ed::NodeP lazy = ed::Node::from_canonical(in);
  ed::NodeP read = ed::Node::from_canonical(in);
  read_all(read);
  ed::NodeP normal = ed::Node::from_json(*zo::normalize(in));
  std::string a, b, c;
  lazy->append_key(a);
  read->append_key(b);
  normal->append_key(c);
  EXPECT_EQ(a, b);
  EXPECT_EQ(a, c);
  std::string other;
  ed::Node::from_canonical(json{{"Z1K1", "Z7"}, {"Z7K1", "Z881"}, {"Z881K1", "Z40"}})
      ->append_key(other);
  EXPECT_NE(a, other);
}

// bench/slow_calls: a parked call's tree was mostly 320-byte nodes; these bounds keep it small.
TEST(NodeSize, NodeAndEntryStayCompact) {
  EXPECT_LE(sizeof(ed::Node), 80u);
  EXPECT_LE(sizeof(ed::Node::Entry), 48u);
  EXPECT_EQ(sizeof(ed::NodeP), sizeof(void*));
  EXPECT_EQ(sizeof(ed::Key), sizeof(void*));
}

// Node memory (pooled_alloc): blocks of every size are distinct and writable in full; a freed
// block is taken again before the allocator is asked (not under the sanitizers, which must see
// every block freed); blocks freed on another thread, and more than a list keeps, are not lost
// (LeakSanitizer and the sanitizer build check the second part).
TEST(NodeMemory, BlocksAreReusedPerThreadAndBounded) {
  std::vector<std::pair<void*, std::size_t>> blocks;
  for (std::size_t bytes : {1u, 8u, 16u, 17u, 48u, 80u, 96u, 144u, 192u, 193u, 4096u}) {
    for (int i = 0; i < 3; ++i) {
      void* p = ed::pooled_alloc(bytes);
      std::memset(p, 0xab, bytes);
      blocks.emplace_back(p, bytes);
    }
  }
  std::set<void*> distinct;
  for (auto& [p, bytes] : blocks) distinct.insert(p);
  EXPECT_EQ(distinct.size(), blocks.size());
  for (auto& [p, bytes] : blocks) ed::pooled_free(p, bytes);
  void* again = ed::pooled_alloc(80);
  if (!(WF_ASAN || WF_TSAN)) {
    EXPECT_TRUE(distinct.contains(again));
  }
  ed::pooled_free(again, 80);
  // Nodes made on one thread and freed on another, many more than a list keeps.
  std::vector<ed::NodeP> nodes;
  for (int i = 0; i < 5000; ++i) {
    nodes.push_back(ed::z6_node("not interned, text " + std::to_string(i) + " of a request"));
  }
  std::thread([&] { nodes.clear(); }).join();
  EXPECT_TRUE(nodes.empty());
  for (int i = 0; i < 5000; ++i) {
    ed::NodeP n = ed::z6_node("again " + std::to_string(i) + " of a request, long enough");
    ASSERT_EQ(n->str(), "again " + std::to_string(i) + " of a request, long enough");
  }
}

TEST(NodeSharing, ShortBareStringsAreOneSharedImmutableNode) {
  ed::NodeP a = ed::str_node("Z20401");
  ed::NodeP b = ed::Node::from_json(json("Z20401"));
  EXPECT_EQ(a.get(), b.get());
  EXPECT_TRUE(a->interned);
  // A scope never sticks to a bare string, shared or not, and a clone is the node itself.
  auto frame = std::make_shared<ed::Frame>();
  a->set_scope(frame);
  EXPECT_EQ(a->scope, nullptr);
  EXPECT_EQ(a->clone(false).get(), a.get());
  ed::NodeP parent = ed::Node::make_object();
  parent->add("Z6K1", a);
  parent->scope = frame;
  EXPECT_EQ(parent->get("Z6K1")->scope, nullptr);
  // Other texts (values, code) are nodes of their own, owned by their request.
  EXPECT_NE(ed::str_node("3.142").get(), ed::str_node("3.142").get());
  const std::string code(200, 'x');
  ed::NodeP c = ed::str_node(code);
  ed::NodeP d = ed::str_node(code);
  EXPECT_NE(c.get(), d.get());
  EXPECT_FALSE(c->interned);
  EXPECT_EQ(c->text, code);
}

TEST(NodeSharing, ReferencesAndStringObjectsAreSharedAndNeverChanged) {
  ed::NodeP a = ed::z9_node("Z801");
  ed::NodeP b = ed::Node::from_shared(*zo::normalize(json("Z801")));
  ed::NodeP c = ed::Node::from_canonical(json("Z801"));
  EXPECT_EQ(a.get(), b.get());
  EXPECT_EQ(a.get(), c.get());
  EXPECT_TRUE(a->interned);
  EXPECT_EQ(ed::z6_node("Z801").get(), ed::z6_node("Z801").get());
  EXPECT_NE(ed::z6_node("Z801").get(), a.get());
  // A value's text is not interned: it is a node of its request.
  EXPECT_NE(ed::z6_node("hello").get(), ed::z6_node("hello").get());
  EXPECT_FALSE(ed::z6_node("hello")->interned);
  // Read through a parent with a scope, written to: it stays as it is.
  auto frame = std::make_shared<ed::Frame>();
  ed::NodeP parent = ed::Node::make_object();
  parent->add("Z7K1", a);
  parent->scope = frame;
  EXPECT_EQ(parent->get("Z7K1")->scope, nullptr);
  a->set_scope(frame);
  a->set("Z9K1", ed::str_node("Z802"));
  a->add("Z9K2", ed::str_node("x"));
  EXPECT_EQ(a->scope, nullptr);
  EXPECT_EQ(a->to_json(), json({{"Z1K1", "Z9"}, {"Z9K1", "Z801"}}));
  EXPECT_EQ(ed::z9_node("Z801")->ref(), "Z801");
  // An object of another shape is a node of its own.
  json other = {{"Z1K1", "Z9"}, {"Z9K1", "Z801"}, {"Z9K2", "x"}};
  EXPECT_NE(ed::Node::from_shared(other).get(), ed::Node::from_shared(other).get());
}

// Immortal JSON (a bundled definition's, read with from_shared(v, true)) is known per thread by
// its address (node.cc, immortal_terminal): a reference or string object reads as the shared
// node every time, any other object as a node of its own every time, also when many objects
// share the remembered slots and push each other out.
TEST(NodeSharing, ImmortalObjectsReadAsTheirSharedTerminalEveryTime) {
  // Never freed while the process runs, as the bundled definitions.
  static const auto* objects = [] {
    auto* v = new std::vector<json>;
    for (int i = 0; i < 3000; ++i) {
      const std::string zid = "Z" + std::to_string(20000 + i);
      switch (i % 4) {
        case 0:
          v->push_back({{"Z1K1", "Z9"}, {"Z9K1", zid}});
          break;
        case 1:
          v->push_back({{"Z1K1", "Z6"}, {"Z6K1", zid}});
          break;
        case 2:
          v->push_back({{"Z1K1", "Z9"}, {"Z9K1", zid}, {"Z9K2", "x"}});
          break;
        default:  // too long to be shared
          v->push_back({{"Z1K1", "Z6"}, {"Z6K1", zid + std::string(40, 'x')}});
      }
    }
    return v;
  }();
  // Twice on this thread, then on another (whose remembered slots are its own).
  const auto read_all_twice = [&] {
    for (int round = 0; round < 2; ++round) {
      for (std::size_t i = 0; i < objects->size(); ++i) {
        const json& v = (*objects)[i];
        SCOPED_TRACE(v.dump());
        ed::NodeP n = ed::Node::from_shared(v, true);
        ASSERT_TRUE(n);
        const std::string text =
            v.contains("Z9K1") ? v["Z9K1"].get<std::string>() : v["Z6K1"].get<std::string>();
        switch (i % 4) {
          case 0:
            EXPECT_EQ(n.get(), ed::z9_node(text).get());
            EXPECT_TRUE(n->interned);
            break;
          case 1:
            EXPECT_EQ(n.get(), ed::z6_node(text).get());
            EXPECT_TRUE(n->interned);
            break;
          default:
            EXPECT_FALSE(n->interned);
            EXPECT_NE(n.get(), ed::Node::from_shared(v, true).get());
        }
        EXPECT_EQ(n->to_json(), v);
      }
    }
  };
  read_all_twice();
  std::thread(read_all_twice).join();
}

// The shared reference and string objects answer the shape tests from what they are
// (Node::terminal), without reading their entries: the same answers as a request's own node of
// the same two entries, for ZIDs, tags and keys, and for texts too long to be shared.
TEST(NodeSharing, SharedTerminalsAnswerTheShapeTestsAsTheirEntriesDo) {
  const auto own = [](bool reference, const std::string& text) {
    ed::NodeP n = ed::Node::make_object();
    n->add("Z1K1", ed::str_node(reference ? "Z9" : "Z6"));
    n->add(reference ? "Z9K1" : "Z6K1", ed::str_node(text));
    return n;
  };
  const std::string long_text(40, 'Z');  // beyond the interning bound
  for (const std::string& text :
       {std::string("Z801"), std::string("Z7"), std::string("Z18"), std::string("Z9"),
        std::string("Z801K1"), std::string("hello"), long_text}) {
    for (bool reference : {true, false}) {
      SCOPED_TRACE(text + (reference ? " (reference)" : " (string)"));
      const ed::NodeP shared = reference ? ed::z9_node(text) : ed::z6_node(text);
      const ed::NodeP mine = own(reference, text);
      EXPECT_FALSE(mine->interned);
      const bool sharable = text != long_text && text != "hello";  // a value is never shared
      EXPECT_EQ(shared->interned, sharable);
      EXPECT_EQ(shared->terminal != ed::Node::Terminal::kNone, sharable);
      EXPECT_EQ(mine->terminal, ed::Node::Terminal::kNone);
      for (const ed::NodeP& n : {shared, mine}) {
        EXPECT_EQ(n->is_ref(), reference);
        EXPECT_EQ(n->is_z6(), !reference);
        EXPECT_EQ(n->ref_view(), reference ? text : "");
        EXPECT_EQ(n->ref(), reference ? text : "");
        EXPECT_EQ(n->str(), reference ? "" : text);
        EXPECT_EQ(n->type_ref_view(), reference ? "Z9" : "Z6");
        EXPECT_FALSE(n->is_call());
        EXPECT_FALSE(n->is_arg_ref());
        EXPECT_EQ(n->to_json(), mine->to_json());
      }
    }
  }
  // A call whose type is the shared Z7 reference, and an argument reference typed by Z18.
  ed::NodeP call = ed::Node::make_object();
  call->add("Z1K1", ed::z9_node("Z7"));
  call->add("Z7K1", ed::z9_node("Z801"));
  EXPECT_TRUE(call->is_call());
  EXPECT_FALSE(call->is_ref());
  EXPECT_EQ(call->type_ref_view(), "Z7");
  ed::NodeP arg = ed::Node::make_object();
  arg->add("Z1K1", ed::z9_node("Z18"));
  arg->add("Z18K1", ed::z6_node("Z801K1"));
  EXPECT_TRUE(arg->is_arg_ref());
  EXPECT_EQ(arg->arg_name(), "Z801K1");
}

TEST(NodeSharing, ObjectNodesAreCountedAndFreedWithTheirLastOwner) {
  ed::NodeP call = ed::Node::make_object();
  call->add("Z1K1", ed::z9_node("Z7"));
  EXPECT_EQ(call->refs, 1u);
  {
    ed::NodeP again = call;
    EXPECT_EQ(call->refs, 2u);
    ed::NodeP moved = std::move(again);
    EXPECT_EQ(call->refs, 2u);
  }
  EXPECT_EQ(call->refs, 1u);
  EXPECT_EQ(call->type_ref(), "Z7");
  EXPECT_EQ(call->to_json(), json({{"Z1K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z7"}}}}));
}

TEST(NodeKey, KeysCompareByTextWhetherInternedOrNot) {
  ed::Key a("Z801K1");
  ed::Key b(std::string("Z801K1"));
  EXPECT_TRUE(a.interned());
  EXPECT_EQ(a.id(), b.id());
  EXPECT_TRUE(a == b);
  EXPECT_TRUE(a == "Z801K1");
  EXPECT_FALSE(a == "Z801K2");
  EXPECT_TRUE(ed::Key("K1") < ed::Key("K2"));
  ed::Key copy = a;
  EXPECT_EQ(copy.str(), "Z801K1");
}

// A typed list's cell whose item type is a reference: its type Z881(T) is implied (a lazy view
// of per-process JSON, no node until read), shows and reads as the call node it stands for, and
// what one cell's reader does to its type stays in that cell.
TEST(NodeLists, ImpliedListTypeIsLazyAndReadsAsTheZ881Call) {
  const json z881_z86 = {{"Z1K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z7"}}},
                         {"Z7K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z881"}}},
                         {"Z881K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z86"}}}};
  ed::NodeP a = ed::Node::make_object();
  a->add_list_type(ed::z9_node("Z86"));
  ed::NodeP b = ed::Node::make_object();
  b->add_list_type(ed::z9_node("Z86"));
  ASSERT_EQ(a->entries.size(), 1u);
  EXPECT_TRUE(a->entries[0].key == "Z1K1");
  EXPECT_NE(a->entries[0].source, nullptr);  // not built
  EXPECT_TRUE(a->entries[0].immortal);
  EXPECT_EQ(a->entries[0].source, b->entries[0].source);  // one JSON per item type
  EXPECT_EQ(a->to_json(), json({{"Z1K1", z881_z86}}));
  std::string lazy_key;
  a->append_key(lazy_key);
  ed::NodeP t = a->get("Z1K1");
  ASSERT_TRUE(t);
  EXPECT_TRUE(t->is_call());
  EXPECT_EQ(t->get("Z881K1")->ref(), "Z86");
  EXPECT_EQ(t->to_json(), z881_z86);
  std::string read_key;
  a->append_key(read_key);
  EXPECT_EQ(lazy_key, read_key);
  // A reader that persists something into a's type leaves b's as it was.
  t->set("Z7K1", ed::z9_node("Z10001"));
  EXPECT_EQ(b->get("Z1K1")->get("Z7K1")->ref(), "Z881");
  EXPECT_EQ(b->to_json(), json({{"Z1K1", z881_z86}}));
  // An item type that is not a shared reference gets a call node of its own, as before.
  ed::NodeP item = ed::Node::from_json(json{{"Z1K1", "Z7"}, {"Z7K1", "Z881"}, {"Z881K1", "Z6"}});
  ed::NodeP c = ed::Node::make_object();
  c->add_list_type(item);
  EXPECT_EQ(c->entries[0].source, nullptr);
  EXPECT_TRUE(c->peek("Z1K1")->is_call());
  EXPECT_EQ(c->get("Z1K1")->get("Z881K1").get(), item.get());
}

// A reference of its own (not shared) gets the same implied list type as the shared one, and
// writes the same Z881 call; one with a key besides its two gets a call node of its own.
TEST(NodeLists, ImpliedListTypeOfAnUnsharedReference) {
  const json z881_z6 = {{"Z1K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z7"}}},
                        {"Z7K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z881"}}},
                        {"Z881K1", {{"Z1K1", "Z9"}, {"Z9K1", "Z6"}}}};
  ed::NodeP own = ed::Node::make_object();
  own->add("Z1K1", ed::str_node("Z9"));
  own->add("Z9K1", ed::str_node("Z6"));
  ASSERT_FALSE(own->interned);
  EXPECT_EQ(ed::Node::implied_list_type(own), ed::Node::implied_list_type(ed::z9_node("Z6")));
  ed::NodeP a = ed::Node::make_object();
  a->add_list_type(own);
  EXPECT_NE(a->entries[0].source, nullptr);
  EXPECT_EQ(a->get("Z1K1")->to_json(), z881_z6);
  own->add("Z2K1", ed::str_node("x"));
  EXPECT_EQ(ed::Node::implied_list_type(own), nullptr);
  ed::NodeP b = ed::Node::make_object();
  b->add_list_type(own);
  EXPECT_EQ(b->entries[0].source, nullptr);
  EXPECT_EQ(b->get("Z1K1")->get("Z881K1").get(), own.get());
}

// A settled object (nothing left to evaluate: Node::settled) is no longer settled once a key is
// set or added: the new value may be a call.
TEST(NodeLists, SettledIsClearedWhenTheContentChanges) {
  ed::NodeP a = ed::Node::make_object();
  a->add("K1", ed::str_node("x"));
  a->settled = true;
  a->set("K1", ed::Node::from_json(json{{"Z1K1", "Z7"}, {"Z7K1", "Z801"}, {"Z801K1", "x"}}));
  EXPECT_FALSE(a->settled);
  a->settled = true;
  a->add("K2", ed::str_node("y"));
  EXPECT_FALSE(a->settled);
  EXPECT_FALSE(ed::Node::make_object()->settled);
}

// Z868 splits a string into one-character texts: the 128 ASCII ones are shared nodes; other
// characters, and longer values, stay nodes of their request.
TEST(NodeSharing, OneCharacterAsciiTextsAreShared) {
  EXPECT_EQ(ed::str_node("a").get(), ed::str_node("a").get());
  EXPECT_TRUE(ed::str_node("a")->interned);
  EXPECT_EQ(ed::z6_node("H").get(), ed::z6_node("H").get());
  EXPECT_EQ(ed::z6_node("H")->str(), "H");
  EXPECT_EQ(ed::z6_node("H")->to_json(), json({{"Z1K1", "Z6"}, {"Z6K1", "H"}}));
  EXPECT_NE(ed::z6_node("\xC3\xA9").get(), ed::z6_node("\xC3\xA9").get());  // two bytes
  EXPECT_FALSE(ed::str_node("\xC3")->interned);  // a byte of a longer sequence
  EXPECT_FALSE(ed::str_node("ab")->interned);
}

}  // namespace
