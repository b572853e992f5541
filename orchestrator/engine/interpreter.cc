// Resolution, execution, argument binding and type checks (evaluation.md §1-§10).
#include "orchestrator/engine/interpreter.h"

#include <algorithm>
#include <boost/container/small_vector.hpp>
#include <charconv>
#include <unordered_set>

#include "orchestrator/engine/builtin_table.h"
#include "orchestrator/engine/call_cost.h"
#include "orchestrator/engine/code_answer.h"
#include "orchestrator/engine/engine_metrics.h"
#include "orchestrator/engine/fiber.h"
#include "orchestrator/engine/json_shapes.h"
#include "wf/zobject/zobject.h"

namespace wf::orchestrator::engine_detail {

namespace zo = wf::zobject;

// Stack kept free below the deepest step: room for the recursion between two steps (serialising
// a value, a built-in, a type comparison).
constexpr std::size_t kStackReserve = (256u << 10) * kSanitizerStackFactor;

// ---- envelopes and frames ---------------------------------------------------------------------

Envelope Envelope::err(const json& z5) {
  json meta = zo::empty_metadata_map();
  zo::map_set(meta, "errors", z5);
  return Envelope{nullptr, std::move(meta)};
}

bool Envelope::has_error_in(const json& meta) {
  if (!zo::is_map(meta)) return false;
  const json* e = zo::map_get(meta, "errors");
  return e != nullptr && !zo::is_void(*e);
}

json Envelope::error() const {
  if (!meta || !zo::is_map(*meta)) return nullptr;
  const json* e = zo::map_get(*meta, "errors");
  return e == nullptr ? json(nullptr) : *e;
}

const json& ArgState::z5() const {
  static const json kNone;
  return error ? *error : kNone;
}

ArgState* Frame::find(const std::string& name) {
  for (auto& [n, st] : names) {
    if (n == name) return &st;
  }
  return nullptr;
}

namespace {

void set_meta(Envelope& env, std::string_view key, const json& value) {
  if (!env.meta || !zo::is_map(*env.meta)) env.meta = zo::empty_metadata_map();
  zo::map_set(*env.meta, key, value);
}

// What resolve() does with a node, decided from one look at its Z1K1: the same answers, in the
// same order, as is_arg_ref(), is_ref(), is_call() and "its Z1K1 is a call" asked one by one
// (resolve runs for every argument and every value a call reads).
enum class Shape { kOther, kArgRef, kRef, kCall, kGenericInstance };

// What shape_of answers for a node whose Z1K1 is still a lazy view of the immortal JSON `t`, an
// object (a list cell's implied Z881 of a ZID: Node::add_list_type), remembered per thread by
// address; kUnknown when `t` is a reference (shape_of then builds and reads it).
enum class LazyShape : std::uint8_t { kUnknown, kOther, kGenericInstance };

// `derive(v)` for JSON that lives and stays unchanged for the whole process (Node::Entry::
// immortal: bundled definitions, list-type templates, implied list types), remembered per
// thread by its address: what is derived from such JSON alone never changes. One table per
// call site (each passes its own lambda type). Bounded: the immortal JSON the engine reads has
// fewer parts than this; past the bound, answers are derived again each time.
template <typename Value, typename Derive>
Value remembered_by_address(const json& v, Derive derive) {
  constexpr std::size_t kMaxRemembered = 1u << 16;
  thread_local std::unordered_map<const json*, Value> known;
  if (auto it = known.find(&v); it != known.end()) return it->second;
  const Value value = derive(v);
  if (known.size() < kMaxRemembered) known.emplace(&v, value);
  return value;
}

LazyShape immortal_type_shape(const json& t) {
  return remembered_by_address<LazyShape>(t, [](const json& t) {
    if (json_is_ref(t)) return LazyShape::kUnknown;
    // Not a reference: its type is "" and the node is a generic instance when t is a call
    // (Node::is_call: its Z1K1 a reference to Z7, and a Z7K1).
    auto k = t.find("Z1K1");
    const bool call = k != t.end() && json_ref(*k) == "Z7" && t.contains("Z7K1");
    return call ? LazyShape::kGenericInstance : LazyShape::kOther;
  });
}

Shape shape_of(const Node& n) {
  if (n.terminal != Node::Terminal::kNone) {  // a shared reference or string object
    return n.terminal == Node::Terminal::kReference ? Shape::kRef : Shape::kOther;
  }
  if (n.is_string) return Shape::kOther;
  const CommonKeys& keys = common_keys();
  // A list cell's implied type, still lazy: answered from its JSON without building it (eager
  // evaluation asks this of every cell of a list's spine, and reads nothing else of the type).
  for (const Node::Entry& e : n.entries) {
    if (!(e.key == keys.z1k1)) continue;
    if (!e.persisted && e.source != nullptr && e.immortal && e.form == Node::Entry::Form::kNormal &&
        e.source->is_object()) {
      switch (immortal_type_shape(*e.source)) {
        case LazyShape::kOther:
          return Shape::kOther;
        case LazyShape::kGenericInstance:
          return Shape::kGenericInstance;
        case LazyShape::kUnknown:
          break;
      }
    }
    break;
  }
  const Node* t = n.peek(keys.z1k1);
  if (t == nullptr) return Shape::kOther;
  if (t->is_string) {
    const Node* k = text_is(*t, "Z9") ? n.peek(keys.z9k1) : nullptr;
    return k != nullptr && k->is_string ? Shape::kRef : Shape::kOther;
  }
  const std::string_view type = t->ref_view();
  if (same_text(type, "Z18")) {
    const Node* k = n.peek(keys.z18k1);
    return k != nullptr && (k->is_string || k->is_z6()) ? Shape::kArgRef : Shape::kOther;
  }
  if (same_text(type, "Z7")) return n.peek(keys.z7k1) != nullptr ? Shape::kCall : Shape::kOther;
  return type.empty() && t->is_call() ? Shape::kGenericInstance : Shape::kOther;
}

bool is_void_node(const NodeP& v) {
  if (!v) return true;
  if (v->is_string) return false;
  if (v->ref_view() == "Z24") return true;
  return v->type_ref_view() == "Z21";
}

// The local key an argument name falls back to: the trailing K<n> of "Z801K1".
std::string local_key(const std::string& name) {
  auto k = name.rfind('K');
  if (k == std::string::npos) return name;
  std::string local = name.substr(k);
  return zo::is_local_key(local) ? local : name;
}

// A string value: a bare string, or a Z6 of one and nothing else. Its type is Z6, built in:
// resolving its types finds nothing, and it checks against Z6 and Z1 (process_argument,
// type_check), which a nest of built-ins passes most often.
bool plain_string(const Node& v) {
  if (v.is_string) return true;
  if (v.entries.size() != 2) return false;
  const CommonKeys& keys = common_keys();
  const Node* t = v.peek(keys.z1k1);
  if (t == nullptr || !t->is_string || !text_is(*t, "Z6")) return false;
  const Node* s = v.peek(keys.z6k1);
  return s != nullptr && s->is_string;
}

// A declared type a plain string always passes: a reference to Z6 or Z1.
bool takes_any_string(const Node& declared) {
  const std::string_view zid = declared.ref_view();
  return declared.is_ref() && (same_text(zid, "Z6") || same_text(zid, "Z1"));
}

std::string node_string(const NodeP& n) {
  if (!n) return {};
  return n->is_string ? n->text : n->str();
}

}  // namespace

Interpreter::Interpreter(Resolver& resolver, CodeRunner* runner, const CallContext& ctx,
                         const EngineOptions& options, ConverterCache* converters)
    : resolver_(resolver),
      runner_(runner),
      converters_(converters),
      ctx_(ctx),
      options_(options),
      empty_(std::make_shared<Frame>()) {}

Interpreter::~Interpreter() {
  if (builtin_runs_ != 0) metrics().impl_builtin.Increment(builtin_runs_);
  // Frames hold values whose scopes point back at frames: break those cycles.
  for (auto& f : frames_) {
    f->names.clear();
    f->parent.reset();
  }
  type_memo_.clear();
  string_types_.clear();
  type_nodes_.clear();
  functions_.clear();
  builtin_declared_.clear();
  held_z4_.clear();
  implied_z4_.clear();
}

FrameP Interpreter::new_frame(FrameP parent) {
  auto f = std::make_shared<Frame>();
  f->parent = parent ? std::move(parent) : empty_;
  frames_.push_back(f);
  return f;
}

void Interpreter::fail(Abort kind, std::string message, json error) {
  if (abort_ != Abort::kNone) return;
  abort_ = kind;
  abort_message_ = std::move(message);
  abort_error_ = error.is_null() ? zo::make_error_msg("Z507", abort_message_) : std::move(error);
}

Envelope Interpreter::abort_envelope() const {
  if (abort_ == Abort::kRetired) return {};  // nobody reads it (evaluate_code_retirable)
  return Envelope::err(abort_error_.is_null() ? zo::make_error_msg("Z507", "aborted")
                                              : abort_error_);
}

bool Interpreter::tick() {
  if (abort_ != Abort::kNone) return false;
  ++steps_;
  if (steps_ > options_.max_steps) {
    step_limit_exceeded();
    return false;
  }
  if ((steps_ & 31) == 0) {
    if (Clock::now() >= ctx_.deadline) {
      metrics().breach_deadline.Increment();
      fail(Abort::kDeadline, "Function call timed out");
      return false;
    }
    // A call started on the event loop (routes.cc, can_run_inline) that turns out long goes on
    // the CPU threads: 1 ms is ~20 echo calls, far above a built-in call's cost.
    leave_loop_if_over(std::chrono::milliseconds(1));
  }
  if (cancelled()) {
    fail(Abort::kDeadline, "Function call timed out");
    return false;
  }
  // The frame address against bounds kept from the last full check: inside them the stack has
  // room (they are the stack's top and its low end plus the reserve), and the full check (which
  // finds the running fiber's or thread's stack: ~25 instructions a step) runs only outside
  // them: the first step, on another stack, or near the reserve.
  const char* sp = static_cast<const char*>(__builtin_frame_address(0));
  if (sp < stack_floor_ || sp >= stack_top_) return check_stack(sp);
  return true;
}

bool Interpreter::check_stack(const char* sp) {
  const StackRange stack = current_stack();
  if (stack.low == nullptr) return true;  // unknown: no check (nothing kept)
  if (sp <= stack.low || static_cast<std::size_t>(sp - stack.low) < kStackReserve) {
    stack_exhausted();
    return false;
  }
  if (stack.high - stack.low > static_cast<std::ptrdiff_t>(kStackReserve)) {
    stack_floor_ = stack.low + kStackReserve;
    stack_top_ = stack.high;
  }
  return true;
}

void Interpreter::step_limit_exceeded() {
  metrics().breach_steps.Increment();
  fail(Abort::kLimit, "Evaluation step limit exceeded: the call needed more than " +
                          std::to_string(options_.max_steps) + " evaluation steps");
  limit_breached_ = abort_message_.starts_with("Evaluation step");
}

// Recursion that does not count as call depth (deep values, types of types): a Z5 instead of
// running off the end of the evaluation's stack.
void Interpreter::stack_exhausted() {
  metrics().breach_stack.Increment();
  fail(Abort::kLimit,
       "Evaluation stack exhausted: the call or its values are nested too "
       "deeply for this evaluation's stack of " +
           std::to_string(options_.stack_bytes >> 10) + " KiB");
}

// ---- resolution (§2) --------------------------------------------------------------------------

namespace {

// The ZID a normal-form reference names, or null.
const std::string* ref_of(const json& v) {
  if (!v.is_object() || v.size() != 2) return nullptr;
  auto t = v.find("Z1K1");
  auto k = v.find("Z9K1");
  if (t == v.end() || k == v.end() || *t != "Z9" || !k->is_string()) return nullptr;
  return &k->get_ref<const std::string&>();
}

// Calls each element of a normal-form typed list (bounded).
template <typename F>
void for_each_item(const json& list, F&& f) {
  const json* node = &list;
  for (int i = 0; i < 256 && node->is_object(); ++i) {
    auto k1 = node->find("K1");
    auto k2 = node->find("K2");
    if (k1 == node->end() || k2 == node->end()) return;
    f(*k1);
    node = &*k2;
  }
}

void add_ref(const json& v, std::vector<std::string>& out) {
  const std::string* zid = v.is_string() ? &v.get_ref<const std::string&>() : ref_of(v);
  if (zid != nullptr && zo::is_zid(*zid) && !zo::is_builtin_type(*zid)) out.push_back(*zid);
}

// What executing a call of this function will dereference next: its implementations (all of
// them are resolved when the function runs) and its argument types.
std::vector<std::string> function_dependencies(const json& z8) {
  std::vector<std::string> out;
  auto k4 = z8.find("Z8K4");
  if (k4 != z8.end()) for_each_item(*k4, [&](const json& impl) { add_ref(impl, out); });
  auto k1 = z8.find("Z8K1");
  if (k1 != z8.end()) {
    for_each_item(*k1, [&](const json& z17) {
      if (!z17.is_object()) return;
      auto t = z17.find("Z17K1");
      if (t != z17.end()) add_ref(*t, out);
    });
  }
  return out;
}

// Functions the request (canonical, normal or mixed) calls by reference (Z7K1 of every call
// outside quotes), bounded.
void called_functions(const json& v, std::vector<std::string>& out, int depth) {
  if (depth > 64 || out.size() >= 32) return;
  if (v.is_array()) {
    for (const auto& e : v.get_ref<const json::array_t&>()) called_functions(e, out, depth + 1);
    return;
  }
  if (!v.is_object()) return;
  for (const auto& [key, child] : v.get_ref<const json::object_t&>()) {
    if (key == "Z99K1") continue;  // quoted: never evaluated
    if (key == "Z7K1") add_ref(child, out);
    called_functions(child, out, depth + 1);
  }
}

}  // namespace

Envelope Interpreter::dereference(const std::string& zid) {
  if (!tick()) return abort_envelope();
  const Dereferenced& d = resolver_.dereference(zid);
  if (!d.failure.empty()) {
    // A fetch that failed because the request was cancelled stops the evaluation like the
    // deadline does; any other failure is the wiki's (Z507 wrapping Z500).
    if (cancelled()) {
      fail(Abort::kDeadline, "Function call timed out");
    } else {
      fail(Abort::kException, d.failure);
    }
    return abort_envelope();
  }
  if (!d.z2) return Envelope::err(d.error);
  auto it = d.z2->find("Z2K2");
  if (it == d.z2->end()) return Envelope::err(zo::make_error("Z513", {zo::z99(*d.z2)}));
  if (!d.bundled && it->is_object() && zo::type_id(*it) == "Z8") {
    // Batch what running this function will fetch anyway (best effort, see Resolver). Not for a
    // bundled function, whose dependencies are bundled too (the one exception, type Z89 of Z189
    // and Z877, is fetched on its own when read): the walk cost ~2 k instructions per call.
    auto deps = function_dependencies(*it);
    if (deps.size() >= 2) resolver_.prefetch(deps);
  }
  // d.z2 lives in the resolver for the whole request; a bundled one for the whole process.
  NodeP n = Node::from_shared(*it, d.bundled);
  n->set_scope(empty_);
  return Envelope::ok(std::move(n));
}

Interpreter::Resolved Interpreter::resolve(const NodeP& node, const FrameP& scope, Mode mode) {
  NodeP cur = node;
  NodeP persist = node;
  for (;;) {
    if (!tick()) return {abort_envelope(), persist};
    if (!cur || cur->is_string) break;
    // The scope the node is read in, copied only by the shapes that run something in it (a
    // reference or a value ends the walk without it: two atomic counts a step saved).
    const auto scope_here = [&] { return cur->scope ? cur->scope : (scope ? scope : empty_); };
    const Shape shape = shape_of(*cur);
    if (shape == Shape::kArgRef) {
      ArgState st = retrieve(scope_here(), cur->arg_name(), false);
      if (aborted()) return {abort_envelope(), persist};
      if (st.kind == ArgKind::kError) return {Envelope::err(st.z5()), persist};
      cur = st.value;
      continue;
    }
    if (shape == Shape::kRef) {
      std::string zid = cur->ref();
      if (zo::is_zid(zid) && (mode == Mode::kEvenBuiltins || !zo::is_builtin_type(zid))) {
        Envelope e = dereference(zid);
        if (e.has_error()) return {e, persist};
        cur = e.value;
        persist = cur;
        continue;
      }
      break;
    }
    if (shape == Shape::kCall) {
      const Node* fn = cur->peek("Z7K1");
      if (mode == Mode::kNoInternals && fn && fn->ref() == "Z881" && cur->has("Z881K1")) {
        bool known = true;
        Envelope z4 = run_builtin("Z981", {cur->get("Z881K1")}, known);
        cur = z4.value;
        persist = cur;
        continue;
      }
      Envelope e = execute(cur, scope_here(), false);
      if (e.has_error()) return {e, persist};
      cur = e.value ? e.value : z9_node("Z24");
      persist = cur;
      continue;
    }
    if (mode != Mode::kNoGeneric && shape == Shape::kGenericInstance) {
      // A type a built-in wrote (Node::Entry::built_type), still as written: resolved for the
      // check below and kept in the entry's value, not shown (the node stays as it is).
      Node::Entry* written = cur->entry(common_keys().z1k1);
      const bool ephemeral = written != nullptr && written->built_type && !written->persisted;
      // An implied list type still lazy (its Z881 call not built): resolved to the Z4 this
      // request's direct Z881 call gave for the same JSON, when there is one (implied_z4_), with
      // what running the call counts (its steps, the built-in run) and without building it.
      const json* implied = mode != Mode::kNoInternals && written != nullptr &&
                                    !written->persisted && !written->value &&
                                    written->source != nullptr && written->immortal &&
                                    written->form == Node::Entry::Form::kNormal
                                ? written->source
                                : nullptr;
      if (implied != nullptr && call_depth_ < options_.max_call_depth) {
        const auto held = std::find_if(implied_z4_.begin(), implied_z4_.end(),
                                       [&](const ImpliedZ4& h) { return h.source == implied; });
        if (held != implied_z4_.end()) {
          // The call's steps: resolving it, executing it, the direct call, the held answer, and
          // resolving that answer.
          for (int step = 0; step < 5; ++step) {
            if (!tick()) return {abort_envelope(), persist};
          }
          ++builtin_runs_;
          written->value = held->z4;
          if (!ephemeral) written->persisted = held->z4;
          if (ephemeral) break;
          continue;
        }
      }
      Envelope e = resolve_key(cur, common_keys().z1k1, scope_here(),
                               mode == Mode::kNoInternals ? mode : Mode::kNormal);
      if (e.has_error()) return {e, persist};
      if (ephemeral) {
        if (Node::Entry* te = cur->entry(common_keys().z1k1)) te->persisted = nullptr;
      }
      if (implied != nullptr && implied_z4_.size() < kMaxImpliedZ4PerRequest && !aborted()) {
        // Remembered when the direct call answered it from held_z4_, as it will again.
        const Node::Entry* te = cur->entry(common_keys().z1k1);
        if (te != nullptr && te->original && te->value == e.value &&
            implied_answer(*te->original, e.value)) {
          if (implied_z4_.capacity() == 0) implied_z4_.reserve(kMaxImpliedZ4PerRequest);
          implied_z4_.push_back({implied, e.value});
        }
      }
      // The resolved type: kept in the entry for a type a built-in wrote, else on the node.
      const NodeP t = ephemeral ? e.value : cur->get("Z1K1");
      if (!t || t->is_string || !same_text(t->type_ref_view(), "Z4")) {
        return {Envelope::err(zo::make_error_msg(
                    "Z506", "Generic type function did not return a Z4: " +
                                (t ? t->to_json().dump() : std::string("null")))),
                persist};
      }
      if (ephemeral) break;  // its type resolved: nothing more to do for this node
      continue;
    }
    break;
  }
  return {Envelope::ok(cur), persist};
}

Envelope Interpreter::resolve_key(const NodeP& parent, const Key& key, const FrameP& scope,
                                  Mode mode) {
  if (!parent || parent->is_string) return Envelope::ok(nullptr);
  Node::Entry* e = parent->entry(key);
  if (e == nullptr) return Envelope::ok(nullptr);
  if (e->value) return Envelope::ok(e->value);
  NodeP child = parent->get(key);
  if (!child || child->is_string) return Envelope::ok(child);
  Resolved r = resolve(child, child->scope ? child->scope : scope, mode);
  if (r.env.has_error()) return r.env;
  e = parent->entry(key);
  if (e != nullptr) {
    if (r.persist != child) e->persisted = r.persist;
    e->value = r.env.value;
  }
  return Envelope::ok(r.env.value);
}

std::vector<NodeP> Interpreter::list_elements(const NodeP& list) {
  std::vector<NodeP> out;
  NodeP node = list;
  while (node && !node->is_string && node->has("K1")) {
    out.push_back(node->get("K1"));
    node = node->get("K2");
  }
  return out;
}

namespace {

// An element that leaves a list cell settled (Node::settled): eager evaluation and the type
// walk pass it without a step (a bare string; a shared object that is not a reference, which
// eager evaluation would dereference).
bool settled_element(const NodeP& v) {
  return v && (v->is_string || (v->interned && !v->is_ref()));
}

}  // namespace

NodeP Interpreter::make_list(const NodeP& item_type, const std::vector<NodeP>& items) {
  const CommonKeys& keys = common_keys();
  // The cells' type, when implied (per-process JSON of Z881 of a ZID: trivial for the type
  // walk), looked up once for the list.
  const json* implied = Node::implied_list_type(item_type);
  const auto add_type = [&](Node& cell) {
    if (implied != nullptr) {
      cell.add_built_list_type(*implied);
    } else {
      cell.add_list_type(item_type);
    }
  };
  auto tail = Node::make_object();
  add_type(*tail);
  bool settled = implied != nullptr;
  tail->settled = settled;
  for (auto it = items.rbegin(); it != items.rend(); ++it) {
    auto node = Node::make_object();
    node->entries.reserve(3);
    add_type(*node);
    node->add(keys.k1, *it);
    node->add(keys.k2, std::move(tail));
    settled = settled && settled_element(*it);
    node->settled = settled;
    tail = std::move(node);
  }
  return tail;
}

// ---- arguments (§1, §4) -----------------------------------------------------------------------

ArgState Interpreter::retrieve(const FrameP& frame, const std::string& name, bool lazily) {
  if (!frame || (!frame->parent && frame->names.empty())) {
    ArgState st;
    st.error = zo::make_error_msg("Z525", "No argument called " + name + " in scope.");
    return st;
  }
  ArgState* found = frame->find(name);
  if (found == nullptr) {
    ArgState st = retrieve(frame->parent, name, lazily);
    if (!aborted()) frame->names.emplace_back(name, st);
    return st;
  }
  if (found->kind != ArgKind::kUnevaluated || lazily) return *found;
  ArgState unevaluated = *found;  // a copy: evaluating it can grow frame->names
  ArgState st = evaluate_argument(unevaluated);
  // An aborted evaluation stays unevaluated: a call-depth fallback may evaluate it again.
  if (ArgState* again = frame->find(name); again != nullptr && !aborted()) *again = st;
  return st;
}

ArgState Interpreter::evaluate_argument(const ArgState& unevaluated) {
  ArgState st = process_argument(unevaluated);
  if (st.kind == ArgKind::kEvaluated && validator_depth_ == 0 && unevaluated.declared) {
    json cause = type_check(st.value, unevaluated.declared);
    if (!cause.is_null()) {
      ArgState e;
      e.error = zo::make_error("Z506", {unevaluated.declared->to_json(), error_type_arg(st.value),
                                        st.value->to_json(), cause});
      st = e;
    }
  }
  st.declared = unevaluated.declared;
  return st;
}

ArgState Interpreter::process_argument(const ArgState& unevaluated) {
  ArgState out;
  NodeP v = unevaluated.value;
  Resolved r = resolve(v, v && v->scope ? v->scope : empty_, Mode::kEvenBuiltins);
  if (r.env.has_error()) {
    out.error = r.env.error();
    return out;
  }
  NodeP value = r.env.value;
  if (validator_depth_ == 0 && !(value && plain_string(*value))) {
    json err;
    resolve_types(value, err);
    if (!err.is_null()) {
      out.error = err;
      return out;
    }
    json cause = type_check(value, nullptr);
    if (!cause.is_null()) {
      out.error = zo::make_error("Z518", {error_type_arg(value), value->to_json(), cause});
      return out;
    }
  }
  out.kind = ArgKind::kEvaluated;
  out.value = value;
  return out;
}

json Interpreter::error_type_arg(const NodeP& value) {
  if (!value) return zo::z6("Z24");
  if (value->is_string) return zo::z6("Z6");
  const Node* t = value->peek("Z1K1");
  if (t == nullptr) return zo::z6("");
  if (t->is_string) return zo::z6(t->text);
  return t->to_json();
}

// ---- types (§8, zobjects.md §12) --------------------------------------------------------------

namespace {

// T when `type` is exactly a call of Z881 by reference, {Z1K1: Z7, Z7K1: Z881, Z881K1: T}, with T
// an object (not a bare string, not an argument reference, whose meaning is its scope's); else
// null.
const Node* list_type_item(const Node& type) {
  if (type.is_string || type.entries.size() != 3) return nullptr;
  const CommonKeys& keys = common_keys();
  const Node* t = type.peek(keys.z1k1);
  const Node* fn = type.peek(keys.z7k1);
  if (t == nullptr || fn == nullptr || t->is_string || !same_text(t->ref_view(), "Z7") ||
      !same_text(fn->ref_view(), "Z881")) {
    return nullptr;
  }
  const Node* item = type.peek("Z881K1");
  if (item == nullptr || item->is_string || item->is_arg_ref()) return nullptr;
  return item;
}

}  // namespace

NodeP Interpreter::resolved_type(const NodeP& type) {
  if (!type) return nullptr;
  if (type->is_string) {
    // A bare type string (the Z1K1 of every string value is "Z6"): one reference node per
    // request and text, read-only like every resolved type.
    NodeP& ref = string_types_[type->text];
    if (!ref) ref = z9_node(type->text);
    return ref;
  }
  bool needs = (type->is_ref() && !zo::is_builtin_type(type->ref_view())) || type->is_call() ||
               type->is_arg_ref();
  if (!needs) return type;
  // The same type node again (list nodes share theirs): no key to build. The memo holds the
  // node, so its address is not reused while the memo lives.
  if (auto it = type_nodes_.find(type.get()); it != type_nodes_.end()) return it->second.second;
  // Z881(T) of an item type node seen before (every cell of a list made by a built-in has its
  // own Z881 call of the list's one item node): no key to build either.
  const Node* item = list_type_item(*type);
  if (item != nullptr) {
    if (auto it = list_types_.find(item); it != list_types_.end()) {
      type_nodes_.emplace(type.get(), std::pair{type, it->second.second});
      return it->second.second;
    }
  }
  std::string key;
  if (!type->is_arg_ref()) {
    type->append_key(key);
    auto it = type_memo_.find(key);
    if (it != type_memo_.end()) {
      type_nodes_.emplace(type.get(), std::pair{type, it->second});
      return it->second;
    }
  }
  // List types take the reference's shortcut: Z881(T) becomes its Z4 without running anything
  // (also once the call's Z7K1 has been resolved to Z881's Z8).
  if (type->is_call()) {
    const Node* fn = type->peek("Z7K1");
    const Node* fid =
        fn && !fn->is_string && fn->type_ref_view() == "Z8" ? fn->peek("Z8K5") : nullptr;
    if (fn && (fn->ref_view() == "Z881" || (fid && fid->ref_view() == "Z881")) &&
        type->has("Z881K1")) {
      bool known = true;
      Envelope z4 = run_builtin("Z981", {type->get("Z881K1")}, known);
      if (!key.empty()) {
        type_memo_[key] = z4.value;
        type_nodes_.emplace(type.get(), std::pair{type, z4.value});
      }
      if (item != nullptr && z4.value) {
        list_types_.emplace(item, std::pair{NodeP(const_cast<Node*>(item)), z4.value});
      }
      return z4.value;
    }
  }
  if (!key.empty()) {
    // A type whose resolution needs itself: treat it as unchecked (generic) instead of looping.
    if (!in_progress_.insert(key).second) return z9_node("Z1");
  }
  NodeP copy = type->clone(false);
  ++validator_depth_;
  Resolved r = resolve(copy, type->scope ? type->scope : empty_);
  --validator_depth_;
  if (!key.empty()) in_progress_.erase(key);
  if (r.env.has_error()) {
    last_type_error_ = r.env.error();
    return nullptr;
  }
  if (!key.empty()) {
    type_memo_[key] = r.env.value;
    type_nodes_.emplace(type.get(), std::pair{type, r.env.value});
  }
  return r.env.value;
}

namespace {

// Whether the type `t` (a Z1K1 as JSON) is one resolve_types resolves, as it decides for nodes:
// a reference to a type that is not built in, or a call.
bool json_type_needs_resolving(const json& t) {
  if (!t.is_object()) return false;
  if (json_is_ref(t)) return !zo::is_builtin_type(json_node_text(t["Z9K1"]));
  auto k = t.find("Z1K1");
  return k != t.end() && json_is_ref(*k) && json_node_text((*k)["Z9K1"]) == "Z7" &&
         t.contains("Z7K1");
}

// Whether resolving the type `t` (a Z1K1 as JSON) can do nothing but make a list type: when it
// needs resolving at all, it is Z881 of a ZID, which resolved_type turns into its Z4 through
// Z981's per-ZID template, never failing and never fetching.
bool json_type_trivial(const json& t) {
  if (!json_type_needs_resolving(t)) return true;
  auto f = t.find("Z7K1");
  auto item = t.find("Z881K1");
  if (f == t.end() || item == t.end() || !json_is_ref(*f) || json_node_text((*f)["Z9K1"]) != "Z881")
    return false;
  if (json_node_is_string(*item)) return zo::is_zid(json_node_text(*item));
  return json_is_ref(*item) && zo::is_zid(json_node_text((*item)["Z9K1"]));
}

}  // namespace

// Whether resolve_types would resolve nothing but trivial types (above) in `v`: then walking
// it does nothing. Bounded: too deep counts as not trivial (the walk then goes on).
bool json_types_trivial(const json& v, int depth) {
  if (!v.is_object() || json_is_ref(v)) return true;
  if (depth > 64) return false;
  for (const auto& [key, child] : v.get_ref<const json::object_t&>()) {
    if (key == "Z1K1" ? !json_type_trivial(child) : !json_types_trivial(child, depth + 1)) {
      return false;
    }
  }
  return true;
}

namespace {

// The nodes a walk has seen: most values have a few, looked up in line; a long one (a list of
// many elements) moves to a hash set.
class SeenNodes {
 public:
  bool insert(const Node* n) {  // false when seen before
    if (many_.empty()) {
      if (std::find(few_.begin(), few_.end(), n) != few_.end()) return false;
      if (few_.size() < few_.capacity()) {
        few_.push_back(n);
        return true;
      }
      many_.insert(few_.begin(), few_.end());
    }
    return many_.insert(n).second;
  }

