// Byte layout of one cached MLA token: latent `c` [kv_lora_rank] and rope key `k_pe` [rope_dim]
// (NUMERICS.md §4). Three layouts:
//  * kF32:  c f32 ‖ k_pe f32
//  * kBF16: c bf16 ‖ k_pe bf16 (RNE)
//  * kFP8:  DeepSeek's FlashMLA layout (MODEL.md §3.8), generalised to any kv_lora_rank:
//           c e4m3 [kv_lora_rank] ‖ f32 scales [ceil(kv_lora_rank/128)] (act_quant, ue8m0)
//           ‖ k_pe bf16 [rope_dim]  — 656 bytes for 512/64.
// Thread-safe: immutable value type.
#pragma once

#include <cstddef>
#include <cstdint>
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

}  // namespace dsinfer
