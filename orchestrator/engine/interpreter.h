#pragma once
// Evaluation of one request (evaluation.md): resolution of references, argument references and
// function calls; lazy argument binding in frames; implementation selection; built-ins;
// compositions; code through the CodeRunner; type checks; static validation. One Interpreter
// per request, used by one thread. Failures are values: error envelopes, or an "abort" (the
// reference's exceptions, the deadline, and our limits) that unwinds to orchestrate().

#include <cstdint>
#include <list>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "orchestrator/engine/converters.h"
#include "orchestrator/engine/engine.h"
#include "orchestrator/engine/node.h"
#include "orchestrator/engine/ports.h"
#include "orchestrator/engine/request_nodes.h"
#include "orchestrator/engine/resolver.h"
#include "orchestrator/engine/response.h"

namespace wf::orchestrator::engine_detail {

// A Z22 during evaluation: the value as a Node (null = void) and the metadata map as JSON.
struct Envelope {
  NodeP value;
  // Unset = void, else a normal-form Z883 map (never a null json). Optional, not a null json:
  // most envelopes have no metadata, and a json's destructor is out of line even for null (a
  // nest request made and dropped ~150 of them, ~24 instructions each).
  std::optional<json> meta;

  static Envelope ok(NodeP v) { return Envelope{std::move(v), std::nullopt}; }
  static Envelope err(const json& z5);
  // In line: asked after every step, and most envelopes have no metadata at all.
  bool has_error() const { return meta && has_error_in(*meta); }
  json error() const;  // the Z5, or null

 private:
  static bool has_error_in(const json& meta);
};

enum class ArgKind { kUnevaluated, kEvaluated, kError };

struct ArgState {
  ArgKind kind = ArgKind::kError;
  NodeP value;
  NodeP declared;  // declared type (Z17K1, resolved)
  // When kError (optional for the reason Envelope::meta is); z5() reads it, null when unset.
  std::optional<json> error;
  const json& z5() const;
};

struct BuiltinSignature;  // builtin_calls.cc

// Whether resolving the types of the shared normal-form value `v` (Interpreter::resolve_types)
// would do nothing but make list types of ZIDs, which cannot fail or fetch. Bounded in depth.
bool json_types_trivial(const json& v, int depth);

struct Frame {
  FrameP parent;  // null: the empty frame
  std::vector<std::pair<std::string, ArgState>> names;
  ArgState* find(const std::string& name);
};

class Interpreter {
 public:
  // `converters` (may be null: no cross-request memo) caches type converter lookups.
  Interpreter(Resolver& resolver, CodeRunner* runner, const CallContext& ctx,
              const EngineOptions& options, ConverterCache* converters = nullptr);
  ~Interpreter();
  Interpreter(const Interpreter&) = delete;
  Interpreter& operator=(const Interpreter&) = delete;

  // orchestrator-api.md §8 steps 1-6: returns the normal-form Z22 (without orchestration
  // metadata). `zobject` is the request's value as sent (canonical, normal or mixed); the
  // outermost call's must outlive the Interpreter (the value nodes are a lazy view of it).
  // With `trailing`, a successful top-level call without other metadata may leave its
  // implementationId/implementationType out of the envelope's (then void) metadata and put them
  // in *trailing instead: Z6-valued pairs that belong after the map's pairs, in order.
  json orchestrate(const json& zobject, bool do_validate,
                   std::vector<std::pair<std::string, std::string>>* trailing = nullptr);
  // The same for a request read straight into nodes (request_nodes.h): the same answer as
  // orchestrate() of its JSON zobject. `call` outlives the Interpreter; its nodes become the
  // evaluation's.
  json orchestrate(const ParsedCall& call,
                   std::vector<std::pair<std::string, std::string>>* trailing = nullptr);
  // The same two answers as an Answer (response.h): the usual success keeps its value as a node,
  // which the engine writes to text without a JSON envelope.
  Answer orchestrate_answer(const json& zobject, bool do_validate,
                            std::vector<std::pair<std::string, std::string>>* trailing = nullptr);
  Answer orchestrate_answer(const ParsedCall& call,
                            std::vector<std::pair<std::string, std::string>>* trailing = nullptr);
  bool deadline_hit() const { return abort_ == Abort::kDeadline; }
  // Wall-clock µs of static validation (without the resolution it did) and of waiting for
  // evaluators: parts of the call's cost (call_cost.h).
  double validate_us() const { return validate_us_; }
  double evaluator_us() const { return evaluator_us_; }
  // The sandbox CPU (executionCpuUsage, ms) the evaluators reported for every code call of this
  // evaluation, nested ones (code inside compositions) included: what the caller is charged.
  double evaluator_cpu_ms() const { return evaluator_cpu_ms_; }
  std::int64_t steps() const { return steps_; }