 private:
  boost::container::small_vector<const Node*, 32> few_;
  std::unordered_set<const Node*> many_;
};

// One item of resolve_types' walk: a node, or a part of a shared normal-form value (a
// definition, a fetched object) that no node has been built for yet.
struct TypeWalkItem {
  NodeP node;
  const json* source = nullptr;
  bool immortal = false;  // source lives for the process (Node::Entry::immortal)
};

// Whether json_types_trivial(v) holds, for JSON that lives and stays unchanged for the whole
// process (bundled definitions, list-type templates), remembered by address per thread: the Z4 of
// Z6 was walked again in every request that makes a Z881(Z6) (~50 k instructions each).
// Bounded: the bundled definitions and templates have fewer parts than this.
bool immortal_types_trivial(const json& v) {
  return remembered_by_address<bool>(v, [](const json& v) { return json_types_trivial(v, 0); });
}

// json_type_trivial(t) for a type that lives and stays unchanged for the whole process (a list
// cell's implied Z881 of a ZID: Node::add_list_type), remembered by address per thread: the test
// reads the JSON through ~10 map lookups and 3 string copies (~4 k instructions), and every cell
// of a list a built-in makes asks it again. Bounded as immortal_types_trivial.
bool immortal_type_trivial(const json& t) {
  return remembered_by_address<bool>(t, [](const json& t) { return json_type_trivial(t); });
}

}  // namespace

bool Interpreter::types_trivial(const json& v, bool immortal) {
  if (immortal) return immortal_types_trivial(v);
  // The same fetched object is walked again and again in a request: once is enough.
  auto [known, added] = trivial_json_.try_emplace(&v, false);
  if (added) known->second = json_types_trivial(v, 0);
  return known->second;
}

// Walks the value breadth first and resolves every type it names that is not built in. Parts
// still lazy (Node::from_shared) are walked as JSON, without building their nodes: a Z4 passed
// as an argument (every Z881 call gets its item type's) has ~100 nodes of keys and labels.
std::string Interpreter::resolve_types(const NodeP& value, json& error) {
  boost::container::small_vector<TypeWalkItem, 16> queue{{value}};
  SeenNodes seen;
  auto fail_type = [&]() {
    error = last_type_error_.is_null() ? zo::make_error_msg("Z507", "type resolution failed")
                                       : last_type_error_;
    return std::string();
  };
  for (std::size_t i = 0; i < queue.size(); ++i) {
    if (const json* v = queue[i].source) {
      if (!v->is_object() || json_is_ref(*v)) continue;
      const bool immortal = queue[i].immortal;
      if (types_trivial(*v, immortal)) continue;
      for (const auto& [key, child] : v->get_ref<const json::object_t&>()) {
        if (key != "Z1K1") {
          queue.push_back({nullptr, &child, immortal});
        } else if (json_type_needs_resolving(child) && !resolved_type(Node::from_shared(child))) {
          return fail_type();
        }
      }
      if (aborted()) return {};
      continue;
    }
    NodeP n = queue[i].node;
    // An interned node is a bare string or a reference or string object: no type to resolve.
    // A settled list (make_list) has only implied list types and shared elements: nothing.
    if (!n || n->is_string || n->interned || n->settled || !seen.insert(n.get())) continue;
    const CommonKeys& keys = common_keys();
    const Node::Entry* te = n->entry(keys.z1k1);
    if (te != nullptr && !te->persisted && te->source != nullptr &&
        te->form == Node::Entry::Form::kNormal &&
        (te->immortal ? immortal_type_trivial(*te->source) : json_type_trivial(*te->source))) {
      // Still lazy and trivial (a list cell's implied Z881 of a ZID, Node::add_list_type): as
      // on the JSON path, nothing to resolve and no node built. Asked before is_ref(), which
      // would build it (a reference's Z1K1 is trivial too, and its Z9K1 a string: walking it
      // below finds nothing, as skipping it did).
    } else if (n->is_ref()) {
      continue;
    } else {
      NodeP t = n->get(keys.z1k1);
      if (t && !t->is_string &&
          ((t->is_ref() && !zo::is_builtin_type(t->ref_view())) || t->is_call())) {
        if (!resolved_type(t)) return fail_type();
      }
    }
    for (std::size_t k = 0; k < n->entries.size(); ++k) {
      const Node::Entry& e = n->entries[k];
      if (e.key == keys.z1k1) continue;
      if (!e.persisted && e.source != nullptr && e.form == Node::Entry::Form::kNormal) {
        queue.push_back({nullptr, e.source, e.immortal});
      } else {
        queue.push_back({n->current(k)});
      }
    }
    if (aborted()) return {};
  }
  return {};
}

namespace {

// `zid` views a node's text: of the type given (its caller holds it), or of that type's Z4K1,
// which `z4` then holds (else `z4` is the Z4 of a literal type).
struct Identity {
  enum Kind { kRef, kGeneric, kLiteral } kind = kGeneric;
  std::string_view zid;
  NodeP z4;
};

Identity identity_of(const NodeP& t) {
  Identity id;
  if (!t) return id;
  if (t->is_string) return {Identity::kRef, t->text, nullptr};
  if (t->is_ref()) return {Identity::kRef, t->ref_view(), nullptr};
  if (t->is_call()) return id;
  if (t->type_ref_view() == "Z4") {
    NodeP k1 = t->get("Z4K1");
    if (!k1) return {Identity::kLiteral, "", t};
    if (k1->is_call()) return id;
    if (k1->is_string) return {Identity::kRef, k1->text, k1};
    if (k1->is_ref()) {
      if (zo::is_builtin_type(k1->ref_view())) return {Identity::kRef, k1->ref_view(), k1};
      return {Identity::kLiteral, "", t};
    }
    return {Identity::kLiteral, "", t};
  }
  return id;  // argument references and other unevaluated shapes are not checked
}

}  // namespace

bool Interpreter::compare_types(const NodeP& actual, const NodeP& declared) {
  Identity a = identity_of(actual);
  Identity b = identity_of(declared);
  if (a.kind == Identity::kGeneric || b.kind == Identity::kGeneric) return true;
  if (b.kind == Identity::kRef && b.zid == "Z1") return true;
  if (a.kind == Identity::kRef && b.kind == Identity::kRef) return a.zid == b.zid;
  if (a.kind == Identity::kLiteral && b.kind == Identity::kLiteral) {
    // A type whose keys have the type itself (an enum's identity key, a tree's children) compares
    // coinductively: a pair already being compared further up counts as equal.
    const std::pair<const Node*, const Node*> pair{a.z4.get(), b.z4.get()};
    if (std::find(comparing_.begin(), comparing_.end(), pair) != comparing_.end()) return true;
    if (!tick()) return false;
    comparing_.push_back(pair);
    const bool same = compare_keys(a.z4, b.z4);
    comparing_.pop_back();
    return same;
  }
  return false;
}

bool Interpreter::compare_keys(const NodeP& a, const NodeP& b) {
  auto ka = list_elements(a->get("Z4K2"));
  auto kb = list_elements(b->get("Z4K2"));
  if (ka.size() != kb.size()) return false;
  for (std::size_t i = 0; i < ka.size(); ++i) {
    NodeP ta = ka[i] ? resolved_type(ka[i]->get("Z3K1")) : nullptr;
    NodeP tb = kb[i] ? resolved_type(kb[i]->get("Z3K1")) : nullptr;
    if (!ta || !tb || !compare_types(ta, tb)) return false;
  }
  return true;
}

json Interpreter::run_type_validator(const NodeP& value, const NodeP& type) {
  // A validator still a lazy view of immortal JSON (a bundled type's, a list type's Z4 as the
  // process holds it) is read from its JSON, remembered by address, without building the node
  // (every value of a list type is checked here): a bare string resolves to itself, not to a Z8,
  // and Z831 runs nothing, as below.
  static const Key kZ4K3("Z4K3");
  if (const Node::Entry* e = type->entry(kZ4K3);
      e != nullptr && !e->persisted && e->source != nullptr && e->immortal &&
      e->form == Node::Entry::Form::kNormal &&
      remembered_by_address<bool>(
          *e->source, [](const json& v) { return v.is_string() || json_ref(v) == "Z831"; })) {
    return nullptr;
  }
  // Ephemeral: the type keeps showing its validator as written.
  NodeP validator = type->get("Z4K3");
  if (!validator) return nullptr;
  // Z831, the validator every built-in type names, accepts anything: nothing to resolve or run.
  if (validator->is_ref() && validator->ref() == "Z831") return nullptr;
  Resolved v = resolve(validator->clone(false), type->scope ? type->scope : empty_);
  if (v.env.has_error()) return v.env.error();
  NodeP z8 = v.env.value;
  if (!z8 || z8->type_ref() != "Z8") return nullptr;
  const Node* id = z8->peek("Z8K5");
  std::string zid = id ? id->ref() : "";
  if (zid.empty() || zid == "Z831") return nullptr;
  auto call = Node::make_object();
  call->add("Z1K1", z9_node("Z7"));
  call->add("Z7K1", z8);
  auto decls = list_elements(z8->get("Z8K1"));
  NodeP args[2] = {value, type};
  for (std::size_t i = 0; i < decls.size() && i < 2; ++i) {
    std::string name = decls[i] ? node_string(decls[i]->get("Z17K2")) : "";
    if (!name.empty()) call->add(name, args[i]);
  }
  call->scope = empty_;
  ++validator_depth_;
  Envelope r = execute(call, empty_, false);
  --validator_depth_;
  if (r.has_error()) return r.error();
  return nullptr;
}

namespace {

// The ZID of a value's type when it is a built-in type named by reference or by a bare string
// (resolved_type gives such a type back as it is, as a reference); empty for anything else, a
// list cell's type as a built-in wrote it too (type_check reads its resolution).
std::string_view builtin_type_of(const Node& value) {
  if (value.is_string) return {};
  const Node::Entry* te = nullptr;
  for (const Node::Entry& e : value.entries) {
    if (e.key == common_keys().z1k1) {
      te = &e;
      break;
    }
  }
  if (te == nullptr || (te->built_type && !te->persisted)) return {};
  const Node* t = value.peek(common_keys().z1k1);
  if (t == nullptr) return {};
  const std::string_view zid = t->is_string  ? std::string_view(t->text)
                               : t->is_ref() ? t->ref_view()
                                             : std::string_view();
  return zo::is_builtin_type(zid) ? zid : std::string_view();
}

}  // namespace

json Interpreter::type_check(const NodeP& value, const NodeP& declared) {
  if (!value) return nullptr;
  if (plain_string(*value) && (!declared || takes_any_string(*declared))) {
    last_type_error_ = nullptr;
    return nullptr;
  }
  last_type_error_ = nullptr;
  if (const std::string_view type = builtin_type_of(*value); !type.empty()) {
    // What the steps below give for a value whose type is a built-in type by reference (a
    // Boolean, a code point): that reference resolves to itself, which has no validator (it is
    // not a Z4), and compares by its ZID with a declared built-in type as resolved_type leaves
    // it (Z1 takes any); another declared type takes the steps below.
    if (!declared) return nullptr;
    const std::string_view want = declared->is_string  ? std::string_view(declared->text)
                                  : declared->is_ref() ? declared->ref_view()
                                                       : std::string_view();
    if (zo::is_builtin_type(want)) {
      if (same_text(want, "Z1") || same_text(want, type)) return nullptr;
      return zo::make_error("Z518", {error_type_arg(value)});
    }
  }
  NodeP actual;
  if (const Node::Entry* te = value->is_string ? nullptr : value->entry(common_keys().z1k1);
      te != nullptr && te->built_type && !te->persisted && te->value) {
    // A list cell's type as a built-in wrote it, resolved with the cell (resolve(): kept in the
    // entry, not shown): its Z4, without resolving the Z881 call again.
    actual = te->value;
  } else {
    actual = resolved_type(value->is_string ? str_node("Z6") : value->get(common_keys().z1k1));
  }
  if (!actual) {
    return last_type_error_.is_null() ? zo::make_error("Z518", {error_type_arg(value)})
                                      : last_type_error_;
  }
  if (declared) {
    NodeP d = resolved_type(declared);
    if (!d) return last_type_error_;
    if (!compare_types(actual, d)) return zo::make_error("Z518", {error_type_arg(value)});
    return nullptr;  // the value's own validator already ran when the argument was bound
  }
  if (!actual->is_string && same_text(actual->type_ref_view(), "Z4")) {
    return run_type_validator(value, actual);
  }
  return nullptr;
}

// ---- eager evaluation (§5) --------------------------------------------------------------------

namespace {

// Besides the spec's list (§5): a type's equality, renderer, parser and converters (Z4K4-Z4K8,
// keys added since 2023) are functions of the type, not parts of a value; evaluating them would
// fetch objects evaluation never needs (a missing renderer, Z14280, failed calls with Z504).
// The keys skipped: Z1K1, Z4K1-Z4K8, Z8K1-Z8K5, Z40K1 and Z99K1, read from the key's text by
// length and characters (a few instructions; comparing the key with each of the sixteen, even by
// address, cost ~70 an entry, and eager evaluation asks it of every entry it passes).
bool eager_skips(const Key& key) {
  const std::string& s = key.str();
  if (s.size() == 4) {
    if (s[0] != 'Z' || s[2] != 'K') return false;
    switch (s[1]) {
      case '1':
        return s[3] == '1';
      case '4':
        return s[3] >= '1' && s[3] <= '8';
      case '8':
        return s[3] >= '1' && s[3] <= '5';
      default:
        return false;
    }
  }
  return s.size() == 5 && (same_text(s, "Z40K1") || same_text(s, "Z99K1"));
}

bool frame_binds(const FrameP& frame, const std::string& name) {
  for (Frame* f = frame.get(); f != nullptr; f = f->parent.get()) {
    if (f->find(name)) return true;
  }
  return false;
}

// Node::is_ref() without building a Z1K1 that is still lazy (a list cell's implied type, which a
// walk of the cell never reads otherwise): a reference's Z1K1 is the string "Z9", and a lazy
// Z1K1 read from anything else (an object, another string) is not one.
bool is_ref_unbuilt(const Node& n) {
  if (n.is_string) return false;
  for (const Node::Entry& e : n.entries) {
    if (!(e.key == common_keys().z1k1)) continue;
    if (e.persisted || e.source == nullptr || e.form != Node::Entry::Form::kNormal) break;
    if (e.source->is_object() ||
        (e.source->is_string() && e.source->get_ref<const std::string&>() != "Z9")) {
      return false;
    }
    break;
  }
  return n.is_ref();
}

// Whether eager_walk of `root` would find nothing to look into: every key of it other than those
// it skips holds nothing or a bare string (a string object, a Boolean, an empty list: most of
// the values built-ins pass each other). Lazy entries are read as their JSON, without building.
bool nothing_to_walk(const Node& root) {
  const CommonKeys& keys = common_keys();
  for (const Node::Entry& e : root.entries) {
    if (e.key == keys.z1k1 || eager_skips(e.key)) continue;
    if (e.persisted) {
      if (!e.persisted->is_string) return false;
    } else if (e.source != nullptr) {
      if (e.form != Node::Entry::Form::kNormal || !e.source->is_string()) return false;
    } else if (e.original && !e.original->is_string) {
      return false;
    }
  }
  return true;
}

}  // namespace

Envelope Interpreter::eager(const NodeP& value) {
  // What eager_walk does with such a root, without its walk's state: one step, unless the root
  // is not walked at all (a reference, a settled list).
  if (value && !value->is_string && nothing_to_walk(*value)) {
    if (value->settled || is_ref_unbuilt(*value)) return Envelope::ok(value);
    if (!tick()) return abort_envelope();
    return Envelope::ok(value);
  }
  std::vector<EagerStep> path;
  return eager_walk(value, path);
}

// The value `child` stands for (§5): bound argument references retrieved, references to
// persisted objects dereferenced (their ZIDs appended to `zids`), calls executed.
Envelope Interpreter::eager_value(const NodeP& child, std::vector<std::string>& zids) {
  NodeP cur = child;
  for (int guard = 0; guard < 64; ++guard) {
    const Shape shape = shape_of(*cur);
    if (shape == Shape::kArgRef) {
      if (!frame_binds(cur->scope, cur->arg_name())) break;
      ArgState st = retrieve(cur->scope, cur->arg_name(), false);
      if (aborted()) return abort_envelope();
      if (st.kind == ArgKind::kError) return Envelope::err(st.z5());
      cur = st.value;
      continue;
    }
    if (shape == Shape::kRef && zo::is_zid(cur->ref_view()) &&
        !zo::is_builtin_type(cur->ref_view())) {
      zids.push_back(cur->ref());
      Envelope e = dereference(zids.back());
      if (e.has_error()) return e;
      cur = e.value;
      continue;
    }
    if (shape == Shape::kCall) {
      Envelope e = execute(cur, cur->scope ? cur->scope : empty_, false);
      if (e.has_error()) return e;
      cur = e.value ? e.value : z9_node("Z24");
      continue;
    }
    break;
  }
  return Envelope::ok(cur);
}

namespace {

json cyclical_references(const std::string& where) {
  return zo::make_error(
      "Z516",
      {json("Aborting because argument resolution contains cyclical references:"), json(where)});
}

// A cell of a typed list in normal form: its K2 is the rest of the list.
bool is_list_cell(const Node& node) {
  const CommonKeys& keys = common_keys();
  return node.has(keys.k1) && node.has(keys.k2);
}

}  // namespace

// The type of `node` as Node::type_ref() gives it, as a view of the string node that holds the
// text (kept alive by `holder`, so the view stays valid while the path holds the step).
std::string_view Interpreter::EagerStep::type_of(const Node& node, NodeP& holder) {
  if (node.is_string) return "Z6";
  const CommonKeys& keys = common_keys();
  // A Z1K1 still lazy (a list cell's implied Z881, a definition's type) is read as its JSON,
  // as the node built from it would answer, without building it: a string is its own text, a
  // reference the text of its Z9K1, another object no type. The JSON outlives the walk.
  const Node::Entry* te = nullptr;
  for (const Node::Entry& e : node.entries) {
    if (e.key == keys.z1k1) {
      te = &e;
      break;
    }
  }
  if (te != nullptr && !te->persisted && te->source != nullptr &&
      te->form == Node::Entry::Form::kNormal) {
    const json& t = *te->source;
    if (t.is_string()) return t.get_ref<const std::string&>();
    // Immortal and not a reference (a list cell's implied Z881): known by address, no lookup.
    if (te->immortal && t.is_object() && immortal_type_shape(t) != LazyShape::kUnknown) return {};
    if (t.is_object()) {
      auto tag = t.find("Z1K1");
      if (tag == t.end() || !tag->is_string() || tag->get_ref<const std::string&>() != "Z9") {
        return {};
      }
      auto k = t.find("Z9K1");
      if (k == t.end()) return {};
      if (k->is_string()) return k->get_ref<const std::string&>();
    }
    // Anything else (a number, null) reads as the node from_shared builds: below.
  }
  const Node* t = node.peek(keys.z1k1);
  if (t == nullptr) return {};
  if (!t->is_string) {
    const Node* tag = t->peek(keys.z1k1);
    t = tag != nullptr && tag->is_string && text_is(*tag, "Z9") ? t->peek(keys.z9k1) : nullptr;
    if (t == nullptr || !t->is_string) return {};
  }
  holder = NodeP(const_cast<Node*>(t));
  return t->text;
}

// Walks `root` depth first. A list's spine (the K2 links of its cells) is followed by the loop,
// not by recursion and not as path levels: a list's elements are siblings, so a list of any
// length walks at the depth of its first element. Cycle guard (§5): along one path, a key seen
// again under a parent of the same type is skipped, and a key repeating under a new type after
// more than 20 levels is Z516; a spine that comes back to a ZID it already dereferenced is Z516.
// Keys are compared as interned Keys and types as views: no text is copied per entry.
Envelope Interpreter::eager_walk(const NodeP& root, std::vector<EagerStep>& path) {
  const CommonKeys& keys = common_keys();
  // ZIDs dereferenced to reach this list's cells; made on the first (most walks have none: an
  // empty set's destructor still clears its bucket, ~21 walks a nest request).
  std::optional<std::unordered_set<std::string>> spine_zids;
  std::vector<std::string> zids;
  for (NodeP node = root; node && !node->is_string && !is_ref_unbuilt(*node);) {
    // Nothing below is evaluated, and no key repeats deeper than 20 levels (its elements are
    // not walked into above that depth): the walk would only count steps.
    if (node->settled && path.size() < 20) break;
    if (!tick()) return abort_envelope();
    NodeP type_holder;
    const std::string_view ptype = EagerStep::type_of(*node, type_holder);
    const bool cell = is_list_cell(*node);
    NodeP next;
    for (std::size_t i = 0; i < node->entries.size(); ++i) {
      const Key key = node->entries[i].key;
      if (eager_skips(key)) continue;
      const bool spine = cell && key == keys.k2;
      if (!spine && !ptype.empty() && std::any_of(path.begin(), path.end(), [&](const auto& p) {
            return p.key == key && same_text(p.type, ptype);
          })) {
        continue;
      }
      if (!spine && path.size() > 20 &&
          std::any_of(path.begin(), path.end(), [&](const auto& p) { return p.key == key; })) {
        std::string text;
        for (const auto& p : path) text += (text.empty() ? "" : ",") + p.key.str();
        return Envelope::err(cyclical_references(text + "," + key.str()));
      }
      NodeP child = node->get_entry(node->entries[i]);
      if (!child || child->is_string) continue;
      zids.clear();
      Envelope e = eager_value(child, zids);
      if (e.has_error()) return e;
      if (spine) {
        for (const auto& zid : zids) {
          if (!spine_zids) spine_zids.emplace();
          if (!spine_zids->insert(zid).second) {
            return Envelope::err(cyclical_references("K2," + zid));
          }
        }
      }
      NodeP cur = e.value;
      if (cur != child) node->set(key.str(), cur);
      if (spine) {
        next = cur;
        continue;
      }
      // A string (bare, or a Z6 of one) or a reference has nothing to walk: its only key that is
      // not skipped holds a bare string. Not skipped this deep, where a repeated key is Z516.
      if (path.size() < 20 && (cur->is_string || cur->interned || plain_string(*cur))) continue;
      path.push_back({key, type_holder, ptype});
      Envelope r = eager_walk(cur, path);
      path.pop_back();
      if (r.has_error()) return r;
    }
    node = next;
  }
  return Envelope::ok(root);
}

// ---- execution (§3) ---------------------------------------------------------------------------

Envelope Interpreter::execute(const NodeP& call, const FrameP& scope, bool top_level) {
  if (!tick()) return abort_envelope();
  if (call_depth_ >= options_.max_call_depth) return call_depth_exceeded();
  ++call_depth_;
  Envelope r = execute_inner(call, scope, top_level);
  --call_depth_;
  return r;
}

Envelope Interpreter::call_depth_exceeded() {
  metrics().breach_call_depth.Increment();
  fail(Abort::kLimit, "Call depth limit exceeded: more than " +
                          std::to_string(options_.max_call_depth) + " nested function calls");
  limit_breached_ = abort_message_.starts_with("Call depth");
  return abort_envelope();
}

void Interpreter::replace_argument_references(const NodeP& node, int depth) {
  if (!node || node->is_string || depth > 2000) return;
  for (std::size_t i = 0; i < node->entries.size(); ++i) {
    const std::string key = node->entries[i].key;
    NodeP child = node->get(key);
    if (!child || child->is_string) continue;
    if (child->is_arg_ref() && child->scope) {
      FrameP sc = child->scope;
      std::string name = child->arg_name();
      if (frame_binds(sc, name)) {
        ArgState st = retrieve(sc, name, true);
        if (st.kind != ArgKind::kError && st.value && st.value != child) {
          node->set(key, st.value);
          child = st.value;
        }
      }
    }
    replace_argument_references(child, depth + 1);
  }
}

Envelope Interpreter::return_check(Envelope result, const NodeP& z8) {
  bool has_value = !is_void_node(result.value);
  if (result.has_error()) {
    if (has_value) {
      return Envelope::err(
          zo::make_error_msg("Z526", "Function evaluation returned both a value and an error."));
    }
    return result;
  }
  if (!has_value) {
    if (!result.value) result.value = z9_node("Z24");
    set_meta(result, "errors",
             zo::make_error_msg("Z526", "Function evaluation returned an empty object."));
    return result;
  }
  Envelope rt = resolve_key(z8, "Z8K2", z8->scope ? z8->scope : empty_);
  if (rt.has_error()) return rt;
  NodeP return_type = rt.value;
  json cause = type_check(result.value, return_type);
  if (cause.is_null() && result.value->type_ref() != "" && !result.value->is_string) {
    // The value's own type validator (for user-defined types).
    NodeP t = resolved_type(result.value->get("Z1K1"));
    if (t && !t->is_string && t->type_ref() == "Z4") cause = run_type_validator(result.value, t);
  }
  if (!cause.is_null()) {
    return Envelope::err(
        zo::make_error("Z517", {return_type ? return_type->to_json() : json(zo::z9("Z1")),
                                error_type_arg(result.value), result.value->to_json(), cause}));
  }
  return result;
}

// ---- function calls (§3) ----------------------------------------------------------------------

namespace {

// What names an implementation listed inline (no ZID) among the demoted ones: its address.
[[gnu::noinline]] std::string address_key(const Node* z14) {
  return std::to_string(reinterpret_cast<std::uintptr_t>(z14));
}

}  // namespace

Envelope Interpreter::execute_inner(const NodeP& call, const FrameP& scope, bool top_level) {
  FrameP sc = call->scope ? call->scope : (scope ? scope : empty_);
  if (options_.direct_builtin_calls) {
    if (auto direct = execute_builtin(call, sc, top_level)) return std::move(*direct);
  }
  NodeP z8;
  std::vector<Decl> decls;
  Envelope bound = bind_arguments(call, sc, z8, decls);
  if (aborted()) return abort_envelope();
  if (bound.has_error()) return bound;
  std::vector<Impl> impls;
  Envelope listed = implementations(z8, impls);
  if (listed.has_error()) return listed;
  // Selection and run (§3.4, §3.5): an evaluator failure moves on to the next implementation,
  // and so does a composition that exceeded the call depth (see may_fall_back).
  std::string last_failure;
  for (std::size_t i = 0; i < impls.size(); ++i) {
    const Impl& impl = impls[i];
    const bool fallback = may_fall_back(impl, i + 1 < impls.size());
    const std::string demote_key = impl.id.empty() ? address_key(impl.z14.get()) : impl.id;
    if (fallback && demoted_.contains(demote_key)) continue;
    const std::int64_t steps_before = steps_;
    fallback_frames_ += fallback ? 1 : 0;
    ImplRun run = run_implementation(impl, z8, decls);
    fallback_frames_ -= fallback ? 1 : 0;
    if (aborted() && fallback && fallback_frames_ == 0 && limit_breached_) {
      forget_breach(demote_key, last_failure, steps_before);
      continue;
    }
    if (aborted()) return abort_envelope();
    if (run.then == ImplRun::Then::kReturn) return run.result;
    if (run.then == ImplRun::Then::kNextImplementation) {
      last_failure = std::move(run.failure);
      continue;
    }
    if (!run.type.empty()) metrics().implementation(run.type);
    return answer(run, z8, top_level);
  }
  return Envelope::err(zo::make_error_msg("Z507", last_failure));
}

// The outermost call that can: forget the breach and the steps this composition used, use the
// next implementation (and, for the rest of this request, never this composition).
void Interpreter::forget_breach(const std::string& demote_key, std::string& last_failure,
                                std::int64_t steps_before) {
  demoted_.insert(demote_key);
  last_failure = abort_message_;
  abort_ = Abort::kNone;
  abort_message_.clear();
  abort_error_ = nullptr;
  limit_breached_ = false;
  steps_ = steps_before;
}

// Argument discovery (§3.2): the function, and each declared argument matched with the call's key.
// The function of a call (Z7K1, resolved). A function called by reference again in this request
// reuses the node its first call dereferenced: its argument list and implementations, resolved
// by that call, stay resolved (the nest of bench_zobject calls Z810 three times).
Envelope Interpreter::resolve_function(const NodeP& call, const FrameP& sc) {
  const Node* fn = call->peek("Z7K1");
  Node::Entry* e = call->entry("Z7K1");
  if (fn == nullptr || e == nullptr || e->value || !fn->is_ref()) {
    return resolve_key(call, common_keys().z7k1, sc);
  }
  std::string zid = fn->ref();
  if (auto it = functions_.find(zid); it != functions_.end()) {
    if (!tick()) return abort_envelope();
    e->persisted = it->second;
    e->value = it->second;
    return Envelope::ok(it->second);
  }
  Envelope f = resolve_key(call, common_keys().z7k1, sc);
  if (!f.has_error() && f.value && !f.value->is_string && f.value->type_ref() == "Z8") {
    functions_.emplace(std::move(zid), f.value);
  }
  return f;
}

Envelope Interpreter::bind_arguments(const NodeP& call, const FrameP& sc, NodeP& z8,
                                     std::vector<Decl>& decls) {
  Envelope f = resolve_function(call, sc);
  if (aborted()) return abort_envelope();
  z8 = f.value;
  if (f.has_error() || !z8 || z8->is_string || z8->type_ref() != "Z8") {
    return Envelope::err(zo::make_error_msg("Z507", "Could not dereference Z7K1"));
  }
  FrameP z8_scope = z8->scope ? z8->scope : empty_;
  Envelope a = resolve_key(z8, "Z8K1", z8_scope, Mode::kNoInternals);
  if (aborted()) return abort_envelope();
  if (a.has_error() || !a.value) {
    return Envelope::err(zo::make_error_msg("Z507", "Could not dereference Z8K1"));
  }
  std::vector<std::string> consumed;
  std::string first_error;  // every declaration is resolved before a missing argument is reported
  for (const NodeP& z17 : list_elements(a.value)) {
    if (!z17 || z17->is_string) continue;
    Envelope n = resolve_key(z17, "Z17K2", z8_scope, Mode::kNoInternals);
    std::string name = node_string(n.value);
    Envelope d = resolve_key(z17, "Z17K1", z8_scope, Mode::kNoInternals);
    if (aborted()) return abort_envelope();
    NodeP declared = d.has_error() ? z17->get("Z17K1") : d.value;
    std::string key = call->has(name) ? name : local_key(name);
    if (!call->has(key)) {
      if (first_error.empty()) first_error = "Could not find argument " + name + ".";
      continue;
    }
    consumed.push_back(key);
    decls.push_back({name, declared, call->get(key)});
  }
  for (std::size_t i = 0; first_error.empty() && i < call->entries.size(); ++i) {
    const std::string& key = call->entries[i].key;
    if (key == "Z1K1" || key == "Z7K1") continue;
    if (std::find(consumed.begin(), consumed.end(), key) == consumed.end()) {
      first_error = "Invalid key for function call: " + key + ".";
    }
  }
  if (!first_error.empty()) return Envelope::err(zo::make_error_msg("Z507", first_error));
  return Envelope::ok(nullptr);
}

// The function's implementations (§3.3), resolved in order.
Envelope Interpreter::implementations(const NodeP& z8, std::vector<Impl>& impls) {
  FrameP z8_scope = z8->scope ? z8->scope : empty_;
  Envelope k4 = resolve_key(z8, "Z8K4", z8_scope, Mode::kNoInternals);
  if (k4.has_error()) return k4;
  for (NodeP node = k4.value; node && !node->is_string && node->has("K1"); node = node->get("K2")) {
    NodeP orig = node->get("K1");
    std::string ref = orig && orig->is_ref() ? orig->ref() : "";
    Envelope e = resolve_key(node, "K1", z8_scope, Mode::kNoInternals);
    if (e.has_error()) return e;
    impls.push_back({e.value, ref});
  }
  if (impls.empty()) {
    const Node* id = z8->peek("Z8K5");
    return Envelope::err(zo::make_error_msg(
        "Z507", "Could not find any implementations for " + (id ? id->ref() : "") + "."));
  }
  return Envelope::ok(nullptr);
}

// Whether `impl` is a composition followed by another implementation: when its run exceeds the
// call depth or the step limit, the outermost such call on the stack moves on to its next
// implementation instead of failing the request (docs/compatibility.md "Limits"). A composition
// that recurses through a function whose arguments are evaluated eagerly (code) cannot stop, and
// a doubly recursive one can need exponentially many steps; another implementation of the same
// function may not.
bool Interpreter::may_fall_back(const Impl& impl, bool has_next) const {
  return has_next && impl.z14 && !impl.z14->is_string && impl.z14->has("Z14K2");
}

// One implementation, by kind: a built-in (Z14K4), a composition (Z14K2) or code (Z14K3); an
// implementation with none of them is its own value.
Interpreter::ImplRun Interpreter::run_implementation(const Impl& impl, const NodeP& z8,
                                                     const std::vector<Decl>& decls) {
  using Runner = ImplRun (Interpreter::*)(const NodeP&, const std::string&, const FrameP&,
                                          const std::vector<Decl>&, const NodeP&);
  static constexpr std::pair<const char*, Runner> kKinds[] = {
      {"Z14K4", &Interpreter::run_builtin_impl},
      {"Z14K2", &Interpreter::run_composition},
      {"Z14K3", &Interpreter::run_code},
  };
  const NodeP& z14 = impl.z14;
  if (z14 && !z14->is_string) {
    for (const auto& [key, runner] : kKinds) {
      if (!z14->has(key)) continue;
      return (this->*runner)(z14, impl.id, bind_frame(z14, decls), decls, z8);
    }
  }
  ImplRun run;
  run.result = Envelope::ok(z14);
  return run;
}

FrameP Interpreter::bind_frame(const NodeP& z14, const std::vector<Decl>& decls) {
  FrameP frame = new_frame(z14->scope ? z14->scope : empty_);
  for (const auto& d : decls) {
    ArgState st;
    st.kind = ArgKind::kUnevaluated;
    st.value = d.value;
    st.declared = d.declared;
    frame->names.emplace_back(d.name, std::move(st));
  }
  return frame;
}

Interpreter::ImplRun Interpreter::run_builtin_impl(const NodeP& z14, const std::string&,
                                                   const FrameP& frame,
                                                   const std::vector<Decl>& decls, const NodeP&) {
  ImplRun run;
  run.type = "BuiltIn";
  run.id = node_string(resolve_key(z14, "Z14K4", z14->scope).value);
  const BuiltinSpec* spec = builtin_table().find(run.id);
  std::vector<std::string> names;
  for (const auto& d : decls) names.push_back(d.name);
  std::sort(names.begin(), names.end());
  std::vector<NodeP> args;
  for (std::size_t i = 0; i < names.size(); ++i) {
    const bool lazy = spec != nullptr && spec->is_lazy(i);
    ArgState st = retrieve(frame, names[i], lazy);
    if (aborted()) return run;
    if (st.kind == ArgKind::kError) {
      run.result = Envelope::err(st.z5());
      return run;
    }
    if (!lazy) {
      Envelope ev = eager(st.value);
      if (ev.has_error()) {
        run.result = ev;
        return run;
      }
    }
    args.push_back(st.value);
  }
  bool known = true;
  run.result = run_builtin(run.id, std::move(args), known);
  if (!known) fail(Abort::kException, "Builtin " + run.id + " is not implemented");
  return run;
}

std::string Interpreter::named_zid(const NodeP& node) {
  NodeP cur = node;
  for (int guard = 0; guard < 64 && cur; ++guard) {
    if (cur->is_string) return zo::is_zid(cur->text) ? cur->text : std::string();
    if (cur->is_ref()) return cur->ref();
    if (!cur->is_arg_ref()) return {};
    ArgState st = retrieve(cur->scope ? cur->scope : empty_, cur->arg_name(), true);
    if (st.kind == ArgKind::kError) return {};
    cur = st.value;
  }
  return {};
}

Envelope Interpreter::run_builtin(const std::string& id, std::vector<NodeP> args, bool& known) {
  const BuiltinSpec* spec = builtin_table().find(id);
  known = spec != nullptr;
  if (!known) return Envelope::err(zo::make_error_msg("Z507", "unknown builtin " + id));
  if (args.size() < spec->arity) args.resize(spec->arity);
  return spec->fn(BuiltinCall{*this, id, args});
}

Interpreter::ImplRun Interpreter::run_composition(const NodeP& z14, const std::string& id,
                                                  const FrameP& frame, const std::vector<Decl>&,
                                                  const NodeP&) {
  ImplRun run;
  run.type = "Composition";
  run.id = id;
  NodeP body = z14->get("Z14K2")->clone(true);
  body->set_scope(frame);
  run.result = resolve(body, frame).env;
  return run;
}

Interpreter::ImplRun Interpreter::run_code(const NodeP& z14, const std::string& id,
                                           const FrameP& frame, const std::vector<Decl>& decls,
                                           const NodeP& z8) {
  {
    ImplRun failed;  // what code_call says when the call cannot be sent
    failed.type = "Evaluated";
    failed.id = id;
    // Built out of line and kept on the heap, by the interpreter: this frame stays on the fiber's
    // stack while the evaluator works (bench/slow_calls: memory per in-flight call) and owns
    // nothing then, so a retirement's unwinding passes it without a stop (fiber.h,
    // stage_retirable).
    code_call_ = code_call(z14, frame, decls, z8, failed);
    if (!code_call_) return failed;
  }
  // The outermost call's own implementation: once it has answered, the request is done, so
  // nothing could use a memo entry (run_on_evaluator).
  const bool outermost = call_depth_ == 1 && orchestrating_ == 1;
  CodeRunner::Result out = run_on_evaluator(std::move(code_call_), !outermost);
  code_call_.reset();  // a remembered answer left it unsent
  ImplRun run;
  run.type = "Evaluated";
  run.id = id;
  if (!out) {
    evaluator_failed(run, out.error());
    return run;
  }
  // The outermost call's metadata pairs go to the response as they are (answer()).
  run.result = evaluator_envelope(
      std::move(*out), outermost && trailing_ != nullptr ? &run.evaluator_meta : nullptr);
  return run;
}

void Interpreter::evaluator_failed(ImplRun& run, const CodeRunError& error) {
  run.then = ImplRun::Then::kNextImplementation;
  run.failure = error.message;
}

std::unique_ptr<CodeCall> Interpreter::code_call(const NodeP& z14, const FrameP& frame,
                                                 const std::vector<Decl>& decls, const NodeP& z8,
                                                 ImplRun& run) {
  auto cc_box = std::make_unique<CodeCall>();
  CodeCall& cc = *cc_box;
  for (const auto& d : decls) {
    ArgState st = retrieve(frame, d.name, false);
    if (aborted()) return nullptr;
    if (st.kind == ArgKind::kError) {
      run.result = Envelope::err(st.z5());
      return nullptr;
    }
    Envelope ev = eager(st.value);
    if (ev.has_error()) {
      run.result = ev;
      return nullptr;
    }
    cc.arguments[d.name] = st.value->to_json();
  }
  FrameP zs = z14->scope ? z14->scope : empty_;
  Envelope code = resolve_key(z14, "Z14K3", zs);
  Envelope lang = code.has_error() ? code : resolve_key(code.value, "Z16K1", zs);
  if (lang.has_error()) {
    run.result = lang;
    run.then = ImplRun::Then::kReturn;
    return nullptr;
  }
  cc.coding_language = node_string(resolve_key(lang.value, "Z61K1", zs).value);
  cc.code = node_string(resolve_key(code.value, "Z16K2", zs).value);
  const Node* fid = z8->peek("Z8K5");
  cc.function_name = fid ? fid->ref() : "";
  cc.converters = code_converters(decls, cc.arguments, z8, language_family(cc.coding_language));
  if (aborted()) return nullptr;
  return cc_box;
}

namespace {

// The types of WikiLambda's initial content that native integers (Python int, JavaScript BigInt)
// become when nothing else gives them a type: Natural number, or Integer for negative values
// (docs/compatibility.md "Type converters").
constexpr const char* kNaturalNumberType = "Z13518";
constexpr const char* kIntegerType = "Z16683";

// The converter of a plan, looking through {"list": plan}; null when there is none.
const json* innermost_converter(const json& plan) {
  const json* p = &plan;
  for (int depth = 0; depth <= 16 && p->is_object(); ++depth) {
    if (auto c = p->find("converter"); c != p->end()) return &*c;
    auto inner = p->find("list");
    if (inner == p->end()) return nullptr;
    p = &*inner;
  }
  return nullptr;
}

// Adds `plan` to a {native type name: plan} map under its converter's Z64K4 (with `prefix`:
// "-" for the plan of negative numbers), unless taken.
void add_native(json& native, const json& plan, const char* prefix = "") {
  const json* c = innermost_converter(plan);
  const std::string name = c != nullptr ? c->value("nativeType", "") : "";
  if (!name.empty() && !native.contains(prefix + name)) native[prefix + name] = {{"converter", *c}};
}

bool is_ref_to(const NodeP& node, std::string_view zid) {
  return node && node->is_ref() && node->ref() == zid;
}

}  // namespace

// typeConverters of a code call (converters.h): the plans of the argument types (to code) and of
// the return type (from code) for the implementation's language family; null when none has one.
json Interpreter::code_converters(const std::vector<Decl>& decls, const json& values,
                                  const NodeP& z8, const std::string& family) {
  json arguments = json::object();
  std::vector<NodeP> types;  // the types the arguments convert by
  for (const auto& d : decls) {
    NodeP type = d.declared;
    // An argument declared Z1 (any type) converts by the type of its value.
    const json* value = values.contains(d.name) ? &values[d.name] : nullptr;
    if ((!type || is_ref_to(type, "Z1")) && value != nullptr && value->is_object() &&
        value->contains("Z1K1")) {
      type = Node::from_json((*value)["Z1K1"]);
      type->set_scope(empty_);
    }
    json plan = converter_plan(type, ConverterDirection::kToCode, family, 0);
    if (plan.is_null()) continue;
    arguments[d.name] = std::move(plan);
    types.push_back(type);
  }
  NodeP returns = z8->get("Z8K2");
  json result = converter_plan(returns, ConverterDirection::kFromCode, family, 0);
  // A result declared Z1, or a typed list of Z1: converted by its (elements') native type, with
  // the from-code converters of the argument types first (the value of `add(a, b)` is most likely
  // of their type), then Natural number's for native integers, and Integer's for negative ones.
  const bool list_of_any = returns && returns->is_call() &&
                           is_ref_to(returns->get("Z7K1"), "Z881") &&
                           is_ref_to(returns->get("Z881K1"), "Z1");
  if (result.is_null() && (!returns || is_ref_to(returns, "Z1") || list_of_any)) {
    json native = json::object();
    for (const auto& type : types) {
      add_native(native, converter_plan(type, ConverterDirection::kFromCode, family, 0));
    }
    add_native(native, default_from_code(kNaturalNumberType, family));
    add_native(native, default_from_code(kIntegerType, family), "-");
    if (!native.empty()) result = json{{"native", std::move(native)}};
    if (!result.is_null() && list_of_any) result = json{{"list", std::move(result)}};
  }
  if (arguments.empty() && result.is_null()) return nullptr;
  json out = json::object();
  if (!arguments.empty()) out["arguments"] = std::move(arguments);
  if (!result.is_null()) out["result"] = std::move(result);
  return out;
}

// The from-code plan of a persisted type named by the engine itself (not by the content): a wiki
// that lacks it, or fails to deliver it, only means no plan (the request goes on).
json Interpreter::default_from_code(const std::string& zid, const std::string& family) {
  const Dereferenced& d = resolver_.dereference(zid);
  if (!d.z2) return nullptr;
  auto z4 = d.z2->find("Z2K2");
  if (z4 == d.z2->end() || zo::type_id(*z4) != "Z4" || !declares_converters(*z4)) return nullptr;
  if (converters_ != nullptr) {
    return converters_->lookup(zid, *z4, ConverterDirection::kFromCode, family, resolver_);
  }
  std::vector<std::string> read;
  return find_converter(*z4, ConverterDirection::kFromCode, family, resolver_, read);
}

// The plan of one declared type (converters.h): {"list": plan} for a typed list, {"pair": [plan,
// plan]} for a typed pair, {"map": [plan, plan]} for a typed map, when an element type has a
// plan; the converter of a type that declares one (Z4K7/Z4K8) for the language; for a type
// without one, {"keys": {key: plan}} when a key's declared type has a plan; else null. Built-in
// types and types without converters cost no fetch beyond the type's own and its keys' types.
json Interpreter::converter_plan(const NodeP& type, ConverterDirection direction,
                                 const std::string& family, int depth) {
  if (!type || type->is_string || depth > 16 || family.empty()) return nullptr;
  if (type->is_ref() && zo::is_builtin_type(type->ref())) return nullptr;
  NodeP z4 = resolved_type(type);
  if (!z4 || z4->is_string || aborted()) return nullptr;
  NodeP identity = z4->is_call() ? z4 : z4->get("Z4K1");
  if (identity && identity->is_call()) return generic_plan(identity, direction, family, depth);
  if (z4->type_ref() != "Z4") return nullptr;
  const std::string zid = identity ? identity->ref() : "";
  json plan;
  if (z4->has("Z4K7") || z4->has("Z4K8")) {
    const json z4_json = z4->to_json();
    std::vector<std::string> read;
    plan = converters_ != nullptr && zo::is_zid(zid)
               ? converters_->lookup(zid, z4_json, direction, family, resolver_)
               : find_converter(z4_json, direction, family, resolver_, read);
  }
  if (!plan.is_null() || zid.empty() || !keys_in_progress_.insert(zid).second) return plan;
  plan = keys_plan(z4, direction, family, depth);
  keys_in_progress_.erase(zid);
  return plan;
}

namespace {
// The function of a generic type's call (Z881, Z882, Z883): its Z7K1 as a reference, or the
// Z8K5 of a resolved Z8.
std::string generic_function(const NodeP& call) {
  const Node* fn = call->peek("Z7K1");
  if (fn == nullptr) return "";
  if (!fn->is_string && fn->type_ref() == "Z8") {
    const Node* fid = fn->peek("Z8K5");
    return fid ? fid->ref() : "";
  }
  return fn->ref();
}
}  // namespace

// Typed list, pair and map: the plans of their element types, element-wise (null: no plan).
json Interpreter::generic_plan(const NodeP& identity, ConverterDirection direction,
                               const std::string& family, int depth) {
  const std::string fn = generic_function(identity);
  if (fn == "Z881") {
    json inner = converter_plan(identity->get("Z881K1"), direction, family, depth + 1);
    return inner.is_null() ? json() : json{{"list", std::move(inner)}};
  }
  if (fn != "Z882" && fn != "Z883") return nullptr;
  json first = converter_plan(identity->get(fn + "K1"), direction, family, depth + 1);
  json second = converter_plan(identity->get(fn + "K2"), direction, family, depth + 1);
  if (first.is_null() && second.is_null()) return nullptr;
  return json{{fn == "Z882" ? "pair" : "map", json::array({std::move(first), std::move(second)})}};
}

// A type without a converter for the language: {"keys": {key: plan}} for the keys (Z4K2) whose
// declared type (Z3K1) has a plan, so an instance's keys convert as its type declares; null when
// none has one. A type met again inside its own keys is not expanded again.
json Interpreter::keys_plan(const NodeP& z4, ConverterDirection direction,
                            const std::string& family, int depth) {
  NodeP keys = z4->get("Z4K2");
  if (!keys) return nullptr;
  json out = json::object();
  for (const json& z3 : zo::list_items(keys->to_json())) {
    if (!z3.is_object() || !z3.contains("Z3K1") || !z3.contains("Z3K2")) continue;
    const std::string key = zo::string_value(z3["Z3K2"]);
    NodeP type = Node::from_json(z3["Z3K1"]);
    type->set_scope(empty_);
    json plan = converter_plan(type, direction, family, depth + 1);
    if (!plan.is_null() && !key.empty()) out[key] = std::move(plan);
    if (aborted()) return nullptr;
  }
  return out.empty() ? json() : json{{"keys", std::move(out)}};
}

namespace {
// The executionCpuUsage text ("1.234 ms") of an evaluator's Z22 map, or nullptr.
const std::string* execution_cpu_text(const json& z22) {
  if (!z22.is_object() || !z22.contains("Z22K2") || !zo::is_map(z22["Z22K2"])) return nullptr;
  const json& map = z22["Z22K2"];
  const json* v = zo::map_get(map, "executionCpuUsage");             // normal form (a linked list)
  if (v == nullptr && map.contains("K1") && map["K1"].is_array()) {  // canonical form
    for (const json& pair : map["K1"]) {
      if (pair.is_object() && pair.value("K1", json()) == "executionCpuUsage" &&
          pair.contains("K2")) {
        v = &pair["K2"];
        break;
      }
    }
  }
  if (v != nullptr && v->is_object() && v->contains("Z6K1")) v = &(*v)["Z6K1"];
  if (v == nullptr || !v->is_string()) return nullptr;
  return &v->get_ref<const std::string&>();
}

// The executionCpuUsage ("1.234 ms") an evaluator's answer reports; 0 when it reports none.
double execution_cpu_ms(const CodeAnswer& answer) {
  const std::string* text = nullptr;
  if (answer.meta) {
    for (const auto& [key, value] : *answer.meta) {
      if (key == "executionCpuUsage") {
        text = &value;
        break;
      }
    }
  } else {
    text = execution_cpu_text(answer.z22);
  }
  if (text == nullptr) return 0;
  double ms = 0;
  const auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), ms);
  return ec == std::errc() && ms >= 0 && ms < 1e9 ? ms : 0;
}

