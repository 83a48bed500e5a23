// Where a layer step's time goes, for `dsinfer bench layer --breakdown` (model.h LayerStep).
#pragma once

namespace dsinfer {

// Where a layer step's time goes (benchmarks): wall-clock ms per part, summed over the steps
// that were given this record. Parts are consecutive phases of `LayerForward`, so they add up
// to the step.
struct LayerPartTimes {
  enum Part : int {
    kAttnProj,   // q / latent projections, RoPE, cache writes, query absorption (W_UK)
    kIndexer,    // indexer keys and queries, key scan and top-k
    kAttention,  // sparse or dense MLA over the cache
    kAttnOut,    // value projection (W_UV) and wo
    kRouter,     // gate, routing
    kExperts,    // routed experts
    kShared,     // shared expert
    kOther,      // norms, residual adds
    kCount
  };
  static const char* Name(int part);  // "attn_proj", "indexer", ...
  double ms[kCount] = {};
};

}  // namespace dsinfer
