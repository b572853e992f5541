// normalize / canonicalize / validate on a small call and on a large (1000-element) list.
#include <benchmark/benchmark.h>

#include "wf/zobject/zobject.h"

namespace {

namespace zo = wf::zobject;
using json = nlohmann::json;

json small_call() {
  return {{"Z1K1", "Z7"}, {"Z7K1", "Z801"}, {"Z801K1", "hello"}};
}

json large_list(int n) {
  json arr = json::array({"Z11"});
  for (int i = 0; i < n; ++i) {
    arr.push_back({{"Z1K1", "Z11"}, {"Z11K1", "Z1002"}, {"Z11K2", "label " + std::to_string(i)}});
  }
  return {{"Z1K1", "Z7"}, {"Z7K1", "Z801"}, {"Z801K1", arr}};
}

void BM_NormalizeSmall(benchmark::State& state) {
  json in = small_call();
  for (auto _ : state) benchmark::DoNotOptimize(zo::normalize(in));
}
BENCHMARK(BM_NormalizeSmall);

void BM_CanonicalizeSmall(benchmark::State& state) {
  json normal = *zo::normalize(small_call());
  for (auto _ : state) benchmark::DoNotOptimize(zo::canonicalize(normal));
}
BENCHMARK(BM_CanonicalizeSmall);

void BM_ValidateSmall(benchmark::State& state) {
  json normal = *zo::normalize(small_call());
  for (auto _ : state) benchmark::DoNotOptimize(zo::validate_normal(normal));
}
BENCHMARK(BM_ValidateSmall);

void BM_NormalizeLarge(benchmark::State& state) {
  json in = large_list(static_cast<int>(state.range(0)));
  for (auto _ : state) benchmark::DoNotOptimize(zo::normalize(in));
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_NormalizeLarge)->Arg(1000);

void BM_CanonicalizeLarge(benchmark::State& state) {
  json normal = *zo::normalize(large_list(static_cast<int>(state.range(0))));
  for (auto _ : state) benchmark::DoNotOptimize(zo::canonicalize(normal));
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_CanonicalizeLarge)->Arg(1000);

void BM_ValidateLarge(benchmark::State& state) {
  json normal = *zo::normalize(large_list(static_cast<int>(state.range(0))));
  for (auto _ : state) benchmark::DoNotOptimize(zo::validate_normal(normal));
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_ValidateLarge)->Arg(1000);

}  // namespace

BENCHMARK_MAIN();
