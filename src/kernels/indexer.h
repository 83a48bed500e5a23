// Lightning-indexer scores and the fused indexer + streaming top-k (docs/numerics.md §5,
// docs/model.md §3.5):
//   I(t) = Σ_h w_h · ReLU( Σ_b q_s[h,b] · k_s(t)[b] · Σ_{d∈b} e4m3(q[h,d]) · e4m3(k(t)[d]) )
// with blocks b of 128 dims (the last may be shorter).
//
// Paths (IndexerPath), chosen at run time:
//  * kScalar: the specification (IndexerScores without a path argument).
//  * kAvx2: f32 FMA, heads in vector lanes, each key's codes decoded to f32 once per key tile.
//  * kAvx512Bf16: `vdpbf16ps`. Every e4m3 value (subnormals included) is a NORMAL bf16 number and
//    the product of two is exact in f32, so only the f32 summation order differs from the
//    specification. A tile of keys is converted to bf16 once and reused by every head and by
//    every query of a chunk (that reuse is what makes a prefill chunk run at the dot-product peak).
// The vector paths differ from the scalar one only by the order of f32 additions.
//
// IndexerTopK never materialises a query's n_ctx scores: each query keeps a StreamingTopK whose
// result is exactly TopK over the scores IndexerScores(…, path) gives (tie rule included).
// Memory: per-call buffers live in a caller-owned IndexerWorkspace that grows to the largest call
// and is then reused (no heap allocation per call once warmed up).
// Thread-safety: pure functions on caller buffers; a workspace is used by one thread at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/kv_layout.h"
#include "kernels/workspace.h"
#include "kernels/topk.h"

namespace dsinfer {

struct IndexerQuery {
  const uint8_t* codes;  // [n_heads, head_dim] e4m3
  const float* scales;   // [n_heads, QuantBlocks(head_dim)]
  const float* weights;  // [n_heads] w_h (all constant factors folded in)
  int64_t n_heads;
  int64_t head_dim;
};

// A chunk of S queries at consecutive positions p0 .. p0+S-1 (decode: S = 1); query s sees the
// keys t ≤ p0 + s (causal).
struct IndexerChunk {
  const uint8_t* codes;  // [S, n_heads, head_dim] e4m3
  const float* scales;   // [S, n_heads, QuantBlocks(head_dim)]
  const float* weights;  // [S, n_heads]
  int64_t n_queries;     // S
  int64_t n_heads;
  int64_t head_dim;
  int64_t first_pos;  // p0
};

enum class IndexerPath { kScalar, kAvx2, kAvx512Bf16 };

const char* IndexerPathName(IndexerPath p);
// Best path of this CPU (DetectCpu(), so DSINFER_ISA caps it) for keys of `head_dim`.
IndexerPath BestIndexerPath(int64_t head_dim);
// Every path this CPU can run for `head_dim` (the tests compare each with the scalar one).
std::vector<IndexerPath> SupportedIndexerPaths(int64_t head_dim);

// e4m3 codes → bf16 bit patterns (exact), as the kAvx512Bf16 path converts its key tiles:
// kTable (the specification: bf16 of the decoded value, NaN codes to bf16 NaN), kAvx512
// (arithmetic re-biasing), kAvx512Vbmi (two 128-entry byte tables, vpermi2b). All give the same
// bits; the indexer uses the fastest the CPU supports. The vector ones need n % 64 == 0.
enum class Bf16Conversion { kTable, kAvx512, kAvx512Vbmi };
std::vector<Bf16Conversion> SupportedBf16Conversions();
void ConvertE4m3ToBf16(const uint8_t* codes, int64_t n, uint16_t* out, Bf16Conversion how);

// Scratch of IndexerTopK: converted queries, one key tile, candidate buffers. Grows only.
class IndexerWorkspace : public GrowOnlyWorkspace {
 private:
  friend struct IndexerScan;
  std::vector<float> qf_;            // per query: converted codes (path layout), scales, weights
  std::vector<uint16_t> key_bf16_;   // [tile, head_dim]
  std::vector<float> key_f32_;       // [tile, head_dim]
  std::vector<float> key_scales_;    // [tile, blocks]
  std::vector<float> scores_;        // [tile]
  std::vector<const std::byte*> pf_rows_;  // [tile] rows of the tile two ahead (prefetch)
  std::vector<TopKCandidate> cand_;  // [S, StreamingTopK::Capacity(k)]
  std::vector<StreamingTopK> topk_;  // [S]
};

// The specification: keys rows 0..n_keys-1 in IndexKeyLayout{q.head_dim}; out: [n_keys].
void IndexerScores(const IndexerQuery& q, const PagedRows& keys, int64_t n_keys, float* out);
// The same scores through `path` (must be supported), bit-identical to what IndexerTopK ranks.
void IndexerScores(const IndexerQuery& q, const PagedRows& keys, int64_t n_keys, float* out,
                   IndexerPath path, IndexerWorkspace& ws);

// Fused scores + streaming top-k. keys: rows 0..p0+S-1 (IndexKeyLayout{head_dim}).
// selected: [S, stride] (stride 0 means k); row s receives min(k, p0+s+1) ascending key indices
// (the rest untouched); when k ≥ p0+s+1 that is [0, p0+s] and the query's scores are not
// computed. Throws Error on inconsistent shapes (k < 1, S < 1, stride < k, row size ≠ the key
// layout, …).
void IndexerTopK(const IndexerChunk& q, const PagedRows& keys, int64_t k, int32_t* selected,
                 IndexerWorkspace& ws, IndexerPath path, int64_t stride = 0);
// The same result, computed by all OpenMP threads over blocks of the key range (dealt round
// robin, candidates merged exactly): for a single long decode query. Call it OUTSIDE a
// parallel region (inside one, or for fewer than 2 blocks of 2048 keys, it runs IndexerTopK);
// uses one thread_local workspace and merge buffer per thread.
void IndexerTopKSplitKeys(const IndexerChunk& q, const PagedRows& keys, int64_t k,
                          int32_t* selected, IndexerPath path, int64_t stride = 0);

}  // namespace dsinfer
