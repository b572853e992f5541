// Engine::evaluate in-process: Z801 echo, a three-level composition of built-ins, the 14-call nest
// of built-ins of bench/orchestrator_e2e, and a call to a
// wiki-defined composition served through a fake fetcher with the object cache on.
#include <benchmark/benchmark.h>

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "orchestrator/engine/engine.h"
#include "orchestrator/engine/node.h"
#include "wf/zobject/zobject.h"

namespace {

using json = nlohmann::json;
namespace wo = wf::orchestrator;

// A wiki that answers from a fixed map and counts its requests.
class MapWiki final : public wo::ObjectFetcher {
 public:
  explicit MapWiki(std::map<std::string, std::string> objects) : objects_(std::move(objects)) {}
  void fetch(const std::vector<std::string>& zids, const wo::CallContext&, Done done) override {
    ++requests;
    std::map<std::string, std::string> out;
    for (const auto& zid : zids) {
      auto it = objects_.find(zid);
      if (it != objects_.end()) out.emplace(zid, it->second);
    }
    done(std::move(out));
  }
  std::atomic<long> requests{0};

 private:
  std::map<std::string, std::string> objects_;
};

json echo_request() {
  return {{"zobject", {{"Z1K1", "Z7"}, {"Z7K1", "Z801"}, {"Z801K1", "hello"}}},
          {"doValidate", false}};
}

// If(StringEquality(Echo("a"), "a"), "yes", "no"): three nested built-in calls.
json composition_request() {
  json echo = {{"Z1K1", "Z7"}, {"Z7K1", "Z801"}, {"Z801K1", "a"}};
  json eq = {{"Z1K1", "Z7"}, {"Z7K1", "Z866"}, {"Z866K1", echo}, {"Z866K2", "a"}};
  json call = {
      {"Z1K1", "Z7"}, {"Z7K1", "Z802"}, {"Z802K1", eq}, {"Z802K2", "yes"}, {"Z802K3", "no"}};
  return {{"zobject", call}, {"doValidate", false}};
}

json fcall(const char* zid, std::initializer_list<std::pair<const char*, json>> args) {
  json c = {{"Z1K1", "Z7"}, {"Z7K1", zid}};
  for (const auto& [k, v] : args) c[k] = v;
  return c;
}

// The 14-call nest of bench/orchestrator_e2e: Z802/Z866/Z844/Z868/Z886/Z810/Z811/Z812/Z813
// nested five deep, returning "World".
json nest14_request() {
  json empty = json::array({"Z6"});
  json is_empty = fcall(
      "Z813", {{"Z813K1",
                fcall("Z812", {{"Z812K1", fcall("Z810", {{"Z810K1", "x"}, {"Z810K2", empty}})}})}});
  json hello = fcall("Z886", {{"Z886K1", fcall("Z868", {{"Z868K1", "Hello"}})}});
  json first = fcall("Z811", {{"Z811K1", fcall("Z810", {{"Z810K1", "Hello"}, {"Z810K2", empty}})}});
  json cond = fcall("Z844", {{"Z844K1", is_empty},
                             {"Z844K2", fcall("Z866", {{"Z866K1", hello}, {"Z866K2", first}})}});
  json world = fcall(
      "Z886",
      {{"Z886K1",
        fcall("Z868",
              {{"Z868K1", fcall("Z811", {{"Z811K1", fcall("Z810", {{"Z810K1", "World"},
                                                                   {"Z810K2", empty}})}})}})}});
  json call = fcall("Z802", {{"Z802K1", cond}, {"Z802K2", world}, {"Z802K3", "else"}});
  return {{"zobject", call}, {"doValidate", false}};
}

std::map<std::string, std::string> wiki_objects() {
  json fn = {
      {"Z1K1", "Z2"},
      {"Z2K1", {{"Z1K1", "Z6"}, {"Z6K1", "Z10001"}}},
      {"Z2K2",
       {{"Z1K1", "Z8"},
        {"Z8K1", json::array({"Z17",
                              {{"Z1K1", "Z17"},
                               {"Z17K1", "Z6"},
                               {"Z17K2", "Z10001K1"},
                               {"Z17K3", {{"Z1K1", "Z12"}, {"Z12K1", json::array({"Z11"})}}}}})},
        {"Z8K2", "Z6"},
        {"Z8K3", json::array({"Z20"})},
        {"Z8K4", json::array({"Z14", "Z10002"})},
        {"Z8K5", "Z10001"}}},
      {"Z2K3", {{"Z1K1", "Z12"}, {"Z12K1", json::array({"Z11"})}}}};
  json impl = {{"Z1K1", "Z2"},
               {"Z2K1", {{"Z1K1", "Z6"}, {"Z6K1", "Z10002"}}},
               {"Z2K2",
                {{"Z1K1", "Z14"},
                 {"Z14K1", "Z10001"},
                 {"Z14K2",
                  {{"Z1K1", "Z7"},
                   {"Z7K1", "Z801"},
                   {"Z801K1", {{"Z1K1", "Z18"}, {"Z18K1", "Z10001K1"}}}}}}},
               {"Z2K3", {{"Z1K1", "Z12"}, {"Z12K1", json::array({"Z11"})}}}};
  return {{"Z10001", fn.dump()}, {"Z10002", impl.dump()}};
}

json wiki_request() {
  return {{"zobject", {{"Z1K1", "Z7"}, {"Z7K1", "Z10001"}, {"Z10001K1", "hi"}}},
          {"doValidate", false}};
}

void run(benchmark::State& state, const json& request, std::shared_ptr<wo::ObjectFetcher> wiki,
         const char* expect) {
  wo::EngineOptions options;
  auto engine = wo::make_engine(options, std::move(wiki), nullptr);
  wo::CallContext ctx;
  json first = engine->evaluate(request, ctx);
  if (first.value("Z22K1", json()) != expect) {
    state.SkipWithError(("unexpected result: " + first.dump()).c_str());
    return;
  }
  for (auto _ : state) {
    json out = engine->evaluate(request, ctx);
    benchmark::DoNotOptimize(out);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_EngineEcho(benchmark::State& state) {
  run(state, echo_request(), nullptr, "hello");
}
BENCHMARK(BM_EngineEcho);

void BM_EngineComposition3(benchmark::State& state) {
  run(state, composition_request(), nullptr, "yes");
}
BENCHMARK(BM_EngineComposition3);

void BM_EngineNest14(benchmark::State& state) {
  run(state, nest14_request(), nullptr, "World");
}
BENCHMARK(BM_EngineNest14);

// Z801(Z801(...Z801("x"))) n deep: (instructions at n = 21) - (at n = 1) over 20 is the cost of
// one nested built-in call with a string argument.
void BM_EngineEchoChain(benchmark::State& state) {
  json call = "x";
  for (int64_t i = 0; i < state.range(0); ++i) call = fcall("Z801", {{"Z801K1", call}});
  run(state, {{"zobject", call}, {"doValidate", false}}, nullptr, "x");
}
BENCHMARK(BM_EngineEchoChain)->Arg(1)->Arg(21);

// A 1,000-element canonical list of Z11 labels, the input of bench_zobject's BM_NormalizeLarge.
json large_list(int n) {
  json arr = json::array({"Z11"});
  for (int i = 0; i < n; ++i) {
    arr.push_back({{"Z1K1", "Z11"}, {"Z11K1", "Z1002"}, {"Z11K2", "label " + std::to_string(i)}});
  }
  return arr;
}

// The engine's normalisation step of a request (Interpreter::orchestrate_inner without
// validation): the schema check of the whole input, then the lazy normal-form view.
void BM_EngineNormaliseLarge(benchmark::State& state) {
  namespace ed = wo::engine_detail;
  json in = {{"Z1K1", "Z7"}, {"Z7K1", "Z801"}, {"Z801K1", large_list(state.range(0))}};
  for (auto _ : state) {
    auto violations = wf::zobject::check_mixed(in);
    ed::NodeP root = ed::Node::from_canonical(in);
    benchmark::DoNotOptimize(violations);
    benchmark::DoNotOptimize(root);
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_EngineNormaliseLarge)->Arg(1000);

// The same, and then every element read in normal form (its label text), as a built-in that
// walks the whole list does.
void BM_EngineNormaliseLargeRead(benchmark::State& state) {
  namespace ed = wo::engine_detail;
  json in = {{"Z1K1", "Z7"}, {"Z7K1", "Z801"}, {"Z801K1", large_list(state.range(0))}};
  for (auto _ : state) {
    auto violations = wf::zobject::check_mixed(in);
    ed::NodeP root = ed::Node::from_canonical(in);
    std::size_t chars = 0;
    for (ed::NodeP n = root->get("Z801K1"); n && n->has("K1"); n = n->get("K2")) {
      chars += n->get("K1")->get("Z11K2")->str().size();
    }
    if (chars == 0) state.SkipWithError("no element read");
    benchmark::DoNotOptimize(violations);
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_EngineNormaliseLargeRead)->Arg(1000);

void BM_EngineWikiCached(benchmark::State& state) {
  auto wiki = std::make_shared<MapWiki>(wiki_objects());
  run(state, wiki_request(), wiki, "hi");
  state.counters["wiki_requests"] = static_cast<double>(wiki->requests.load());
}
BENCHMARK(BM_EngineWikiCached);

}  // namespace
