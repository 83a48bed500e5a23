// What the two AVX-512 BF16 kernel files (gemm/avx512_bf16.cc: FP8/BF16 weights,
// gemm/avx512_bf16_blocks.cc: ggml block weights) share: the target attribute of their
// functions, the lane count and the lane mask. Include only from those files.
#pragma once

#include <immintrin.h>

#include <cstdint>

// GCC 12 warns inside its own AVX-512 headers (masked loads, setzero), as in gemm/avx512.cc.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#define DSINFER_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,fma,f16c")))

namespace dsinfer::gemm::bf16 {

inline constexpr int kLanes = 16;  // f32 lanes of a vector: weight rows per accumulator

// The first n lanes (0 for n ≤ 0, all 16 for n ≥ 16).
DSINFER_BF16 inline __mmask16 Mask(int64_t n) {
  return n >= kLanes ? static_cast<__mmask16>(0xFFFF)
         : n <= 0    ? static_cast<__mmask16>(0)
                     : static_cast<__mmask16>((1u << n) - 1);
}

}  // namespace dsinfer::gemm::bf16