// The work started once the fiber has parked. The call and a copy of the context go into it: it
// may still be unwinding on another thread after the fiber has resumed. The call is the work's
// (not copied), so it is freed once the runner has sent it, not kept while the evaluator works
// (bench/slow_calls: memory per parked call). Out of line, so that the copy of the context is not
// built in run_on_evaluator's frame, which stays on the parked fiber's stack.
[[gnu::noinline]] std::function<void(CodeRunner::Done)> evaluator_work(CodeRunner* runner,
                                                                       std::unique_ptr<CodeCall> cc,
                                                                       const CallContext& ctx) {
  return [runner, cc = std::shared_ptr<const CodeCall>(std::move(cc)), ctx](CodeRunner::Done done) {
    runner->run(*cc, ctx, std::move(done));
  };
}

// The same, for a call kept as the tag of a retirable wait (fiber.h, await_retirable).
[[gnu::noinline]] std::function<void(CodeRunner::Done)> evaluator_work(
    CodeRunner* runner, std::shared_ptr<const CodeCall> cc, const CallContext& ctx) {
  return [runner, cc = std::move(cc), ctx](CodeRunner::Done done) {
    runner->run(*cc, ctx, std::move(done));
  };
}

// What a retired code call keeps of itself for its replay to know it again (fiber.h,
// RetireTag): two 64-bit hashes of its text (language, function, code, arguments, converters)
// instead of the call (bench/slow_calls: memory per parked call).
struct CodeCallDigest {
  std::uint64_t a = 0;
  std::uint64_t b = 0;
  bool operator==(const CodeCallDigest&) const = default;
};

