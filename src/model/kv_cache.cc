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

int64_t LayerKvCache::PageBytes() const {
  return kKvPageRows * (layout_.RowBytes() + (has_index() ? index_.RowBytes() : 0));
}

void LayerKvCache::Reserve(int64_t n) {
  while (capacity() < n) {
    storage_.push_back(std::make_unique<std::byte[]>(PageBytes()));
    AppendPage(storage_.back().get());
  }
}

// One block per page: latent rows, then index keys (both 4-byte aligned row sizes).
void LayerKvCache::AppendPage(std::byte* page) {
  latent_pages_.push_back(page);
  index_pages_.push_back(has_index() ? page + kKvPageRows * layout_.RowBytes() : nullptr);
}

}  // namespace dsinfer
