// Native implementations of the built-in functions (builtins.md §1) and validators (§2).
// Each receives the bound, eagerly evaluated argument values sorted by argument name.
#include <functional>
#include <mutex>
#include <unordered_map>

#include "orchestrator/engine/definitions.h"
#include "orchestrator/engine/interpreter.h"
#include "orchestrator/engine/run_metadata.h"
#include "wf/zobject/zobject.h"

namespace wf::orchestrator::engine_detail {

namespace zo = wf::zobject;

namespace {

std::string text_of(const NodeP& n) {
  if (!n) return {};
  if (n->is_string) return n->text;
  std::string s = n->str();
  if (!s.empty() || n->is_z6()) return s;
  return {};
}

NodeP bool_node(bool v) {
  auto n = Node::make_object();
  n->add("Z1K1", z9_node("Z40"));
  n->add("Z40K1", z9_node(v ? "Z41" : "Z42"));
  return n;
}

// Z40K1 reference of a Boolean value, "" for anything else.
std::string bool_ref(const NodeP& n) {
  if (!n || n->is_string) return {};
  const Node* k = n->peek("Z40K1");
  return k ? k->ref() : std::string();
}

NodeP type_call(const std::string& fn, const std::vector<std::pair<std::string, NodeP>>& args) {
  auto t = Node::make_object();
  t->add("Z1K1", z9_node("Z7"));
  t->add("Z7K1", z9_node(fn));
  for (const auto& [k, v] : args) t->add(k, v);
  return t;
}

NodeP z39_node(const std::string& key) {
  auto n = Node::make_object();
  n->add("Z1K1", z9_node("Z39"));
  n->add("Z39K1", z6_node(key));
  return n;
}

bool is_empty_list(const NodeP& list) {
  return !list || list->is_string || !list->has("K1");
}

std::string join(const std::vector<std::string>& parts, const char* sep) {
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : sep) + p;
  return out;
}

// Process-wide templates of Z881(Zn) as a Z4 (normal form), by ZID. Bounded: a hostile stream
// of new ZIDs stops adding templates instead of growing memory.
std::mutex list_types_mu;
std::unordered_map<std::string, std::shared_ptr<const json>> list_types;
constexpr std::size_t kMaxListTypes = 4096;

std::shared_ptr<const json> list_type_template(const std::string& zid) {
  std::lock_guard lock(list_types_mu);
  auto it = list_types.find(zid);
  return it == list_types.end() ? nullptr : it->second;
}

std::shared_ptr<const json> remember_list_type(const std::string& zid, json z4) {
  auto value = std::make_shared<const json>(std::move(z4));
  std::lock_guard lock(list_types_mu);
  if (list_types.size() >= kMaxListTypes) return value;  // still valid for this request
  return list_types.emplace(zid, value).first->second;
}

}  // namespace

bool Interpreter::builtin_is_lazy(const std::string& id, const std::string& arg) const {
  return id == "Z902" && (arg == "Z802K2" || arg == "Z802K3");
}