// The text that identifies a code call: its language, function and code (the head), then its
// arguments in normal form and converters. The code-answer memo keys on it (code_call_key) and a
// retired call's digest hashes it (digest_of).
std::string code_call_head(const CodeCall& cc) {
  std::string text = cc.coding_language;
  text += '\n';
  text += cc.function_name;
  text += '\n';
  text += cc.code;
  text += '\n';
  return text;
}

void append_code_call_values(std::string& text, const CodeCall& cc) {
  text += cc.arguments.dump(-1, ' ', false, json::error_handler_t::replace);
  text += '\n';
  if (!cc.converters.is_null())
    text += cc.converters.dump(-1, ' ', false, json::error_handler_t::replace);
}

CodeCallDigest digest_of(const CodeCall& cc) {
  std::string text = code_call_head(cc);
  append_code_call_values(text, cc);
  std::uint64_t fnv = 0xcbf29ce484222325ULL;  // FNV-1a, beside the library's hash
  for (const unsigned char ch : text) fnv = (fnv ^ ch) * 0x100000001b3ULL;
  return {std::hash<std::string>{}(text), fnv};
}

std::shared_ptr<const void> shrink_code_call(const void* call) {
  return std::make_shared<const CodeCallDigest>(digest_of(*static_cast<const CodeCall*>(call)));
}

