// Micro-benchmarks of the Linear kernels (kernels/linear.h) on every ISA this CPU supports:
// decode GEMV (n = 1, 4) on layer671b shapes with weights read cold (cycling through copies
// larger than the last-level cache), batched GEMV/GEMM (n = 32, 512) with warm weights, and the
// per-head transposed product of MLA. Counters: bytes of weights streamed per second and
// FLOP/s. `dsinfer bench gemv|gemm` reports the same against the measured roofline.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "format/dtype.h"
#include "kernels/cpu.h"
#include "kernels/linear.h"

namespace dsinfer {
namespace {

struct Weights {
  std::vector<std::vector<uint8_t>> codes;  // copies of [rows, cols] FP8 codes
  std::vector<float> scales;                // [ceil(rows/128), ceil(cols/128)], shared
  std::vector<WeightView> views;
};

// `copies` of a random FP8 [rows, cols] matrix (finite codes, block scales around 1e-3).
Weights MakeWeights(int64_t rows, int64_t cols, int copies) {
  Weights w;
  uint64_t state = 12345;
  auto next = [&state] {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return state >> 33;
  };
  w.scales.resize(((rows + 127) / 128) * ((cols + 127) / 128));
  for (float& s : w.scales) s = 1e-3f * (1 + next() % 100) / 50.0f;
  for (int c = 0; c < copies; ++c) {
    std::vector<uint8_t> q(rows * cols);
    for (uint8_t& b : q) {
      b = static_cast<uint8_t>(next());
      if ((b & 0x7f) == 0x7f) --b;
    }
    w.codes.push_back(std::move(q));
  }
  for (auto& q : w.codes)
    w.views.push_back(WeightView{.dtype = DType::kF8E4M3, .rows = rows, .cols = cols,
                                 .data = q.data(), .scales = w.scales.data()});
  return w;
}

int CopiesForCold(int64_t bytes) { return static_cast<int>((int64_t{192} << 20) / bytes + 1); }

// args: isa, rows, cols, n
void BM_LinearFp8(benchmark::State& state) {
  const auto isa = static_cast<Isa>(state.range(0));
  if (!DetectCpu().Supports(isa)) return state.SkipWithError("ISA not supported");
  const int64_t rows = state.range(1), cols = state.range(2), n = state.range(3);
  const bool cold = n <= 4;
  Weights w = MakeWeights(rows, cols, cold ? CopiesForCold(rows * cols) : 1);
  std::vector<float> x(n * cols, 0.5f), y(n * rows);
  size_t i = 0;
  for (auto _ : state) {
    LinearRows(isa, x.data(), cols, n, w.views[i++ % w.views.size()], 0, rows, y.data(), rows);
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["bytes/s"] = benchmark::Counter(static_cast<double>(rows * cols) * state.iterations(),
                                                 benchmark::Counter::kIsRate);
  state.counters["FLOP/s"] = benchmark::Counter(2.0 * n * rows * cols * state.iterations(),
                                                benchmark::Counter::kIsRate);
  state.SetLabel(IsaName(isa));
}

// The GEMV's compute ceiling: a [64, 7168] FP8 matrix (448 KiB) stays in L2, so the rate is
// the decode + FMA throughput of one core, which must exceed its share of memory bandwidth.
void BM_GemvWarmFp8(benchmark::State& state) {
  const auto isa = static_cast<Isa>(state.range(0));
  if (!DetectCpu().Supports(isa)) return state.SkipWithError("ISA not supported");
  const int64_t rows = 64, cols = 7168, n = state.range(1);
  Weights w = MakeWeights(rows, cols, 1);
  std::vector<float> x(n * cols, 0.5f), y(n * rows);
  for (auto _ : state) {
    LinearRows(isa, x.data(), cols, n, w.views[0], 0, rows, y.data(), rows);
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["bytes/s"] = benchmark::Counter(static_cast<double>(rows * cols) * state.iterations(),
                                                 benchmark::Counter::kIsRate);
  state.SetLabel(IsaName(isa));
}

// MLA absorb on one head's W_UK rows ([128, 512] of wkv_b), as decode/prefill call it.
void BM_TransposedFp8(benchmark::State& state) {
  const auto isa = static_cast<Isa>(state.range(0));
  if (!DetectCpu().Supports(isa)) return state.SkipWithError("ISA not supported");
  const int64_t rows = 256, cols = 512, n = state.range(1);
  Weights w = MakeWeights(rows, cols, 1);
  std::vector<float> x(n * 128, 0.5f), y(n * cols);
  for (auto _ : state) {
    LinearTransposed(isa, x.data(), 128, n, w.views[0], 0, 128, y.data(), cols);
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["FLOP/s"] = benchmark::Counter(2.0 * n * 128 * cols * state.iterations(),
                                                benchmark::Counter::kIsRate);
  state.SetLabel(IsaName(isa));
}

void LinearArgs(benchmark::internal::Benchmark* b) {
  const int64_t shapes[][2] = {{2048, 7168}, {7168, 2048}, {1536, 7168}, {24576, 1536},
                               {576, 7168}, {7168, 16384}};
  for (int isa : {0, 1, 2})
    for (const auto& s : shapes)
      for (int64_t n : {1, 4, 32}) b->Args({isa, s[0], s[1], n});
  for (int isa : {1, 2})
    for (const auto& s : {shapes[0], shapes[1]}) b->Args({isa, s[0], s[1], 512});
}

BENCHMARK(BM_LinearFp8)->Apply(LinearArgs)->ArgNames({"isa", "rows", "cols", "n"})->UseRealTime();
BENCHMARK(BM_GemvWarmFp8)->ArgsProduct({{1, 2}, {1, 2, 4}})->ArgNames({"isa", "n"});
BENCHMARK(BM_TransposedFp8)
    ->ArgsProduct({{0, 1, 2}, {1, 4, 512}})
    ->ArgNames({"isa", "n"})
    ->UseRealTime();

}  // namespace
}  // namespace dsinfer