Envelope Interpreter::run_builtin(const std::string& id, const std::vector<NodeP>& args,
                                  bool& known) {
  known = true;
  auto arg = [&](std::size_t i) -> NodeP { return i < args.size() ? args[i] : nullptr; };

  // Builds {"Z1K1":Z4, "Z4K1":identity, "Z4K2":[Z3...], "Z4K3":Z831}.
  auto make_z3 = [&](NodeP type, const std::string& key, const std::string& label) {
    auto label11 = Node::make_object();
    label11->add("Z1K1", z9_node("Z11"));
    label11->add("Z11K1", z9_node("Z1002"));
    label11->add("Z11K2", z6_node(label));
    auto z12 = Node::make_object();
    z12->add("Z1K1", z9_node("Z12"));
    z12->add("Z12K1", make_list(z9_node("Z11"), {label11}));
    auto n = Node::make_object();
    n->add("Z1K1", z9_node("Z3"));
    n->add("Z3K1", std::move(type));
    n->add("Z3K2", z6_node(key));
    n->add("Z3K3", z12);
    return n;
  };
  auto make_z4 = [&](NodeP identity, std::vector<NodeP> keys) {
    auto z4 = Node::make_object();
    z4->add("Z1K1", z9_node("Z4"));
    z4->add("Z4K1", std::move(identity));
    z4->add("Z4K2", make_list(z9_node("Z3"), keys));
    z4->add("Z4K3", z9_node("Z831"));
    z4->scope = empty_;
    return z4;
  };
  auto list_z4 = [&](const NodeP& t) {
    return make_z4(
        type_call("Z881", {{"Z881K1", t}}),
        {make_z3(t, "K1", "head"), make_z3(type_call("Z881", {{"Z881K1", t}}), "K2", "tail")});
  };
  auto pair_z4 = [&](const NodeP& a, const NodeP& b) {
    return make_z4(type_call("Z882", {{"Z882K1", a}, {"Z882K2", b}}),
                   {make_z3(a, "K1", "first"), make_z3(b, "K2", "second")});
  };
  auto ok = [&](NodeP v) {
    if (v && !v->scope) v->scope = empty_;
    return Envelope::ok(std::move(v));
  };

  if (id == "Z901") return ok(arg(0));
  if (id == "Z902") return ok(bool_ref(arg(0)) == "Z41" ? arg(1) : arg(2));
  if (id == "Z903") {
    NodeP key = arg(0);
    std::string k = key && !key->is_string ? text_of(key->get("Z39K1")) : "";
    NodeP obj = arg(1);
    if (!obj || obj->is_string || !obj->has(k)) {
      return Envelope::err(zo::make_error_msg("Z507", "Object did not contain key \"" + k + "\""));
    }
    return ok(obj->get(k));
  }
  if (id == "Z904") {
    NodeP obj = arg(1);
    auto ptype = [&] {
      return type_call("Z882", {{"Z882K1", z9_node("Z39")}, {"Z882K2", z9_node("Z1")}});
    };
    std::vector<NodeP> pairs;
    std::vector<std::string> missing;
    for (const NodeP& key : list_elements(arg(0))) {
      std::string k = key && !key->is_string ? text_of(key->get("Z39K1")) : "";
      if (!obj || obj->is_string || !obj->has(k)) {
        missing.push_back(k);
        continue;
      }
      auto pair = Node::make_object();
      pair->add("Z1K1", ptype());
      pair->add("K1", key);
      pair->add("K2", obj->get(k));
      pairs.push_back(pair);
    }
    if (!missing.empty()) {
      return Envelope::err(
          zo::make_error_msg("Z507", "Object did not contain key(s): " + join(missing, ",")));
    }
    auto map = Node::make_object();
    map->add("Z1K1", type_call("Z883", {{"Z883K1", z9_node("Z39")}, {"Z883K2", z9_node("Z1")}}));
    map->add("K1", make_list(ptype(), pairs));
    return ok(map);
  }
  if (id == "Z905") {
    std::function<NodeP(const NodeP&)> reify = [&](const NodeP& n) -> NodeP {
      if (!n) return z6_node("");
      if (n->is_string) return z6_node(n->text);
      std::vector<NodeP> pairs;
      for (std::size_t i = 0; i < n->entries.size(); ++i) {
        const std::string key = n->entries[i].key;
        auto pair = Node::make_object();
        pair->add("Z1K1",
                  type_call("Z882", {{"Z882K1", z9_node("Z39")}, {"Z882K2", z9_node("Z1")}}));
        pair->add("K1", z39_node(key));
        pair->add("K2", reify(n->get(key)));
        pairs.push_back(pair);
      }
      return make_list(type_call("Z882", {{"Z882K1", z9_node("Z39")}, {"Z882K2", z9_node("Z1")}}),
                       pairs);
    };
    return ok(reify(arg(0)));
  }
  if (id == "Z908") {
    std::function<NodeP(const NodeP&)> abstract = [&](const NodeP& n) -> NodeP {
      if (!n || n->is_string) return n;
      if (n->is_z6()) return str_node(n->str());
      const Node* t = n->peek("Z1K1");
      bool listy = t && !t->is_string && !t->is_ref();
      if (!listy) return n;
      auto obj = Node::make_object();
      for (const NodeP& pair : list_elements(n)) {
        if (!pair || pair->is_string) continue;
        NodeP k = pair->get("K1");
        std::string key = k && !k->is_string ? text_of(k->get("Z39K1")) : text_of(k);
        obj->set(key, abstract(pair->get("K2")));
      }
      return obj;
    };
    return ok(abstract(arg(0)));
  }
  if (id == "Z910") {
    NodeP element = arg(0);
    NodeP list = arg(1);
    NodeP item_type;
    if (list && !list->is_string) {
      NodeP t = list->get("Z1K1");
      if (t && t->is_call()) {
        item_type = t->get("Z881K1");
      } else if (t && !t->is_string && t->type_ref() == "Z4") {
        NodeP k1 = t->get("Z4K1");
        if (k1 && k1->is_call()) item_type = k1->get("Z881K1");
      }
    }
    if (!item_type) item_type = z9_node("Z1");
    auto node = Node::make_object();
    node->add("Z1K1", type_call("Z881", {{"Z881K1", item_type}}));
    node->add("K1", element);
    node->add("K2", list);
    return ok(node);
  }
  if (id == "Z911" || id == "Z912") {
    NodeP list = arg(0);
    if (is_empty_list(list)) {
      return Envelope::err(zo::make_error_msg(
          "Z506", id == "Z911" ? "An empty list has no head." : "An empty list has no tail."));
    }
    return ok(list->get(id == "Z911" ? "K1" : "K2"));
  }
  if (id == "Z913") return ok(bool_node(is_empty_list(arg(0))));
  if (id == "Z920") {
    std::string key = text_of(arg(0));
    json value = arg(1) ? arg(1)->to_json() : zo::void_value();
    json meta = zo::empty_metadata_map();
    zo::map_set(meta, key, value);
    return Envelope{z9_node("Z24"), meta};
  }
  if (id == "Z921" || id == "Z922") {
    NodeP p = arg(0);
    const char* k = id == "Z921" ? "K1" : "K2";
    if (!p || p->is_string || !p->has(k)) {
      return Envelope::err(
          zo::make_error_msg("Z507", std::string("Object did not contain key \"") + k + "\""));
    }
    return ok(p->get(k));
  }
  if (id == "Z923") {
    NodeP quote = arg(0);
    NodeP inner = quote && !quote->is_string ? quote->get("Z99K1") : quote;
    RunStart start = run_start();
    json env = orchestrate(inner ? inner->to_json() : json(nullptr), do_validate_);
    add_orchestration_metadata(env, start);
    auto pair = Node::make_object();
    pair->add("Z1K1", type_call("Z882", {{"Z882K1", z9_node("Z1")}, {"Z882K2", z9_node("Z1")}}));
    pair->add("K1", Node::from_json(env["Z22K1"]));
    pair->add("K2", Node::from_json(env["Z22K2"]));
    return ok(pair);
  }
  if (id == "Z928") {
    NodeP quote = arg(0);
    NodeP inner = quote && !quote->is_string ? quote->get("Z99K1") : quote;
    std::string zid = inner ? (inner->is_string ? inner->text : inner->ref()) : "";
    if (auto z2 = Definitions::instance().original(zid)) return ok(Node::from_shared(*z2));
    const Dereferenced& d = resolver_.dereference(zid);
    if (!d.failure.empty()) {
      json e = zo::make_error("Z500", {});
      e["Z5K2"]["Z500K1"] = "Error thrown by dereference(): " + d.failure + ".";
      return Envelope::err(e);
    }
    if (!d.z2) return Envelope::err(d.error);
    return ok(Node::from_shared(*d.z2));
  }
  if (id == "Z931") {
    NodeP quote = arg(0);
    return ok(quote && !quote->is_string ? quote->get("Z99K1") : quote);
  }
  if (id == "Z944") return ok(bool_node(bool_ref(arg(0)) == bool_ref(arg(1))));
  if (id == "Z960") {
    std::string code = text_of(arg(0));
    std::string zid = Definitions::instance().language_zid(code);
    if (zid.empty()) {
      NodeP e = Node::from_json(zo::make_error_msg("Z525", "Invalid language code: " + code));
      return ok(e);
    }
    Envelope d = dereference(zid);
    if (d.has_error()) return d;
    return ok(d.value);
  }
  if (id == "Z966") return ok(bool_node(text_of(arg(0)) == text_of(arg(1))));
  if (id == "Z968") {
    const std::string s = text_of(arg(0));
    std::vector<NodeP> items;
    for (std::size_t i = 0; i < s.size();) {
      unsigned char c = static_cast<unsigned char>(s[i]);
      std::size_t len = c < 0x80           ? 1
                        : (c >> 5) == 0x6  ? 2
                        : (c >> 4) == 0xE  ? 3
                        : (c >> 3) == 0x1E ? 4
                                           : 1;
      if (i + len > s.size()) len = s.size() - i;
      auto cp = Node::make_object();
      cp->add("Z1K1", z9_node("Z86"));
      cp->add("Z86K1", z6_node(s.substr(i, len)));
      items.push_back(cp);
      i += len;
    }
    return ok(make_list(z9_node("Z86"), items));
  }
  if (id == "Z981") {
    // Typed-list types of a plain reference (the common case: every list node's Z1K1 is
    // Z881(Zn)) come from a per-ZID template: a fresh lazy tree with the same content, without
    // building ~100 nodes each time.
    const NodeP& t = arg(0);
    std::string zid = t ? (t->is_string ? t->text : t->ref()) : std::string();
    if (!zid.empty() && zo::is_zid(zid)) {
      std::shared_ptr<const json> z4 = list_type_template(zid);
      if (!z4) z4 = remember_list_type(zid, list_z4(t)->to_json());
      kept_.push_back(z4);  // the lazy tree points into it
      return ok(Node::from_shared(*z4));
    }
    return ok(list_z4(t));
  }
  if (id == "Z982") return ok(pair_z4(arg(0), arg(1)));
  if (id == "Z983") {
    NodeP key_type = arg(0);
    NodeP value_type = arg(1);
    // Identity of the key type: follow Z4K1 while present.
    NodeP ident = key_type;
    for (int guard = 0; guard < 32 && ident && !ident->is_string && ident->has("Z4K1"); ++guard) {
      ident = ident->get("Z4K1");
    }
    std::string kid = ident ? (ident->is_string ? ident->text : ident->ref()) : "";
    if (kid != "Z6" && kid != "Z39") {
      return Envelope::err(zo::make_error(
          "Z516", {zo::z6("Z883K1"), key_type ? key_type->to_json() : json(nullptr)}));
    }
    NodeP elements = list_z4(pair_z4(key_type, value_type));
    return ok(make_z4(type_call("Z883", {{"Z883K1", key_type}, {"Z883K2", value_type}}),
                      {make_z3(elements, "K1", "elements")}));
  }
  if (id == "Z986") {
    std::string out;
    for (const NodeP& e : list_elements(arg(0))) {
      if (!e) continue;
      if (e->is_string) {
        out += e->text;
      } else if (e->is_z6()) {
        out += e->str();
      } else {
        out += text_of(e->get("Z86K1"));
      }
    }
    return ok(z6_node(out));
  }
  if (id == "Z988") {
    auto cp = [&](const NodeP& n) {
      return n && !n->is_string ? text_of(n->get("Z86K1")) : text_of(n);
    };
    return ok(bool_node(cp(arg(0)) == cp(arg(1))));
  }
  if (id == "Z989") {
    NodeP a = arg(0);
    NodeP b = arg(1);
    NodeP fn = arg(2);
    while (!is_empty_list(a) && !is_empty_list(b)) {
      auto call = Node::make_object();
      call->add("Z1K1", z9_node("Z7"));
      call->add("Z7K1", fn);
      call->add("K1", a->get("K1"));
      call->add("K2", b->get("K1"));
      call->scope = empty_;
      Envelope r = execute(call, empty_, false);
      if (r.has_error()) return r;
      std::string v = bool_ref(r.value);
      if (!r.value || r.value->type_ref() != "Z40" || v.empty()) {
        return Envelope::err(
            zo::make_error_msg("Z516", "Provided equality function did not return Boolean."));
      }
      if (v != "Z41") return ok(bool_node(false));
      a = a->get("K2");
      b = b->get("K2");
    }
    return ok(bool_node(is_empty_list(a) && is_empty_list(b)));
  }
  if (id == "Z999") {
    NodeP quote = arg(0);
    return ok(quote && !quote->is_string ? quote->get("Z99K1") : quote);
  }
  // Validators: Z201-Z299 return their input unless they check something.
  if (id.size() == 4 && id[0] == 'Z' && id[1] == '2') {
    NodeP input = arg(0);
    NodeP target =
        input && !input->is_string && input->type_ref() == "Z99" ? input->get("Z99K1") : input;
    std::vector<json> errors;
    if (id == "Z204" && target && !target->is_string) {
      const Node* k1 = target->peek("Z4K1");
      std::vector<std::string> keys;
      for (const NodeP& z3 : list_elements(target->get("Z4K2"))) {
        keys.push_back(z3 && !z3->is_string ? text_of(z3->get("Z3K2")) : "");
      }
      if (k1 && k1->is_ref()) errors = check_key_list(k1->ref(), keys);
    } else if (id == "Z208" && target && !target->is_string) {
      const Node* k5 = target->peek("Z8K5");
      std::vector<std::string> keys;
      for (const NodeP& z17 : list_elements(target->get("Z8K1"))) {
        keys.push_back(z17 && !z17->is_string ? text_of(z17->get("Z17K2")) : "");
      }
      if (k5 && k5->is_ref()) errors = check_key_list(k5->ref(), keys);
    } else if (id == "Z207") {
      errors = check_function_call(target);
    } else if (id == "Z212") {
      errors = check_multilingual_text(target);
    } else if (id == "Z232") {
      errors = check_multilingual_stringset(target);
    }
    if (errors.size() == 1) return Envelope::err(errors[0]);
    if (errors.size() > 1) {
      return Envelope::err(zo::make_error("Z509", {zo::make_list(zo::z9("Z5"), errors)}));
    }
    return ok(input);
  }
  known = false;
  return Envelope::err(zo::make_error_msg("Z507", "unknown builtin " + id));
}

}  // namespace wf::orchestrator::engine_detail