bool same_code_call(const void* call, const void* kept) {
  return digest_of(*static_cast<const CodeCall*>(call)) ==
         *static_cast<const CodeCallDigest*>(kept);
}

constexpr RetireTag kCodeCallTag{&shrink_code_call, &same_code_call};

// Bounds of the per-request memo of code calls (run_on_evaluator).
constexpr std::size_t kMaxCodeAnswers = 4096;
constexpr std::size_t kMaxCodeAnswerKey = 64 * 1024;

// Whether `v` has at most `max_nodes` values, none nested deeper than kMaxCodeAnswerDepth: only
// such arguments are dumped into a memo key (dump() recurses once per level, and a long list in
// normal form nests once per element). Walks with its own stack.
constexpr int kMaxCodeAnswerDepth = 128;
bool small_value(const json& v, std::size_t max_nodes) {
  std::vector<std::pair<const json*, int>> todo{{&v, 0}};
  for (std::size_t seen = 0; !todo.empty(); ++seen) {
    if (seen >= max_nodes) return false;
    auto [node, depth] = todo.back();
    todo.pop_back();
    if (depth > kMaxCodeAnswerDepth) return false;
    if (!node->is_structured()) continue;
    for (const auto& child : *node) todo.emplace_back(&child, depth + 1);
  }
  return true;
}

