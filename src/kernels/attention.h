// Sparse MLA attention in the absorbed (MQA) form over gathered cached latent rows
// (NUMERICS.md §4, MODEL.md §3.4/§3.8): for every head h,
//   s_h(t) = scale · (q_abs_h · c(t) + q_pe_h · k_pe(t)),  P = softmax over t ∈ selected,
//   o_lat_h = Σ_t P(t) c(t).
// Only the selected rows are read (decoded tile by tile from the cache layout) and the softmax
// is computed online, so any selected set — dense [0, p] or an indexer top-k — costs O(k).
// Thread-safe: pure function on caller buffers.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/kv_layout.h"

namespace dsinfer {

struct MlaQuery {
  const float* q_abs;  // [n_heads, kv_lora_rank]  W_UKᵀ q_nope per head
  const float* q_pe;   // [n_heads, rope_dim]      rotated
  int64_t n_heads;
  float scale;         // softmax_scale
};

// cache: rows in `layout` (cache.row_bytes == layout.RowBytes()); selected: [n_selected] row
// indices (any order, n ≥ 1). o_lat: [n_heads, kv_lora_rank].
void SparseMlaAttention(const MlaQuery& q, const LatentLayout& layout, const PagedRows& cache,
                        const int32_t* selected, int64_t n_selected, float* o_lat);

}  // namespace dsinfer
