#include "model/kv_cache.h"

#include <string>

#include "base/error.h"
#include "kernels/quant.h"

namespace dsinfer {

LayerKvCache::LayerKvCache(LatentLayout layout, int64_t index_head_dim)
    : layout_(layout), index_{index_head_dim} {
  if (QuantBlocks(layout.kv_lora_rank) > 64)
    throw Error("kv_lora_rank " + std::to_string(layout.kv_lora_rank) +
                " is too large for the fp8 KV cache (at most 8192)");
}

void LayerKvCache::Reserve(int64_t n) {
  while (capacity() < n) {
    const int64_t latent_bytes = kKvPageRows * layout_.RowBytes();
    const int64_t index_bytes = has_index() ? kKvPageRows * index_.RowBytes() : 0;
    // One allocation per page: latent rows, then index keys (both 4-byte aligned row sizes).
    storage_.push_back(std::make_unique<std::byte[]>(latent_bytes + index_bytes));
    latent_pages_.push_back(storage_.back().get());
    index_pages_.push_back(has_index() ? storage_.back().get() + latent_bytes : nullptr);
  }
}

}  // namespace dsinfer