  // ---- used by the built-ins (builtins_*.cc) and static_validation.cc ----
  struct Resolved {
    Envelope env;
    NodeP persist;  // what the parent key should show afterwards
  };
  // kNoInternals: the reference's resolveInternals=false (Z881 calls take the list shortcut).
  enum class Mode { kNormal, kEvenBuiltins, kNoGeneric, kNoInternals };
  Resolved resolve(const NodeP& node, const FrameP& scope, Mode mode = Mode::kNormal);
  // `key` an interned Key (a literal is interned once per thread): looked up by address.
  Envelope resolve_key(const NodeP& parent, const Key& key, const FrameP& scope,
                       Mode mode = Mode::kNormal);
  Envelope execute(const NodeP& call, const FrameP& scope, bool top_level);
  Envelope dereference(const std::string& zid);
  Envelope eager(const NodeP& value);
  // Type check of value against declared (may be null): null when fine, else the cause Z5.
  json type_check(const NodeP& value, const NodeP& declared);
  std::vector<NodeP> list_elements(const NodeP& list);
  NodeP make_list(const NodeP& item_type, const std::vector<NodeP>& items);
  FrameP empty_frame() const { return empty_; }
  FrameP new_frame(FrameP parent);
  bool aborted() const { return abort_ != Abort::kNone; }
  Resolver& resolver() { return resolver_; }
  // A warning (a Z5 in normal form, e.g. Z598) for the response's metadata key "warnings" (a
  // typed list of Z5, as WikiLambda shows them); at most kMaxWarnings per request.
  void warn(json z5);
  static constexpr std::size_t kMaxWarnings = 100;
  bool do_validate() const { return do_validate_; }
  // Runs the built-in `id` of builtin_table() (builtin_table.h) on `args` sorted by argument
  // name; known = false when the table has no such built-in.
  Envelope run_builtin(const std::string& id, std::vector<NodeP> args, bool& known);
  // The ZID a lazy argument names, following argument references without evaluating them;
  // "" when it is not a reference (a call, a literal object): callers then evaluate it.
  std::string named_zid(const NodeP& node);
  // Keeps JSON alive for the rest of the request (lazy nodes made from it point into it).
  void keep(std::shared_ptr<const json> value) { kept_.push_back(std::move(value)); }
  // Static validation (static_validation.cc): null when valid, else the Z5.
  json static_validate(const json& normal_call);
  // Validator checks shared by static validation and the Z2xx builtins.
  std::vector<json> check_function_call(const NodeP& call);
  std::vector<json> check_key_list(const std::string& identity,
                                   const std::vector<std::string>& keys);
  std::vector<json> check_multilingual_text(const NodeP& z12);
  std::vector<json> check_multilingual_stringset(const NodeP& z32);

 private:
  // kRetired: the request's code call was retired (fiber.h, await_staged_or_return): the run
  // returns to the engine's top, which ends it (EngineImpl::evaluate_text_here).
  enum class Abort { kNone, kException, kDeadline, kLimit, kRetired };
  struct Decl {  // a declared argument bound to the call's value
    std::string name;
    NodeP declared;
    NodeP value;
  };
  struct Impl {
    NodeP z14;
    std::string id;  // the ZID when the function lists it by reference
  };
  struct ImplRun {  // what running one implementation gave
    Envelope result;
    std::string type;  // BuiltIn, Composition, Evaluated; empty for a literal implementation
    std::string id;
    // kReturn: the result is the call's answer as it is; kNextImplementation: the evaluator
    // failed (`failure` says why) and the next implementation is tried.
    enum class Then { kAnswer, kReturn, kNextImplementation } then = Then::kAnswer;
    std::string failure;
    // The outermost call's code answer's metadata pairs (CodeAnswer::meta), standing for
    // result.meta (then null) until answer() hands them to the response writer as they are.
    std::optional<MetaPairs> evaluator_meta;
  };

