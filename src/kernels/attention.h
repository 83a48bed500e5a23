// MLA attention in the absorbed (MQA) form over cached latent rows (docs/numerics.md §4,
// docs/model.md §3.4/§3.8): for every head h,
//   s_h(t) = scale · (q_abs_h · c(t) + q_pe_h · k_pe(t)),  P = softmax over the keys t,
//   o_lat_h = Σ_t P(t) c(t).
// The keys are read tile by tile (decoded from the cache layout once per tile) and the softmax is
// computed online, so no score matrix is ever materialised.
//  * SparseMlaAttention (one query, any selected set): the scalar specification.
//  * SparseMlaAttentionChunk: S queries (decode S = 1, or a prefill chunk), each with its own
//    selected set (the layout IndexerTopK writes). A gathered tile is decoded to f32 once and
//    used by all heads.
//  * DenseMlaAttentionChunk: flash-style causal attention of S consecutive queries over ALL rows
//    t ≤ p (the DSA-vs-dense baseline): each tile of consecutive rows is decoded once per chunk
//    and used by every query and head; no L×L matrix.
// Vector paths (Isa::kAvx512 / kAvx2): keys in vector lanes for the scores (a transposed copy of
// the tile), channels in lanes for P·c; register blocks of 4 heads × 64 keys / 4 heads × 64
// channels. They differ from the specification by f32 summation order and a polynomial exp.
// Isa::kScalar runs the specification per query.
// Memory: tiles and per-query softmax state live in a caller-owned MlaWorkspace that grows to
// the largest call and is then reused (no heap allocation per call once warmed up).
// Thread-safety: pure functions on caller buffers; a workspace is used by one thread at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/cpu.h"
#include "kernels/kv_layout.h"
#include "kernels/workspace.h"

namespace dsinfer {

struct MlaQuery {
  const float* q_abs;  // [n_heads, kv_lora_rank]  W_UKᵀ q_nope per head
  const float* q_pe;   // [n_heads, rope_dim]      rotated
  int64_t n_heads;
  float scale;  // softmax_scale
};

// S queries at consecutive positions first_pos .. first_pos+S-1.
struct MlaChunk {
  const float* q_abs;  // [S, n_heads, kv_lora_rank]
  const float* q_pe;   // [S, n_heads, rope_dim]
  int64_t n_queries;   // S
  int64_t n_heads;
  float scale;
  int64_t first_pos;
};

class MlaWorkspace : public GrowOnlyWorkspace {
 private:
  friend struct MlaEngine;
  std::vector<float> rows_;     // [tile, width rounded to 16] decoded rows
  std::vector<float> cols_;     // [width, tile] the same, transposed
  std::vector<float> probs_;    // [n_heads, tile] scores, then probabilities
  std::vector<float> max_;      // [S, n_heads] running max
  std::vector<double> sum_;     // [S, n_heads] running Σ exp(s − max)
  std::vector<int32_t> index_;  // [n_ctx] 0, 1, … (the scalar path's dense set)
};

// The specification. cache: rows in `layout` (cache.row_bytes == layout.RowBytes());
// selected: [n_selected] row indices (any order, n ≥ 1). o_lat: [n_heads, kv_lora_rank].
void SparseMlaAttention(const MlaQuery& q, const LatentLayout& layout, const PagedRows& cache,
                        const int32_t* selected, int64_t n_selected, float* o_lat);

// selected: [S, k]; query s attends to its first min(k, first_pos+s+1) entries (IndexerTopK's
// output; any order, each < its row count). o_lat: [S, n_heads, kv_lora_rank].
// Throws Error on inconsistent shapes or an unsupported `isa`.
void SparseMlaAttentionChunk(const MlaChunk& q, const LatentLayout& layout, const PagedRows& cache,
                             const int32_t* selected, int64_t k, float* o_lat, MlaWorkspace& ws,
                             Isa isa);

// Causal dense attention: query s over rows 0 .. first_pos+s. o_lat: [S, n_heads, kv_lora_rank].
void DenseMlaAttentionChunk(const MlaChunk& q, const LatentLayout& layout, const PagedRows& cache,
                            float* o_lat, MlaWorkspace& ws, Isa isa);

// The same result computed by all OpenMP threads over blocks of the key range, their online
// softmax states merged exactly (a single long dense query, e.g. the dense decode baseline at
// batch 1). Call it OUTSIDE a parallel region (inside one, for fewer than 2 blocks of 1024 keys
// or on Isa::kScalar it runs DenseMlaAttentionChunk); uses thread_local scratch per thread.
void DenseMlaAttentionSplitKeys(const MlaChunk& q, const LatentLayout& layout,
                                const PagedRows& cache, float* o_lat, Isa isa);

// The softmax exp of the vector paths, y[i] = exp(x[i]) for x ≤ 0 (0 below −87.3), exposed for
// its accuracy test (relative error ≤ 4 ulp of f32).
void SoftmaxExp(const float* x, int64_t n, float* y, Isa isa);

}  // namespace dsinfer
