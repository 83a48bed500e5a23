// Per-sequence, per-layer caches (NUMERICS.md §4/§5): the MLA latent row (c ‖ k_pe in the chosen
// `LatentLayout`) and, for layers with an indexer, the FP8 indexer key (e4m3 codes + f32 block
// scales). Contiguous per sequence; capacity grows in chunks (paging comes with the server).
// Entries of the current chunk are written before attention reads them.
// Not thread-safe for concurrent growth; disjoint rows may be written concurrently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/kv_layout.h"

namespace dsinfer {

class LayerKvCache {
 public:
  LayerKvCache(LatentLayout layout, int64_t index_head_dim /* 0: no indexer */);

  // Makes rows [0, n) writable (keeps existing rows).
  void Reserve(int64_t n);
  int64_t capacity() const { return capacity_; }

  const LatentLayout& layout() const { return layout_; }
  std::byte* latent_row(int64_t t) { return latent_.data() + t * layout_.RowBytes(); }
  const std::byte* latent_data() const { return latent_.data(); }  // [capacity, RowBytes]

  int64_t index_head_dim() const { return index_head_dim_; }
  uint8_t* index_codes(int64_t t) { return index_codes_.data() + t * index_head_dim_; }
  float* index_scales(int64_t t) { return index_scales_.data() + t * index_blocks_; }
  const uint8_t* index_codes_data() const { return index_codes_.data(); }  // [capacity, d_I]
  const float* index_scales_data() const { return index_scales_.data(); }  // [capacity, d_I/128]

 private:
  LatentLayout layout_;
  int64_t index_head_dim_ = 0;
  int64_t index_blocks_ = 0;
  int64_t capacity_ = 0;
  std::vector<std::byte> latent_;      // [capacity, RowBytes]
  std::vector<uint8_t> index_codes_;   // [capacity, index_head_dim] e4m3
  std::vector<float> index_scales_;    // [capacity, ceil(index_head_dim/128)]
};

}  // namespace dsinfer