  bool tick();  // counts a step; false (and abort set) when a limit or the deadline is hit
  // tick()'s stack check when the frame is outside [stack_floor_, stack_top_): the stack left
  // below `sp` (Z5 under kStackReserve); keeps the bounds inside which no check is needed.
  [[gnu::noinline]] bool check_stack(const char* sp);
  const char* stack_floor_ = nullptr;
  const char* stack_top_ = nullptr;
  // Out of line (noinline below): the rare branches of the functions a call parked on the
  // evaluator has on its stack (execute ... evaluate_code), so that their frames stay small: a
  // parked fiber's frames are saved byte for byte (fiber.cc; bench/slow_calls).
  [[gnu::noinline]] void step_limit_exceeded();
  [[gnu::noinline]] void stack_exhausted();
  [[gnu::noinline]] Envelope call_depth_exceeded();
  void fail(Abort kind, std::string message, json error = nullptr);
  Envelope abort_envelope() const;

  ArgState retrieve(const FrameP& frame, const std::string& name, bool lazily);
  // An unevaluated argument evaluated and checked against its declared type (retrieve()).
  ArgState evaluate_argument(const ArgState& unevaluated);
  ArgState process_argument(const ArgState& unevaluated);
  std::string resolve_types(const NodeP& value, json& error);
  // Whether resolve_types has nothing to resolve in the shared JSON `v` (remembered).
  bool types_trivial(const json& v, bool immortal);
  NodeP resolved_type(const NodeP& type);  // ephemeral resolution of a type (null on error)
  bool compare_types(const NodeP& actual, const NodeP& declared);
  bool compare_keys(const NodeP& a, const NodeP& b);  // two literal Z4s, key by key
  json run_type_validator(const NodeP& value, const NodeP& type);
  json error_type_arg(const NodeP& value);  // value.Z1K1 as an error argument
  struct EagerStep {  // a level of eager_walk's path: the key walked into, under its parent's type
    Key key;
    NodeP type_holder;  // the string node whose text `type` views
    std::string_view type;
    static std::string_view type_of(const Node& node, NodeP& holder);
  };
  Envelope eager_walk(const NodeP& root, std::vector<EagerStep>& path);
  Envelope eager_value(const NodeP& child, std::vector<std::string>& zids);
  void replace_argument_references(const NodeP& node, int depth);
  [[gnu::noinline]] Envelope return_check(Envelope result, const NodeP& z8);
  Envelope execute_inner(const NodeP& call, const FrameP& scope, bool top_level);
  // A call of a bundled built-in function, bound from its signature (builtin_calls.cc); at the
  // top level its answer goes through answer() as the general path's does. nullopt when the
  // general path must run it.
  std::optional<Envelope> execute_builtin(const NodeP& call, const FrameP& sc, bool top_level);
  std::optional<Envelope> held_list_type(const NodeP& item);
  const std::vector<NodeP>* builtin_declared(const BuiltinSignature& sig);
  Envelope resolve_function(const NodeP& call, const FrameP& sc);
  [[gnu::noinline]] Envelope bind_arguments(const NodeP& call, const FrameP& sc, NodeP& z8,
                                            std::vector<Decl>& decls);
  [[gnu::noinline]] Envelope implementations(const NodeP& z8, std::vector<Impl>& impls);
  // The outermost composition that exceeded a limit gives way to the next implementation:
  // forget the breach (execute_inner).
  [[gnu::noinline]] void forget_breach(const std::string& demote_key, std::string& last_failure,
                                       std::int64_t steps_before);
  ImplRun run_implementation(const Impl& impl, const NodeP& z8, const std::vector<Decl>& decls);
  // The implementation's frame with the call's arguments bound, unevaluated.
  [[gnu::noinline]] FrameP bind_frame(const NodeP& z14, const std::vector<Decl>& decls);
  bool may_fall_back(const Impl& impl, bool has_next) const;
  ImplRun run_builtin_impl(const NodeP& z14, const std::string& id, const FrameP& frame,
                           const std::vector<Decl>& decls, const NodeP& z8);
  ImplRun run_composition(const NodeP& z14, const std::string& id, const FrameP& frame,
                          const std::vector<Decl>& decls, const NodeP& z8);
  ImplRun run_code(const NodeP& z14, const std::string& id, const FrameP& frame,
                   const std::vector<Decl>& decls, const NodeP& z8);
  // The call run_code sends, or nullptr with `run` saying why not (an argument's error, abort).
  [[gnu::noinline]] std::unique_ptr<CodeCall> code_call(const NodeP& z14, const FrameP& frame,
                                                        const std::vector<Decl>& decls,
                                                        const NodeP& z8, ImplRun& run);
  // The evaluator failed: the next implementation is tried (run_code).
  [[gnu::noinline]] static void evaluator_failed(ImplRun& run, const CodeRunError& error);
  // The call goes to the evaluator's work (evaluate_code), which frees it once it is sent.
  // The call by rvalue reference: run_code's, kept by the interpreter (code_call_), not by a
  // frame that stays on the stack while it waits.
  CodeRunner::Result run_on_evaluator(std::unique_ptr<CodeCall>&& cc, bool remember);
  [[gnu::noinline]] void remember_code_answer(std::string key, const CodeRunner::Result& out);
  // The call by rvalue reference, here and below: a by-value std::unique_ptr is a temporary the
  // caller destroys, so evaluate_code's frame would have a cleanup for a retired fiber's unwinding
  // to stop at (~7.8k instructions a slow cycle, bench/README.md, wf/fake9).
  CodeRunner::Result evaluate_code(std::unique_ptr<CodeCall>&& cc);
  // The request's first code call at the top level, on a fiber that can be retired while it
  // waits (fiber.h, await_retirable): the replay takes the answer of the same call.
  [[gnu::noinline]] CodeRunner::Result evaluate_code_retirable(std::unique_ptr<CodeCall>&& cc);
  [[gnu::noinline]] void stage_code_call(std::unique_ptr<CodeCall>&& cc);
  [[gnu::noinline]] void evaluator_call_ended(const CodeRunner::Result& out);
  json code_converters(const std::vector<Decl>& decls, const json& values, const NodeP& z8,
                       const std::string& family);
  json converter_plan(const NodeP& type, ConverterDirection direction, const std::string& family,
                      int depth);
  json default_from_code(const std::string& zid, const std::string& family);
  json generic_plan(const NodeP& identity, ConverterDirection direction, const std::string& family,
                    int depth);
  json keys_plan(const NodeP& z4, ConverterDirection direction, const std::string& family,
                 int depth);
  // `pairs`: where the answer's metadata pairs go as they are (the outermost call), or nullptr
  // (the map is built: a nested call's envelope carries it).
  [[gnu::noinline]] Envelope evaluator_envelope(CodeAnswer&& answer,
                                                std::optional<MetaPairs>* pairs);
  [[gnu::noinline]] Envelope answer(ImplRun& run, const NodeP& z8, bool top_level);
  bool cancelled() const { return ctx_.cancel && ctx_.cancel->cancelled(); }
  Answer orchestrate_inner(const json& zobject, bool do_validate);
  // orchestrate_inner's steps before and after the evaluation: the request's checks and its
  // root node (or the answer that refuses it), and the answer from the evaluation's envelope.
  [[gnu::noinline]] std::optional<json> prepare_call(const json& zobject, bool do_validate,
                                                     NodeP& root);
  // prepare_call's steps once the root node is made: that it is a call, static validation.
  std::optional<json> check_root(const NodeP& root, bool do_validate);
  Answer orchestrate_parsed(const ParsedCall& call);
  // The orchestrate() around either input: `inner` answers, `input` gives the JSON an
  // exception's Z507 quotes.
  template <class Inner, class Input>
  Answer orchestrate_with(bool do_validate,
                          std::vector<std::pair<std::string, std::string>>* trailing, Inner&& inner,
                          Input&& input);
  [[gnu::noinline]] Answer finish_call(Envelope r);
  [[gnu::noinline]] json exception_envelope(const json& zobject);

