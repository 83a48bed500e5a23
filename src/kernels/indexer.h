// Lightning-indexer scores of one query against cached FP8 keys (NUMERICS.md §5, MODEL.md §3.5):
//   I(t) = Σ_h w_h · ReLU( Σ_b q_s[h,b] · k_s(t)[b] · Σ_{d∈b} e4m3(q[h,d]) · e4m3(k(t)[d]) )
// with blocks b of 128 dims (the last may be shorter). Thread-safe: pure function.
#pragma once

#include <cstdint>

#include "kernels/kv_layout.h"

namespace dsinfer {

struct IndexerQuery {
  const uint8_t* codes;  // [n_heads, head_dim] e4m3
  const float* scales;   // [n_heads, QuantBlocks(head_dim)]
  const float* weights;  // [n_heads] w_h (all constant factors folded in)
  int64_t n_heads;
  int64_t head_dim;
};

// keys: rows 0..n_keys-1 in IndexKeyLayout{q.head_dim}; out: [n_keys].
void IndexerScores(const IndexerQuery& q, const PagedRows& keys, int64_t n_keys, float* out);

}  // namespace dsinfer
