// Per-sequence, per-layer caches (docs/numerics.md §4/§5): the MLA latent row (c ‖ k_pe in the
// chosen `LatentLayout`) and, for layers with an indexer, the FP8 indexer key
// (`IndexKeyLayout`: e4m3 codes ‖ f32 block scales). Stored in pages of `kKvPageRows` consecutive tokens, so growing a
// sequence never moves rows and kernels read the cache through `PagedRows` views.
// Entries of the current chunk are written before attention reads them.
// A page's storage is either owned by the cache (`Reserve` allocates it: CLI tools, tests) or
// lent by someone else (`AppendPage`: the server's page pool, which may share a read-only
// prefix page between sequences); the model code sees no difference.
// Not thread-safe for concurrent growth; disjoint rows may be written concurrently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "base/huge_buffer.h"
#include "kernels/kv_layout.h"

namespace dsinfer {

inline constexpr int kKvPageShift = 6;
inline constexpr int64_t kKvPageRows = int64_t{1} << kKvPageShift;  // tokens per page

class LayerKvCache {
 public:
  LayerKvCache(LatentLayout layout, int64_t index_head_dim /* 0: no indexer */);

  // Makes rows [0, n) writable (keeps existing rows); allocates owned pages as needed, in
  // blocks (capacity may exceed n), zero-filled, huge-page backed where possible.
  void Reserve(int64_t n);
  // Bytes of one page: kKvPageRows latent rows, then (with an indexer) kKvPageRows index keys.
  int64_t PageBytes() const;
  // Appends a page at rows [capacity, capacity + kKvPageRows) whose storage `page`
  // [PageBytes()] belongs to the caller and must outlive every read of this cache.
  void AppendPage(std::byte* page);
  int64_t capacity() const { return static_cast<int64_t>(latent_pages_.size()) * kKvPageRows; }

  const LatentLayout& layout() const { return layout_; }
  std::byte* latent_row(int64_t t) { return RowOf(latent_pages_, layout_.RowBytes(), t); }
  PagedRows latent() const { return {latent_pages_.data(), kKvPageShift, layout_.RowBytes()}; }

  bool has_index() const { return index_.head_dim > 0; }
  const IndexKeyLayout& index_layout() const { return index_; }
  std::byte* index_row(int64_t t) { return RowOf(index_pages_, index_.RowBytes(), t); }
  PagedRows index_keys() const { return {index_pages_.data(), kKvPageShift, index_.RowBytes()}; }

 private:
  static std::byte* RowOf(const std::vector<std::byte*>& pages, int64_t row_bytes, int64_t t) {
    return pages[t >> kKvPageShift] + (t & (kKvPageRows - 1)) * row_bytes;
  }
  LatentLayout layout_;
  IndexKeyLayout index_;
  std::vector<HugeBuffer> storage_;  // blocks of the pages this cache owns (Reserve)
  std::vector<std::byte*> latent_pages_;               // [pages] kKvPageRows latent rows each
  std::vector<std::byte*> index_pages_;                // [pages] kKvPageRows index keys each
};

}  // namespace dsinfer
