#include "model/kv_cache.h"

#include <string>

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
  if (QuantBlocks(layout.kv_lora_rank) > 64)
    throw Error("kv_lora_rank " + std::to_string(layout.kv_lora_rank) +
                " is too large for the fp8 KV cache (at most 8192)");
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
