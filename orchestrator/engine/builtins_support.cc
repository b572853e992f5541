// Helpers shared by the built-in families.
#include "orchestrator/engine/builtins_support.h"

#include <array>

#include "orchestrator/engine/definitions.h"

namespace wf::orchestrator::engine_detail {

std::string text_of(const NodeP& n) {
  if (!n) return {};
  if (n->is_string) return n->text;
  std::string s = n->str();
  if (!s.empty() || n->is_z6()) return s;
  return {};
}

namespace {

NodeP fresh_bool_node(bool v) {
  auto n = Node::make_object();
  n->add("Z1K1", z9_node("Z40"));
  n->add("Z40K1", z9_node(v ? "Z41" : "Z42"));
  return n;
}

}  // namespace

NodeP bool_node(bool v) {
  // The two Booleans as shared nodes (Node::interned: immutable, never counted or freed), made
  // once per process as the ASCII code points are (builtins_strings.cc): every comparison built
  // a node and two entries per request, and the argument it became was walked for types (a nest
  // request made 6). In static storage, so they stay reachable to LeakSanitizer at exit. Null
  // when their parts are not shared (the string table was full): then a node per call.
  static const std::array<Node*, 2> shared = [] {
    std::array<Node*, 2> out{};
    for (int b = 0; b < 2; ++b) {
      NodeP tag = z9_node("Z40");
      NodeP value = z9_node(b != 0 ? "Z41" : "Z42");
      if (!tag->interned || !value->interned) continue;
      auto* node = new Node;  // never freed
      node->interned = true;
      node->entries.reserve(2);
      node->entries.push_back({common_keys().z1k1, std::move(tag)});
      node->entries.push_back({Key("Z40K1"), std::move(value)});
      out[b] = node;
    }
    return out;
  }();
  Node* n = shared[v ? 1 : 0];
  return n != nullptr ? NodeP(n) : fresh_bool_node(v);
}

std::string_view bool_ref(const NodeP& n) {
  if (!n || n->is_string) return {};
  const Node* k = n->peek("Z40K1");
  return k ? k->ref_view() : std::string_view();
}

NodeP z39_node(const std::string& key) {
  auto n = Node::make_object();
  n->add("Z1K1", z9_node("Z39"));
  n->add("Z39K1", z6_node(key));
  return n;
}

NodeP unquote(const NodeP& quote) {
  return quote && !quote->is_string ? quote->get("Z99K1") : quote;
}

bool is_empty_list(const NodeP& list) {
  return !list || list->is_string || !list->has("K1");
}

std::string join(const std::vector<std::string>& parts, const char* sep) {
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : sep) + p;
  return out;
}

NodeP type_call(const std::string& fn, const std::vector<std::pair<std::string, NodeP>>& args) {
  auto t = Node::make_object();
  t->add("Z1K1", z9_node("Z7"));
  t->add("Z7K1", z9_node(fn));
  for (const auto& [k, v] : args) t->add(k, v);
  return t;
}

NodeP positional_call(Interpreter& in, const NodeP& fn, const std::vector<NodeP>& args) {
  auto call = Node::make_object();
  call->add("Z1K1", z9_node("Z7"));
  call->add("Z7K1", fn);
  for (std::size_t i = 0; i < args.size(); ++i) call->add("K" + std::to_string(i + 1), args[i]);
  call->scope = in.empty_frame();
  return call;
}

Envelope evaluate_lazy(Interpreter& in, const NodeP& node) {
  if (!node) return Envelope::ok(node);
  if (!node->scope) node->set_scope(in.empty_frame());
  Interpreter::Resolved r = in.resolve(node, node->scope);
  if (r.env.has_error()) return r.env;
  Envelope ev = in.eager(r.env.value);
  return ev.has_error() ? ev : Envelope::ok(r.env.value);
}