// Whether what follows an evaluator's answer is light enough to run on the event loop where it
// arrived (fiber.h, Resume::kLoop): an error, or an answer of at most kLightAnswerValues values
// and kLightAnswerBytes bytes of strings (the usual answer: ~400 values, ~1 KiB). Building the
// envelope and writing the response cost about as much as the answer is big; bigger answers go
// on on the CPU threads. Walks with its own stack, and stops at the bounds.
constexpr std::size_t kLightAnswerValues = 4096;
constexpr std::size_t kLightAnswerBytes = 64u << 10;
bool light_answer(const CodeRunner::Result& out) {
  if (!out) return true;
  std::vector<const json*> todo{&out->z22};
  std::size_t bytes = 0;
  if (out->meta) {
    if (out->meta->size() > kLightAnswerValues / 16) return false;
    for (const auto& [key, value] : *out->meta) bytes += key.size() + value.size();
    if (bytes > kLightAnswerBytes) return false;
  }
  for (std::size_t seen = 0; !todo.empty(); ++seen) {
    if (seen >= kLightAnswerValues) return false;
    const json* node = todo.back();
    todo.pop_back();
    if (node->is_string()) {
      bytes += node->get_ref<const std::string&>().size();
      if (bytes > kLightAnswerBytes) return false;
    } else if (node->is_object()) {
      for (const auto& [key, child] : node->items()) {
        bytes += key.size();
        todo.push_back(&child);
      }
    } else if (node->is_array()) {
      for (const auto& child : *node) todo.push_back(&child);
    }
  }
  return true;
}

