#include "kernels/kv_layout.h"

#include <cstring>

#include "base/error.h"
#include "format/dtype.h"
#include "kernels/quant.h"

namespace dsinfer {

KvCacheType ParseKvCacheType(const std::string& name, const std::string& what) {
  if (name == "f32") return KvCacheType::kF32;
  if (name == "bf16") return KvCacheType::kBF16;
  if (name == "fp8") return KvCacheType::kFP8;
  throw Error(what + ": unknown kv-cache type '" + name + "' (expected f32, bf16 or fp8)");
}

const char* KvCacheTypeName(KvCacheType t) {
  switch (t) {
    case KvCacheType::kF32:
      return "f32";
    case KvCacheType::kBF16:
      return "bf16";
    case KvCacheType::kFP8:
      return "fp8";
  }
  return "?";
}

int64_t LatentLayout::RowBytes() const {
  switch (type) {
    case KvCacheType::kF32:
      return width() * 4;
    case KvCacheType::kBF16:
      return width() * 2;
    case KvCacheType::kFP8:
      return kv_lora_rank + QuantBlocks(kv_lora_rank) * 4 + rope_dim * 2;
  }
  return 0;
}

namespace {

void PutBf16(const float* x, int64_t n, std::byte* out) {
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t b = FloatToBF16(x[i]);
    std::memcpy(out + 2 * i, &b, 2);
  }
}

void GetBf16(const std::byte* in, int64_t n, float* x) {
  for (int64_t i = 0; i < n; ++i) {
    uint16_t b;
    std::memcpy(&b, in + 2 * i, 2);
    const uint32_t bits = static_cast<uint32_t>(b) << 16;
    std::memcpy(&x[i], &bits, 4);
  }
}

}  // namespace

void LatentLayout::Encode(const float* c, const float* k_pe, std::byte* row) const {
  switch (type) {
    case KvCacheType::kF32:
      std::memcpy(row, c, kv_lora_rank * 4);
      std::memcpy(row + kv_lora_rank * 4, k_pe, rope_dim * 4);
      return;
    case KvCacheType::kBF16:
      PutBf16(c, kv_lora_rank, row);
      PutBf16(k_pe, rope_dim, row + kv_lora_rank * 2);
      return;
    case KvCacheType::kFP8: {
      const int64_t nb = QuantBlocks(kv_lora_rank);
      float scales[64];  // ceil(kv_lora_rank/128) ≤ 64 (checked at cache creation); no allocation
      DSINFER_DCHECK(nb <= 64);
      ActQuant(c, kv_lora_rank, reinterpret_cast<uint8_t*>(row), scales);
      std::memcpy(row + kv_lora_rank, scales, nb * 4);
      PutBf16(k_pe, rope_dim, row + kv_lora_rank + nb * 4);
      return;
    }
  }
}

void LatentLayout::Decode(const std::byte* row, float* out) const {
  switch (type) {
    case KvCacheType::kF32:
      std::memcpy(out, row, width() * 4);
      return;
    case KvCacheType::kBF16:
      GetBf16(row, width(), out);
      return;
    case KvCacheType::kFP8: {
      const int64_t nb = QuantBlocks(kv_lora_rank);
      float scales[64];  // ceil(kv_lora_rank/128) ≤ 64 (checked at cache creation)
      DSINFER_DCHECK(nb <= 64);
      std::memcpy(scales, row + kv_lora_rank, nb * 4);
      Dequant(reinterpret_cast<const uint8_t*>(row), scales, kv_lora_rank, out);
      GetBf16(row + kv_lora_rank + nb * 4, rope_dim, out + kv_lora_rank);
      return;
    }
  }
}

int64_t IndexKeyLayout::RowBytes() const { return head_dim + QuantBlocks(head_dim) * 4; }

}  // namespace dsinfer
