#include "model/kv_cache.h"

#include <algorithm>
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
  if (capacity() >= n) return;
  // One block for all the new pages (huge-page backed once it spans 2 MiB), and at least a
  // quarter of the pages held so far: a growing sequence gets fewer, larger blocks.
  const int64_t have = static_cast<int64_t>(latent_pages_.size());
  const int64_t pages = std::max((n - capacity() + kKvPageRows - 1) / kKvPageRows, have / 4);
  storage_.emplace_back(static_cast<size_t>(pages * PageBytes()));
  for (int64_t i = 0; i < pages; ++i) AppendPage(storage_.back().data() + i * PageBytes());
}

// One block per page: latent rows, then index keys (both 4-byte aligned row sizes).
void LayerKvCache::AppendPage(std::byte* page) {
  latent_pages_.push_back(page);
  index_pages_.push_back(has_index() ? page + kKvPageRows * layout_.RowBytes() : nullptr);
}

}  // namespace dsinfer