std::string zid_of_lazy(Interpreter& in, const NodeP& node) {
  std::string zid = in.named_zid(node);
  if (!zid.empty() || !node) return zid;
  Envelope v = evaluate_lazy(in, node);
  if (v.has_error() || !v.value) return {};
  if (v.value->is_string) return v.value->text;
  if (v.value->is_ref()) return v.value->ref();
  if (v.value->type_ref() == "Z60") {
    return Definitions::instance().language_zid(text_of(v.value->get("Z60K1")));
  }
  if (v.value->type_ref() == "Z50") {  // 2026 error types carry their identity in Z50K2
    NodeP k2 = v.value->get("Z50K2");
    return k2 ? (k2->is_string ? k2->text : k2->ref()) : std::string();
  }
  const Node* k1 = v.value->peek("Z4K1");
  return k1 && k1->is_ref() ? k1->ref() : std::string();
}

std::string error_type_of(const NodeP& z5) {
  NodeP t = z5 && !z5->is_string ? z5->get("Z5K1") : nullptr;
  for (int guard = 0; guard < 8 && t; ++guard) {
    if (t->is_string) return t->text;
    if (t->is_ref()) return t->ref();
    if (t->type_ref() != "Z50") return {};
    t = t->get("Z50K2");
  }
  return {};
}

NodeP make_z3(Interpreter& in, NodeP type, const std::string& key, const std::string& label) {
  auto label11 = Node::make_object();
  label11->add("Z1K1", z9_node("Z11"));
  label11->add("Z11K1", z9_node("Z1002"));
  label11->add("Z11K2", z6_node(label));
  auto z12 = Node::make_object();
  z12->add("Z1K1", z9_node("Z12"));
  z12->add("Z12K1", in.make_list(z9_node("Z11"), {label11}));
  auto n = Node::make_object();
  n->add("Z1K1", z9_node("Z3"));
  n->add("Z3K1", std::move(type));
  n->add("Z3K2", z6_node(key));
  n->add("Z3K3", z12);
  return n;
}

NodeP make_z4(Interpreter& in, NodeP identity, const std::vector<NodeP>& keys) {
  auto z4 = Node::make_object();
  z4->add("Z1K1", z9_node("Z4"));
  z4->add("Z4K1", std::move(identity));
  z4->add("Z4K2", in.make_list(z9_node("Z3"), keys));
  z4->add("Z4K3", z9_node("Z831"));
  z4->scope = in.empty_frame();
  return z4;
}

namespace {

NodeP build_list_z4(Interpreter& in, const NodeP& t) {
  return make_z4(in, type_call("Z881", {{"Z881K1", t}}),
                 {make_z3(in, t, "K1", "head"),
                  make_z3(in, type_call("Z881", {{"Z881K1", t}}), "K2", "tail")});
}

// The child at `key`, built from its lazy source when needed, its scope left as it is (as in a
// tree built by hand, where only the root has a scope).
const NodeP& child_at(const NodeP& n, std::string_view key) {
  static const NodeP kNone;
  for (std::size_t i = 0; i < n->entries.size(); ++i) {
    if (n->entries[i].key == key) return n->current(i);
  }
  return kNone;
}

}  // namespace

// The Z4 of Z881(t) is about 60 nodes, and Z881 runs for every list an argument or a result
// carries (bench_zobject BM_EngineNest14: 8 of its 22 calls). Built once with a placeholder item
// type as normal-form JSON, each Z4 is a lazy view of it with t put in its three places: the
// same content as building it, for the nodes on the three paths only.
NodeP list_z4(Interpreter& in, const NodeP& t) {
  if (!t) return build_list_z4(in, t);  // no item type: nothing to put in the placeholders
  static const json kTemplate = build_list_z4(in, z9_node("Z1"))->to_json();
  NodeP z4 = Node::from_shared(kTemplate);
  z4->scope = in.empty_frame();
  child_at(z4, "Z4K1")->set("Z881K1", t);                                    // identity Z881(t)
  const NodeP& keys = child_at(z4, "Z4K2");                                  // [Z3 head, Z3 tail]
  child_at(keys, "K1")->set("Z3K1", t);                                      // head: t
  child_at(child_at(child_at(keys, "K2"), "K1"), "Z3K1")->set("Z881K1", t);  // tail: Z881(t)
  return z4;
}

NodeP pair_z4(Interpreter& in, const NodeP& a, const NodeP& b) {
  return make_z4(in, type_call("Z882", {{"Z882K1", a}, {"Z882K2", b}}),
                 {make_z3(in, a, "K1", "first"), make_z3(in, b, "K2", "second")});
}

}  // namespace wf::orchestrator::engine_detail
