#include "model/kv_cache.h"

#include "base/error.h"
#include "kernels/quant.h"

namespace dsinfer {

namespace {
constexpr int64_t kGrowTokens = 256;  // capacity grows in whole chunks of tokens
}

LayerKvCache::LayerKvCache(LatentLayout layout, int64_t index_head_dim)
    : layout_(layout),
      index_head_dim_(index_head_dim),
      index_blocks_(index_head_dim > 0 ? QuantBlocks(index_head_dim) : 0) {
  DSINFER_CHECK(QuantBlocks(layout.kv_lora_rank) <= 64, "kv_lora_rank too large for fp8 cache");
}

void LayerKvCache::Reserve(int64_t n) {
  if (n <= capacity_) return;
  const int64_t cap = ((n + kGrowTokens - 1) / kGrowTokens) * kGrowTokens;
  latent_.resize(cap * layout_.RowBytes());
  index_codes_.resize(cap * index_head_dim_);
  index_scales_.resize(cap * index_blocks_);
  capacity_ = cap;
}

}  // namespace dsinfer
