// Byte layout of one cached MLA token: latent `c` [kv_lora_rank] and rope key `k_pe` [rope_dim]
// (docs/numerics.md §4). Three layouts:
//  * kF32:  c f32 ‖ k_pe f32
//  * kBF16: c bf16 ‖ k_pe bf16 (RNE)
//  * kFP8:  DeepSeek's FlashMLA layout (docs/model.md §3.8), generalised to any kv_lora_rank:
//           c e4m3 [kv_lora_rank] ‖ f32 scales [ceil(kv_lora_rank/128)] (act_quant, ue8m0)
//           ‖ k_pe bf16 [rope_dim]  — 656 bytes for 512/64.
// Caches are paged: `PagedRows` addresses row t inside fixed-size pages of consecutive tokens,
// so kernels read a cache whatever its pages' owner (a sequence, or the shared prefix cache).
// Thread-safe: immutable value types.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace dsinfer {

enum class KvCacheType : uint8_t { kF32, kBF16, kFP8 };

// "f32" | "bf16" | "fp8"; throws Error naming `what` otherwise.
KvCacheType ParseKvCacheType(const std::string& name, const std::string& what);
const char* KvCacheTypeName(KvCacheType t);

struct LatentLayout {
  KvCacheType type = KvCacheType::kF32;
  int64_t kv_lora_rank = 0;
  int64_t rope_dim = 0;

  int64_t width() const { return kv_lora_rank + rope_dim; }  // decoded floats per row
  int64_t RowBytes() const;
  // Stores c [kv_lora_rank] and k_pe [rope_dim] into `row` [RowBytes()].
  void Encode(const float* c, const float* k_pe, std::byte* row) const;
  // out [kv_lora_rank + rope_dim] = the values attention sees (c ‖ k_pe).
  void Decode(const std::byte* row, float* out) const;
};

// One cached indexer key (docs/numerics.md §5): e4m3 codes [head_dim] ‖ f32 block scales
// [QuantBlocks(head_dim)] (132 bytes for head_dim 128).
struct IndexKeyLayout {
  int64_t head_dim = 0;
  int64_t RowBytes() const;
  const uint8_t* codes(const std::byte* row) const { return reinterpret_cast<const uint8_t*>(row); }
  // Scale of block b (unaligned read).
  float scale(const std::byte* row, int64_t b) const {
    float s;
    std::memcpy(&s, row + head_dim + b * 4, 4);
    return s;
  }
};

// Rows of a per-token cache stored in pages of `1 << page_shift` consecutive tokens: row t is at
// pages[t >> page_shift] + (t & mask) * row_bytes. Rows within one page are contiguous.
struct PagedRows {
  const std::byte* const* pages = nullptr;  // [number of pages]
  int page_shift = 0;
  int64_t row_bytes = 0;

  int64_t page_rows() const { return int64_t{1} << page_shift; }
  const std::byte* row(int64_t t) const {
    return pages[t >> page_shift] + (t & (page_rows() - 1)) * row_bytes;
  }
};

}  // namespace dsinfer