// What identifies a code call's answer: the same code, function, language, arguments (normal
// form) and converters give the same answer (user code is taken to be deterministic, as the
// result cache takes it across requests). Empty when the call is too large to remember.
[[gnu::noinline]] std::string code_call_key(const CodeCall& cc) {
  if (!small_value(cc.arguments, kMaxCodeAnswerKey / 8)) return {};
  std::string key = code_call_head(cc);
  if (key.size() > kMaxCodeAnswerKey) return {};
  append_code_call_values(key, cc);
  return key.size() > kMaxCodeAnswerKey ? std::string() : key;
}

// An answer worth remembering: a Z22 with a value (not a failure, whose cause may be a limit or
// a timeout of that moment).
bool is_value_answer(const json& z22) {
  if (!z22.is_object()) return false;
  auto it = z22.find("Z22K1");
  return it != z22.end() && !it->is_null() && zo::ref_id(*it) != "Z24";
}

}  // namespace

// Sends the call to the evaluator; the fiber parks until it answers. The same call again in
// this request (recursive compositions repeat them) gets the first answer without a round trip.
// With `remember` false the answer is not kept for that (its key and copy cost more than the
// rest of a one-call request's handling of the answer: bench/orchestrator_cpu), but an answer
// kept earlier is still used.
CodeRunner::Result Interpreter::run_on_evaluator(std::unique_ptr<CodeCall>&& cc, bool remember) {
  if (runner_ == nullptr) {
    return std::unexpected(CodeRunError{CodeRunError::Kind::kNoEvaluator,
                                        "No evaluator is available for " + cc->coding_language});
  }
  // Nothing to look up or keep (the request's one outermost call): no key is alive in this
  // frame while the call waits, so a retirement's unwinding does not stop here.
  if (!remember && code_answers_.empty()) return evaluate_code(std::move(cc));
  std::string key = code_call_key(*cc);
  if (!key.empty()) {
    if (auto it = code_answers_.find(key); it != code_answers_.end()) {
      metrics().code_call_memo_hits.Increment();
      return it->second;
    }
  }
  CodeRunner::Result out = evaluate_code(std::move(cc));
  if (out && remember && !key.empty()) remember_code_answer(std::move(key), out);
  return out;
}

void Interpreter::remember_code_answer(std::string key, const CodeRunner::Result& out) {
  if (code_answers_.size() < kMaxCodeAnswers && is_value_answer(out->z22) &&
      small_value(out->z22, kMaxCodeAnswerKey / 8) &&
      (!out->meta || out->meta->size() <= kMaxCodeAnswerKey / 64)) {
    code_answers_.emplace(std::move(key), *out);
  }
}

CodeRunner::Result Interpreter::evaluate_code(std::unique_ptr<CodeCall>&& cc) {
  if (evaluator_calls_++ == 0 && call_depth_ == 1 && orchestrating_ == 1 &&
      (retirable_here() || replaying())) {
    return evaluate_code_retirable(std::move(cc));
  }
  Stopwatch watch(evaluator_us_);
  CodeRunner::Result out =
      await<CodeRunner::Result>(evaluator_work(runner_, std::move(cc), ctx_), &light_answer);
  evaluator_call_ended(out);
  return out;
}

// Only the first: a retired fiber's replay runs the request from its start, and any evaluator
// call before the retired one would be sent again. A retirement returns here with no answer:
// the run then stops as on a cancellation (Abort::kRetired: every caller returns at once), back
// to the engine's top, where the fiber's run ends (fiber.h, await_staged_or_return).
CodeRunner::Result Interpreter::evaluate_code_retirable(std::unique_ptr<CodeCall>&& cc) {
  const auto started = std::chrono::steady_clock::now();
  stage_code_call(std::move(cc));
  std::shared_ptr<void> answer = await_staged_or_return(kCodeCallTag, &evaluator_us_);
  if (answer == nullptr) {
    abort_ = Abort::kRetired;  // no error is built: nobody reads it (abort_envelope, finish_call)
    return std::unexpected(CodeRunError{CodeRunError::Kind::kFailed, {}});
  }
  CodeRunner::Result out = std::move(*static_cast<CodeRunner::Result*>(answer.get()));
  answer.reset();
  evaluator_us_ +=
      std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - started).count();
  evaluator_call_ended(out);
  return out;
}

