// Micro-benchmarks of the attention-side kernels at the layer671b shapes: the fused indexer +
// streaming top-k (64 heads × 128 dims, k = 2048), sparse MLA (128 heads, kv_lora 512, rope 64)
// and dense flash MLA. Counters: GFLOP/s of the dot products (2 flops per multiply-add), the
// figure to hold against `dsinfer bench roofline` (BF16 dot / f32 FMA peaks). Single-threaded
// kernels report rates over CPU time (robust on a shared machine); the key-range split over real
// time.
// Caches are filled with synthetic quantised values. Paths: scalar / avx2 / avx512(bf16).
#include <benchmark/benchmark.h>

#include <cstring>
#include <string>
#include <vector>

#include "../tests/unit/kernels/test_util.h"
#include "kernels/attention.h"
#include "kernels/cpu.h"
#include "kernels/indexer.h"
#include "kernels/quant.h"

namespace dsinfer {
namespace {

constexpr int64_t kIH = 64, kID = 128, kTopK = 2048;

struct IndexerSetup {
  int64_t S, n_keys;
  std::vector<uint8_t> qc;
  std::vector<float> qs, w;
  test::PagedBuffer keys;
  IndexerSetup(int64_t S_, int64_t n)
      : S(S_),
        n_keys(n),
        qc(S * kIH * kID),
        qs(S * kIH),
        w(S * kIH),
        keys(n, IndexKeyLayout{kID}.RowBytes(), /*page_shift=*/6) {
    std::vector<float> q = test::RandomVector(S * kIH * kID, 1),
                       k = test::RandomVector(kID * 4096, 2);
    for (int64_t i = 0; i < S * kIH; ++i) ActQuant(&q[i * kID], kID, &qc[i * kID], &qs[i]);
    w = test::RandomVector(S * kIH, 3);
    for (int64_t t = 0; t < n; ++t)  // 4096 distinct keys repeated: generation stays fast
      ActQuant(&k[(t % 4096) * kID], kID, reinterpret_cast<uint8_t*>(keys.row(t)),
               reinterpret_cast<float*>(keys.row(t) + kID));
  }
  IndexerChunk Chunk() const { return {qc.data(), qs.data(), w.data(), S, kIH, kID, n_keys - S}; }
  // Multiply-adds of the causal chunk: Σ_s (p0 + s + 1) keys × heads × dims.
  double Flops() const {
    const double p0 = static_cast<double>(n_keys - S);
    return 2.0 * kIH * kID * (S * (p0 + 1) + S * (S - 1) / 2.0);
  }
};

IndexerPath PathArg(int64_t a) {
  const std::vector<IndexerPath> ok = SupportedIndexerPaths(kID);
  return ok[std::min<size_t>(a, ok.size() - 1)];
}

// Args: path index (0 scalar, 1 avx2, 2 avx512bf16), queries S, keys n_ctx.
void BM_IndexerTopK(benchmark::State& st) {
  const IndexerPath path = PathArg(st.range(0));
  IndexerSetup x(st.range(1), st.range(2));
  std::vector<int32_t> sel(x.S * kTopK);
  IndexerWorkspace ws;
  for (auto _ : st) {
    IndexerTopK(x.Chunk(), x.keys.view(), kTopK, sel.data(), ws, path);
    benchmark::DoNotOptimize(sel.data());
  }
  st.SetLabel(IndexerPathName(path));
  st.counters["GFLOP/s"] =
      benchmark::Counter(x.Flops() * st.iterations() / 1e9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_IndexerTopK)
    ->ArgNames({"path", "S", "n_ctx"})
    ->Args({1, 1, 32768})
    ->Args({2, 1, 32768})
    ->Args({2, 1, 131072})
    ->Args({1, 16, 16384})
    ->Args({2, 16, 16384})
    ->Args({2, 64, 16384})
    ->Unit(benchmark::kMillisecond);

// One long decode query, key range split over all OpenMP threads.
void BM_IndexerTopKSplitKeys(benchmark::State& st) {
  const IndexerPath path = PathArg(st.range(0));
  IndexerSetup x(1, st.range(1));
  std::vector<int32_t> sel(kTopK);
  for (auto _ : st) {
    IndexerTopKSplitKeys(x.Chunk(), x.keys.view(), kTopK, sel.data(), path);
    benchmark::DoNotOptimize(sel.data());
  }
  st.SetLabel(IndexerPathName(path));
  st.counters["GFLOP/s"] =
      benchmark::Counter(x.Flops() * st.iterations() / 1e9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_IndexerTopKSplitKeys)
    ->ArgNames({"path", "n_ctx"})
    ->Args({2, 131072})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

constexpr int64_t kH = 128, kR = 512, kDr = 64;

struct MlaSetup {
  int64_t S, n_ctx;
  LatentLayout layout;
  test::PagedBuffer cache;
  std::vector<float> q_abs, q_pe;
  MlaSetup(KvCacheType type, int64_t S_, int64_t n)
      : S(S_),
        n_ctx(n),
        layout{type, kR, kDr},
        cache(n, layout.RowBytes(), /*page_shift=*/6),
        q_abs(test::RandomVector(S_ * kH * kR, 1, 0.05f)),
        q_pe(test::RandomVector(S_ * kH * kDr, 2, 0.05f)) {
    std::vector<float> c = test::RandomVector(kR * 256, 3), pe = test::RandomVector(kDr * 256, 4);
    for (int64_t t = 0; t < n; ++t)  // 256 distinct rows repeated: generation stays fast
      layout.Encode(&c[(t % 256) * kR], &pe[(t % 256) * kDr], cache.row(t));
  }
  MlaChunk Chunk() const { return {q_abs.data(), q_pe.data(), S, kH, 0.1f, n_ctx - S}; }
};

Isa IsaArg(int64_t a) {
  return static_cast<Isa>(std::min<int64_t>(a, static_cast<int>(DetectCpu().best)));
}
const KvCacheType kTypes[] = {KvCacheType::kF32, KvCacheType::kBF16, KvCacheType::kFP8};

// Flops of one query over n keys: scores (R + dr) + values R multiply-adds per head and key.
double MlaFlops(double n) { return 2.0 * kH * n * (kR + kDr + kR); }

// Args: isa (0 scalar, 1 avx2, 2 avx512), layout (0 f32, 1 bf16, 2 fp8), queries S.
// Each query attends to 2048 scattered rows of a 32K cache (DSA at index_topk = 2048).
void BM_SparseMla(benchmark::State& st) {
  const Isa isa = IsaArg(st.range(0));
  MlaSetup x(kTypes[st.range(1)], st.range(2), 32768);
  std::vector<int32_t> sel(x.S * kTopK);
  for (int64_t i = 0; i < x.S * kTopK; ++i)
    sel[i] = static_cast<int32_t>((i * 7919) % (x.n_ctx - x.S));
  std::vector<float> o(x.S * kH * kR);
  MlaWorkspace ws;
  for (auto _ : st) {
    SparseMlaAttentionChunk(x.Chunk(), x.layout, x.cache.view(), sel.data(), kTopK, o.data(), ws,
                            isa);
    benchmark::DoNotOptimize(o.data());
  }
  st.SetLabel(std::string(IsaName(isa)) + " " + KvCacheTypeName(x.layout.type));
  st.counters["GFLOP/s"] = benchmark::Counter(x.S * MlaFlops(kTopK) * st.iterations() / 1e9,
                                              benchmark::Counter::kIsRate);
}
BENCHMARK(BM_SparseMla)
    ->ArgNames({"isa", "layout", "S"})
    ->Args({0, 2, 1})
    ->Args({1, 2, 1})
    ->Args({2, 0, 1})
    ->Args({2, 1, 1})
    ->Args({2, 2, 1})
    ->Args({2, 2, 4})
    ->Unit(benchmark::kMillisecond);

// Args: isa, layout, queries S, first position p0: causal dense over rows 0..p0+s.
void BM_DenseMla(benchmark::State& st) {
  const Isa isa = IsaArg(st.range(0));
  MlaSetup x(kTypes[st.range(1)], st.range(2), st.range(3) + st.range(2));
  std::vector<float> o(x.S * kH * kR);
  MlaWorkspace ws;
  for (auto _ : st) {
    DenseMlaAttentionChunk(x.Chunk(), x.layout, x.cache.view(), o.data(), ws, isa);
    benchmark::DoNotOptimize(o.data());
  }
  double keys = 0;
  for (int64_t s = 0; s < x.S; ++s) keys += static_cast<double>(x.n_ctx - x.S + s + 1);
  st.SetLabel(std::string(IsaName(isa)) + " " + KvCacheTypeName(x.layout.type));
  st.counters["GFLOP/s"] =
      benchmark::Counter(MlaFlops(keys) * st.iterations() / 1e9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_DenseMla)
    ->ArgNames({"isa", "layout", "S", "p0"})
    ->Args({2, 2, 1, 8192})
    ->Args({2, 2, 1, 32768})
    ->Args({1, 2, 16, 4096})
    ->Args({2, 2, 16, 4096})
    ->Args({2, 1, 16, 4096})
    ->Unit(benchmark::kMillisecond);

// One dense decode query over all OpenMP threads (key blocks, softmax states merged).
void BM_DenseMlaSplitKeys(benchmark::State& st) {
  const Isa isa = IsaArg(st.range(0));
  MlaSetup x(KvCacheType::kFP8, 1, st.range(1) + 1);
  std::vector<float> o(kH * kR);
  for (auto _ : st) {
    DenseMlaAttentionSplitKeys(x.Chunk(), x.layout, x.cache.view(), o.data(), isa);
    benchmark::DoNotOptimize(o.data());
  }
  st.SetLabel(std::string(IsaName(isa)) + " fp8");
  st.counters["GFLOP/s"] = benchmark::Counter(
      MlaFlops(static_cast<double>(x.n_ctx)) * st.iterations() / 1e9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_DenseMlaSplitKeys)
    ->ArgNames({"isa", "p0"})
    ->Args({2, 32768})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace dsinfer
