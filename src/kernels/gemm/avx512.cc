// AVX-512 (F/BW/VL) instance of the linear-algebra kernels (gemm/isa_kernels.h): 16-lane f32
// vectors, 6 tokens × 4 weight rows of k-lane accumulators in the row GEMM (24 zmm), 8 × 32
// transposed micro-tiles (16 zmm), byte-masked loads for the tails.
#include <immintrin.h>

#include <cstdint>

#include "kernels/gemm/isa_kernels.h"

// GCC 12's _mm512_reduce_add_ps trips -Wuninitialized inside its own header.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#define DSINFER_SIMD __attribute__((target("avx512f,avx512bw,avx512vl,fma,f16c")))

namespace dsinfer::gemm {
namespace avx512 {

struct V {
  using F = __m512;
  static constexpr const char* kName = "avx512";
  static constexpr int kLanes = 16;
  static constexpr int kMr = 8;      // 8 × 2 accumulators + 2 panel vectors + 1 broadcast
  static constexpr int kRowMr = 6, kRowNr = 4;  // 24 accumulators + 4 weights + 1 x
  static constexpr int kGemvMaxN = 8;
  static constexpr int GemvRows(int n) { return n <= 2 ? 4 : 2; }  // × n accumulators
  static constexpr int GemvTVecs(int n) { return n <= 2 ? 8 : 4; }    // × n accumulators

  DSINFER_SIMD static __mmask16 Mask(int n) { return static_cast<__mmask16>((1u << n) - 1); }
  DSINFER_SIMD static F Zero() { return _mm512_setzero_ps(); }
  DSINFER_SIMD static F Set1(float v) { return _mm512_set1_ps(v); }
  DSINFER_SIMD static F Load(const float* p) { return _mm512_loadu_ps(p); }
  DSINFER_SIMD static F LoadN(const float* p, int n) { return _mm512_maskz_loadu_ps(Mask(n), p); }
  DSINFER_SIMD static void Store(float* p, F v) { _mm512_storeu_ps(p, v); }
  DSINFER_SIMD static void StoreN(float* p, F v, int n) { _mm512_mask_storeu_ps(p, Mask(n), v); }
  DSINFER_SIMD static F Fma(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  DSINFER_SIMD static F Mul(F a, F b) { return _mm512_mul_ps(a, b); }
  DSINFER_SIMD static float ReduceAdd(F v) { return _mm512_reduce_add_ps(v); }

  // 16 codes (zero-extended to 16 bits) → f16 bits sign<<15 | (b & 0x7f)<<7: shift the code
  // into the high byte, arithmetic-shift right by one (sign lands in bits 15 and 14), clear 14.
  DSINFER_SIMD static F E4m3Widened(__m256i b16) {
    const __m256i h = _mm256_srai_epi16(_mm256_slli_epi16(b16, 8), 1);
    return _mm512_cvtph_ps(_mm256_and_si256(h, _mm256_set1_epi16(static_cast<int16_t>(0xBFFF))));
  }
  DSINFER_SIMD static F E4m3(const uint8_t* p) {
    return E4m3Widened(_mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
  }
  DSINFER_SIMD static F E4m3N(const uint8_t* p, int n) {
    return E4m3Widened(_mm256_cvtepu8_epi16(_mm_maskz_loadu_epi8(Mask(n), p)));
  }
  // 32 codes as 16 words: the odd code of each word already sits in the high byte (shift
  // right, keep sign and magnitude bits); the even one is shifted up first.
  DSINFER_SIMD static void E4m3Pair(const uint8_t* p, F* even, F* odd) {
    const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    const __m256i o = _mm256_and_si256(_mm256_srai_epi16(w, 1), _mm256_set1_epi16(static_cast<int16_t>(0xBF80)));
    const __m256i e = _mm256_and_si256(_mm256_srai_epi16(_mm256_slli_epi16(w, 8), 1),
                                       _mm256_set1_epi16(static_cast<int16_t>(0xBFFF)));
    *even = _mm512_cvtph_ps(e);
    *odd = _mm512_cvtph_ps(o);
  }
  // x[0..31] → x[0, 2, ..., 30] and x[1, 3, ..., 31].
  DSINFER_SIMD static void Deinterleave(const float* x, F* even, F* odd) {
    const F a = _mm512_loadu_ps(x), b = _mm512_loadu_ps(x + 16);
    const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    *even = _mm512_permutex2var_ps(a, ie, b);
    *odd = _mm512_permutex2var_ps(a, _mm512_add_epi32(ie, _mm512_set1_epi32(1)), b);
  }
  DSINFER_SIMD static F Bf16Widened(__m256i h) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  DSINFER_SIMD static F Bf16(const uint16_t* p) {
    return Bf16Widened(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  DSINFER_SIMD static F Bf16N(const uint16_t* p, int n) {
    return Bf16Widened(_mm256_maskz_loadu_epi16(Mask(n), p));
  }
  DSINFER_SIMD static F F16(const uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  DSINFER_SIMD static F F16N(const uint16_t* p, int n) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(Mask(n), p));
  }
};

#include "kernels/gemm/kernels.inc"

}  // namespace avx512

const IsaKernels& Avx512Kernels() { return avx512::kTable; }

}  // namespace dsinfer::gemm