// The call's work and tag, staged on the fiber for evaluate_code_retirable's wait.
void Interpreter::stage_code_call(std::unique_ptr<CodeCall>&& cc) {
  std::shared_ptr<const CodeCall> call = std::move(cc);
  // The work first, in a statement of its own: the tag's argument takes `call`.
  auto work =
      retirable_start<CodeRunner::Result>(evaluator_work(runner_, call, ctx_), &light_answer);
  stage_retirable(std::move(work), std::move(call));
}

void Interpreter::evaluator_call_ended(const CodeRunner::Result& out) {
  if (cancelled() || Clock::now() >= ctx_.deadline) {
    if (!cancelled()) metrics().breach_deadline.Increment();
    fail(Abort::kDeadline, "Function call timed out");
  }
  if (out) evaluator_cpu_ms_ += execution_cpu_ms(*out);
}

// The evaluator's Z22 as an envelope: its value normalised, its metadata map kept (moved out of
// the answer: the map of a usual answer is the largest part of it). An answer whose map came as
// pairs gives them to `pairs` when there is one, else its map is built.
Envelope Interpreter::evaluator_envelope(CodeAnswer&& answer, std::optional<MetaPairs>* pairs) {
  json& z22 = answer.z22;
  json value;
  json meta;
  if (z22.is_object()) {
    if (auto v = z22.find("Z22K1"); v != z22.end()) value = std::move(*v);
    if (auto m = z22.find("Z22K2"); m != z22.end()) meta = std::move(*m);
  }
  if (answer.meta) {
    if (pairs != nullptr) {
      *pairs = std::move(answer.meta);
    } else {
      meta = metadata_map(*answer.meta);
    }
  }
  if (zo::ref_id(value) == "Z23") value = zo::void_value();
  auto normal =
      value.is_null() ? std::expected<json, json>(zo::void_value()) : zo::normalize(value);
  NodeP v = Node::from_json(normal ? *normal : zo::void_value());
  v->set_scope(empty_);
  if (!zo::is_map(meta)) return Envelope{std::move(v), std::nullopt};
  return Envelope{std::move(v), std::move(meta)};
}

// The result of the implementation that answered; a top-level call adds the implementation keys
// and has its value checked against the function's return type.
Envelope Interpreter::answer(ImplRun& run, const NodeP& z8, bool top_level) {
  Envelope result = std::move(run.result);
  // An evaluator's metadata pairs stand for its map (no "errors": CodeAnswer): they go to the
  // response writer as they are on the usual path below, and become the map on any other.
  std::optional<MetaPairs> pairs = std::move(run.evaluator_meta);
  const bool usual = top_level && trailing_ != nullptr && !run.type.empty() &&
                     !is_void_node(result.value) &&
                     (!result.meta || (zo::is_map(*result.meta) && !result.has_error()));
  if (pairs && (!usual || result.meta)) {
    result.meta = metadata_map(*pairs);
    pairs.reset();
  }
  if (!top_level) return result;
  if (usual) {
    // The usual success (no metadata, or an evaluator's map without errors): the
    // implementation keys are handed to the response writer as strings, which it writes after
    // the map's pairs, instead of being appended to the normal-form map (a walk and type copies
    // per key). return_check keeps such a result as it is, or answers a fresh error envelope
    // (which drops the implementation keys either way). Warnings go after the implementation
    // keys of a map, so with warnings the keys join the map as before.
    replace_argument_references(result.value, 0);
    const bool had_meta = result.meta || pairs;
    result = return_check(std::move(result), z8);
    if (!result.has_error() && (had_meta || !result.meta)) {
      if (had_meta && !warnings_.empty()) {
        if (pairs) result.meta = metadata_map(*pairs);
        if (!run.id.empty()) set_meta(result, "implementationId", zo::z6(run.id));
        set_meta(result, "implementationType", zo::z6(run.type));
        return result;
      }
      if (pairs) {
        for (auto& pair : *pairs) trailing_->push_back(std::move(pair));
      }
      if (!run.id.empty()) trailing_->emplace_back("implementationId", run.id);
      trailing_->emplace_back("implementationType", run.type);
    }
    return result;
  }
  if (!run.type.empty()) {
    if (!run.id.empty()) set_meta(result, "implementationId", zo::z6(run.id));
    set_meta(result, "implementationType", zo::z6(run.type));
  }
  if (result.value) replace_argument_references(result.value, 0);
  return return_check(std::move(result), z8);
}

// ---- pipeline (orchestrator-api.md §8) --------------------------------------------------------

namespace {

// Whether `v` is at most `levels` levels deep (as zobject::depth counts them: a string is one
// level, an object or array one more than its deepest child) and a valid MIXED ZObject (as
// zobject::check_mixed accepts it: strings, lists of at most kMaxListElements elements, objects
// with a Z1K1 whose keys are all keys). True exactly when both checks pass; one walk, no
// allocation.
bool shallow_mixed(const json& v, int levels) {
  if (levels < 1) return false;
  switch (v.type()) {
    case json::value_t::string:
      return true;
    case json::value_t::array: {
      const auto& a = v.get_ref<const json::array_t&>();
      if (a.size() > zo::kMaxListElements + 1) return false;
      for (const auto& e : a) {
        if (!shallow_mixed(e, levels - 1)) return false;
      }
      return true;
    }
    case json::value_t::object: {
      bool typed = false;
      for (const auto& [key, child] : v.get_ref<const json::object_t&>()) {
        if (!zo::is_key(key) || !shallow_mixed(child, levels - 1)) return false;
        typed = typed || same_text(key, "Z1K1");
      }
      return typed;
    }
    default:
      return false;
  }
}

}  // namespace

template <class Inner, class Input>
Answer Interpreter::orchestrate_with(bool do_validate,
                                     std::vector<std::pair<std::string, std::string>>* trailing,
                                     Inner&& inner, Input&& input) {
  bool saved = do_validate_;
  auto* saved_trailing = trailing_;
  do_validate_ = do_validate;
  trailing_ = trailing;
  ++orchestrating_;
  Answer out = inner();
  --orchestrating_;
  do_validate_ = saved;
  trailing_ = saved_trailing;
  if (trailing != nullptr && abort_ != Abort::kNone) trailing->clear();
  if (abort_ == Abort::kException) return Answer{nullptr, exception_envelope(input())};
  if (abort_ == Abort::kLimit) return Answer{nullptr, zo::error_envelope(abort_error_)};
  return out;
}

json Interpreter::orchestrate(const json& zobject, bool do_validate,
                              std::vector<std::pair<std::string, std::string>>* trailing) {
  return std::move(orchestrate_answer(zobject, do_validate, trailing).as_envelope());
}

json Interpreter::orchestrate(const ParsedCall& call,
                              std::vector<std::pair<std::string, std::string>>* trailing) {
  return std::move(orchestrate_answer(call, trailing).as_envelope());
}

Answer Interpreter::orchestrate_answer(const json& zobject, bool do_validate,
                                       std::vector<std::pair<std::string, std::string>>* trailing) {
  return orchestrate_with(
      do_validate, trailing, [&] { return orchestrate_inner(zobject, do_validate); },
      [&]() -> const json& { return zobject; });
}

Answer Interpreter::orchestrate_answer(const ParsedCall& call,
                                       std::vector<std::pair<std::string, std::string>>* trailing) {
  return orchestrate_with(
      call.do_validate, trailing, [&] { return orchestrate_parsed(call); },
      [&] {
        // The input as sent, read again from the text (an exception is rare).
        json body = request_json(call);
        return body.is_object() && body.contains("zobject") ? body["zobject"] : json(nullptr);
      });
}

json Interpreter::exception_envelope(const json& zobject) {
  json inner = zo::make_error("Z500", {});
  inner["Z5K2"]["Z500K1"] =
      "Call tuples failed in returnOnFirstError. Error: " + abort_message_ + ".";
  json err = zo::make_error("Z507", {zo::z99(zobject), zo::z99(inner)});
  abort_ = Abort::kNone;
  abort_error_ = nullptr;
  return zo::error_envelope(err);
}

Answer Interpreter::orchestrate_inner(const json& zobject, bool do_validate) {
  NodeP root;
  if (auto refused = prepare_call(zobject, do_validate, root)) {
    return Answer{nullptr, std::move(*refused)};
  }
  root->set_scope(empty_);
  return finish_call(execute(root, empty_, true));
}

std::optional<json> Interpreter::prepare_call(const json& zobject, bool do_validate, NodeP& root) {
  if (zobject.is_object()) {
    auto t = zobject.find("Z1K1");
    if (t != zobject.end() && zo::ref_id(*t) == "Z5") return zo::error_envelope(zobject);
  }
  // The usual request passes both checks below: one walk says so (~10 k instructions of the
  // nest's ~23 k for the two); otherwise they run, in order, and say which fails and why.
  if (!shallow_mixed(zobject, options_.max_zobject_depth)) {
    if (zo::depth(zobject, options_.max_zobject_depth) > options_.max_zobject_depth) {
      metrics().breach_zobject_depth.Increment();
      return zo::error_envelope(zo::make_error(
          "Z502", {zo::z9("Z507"),
                   zo::make_error_msg("Z507", "ZObject nesting is deeper than the limit of " +
                                                  std::to_string(options_.max_zobject_depth))}));
    }
    auto violations = zo::check_mixed(zobject);
    if (!violations.empty()) return zo::error_envelope(zo::schema_error_tree(violations));
  }
  // The lazy Node tree below points into the input: the engine's request outlives this
  // Interpreter; a nested orchestration's (Z923) is a temporary, kept here (as are the normal
  // forms static validation needs), since nodes of it can stay in the type memo.
  const json& input = orchestrating_ > 1 ? inputs_.emplace_back(zobject) : zobject;
  if (do_validate) {
    const json& call = inputs_.emplace_back(zo::to_normal(input));
    root = Node::from_shared(call);
  } else {
    root = Node::from_canonical(input);
  }
  if (auto refused = check_root(root, do_validate)) return refused;
  // The walk that finds them only when a batch could fetch them (~10 k instructions for the nest).
  if (resolver_.can_prefetch()) {
    std::vector<std::string> called;
    called_functions(input, called, 0);
    if (called.size() >= 2) resolver_.prefetch(called);
  }
  return std::nullopt;
}

std::optional<json> Interpreter::check_root(const NodeP& root, bool do_validate) {
  if (root->is_string || root->type_ref() != "Z7" || !root->has("Z7K1")) {
    return zo::error_envelope(
        zo::make_error_msg("Z539", "The provided object is not a function call"));
  }
  if (do_validate) {
    json verr;
    const double resolved_before = resolver_.spent_us();
    {
      Stopwatch watch(validate_us_);
      verr = static_validate(inputs_.back());
    }
    validate_us_ -= resolver_.spent_us() - resolved_before;
    if (aborted()) return zo::error_envelope(abort_error_);
    if (!verr.is_null()) return zo::error_envelope(verr);
  }
  return std::nullopt;
}

Answer Interpreter::orchestrate_parsed(const ParsedCall& call) {
  NodeP root = call.zobject;
  if (call.do_validate) {
    // As prepare_call: the normal form as JSON (what to_normal gives of the zobject), viewed.
    const json& normal = inputs_.emplace_back(call.zobject->to_json());
    root = Node::from_shared(normal);
  }
  if (auto refused = check_root(root, call.do_validate)) {
    return Answer{nullptr, std::move(*refused)};
  }
  if (resolver_.can_prefetch()) {
    std::vector<std::string> called;
    called_functions(call, called);
    if (called.size() >= 2) resolver_.prefetch(called);
  }
  root->set_scope(empty_);
  return finish_call(execute(root, empty_, true));
}

Answer Interpreter::finish_call(Envelope r) {
  if (abort_ == Abort::kRetired) return {};  // nobody reads it (evaluate_code_retirable)
  if (aborted()) return Answer{nullptr, zo::error_envelope(abort_error_)};
  if (orchestrating_ == 1 && !warnings_.empty()) {
    set_meta(r, "warnings", zo::make_list(zo::z9("Z5"), warnings_));
    warnings_.clear();
  }
  // The usual success: the value's node itself, written to text by the engine (response.h).
  if (!r.meta && r.value && Answer::is_terminal_value(*r.value)) {
    return Answer{std::move(r.value), nullptr};
  }
  json value = r.value ? r.value->to_json() : zo::void_value();
  return Answer{nullptr, zo::make_envelope(std::move(value), r.meta ? std::move(*r.meta) : json())};
}

void Interpreter::warn(json z5) {
  if (warnings_.size() < kMaxWarnings) warnings_.push_back(std::move(z5));
}

}  // namespace wf::orchestrator::engine_detail
