// Calls of built-in functions (bench_zobject BM_EngineNest14): what binding a call's arguments
// and listing the function's implementations read from a built-in function's definition is the
// same for every call, so it is read once per process, as plain data, from the bundled
// definition. A nested call of a built-in function then binds its arguments and runs its
// built-in implementation without materialising the definition's argument list and
// implementations as nodes per request, with the same answers and errors as the general path
// (execute_inner), whose steps it follows.
#include <algorithm>
#include <array>
#include <boost/container/small_vector.hpp>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "orchestrator/engine/builtin_table.h"
#include "orchestrator/engine/builtins_support.h"
#include "orchestrator/engine/definitions.h"
#include "orchestrator/engine/engine_metrics.h"
#include "orchestrator/engine/json_shapes.h"
#include "wf/zobject/zobject.h"

namespace wf::orchestrator::engine_detail {

namespace zo = wf::zobject;

struct BuiltinSignature {
  struct Arg {
    std::string name;            // Z17K2, e.g. Z810K1
    std::string local;           // the local key it falls back to, e.g. K1
    Key name_key, local_key;     // the same as keys: looked up by address in a call
    const nlohmann::json* type;  // Z17K1 as defined (normal form, in the definitions)
    // The declared type accepts every value whose own type resolves: Z1, or a typed list (its
    // Z4's identity is the Z881 call, which compare_types() takes as generic). The check
    // against it cannot fail once process_argument() has resolved the value's type.
    bool accepts_all = false;
    // The declared type as every request resolves it, when that is the shared node of a
    // reference to a built-in type (Z6, Z40, ...): resolving such a reference gives the node
    // itself, in any request. Null: resolved per request (builtin_declared).
    NodeP fixed;
  };
  std::vector<Arg> args;             // in Z8K1 order: the order arguments are bound and checked
  std::vector<std::size_t> by_name;  // indices of args sorted by name: the built-in's order
  std::string impl_id;               // Z14K4 of the first implementation
  bool list_type_impl = false;       // impl_id is Z981 (the type of a typed list)
  const BuiltinSpec* spec = nullptr;
  // Every declared type a call checks against is fixed (or not checked: accepts_all): the
  // declared types need nothing per request, and are these (null where not checked).
  bool all_fixed = true;
  std::vector<NodeP> fixed_declared;
};

namespace {

// A string as node_string() reads it: a bare string, or the Z6K1 of a Z6.
std::string json_string_value(const nlohmann::json& v) {
  if (json_node_is_string(v)) return json_node_text(v);
  if (!v.is_object()) return {};
  auto t = v.find("Z1K1");
  auto k = v.find("Z6K1");
  if (t == v.end() || k == v.end() || !t->is_string() || t->get_ref<const std::string&>() != "Z6" ||
      !json_node_is_string(*k)) {
    return {};
  }
  return json_node_text(*k);
}

// The elements of a normal-form typed list (bounded), as list_elements() reads them.
bool json_list_elements(const nlohmann::json& list, std::vector<const nlohmann::json*>& out) {
  const nlohmann::json* node = &list;
  for (int i = 0; i < 64; ++i) {
    if (!node->is_object() || !node->contains("K1")) return true;
    if (!node->contains("K2")) return false;  // not a list as the general path reads it
    out.push_back(&(*node)["K1"]);
    node = &(*node)["K2"];
  }
  return false;
}

// Whether the declared type `t` accepts every value (BuiltinSignature::Arg::accepts_all): a
// reference to Z1, or Z881 of a ZID, which resolving without internals turns into the Z4 of
// Z981's per-ZID template.
bool accepts_all(const nlohmann::json& t) {
  if (json_ref(t) == "Z1") return true;
  if (!t.is_object() || json_ref(t.value("Z1K1", nlohmann::json())) != "Z7") return false;
  auto fn = t.find("Z7K1");
  auto item = t.find("Z881K1");
  if (fn == t.end() || item == t.end() || json_ref(*fn) != "Z881") return false;
  return zo::is_zid(json_node_is_string(*item) ? json_node_text(*item) : json_ref(*item));
}

// The local key an argument name falls back to (interpreter.cc's local_key).
std::string local_key_of(const std::string& name) {
  auto k = name.rfind('K');
  if (k == std::string::npos) return name;
  std::string local = name.substr(k);
  return zo::is_local_key(local) ? local : name;
}

// The signature of the served definition `z2` (a Z2 of a Z8), or null when the general path
// could answer something the direct one does not: an argument list or implementation that is
// not plain data (a reference to fetch, a call), a first implementation that is not built in.
std::unique_ptr<BuiltinSignature> read_signature(const nlohmann::json& z2) {
  auto z8 = z2.find("Z2K2");
  if (z8 == z2.end() || json_ref(z8->value("Z1K1", nlohmann::json())) != "Z8" ||
      !z8->contains("Z8K1") || !z8->contains("Z8K4")) {
    return nullptr;
  }
  auto sig = std::make_unique<BuiltinSignature>();
  std::vector<const nlohmann::json*> decls;
  if (!json_list_elements((*z8)["Z8K1"], decls)) return nullptr;
  for (const nlohmann::json* z17 : decls) {
    if (!z17->is_object() || !z17->contains("Z17K1") || !z17->contains("Z17K2")) return nullptr;
    std::string name = json_string_value((*z17)["Z17K2"]);
    if (name.empty()) return nullptr;
    for (const auto& a : sig->args) {
      if (a.name == name) return nullptr;
    }
    const nlohmann::json& type = (*z17)["Z17K1"];
    const std::string local = local_key_of(name);
    sig->args.push_back({name, local, Key(name), Key(local), &type, accepts_all(type), nullptr});
    auto& arg = sig->args.back();
    if (!arg.accepts_all) {
      NodeP written = Node::from_shared(type, true);
      if (written->interned && written->is_ref() && zo::is_builtin_type(written->ref_view())) {
        arg.fixed = std::move(written);
      } else {
        sig->all_fixed = false;
      }
    }
    sig->fixed_declared.push_back(arg.fixed);
  }
  std::vector<const nlohmann::json*> impls;
  if (!json_list_elements((*z8)["Z8K4"], impls) || impls.empty()) return nullptr;
  for (const nlohmann::json* z14 : impls) {
    // Inline implementations only: resolving one cannot fail or fetch.
    if (!z14->is_object() || json_ref(z14->value("Z1K1", nlohmann::json())) != "Z14") {
      return nullptr;
    }
  }
  const nlohmann::json& first = *impls.front();
  if (!first.contains("Z14K4")) return nullptr;
  sig->impl_id = json_string_value(first["Z14K4"]);
  sig->list_type_impl = sig->impl_id == "Z981";
  sig->spec = builtin_table().find(sig->impl_id);
  if (sig->spec == nullptr) return nullptr;
  sig->by_name.resize(sig->args.size());
  for (std::size_t i = 0; i < sig->by_name.size(); ++i) sig->by_name[i] = i;
  std::sort(sig->by_name.begin(), sig->by_name.end(),
            [&](std::size_t a, std::size_t b) { return sig->args[a].name < sig->args[b].name; });
  return sig;
}

// Whether a Z4 (normal-form JSON) is one whose evaluation as an argument does nothing: its keys
// are all ones that eager evaluation skips, and its types need no resolution (checked apart).
bool inert_z4(const nlohmann::json& z4) {
  static constexpr std::string_view kKeys[] = {"Z1K1", "Z4K1", "Z4K2", "Z4K3", "Z4K4",
                                               "Z4K5", "Z4K6", "Z4K7", "Z4K8"};
  if (!z4.is_object() || json_ref(z4.value("Z1K1", nlohmann::json())) != "Z4") return false;
  for (const auto& [key, value] : z4.get_ref<const nlohmann::json::object_t&>()) {
    if (std::find(std::begin(kKeys), std::end(kKeys), key) == std::end(kKeys)) return false;
  }
  return true;
}

// The Z4 of Z881(T) for an item type T that the process holds for good (a bundled type, or a part
// of a list-type template: Node::Entry::immortal), as normal-form JSON kept for the process; null
// when T is not inert (inert_z4) or the table is full. Keyed by the address of T's last value (an
// immortal value belongs to one object, and is never freed or reused).
struct HeldListType {
  std::shared_ptr<const nlohmann::json> z4;  // null: the general path runs such calls
  std::size_t entries = 0;                   // T's keys
};
std::mutex held_list_types_mu;
std::unordered_map<const nlohmann::json*, HeldListType> held_list_types;
constexpr std::size_t kMaxHeldListTypes = 4096;

// An entry of an immortal view that nothing has changed: still lazy, or built into a shared node.
bool untouched(const Node::Entry& e) {
  if (e.persisted) return false;
  if (e.source != nullptr) return e.immortal && e.form == Node::Entry::Form::kNormal;
  return e.original && e.original->interned;
}

}  // namespace

// The signature of the built-in function `zid`, or null (not a bundled function, or one the
// direct path does not take). Read once per process; bounded by the bundled definitions.
const BuiltinSignature* builtin_signature(const std::string& zid) {
  static std::mutex mu;
  static std::unordered_map<std::string, std::unique_ptr<BuiltinSignature>> signatures;
  std::lock_guard lock(mu);
  auto it = signatures.find(zid);
  if (it != signatures.end()) return it->second.get();
  auto z2 = Definitions::instance().served(zid);
  if (!z2) return nullptr;  // not bundled: nothing is stored
  return signatures.emplace(zid, read_signature(*z2)).first->second.get();
}

namespace {

// builtin_signature() of the ZID of an interned reference node (one node per ZID for the process,
// never freed), remembered per thread by the node's address: the process-wide table's lock, hash
// and compare, and the ZID's copy, cost ~300 instructions a function and request. What it answers
// for a ZID never changes (the bundled definitions are fixed for the process).
const BuiltinSignature* builtin_signature_of(const Node& fn) {
  struct Slot {
    const Node* fn = nullptr;
    const BuiltinSignature* sig = nullptr;
  };
  constexpr std::size_t kSlots = 64;
  thread_local std::array<Slot, kSlots> slots{};
  Slot& slot = slots[(reinterpret_cast<std::uintptr_t>(&fn) >> 4) % kSlots];
  if (slot.fn == &fn) return slot.sig;
  const BuiltinSignature* sig = builtin_signature(fn.ref());
  slot = {&fn, sig};
  return sig;
}

}  // namespace

// The declared types of a signature's arguments for this request, as bind_arguments() makes
// them: each Z17K1 resolved without internals (a Z881 becomes its Z4), as written when that fails.
// Only the types a call checks against: none for an argument that accepts all (its Z881 was
// resolved into a Z4 per request, for nothing), the shared node for a fixed one.
const std::vector<NodeP>* Interpreter::builtin_declared(const BuiltinSignature& sig) {
  if (sig.all_fixed) return &sig.fixed_declared;
  auto [it, added] = builtin_declared_.try_emplace(&sig);
  if (!added) return &it->second;
  for (const auto& arg : sig.args) {
    if (arg.accepts_all || arg.fixed) {
      it->second.push_back(arg.fixed);
      continue;
    }
    NodeP written = Node::from_shared(*arg.type, true);  // the definitions live for the process
    // set_scope, not an assignment: a declared type that is a reference ("Z6", "Z1") is an
    // interned node, read by every thread; writing this request's frame into it was a data race
    // on its shared_ptr (wf-orchestrator crashed under concurrent load).
    written->set_scope(empty_);
    Resolved r = resolve(written, empty_, Mode::kNoInternals);
    if (aborted()) {
      builtin_declared_.erase(it);
      return nullptr;
    }
    it->second.push_back(r.env.has_error() ? written : r.env.value);
  }
  return &it->second;
}

// Z881 (typed list, built in as Z981) of an item type given as a reference to a bundled type or
// as an unchanged view of immortal JSON (the Z881K1 of a list type made from a template): the
// argument's evaluation does nothing for such a type (it resolves to itself or to the bundled
// Z4, whose types need no resolution, whose type is Z4 as declared, and whose keys eager
// evaluation skips), so the answer is the per-process Z4 of Z881(T), as typed_list builds it.
// nullopt: not such a call, the general steps run it.
std::optional<Envelope> Interpreter::held_list_type(const NodeP& item) {
  if (!item || item->is_string) return std::nullopt;
  // A reference to a bundled type is an interned node (one per ZID): a request makes the list
  // type of the same item type again and again (8 Z881 calls in the nest, most of them of Z6),
  // and answers each with the Z4 it made the first time, without dereferencing the type,
  // asking the process-wide table (a lock) or building the Z4's node again (~3 k instructions).
  // The same for an item type that is an unchanged view of immortal JSON, by that JSON (below).
  const auto held_before = [&](const void* id, std::size_t entries) -> std::optional<Envelope> {
    for (const HeldZ4& h : held_z4_) {
      if (h.id != id || h.entries != entries) continue;
      if (!tick()) return abort_envelope();
      return Envelope::ok(h.z4);
    }
    return std::nullopt;
  };
  if (item->interned) {
    if (auto held = held_before(item.get(), 0)) return held;
  }
  // T's identity: the address of its last immortal value (a value belongs to one object), with
  // T's key count.
  const nlohmann::json* key = nullptr;
  std::size_t entries = 0;
  const nlohmann::json* bundled = nullptr;  // T as JSON, when a reference names it
  if (item->is_ref()) {
    const std::string_view zid = item->ref_view();
    if (!zo::is_zid(zid)) return std::nullopt;
    // Only a bundled type is held, and dereferencing it yields the bundled definition: read
    // without dereferencing (a memo entry per item type and request). Any other type is left to
    // the general steps, which dereference it.
    const nlohmann::json* z2 = resolver_.bundled(zid);
    if (z2 == nullptr) return std::nullopt;
    auto k2 = z2->find("Z2K2");
    if (k2 == z2->end() || !k2->is_object() || k2->empty()) return std::nullopt;
    bundled = &*k2;
    key = &k2->get_ref<const nlohmann::json::object_t&>().rbegin()->second;
    entries = k2->size();
  } else {
    // The last entry still lazy: no key was added after the object's own (Node::set appends),
    // so the node has exactly the object's keys, each unchanged.
    if (item->interned || item->entries.empty() || item->entries.back().source == nullptr) {
      return std::nullopt;
    }
    entries = item->entries.size();
    for (const Node::Entry& e : item->entries) {
      if (!untouched(e)) return std::nullopt;
    }
    key = item->entries.back().source;
    if (auto held = held_before(key, entries)) return held;
  }
  std::shared_ptr<const nlohmann::json> z4;
  {
    std::lock_guard lock(held_list_types_mu);
    auto it = held_list_types.find(key);
    if (it != held_list_types.end()) {
      if (it->second.entries != entries || !it->second.z4) {
        return std::nullopt;
      }
      z4 = it->second.z4;
    }
  }
  if (!z4) {
    const nlohmann::json t = bundled != nullptr ? *bundled : item->to_json();
    HeldListType held{nullptr, entries};
    if (inert_z4(t) && json_types_trivial(t, 0)) {
      NodeP type = Node::from_shared(t);
      type->set_scope(empty_);
      held.z4 = std::make_shared<const nlohmann::json>(list_z4(*this, type)->to_json());
    }
    std::lock_guard lock(held_list_types_mu);
    if (held_list_types.size() >= kMaxHeldListTypes) return std::nullopt;
    z4 = held_list_types.try_emplace(key, std::move(held)).first->second.z4;
    if (!z4) return std::nullopt;
  }
  if (!tick()) return abort_envelope();
  NodeP out = Node::from_shared(*z4, true);
  out->set_scope(empty_);
  if (held_z4_.size() < kMaxHeldZ4PerRequest) {
    // Room for a few at once: growing one by one cost an allocation per Z4 up to four.
    if (held_z4_.capacity() == 0) held_z4_.reserve(8);
    held_z4_.push_back(item->interned ? HeldZ4{item.get(), 0, out} : HeldZ4{key, entries, out});
  }
  return Envelope::ok(std::move(out));  // counted by execute_builtin, as the built-in's answer
}

bool Interpreter::implied_answer(Node& call, const NodeP& z4) {
  const CommonKeys& keys = common_keys();
  static const Key kZ881K1("Z881K1");
  if (!z4 || call.is_string || call.interned || call.entries.size() != 3) return false;
  const Node::Entry* f = call.entry(keys.z7k1);
  const Node::Entry* a = call.entry(kZ881K1);
  if (f == nullptr || a == nullptr || f->value || f->persisted || a->persisted) return false;
  const Node* fn = f->original.get();
  const Node* item = a->original.get();
  if (fn == nullptr || item == nullptr || !fn->interned || !item->interned) return false;
  const auto known = std::find_if(known_builtins_.begin(), known_builtins_.end(),
                                  [&](const KnownBuiltin& k) { return k.fn == fn; });
  if (known == known_builtins_.end() || known->sig == nullptr || !known->sig->list_type_impl ||
      known->sig->args.size() != 1 || !(known->sig->args[0].name_key == kZ881K1)) {
    return false;
  }
  // held_list_type answers an interned item type with the first entry held for it.
  const auto held = std::find_if(held_z4_.begin(), held_z4_.end(),
                                 [&](const HeldZ4& h) { return h.id == item && h.entries == 0; });
  return held != held_z4_.end() && held->z4 == z4;
}

// execute_inner() for a call of a built-in function by reference. nullopt: not such a call, the
// general path runs it. What the built-in implementation answered (its value or its error) is
// counted, and at the top level goes through answer(), as the general path's run does: the
// return type checked, the implementation type in the metadata.
std::optional<Envelope> Interpreter::execute_builtin(const NodeP& call, const FrameP& sc,
                                                     bool top_level) {
  const CommonKeys& keys = common_keys();
  const Node* fn = call->peek(keys.z7k1);
  const Node::Entry* e = call->entry(keys.z7k1);
  if (fn == nullptr || e == nullptr || e->value || !fn->is_ref()) return std::nullopt;
  KnownBuiltin* known = nullptr;
  if (fn->interned) {
    for (KnownBuiltin& k : known_builtins_) {
      if (k.fn == fn) {
        known = &k;
        break;
      }
    }
  }
  const BuiltinSignature* sig = known != nullptr ? known->sig : nullptr;
  if (known == nullptr && fn->interned && known_builtins_.size() < kMaxKnownBuiltins) {
    // The verdict below for an interned reference, without the per-request map.
    sig = builtin_signature_of(*fn);
    if (sig != nullptr) {
      const std::string_view zid = fn->ref_view();
      const nlohmann::json* served = Definitions::instance().served_json(zid);
      if (served == nullptr || resolver_.bundled(zid) != served) sig = nullptr;
    }
    if (known_builtins_.capacity() == 0) known_builtins_.reserve(kMaxKnownBuiltins);
    known = &known_builtins_.emplace_back(KnownBuiltin{fn, sig, nullptr});
  } else if (known == nullptr) {
    const std::string zid = fn->ref();
    // Per request: the process-wide signature (behind a lock), and whether this request's
    // resolver serves the bundled definition for it (checked once).
    auto [by_zid, added] = builtin_signatures_.try_emplace(zid, nullptr, false);
    if (added) by_zid->second.first = builtin_signature(zid);
    sig = by_zid->second.first;
    if (sig != nullptr && !by_zid->second.second) {
      // (resolver_.bundled: the verdict without dereferencing, ~900 instructions per function
      // and request for a memo entry nothing else reads.)
      const nlohmann::json* served = Definitions::instance().served_json(zid);
      if (served == nullptr || resolver_.bundled(zid) != served) {
        by_zid->second.first = nullptr;  // not the bundled function: the general path from now on
        sig = nullptr;
      } else {
        by_zid->second.second = true;
      }
    }
  }
  if (sig == nullptr) return std::nullopt;
  // Argument discovery (bind_arguments): the function as the general path resolves it. Only
  // the outermost call reads it (answer(): its return type); a nested call's function is the
  // bundled one (checked above), whose Z8 its signature was read from, and resolving it would
  // only build its node again for the call node, whose Z7K1 nothing reads once it has run
  // (~4 k instructions per function and request, a lookup per call).
  NodeP z8;
  if (top_level) {
    Envelope f = resolve_function(call, sc);
    if (aborted()) return abort_envelope();
    z8 = f.value;
    if (f.has_error() || !z8 || z8->is_string || z8->type_ref() != "Z8") {
      return Envelope::err(zo::make_error_msg("Z507", "Could not dereference Z7K1"));
    }
  } else if (!tick()) {
    return abort_envelope();
  }
  const std::vector<NodeP>* declared = known != nullptr ? known->declared : nullptr;
  if (declared == nullptr) {
    declared = builtin_declared(*sig);
    if (declared == nullptr) return abort_envelope();
    if (known != nullptr) known->declared = declared;
  }
  const std::size_t n = sig->args.size();
  boost::container::small_vector<NodeP, 4> values(n);
  boost::container::small_vector<const Key*, 4> consumed;
  std::string first_error;
  for (std::size_t i = 0; i < n; ++i) {
    const auto& arg = sig->args[i];
    // The argument's own key, else its local key: one scan of the call's keys when it has the
    // former (has() and then entry() were two).
    const Key* key = &arg.name_key;
    Node::Entry* entry = call->entry(*key);
    if (entry == nullptr) {
      key = &arg.local_key;
      entry = call->entry(*key);
    }
    if (entry == nullptr) {
      if (first_error.empty()) first_error = "Could not find argument " + arg.name + ".";
      continue;
    }
    consumed.push_back(key);
    values[i] = call->get_entry(*entry);
  }
  for (std::size_t i = 0; first_error.empty() && i < call->entries.size(); ++i) {
    const Key& key = call->entries[i].key;
    if (key == keys.z1k1 || key == keys.z7k1) continue;
    if (std::none_of(consumed.begin(), consumed.end(), [&](const Key* c) { return *c == key; })) {
      first_error = "Invalid key for function call: " + key.str() + ".";
    }
  }
  if (!first_error.empty()) return Envelope::err(zo::make_error_msg("Z507", first_error));
  // The implementation's answer, as execute_inner() takes it from run_implementation().
  const auto answered = [&](Envelope result) {
    ++builtin_runs_;  // counted when the request ends
    if (!top_level) return result;
    ImplRun run;
    run.result = std::move(result);
    run.type = "BuiltIn";
    run.id = sig->impl_id;  // run_builtin_impl's: the built-in's ZID (Z14K4)
    return answer(run, z8, true);
  };
  if (n == 1 && sig->list_type_impl) {
    if (auto held = held_list_type(values[0])) {
      if (aborted()) return abort_envelope();
      return answered(std::move(*held));
    }
  }
  // The built-in implementation (run_builtin_impl): arguments in name order, lazy ones as
  // written, the others evaluated and checked as retrieve() does.
  // On this call's stack: up to four arguments without an allocation (a vector per call, or one
  // kept per depth for reuse, cost an allocation the first time and its bookkeeping each time).
  boost::container::small_vector<NodeP, 4> args;
  args.reserve(std::max(n, sig->spec->arity));
  for (std::size_t j = 0; j < n; ++j) {
    const std::size_t i = sig->by_name[j];
    if (sig->spec->is_lazy(j)) {
      args.push_back(values[i]);
      continue;
    }
    ArgState unevaluated;
    unevaluated.kind = ArgKind::kUnevaluated;
    unevaluated.value = values[i];
    // A check that cannot fail is not made (no declared type: evaluate_argument skips it).
    if (!sig->args[i].accepts_all) unevaluated.declared = (*declared)[i];
    ArgState st = evaluate_argument(unevaluated);
    if (aborted()) return abort_envelope();
    // The general path counts and answers the run that failed.
    if (st.kind == ArgKind::kError) return answered(Envelope::err(st.z5()));
    Envelope ev = eager(st.value);
    if (aborted()) return abort_envelope();
    if (ev.has_error()) return answered(std::move(ev));
    args.push_back(std::move(st.value));
  }
  // run_builtin() without looking the implementation up again.
  if (args.size() < sig->spec->arity) args.resize(sig->spec->arity);
  Envelope result = sig->spec->fn(BuiltinCall{*this, sig->impl_id, {args.data(), args.size()}});
  if (aborted()) return abort_envelope();
  return answered(std::move(result));
}

}  // namespace wf::orchestrator::engine_detail