  Resolver& resolver_;
  CodeRunner* runner_;
  ConverterCache* converters_;
  const CallContext& ctx_;
  const EngineOptions& options_;
  // Normalized inputs; declared first so it is destroyed last. A list: stable addresses, and
  // unlike a deque nothing allocated while empty (most requests: bench/slow_calls).
  std::list<json> inputs_;
  std::vector<json> warnings_;  // warn(): added to the outermost response's metadata
  std::vector<std::shared_ptr<const json>> kept_;  // other JSON that lazy nodes point into
  FrameP empty_;
  std::vector<FrameP> frames_;  // every frame made, cleared at the end (breaks cycles)
  Abort abort_ = Abort::kNone;
  std::string abort_message_;
  json abort_error_;
  std::int64_t steps_ = 0;
  // Built-in implementations execute_builtin ran, added to wf_orchestrator_implementations_total
  // once, when the request ends (~Interpreter, also on a retired fiber's forced unwind): one
  // atomic add a request instead of one per built-in call (14 in the nest), each on a cache line
  // every thread writes.
  std::uint32_t builtin_runs_ = 0;
  int call_depth_ = 0;
  bool limit_breached_ = false;              // the abort is the call-depth or the step limit
  int fallback_frames_ = 0;                  // calls under way whose composition may fall back
  std::unordered_set<std::string> demoted_;  // compositions that exceeded the call depth
  int orchestrating_ = 0;
  double validate_us_ = 0;
  double evaluator_us_ = 0;  // orchestrate() calls under way (> 1: a nested one, Z923)
  double evaluator_cpu_ms_ = 0;
  int evaluator_calls_ = 0;  // sent (or taken from a replay), memo hits aside
  int validator_depth_ = 0;  // > 0: type checks off (inside validators)
  bool do_validate_ = false;
  std::vector<std::pair<std::string, std::string>>* trailing_ = nullptr;  // see orchestrate()
  std::unordered_map<std::string, NodeP> type_memo_;     // ephemeral type resolutions by JSON
  std::unordered_map<std::string, NodeP> string_types_;  // bare type strings as references
  std::unordered_map<const Node*, std::pair<NodeP, NodeP>> type_nodes_;  // type node -> memo
  // Z881(T) by T's node: T -> {T (held: its address is not reused), the Z4}.
  std::unordered_map<const Node*, std::pair<NodeP, NodeP>> list_types_;
  std::unordered_map<std::string, NodeP> functions_;  // called functions by ZID (Z7K1 refs)
  // Built-in functions called directly: ZID -> {signature, served from the definitions}.
  std::unordered_map<std::string, std::pair<const BuiltinSignature*, bool>> builtin_signatures_;
  // The same verdicts, in front of that map, by the address of the call's Z7K1 when it is an
  // interned reference (one node per ZID for the process): a direct call looked its function up
  // by hashing the ZID's text (~150 instructions a call), and the map's node was allocated per
  // function and request. A few functions per request; the map serves the rest.
  struct KnownBuiltin {
    const Node* fn;                      // the interned reference (Z7K1)
    const BuiltinSignature* sig;         // null: the general path runs it
    const std::vector<NodeP>* declared;  // builtin_declared(*sig), once asked
  };
  static constexpr std::size_t kMaxKnownBuiltins = 16;
  std::vector<KnownBuiltin> known_builtins_;
  // Declared argument types of built-in functions called directly, by signature.
  std::unordered_map<const BuiltinSignature*, std::vector<NodeP>> builtin_declared_;
  // The Z4s held_list_type answered in this request, by the item type's identity: the node of an
  // interned item type (a reference to a bundled type), or the immortal JSON an item type views
  // (with its key count). The same node answers the request's later calls of Z881 of the same
  // item type (inert, and read-only as every type resolved_type memoises). A few per request.
  struct HeldZ4 {
    const void* id;
    std::size_t entries;
    NodeP z4;
  };
  static constexpr std::size_t kMaxHeldZ4PerRequest = 16;
  std::vector<HeldZ4> held_z4_;
  // The type of a node whose Z1K1 is still an implied list type (per-process JSON of Z881 of a
  // ZID: Node::implied_list_type), resolved in this request by the direct call of the bundled
  // Z881 from held_z4_ (implied_answer): by that JSON's address, the Z4 it answered. The same
  // JSON resolves to the same Z4 for the rest of the request (held_z4_ keeps its entries), so
  // resolve() takes it from here without building the call and running it (8 list types in the
  // nest, of two item types). A few per request.
  struct ImpliedZ4 {
    const json* source;
    NodeP z4;
  };
  static constexpr std::size_t kMaxImpliedZ4PerRequest = 8;
  std::vector<ImpliedZ4> implied_z4_;
  // Whether `call` (a list type's Z881 call) is one whose direct run answers `z4` from held_z4_
  // whenever it runs in this request: its function the bundled Z881 (an interned reference the
  // direct path takes), its only argument the interned item type held_z4_ has `z4` for.
  bool implied_answer(Node& call, const NodeP& z4);
  // Shared JSON values (definitions, fetched objects: alive for the whole request) whose walk by
  // resolve_types has nothing to resolve, or not.
  std::unordered_map<const json*, bool> trivial_json_;
  // Code calls answered in this request, by code, language, arguments and converters (see
  // run_on_evaluator); bounded in entries and key size.
  std::unordered_map<std::string, CodeAnswer> code_answers_;
  // run_code's call from code_call until run_on_evaluator sends it (kept here, not in run_code's
  // frame: fiber.h, stage_retirable).
  std::unique_ptr<CodeCall> code_call_;
  json last_type_error_;
  std::unordered_set<std::string> in_progress_;       // type resolutions under way
  std::unordered_set<std::string> keys_in_progress_;  // user types whose keys' plans are built
  std::vector<std::pair<const Node*, const Node*>> comparing_;  // literal Z4 pairs under way
};

}  // namespace wf::orchestrator::engine_detail
