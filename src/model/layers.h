// Internal to model/: one decoder layer's attention and FFN blocks, used by model.cc for the
// main layers and the MTP layer alike. All buffers are f32, row-major, one row per token.
#pragma once

#include <cstdint>

#include "format/config.h"
#include "kernels/rope.h"
#include "model/dump.h"
#include "model/kv_cache.h"
#include "model/weights.h"

namespace dsinfer {

struct LayerContext {
  const ModelConfig& config;
  const RopeTable& rope;
  bool use_indexer;    // DSA with this layer's indexer
  int64_t index_topk;  // effective top-k
  Dumper* dump;        // may be null
};

// MLA (+ indexer) of S tokens at positions start..start+S-1; writes the tokens' cache rows
// first. x: [S, hidden] (attn_norm output), out: [S, hidden] (after wo).
void AttentionForward(const LayerContext& ctx, const LayerWeights& lw, LayerKvCache& cache,
                      const float* x, int64_t S, int64_t start, float* out);

// Dense MLP or MoE. x: [S, hidden] (ffn_norm output), out: [S, hidden].
void FfnForward(const LayerContext& ctx, const LayerWeights& lw, const float* x, int64_t S,
                float* out);

// SwiGLU MLP w2(silu(w1 x) * w3 x). x: [S, hidden], out: [S, hidden].
void MlpForward(const MlpWeights& w, const float* x, int64_t S, float* out);

}  // namespace dsinfer
