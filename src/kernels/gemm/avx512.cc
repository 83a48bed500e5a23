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
  // GEMV rows per pass: R × n ≤ 16 accumulators (measured single-threaded on the expert
  // shapes: R = 4 instead of 2 at n = 3-4 saved about 25%, R = 3 at n = 5 about 5%).
  static constexpr int GemvRows(int n) { return n <= 4 ? 4 : n <= 5 ? 3 : 2; }
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
  // One fixed tree: lane i + lane i+8, then i + i+4, i + i+2, i + i+1 (ReduceMany adds the same
  // pairs, so the two agree bit for bit: float addition is commutative).
  DSINFER_SIMD static float ReduceAdd(F v) {
    const __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v),
                                   _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    const __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    const __m128 c = _mm_add_ps(b, _mm_movehl_ps(b, b));
    return _mm_cvtss_f32(_mm_add_ss(c, _mm_movehdup_ps(c)));
  }
  // out[i] = ReduceAdd(v[i]) for i < count, 16 vectors at a time with the tree's levels done
  // across vectors (45 operations for 16 sums instead of 16 × 8): the levels pair 128-bit
  // quarters, then quarters again, then lanes within quarters.
  DSINFER_SIMD static void Reduce16(const F* v, float* out) {
    F a[8], b[4], c[2];
    for (int p = 0; p < 8; ++p)  // a[p]: [T3(v[2p]) | T3(v[2p+1])], T3[i] = v[i] + v[i+8]
      a[p] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * p], v[2 * p + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                           _mm512_shuffle_f32x4(v[2 * p], v[2 * p + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    for (int p = 0; p < 4; ++p)  // b[p] quarter k: T6(v[4p+k]), T6[i] = T3[i] + T3[i+4]
      b[p] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * p], a[2 * p + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                           _mm512_shuffle_f32x4(a[2 * p], a[2 * p + 1], _MM_SHUFFLE(3, 1, 3, 1)));
    for (int p = 0; p < 2; ++p)  // c[p] quarter k: T8(v[8p+k]), T8(v[8p+4+k]); T8[i] = T6[i] + T6[i+2]
      c[p] = _mm512_add_ps(_mm512_shuffle_ps(b[2 * p], b[2 * p + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                           _mm512_shuffle_ps(b[2 * p], b[2 * p + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    // Quarter k: sums of v[k], v[4+k], v[8+k], v[12+k] (T8[0] + T8[1]); lane 4k+m holds v[4m+k].
    const F r = _mm512_add_ps(_mm512_shuffle_ps(c[0], c[1], _MM_SHUFFLE(2, 0, 2, 0)),
                              _mm512_shuffle_ps(c[0], c[1], _MM_SHUFFLE(3, 1, 3, 1)));
    const __m512i natural = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    _mm512_storeu_ps(out, _mm512_permutexvar_ps(natural, r));
  }
  DSINFER_SIMD static void ReduceMany(const F* v, int count, float* out) {
    int i = 0;
    for (; i + 16 <= count; i += 16) Reduce16(v + i, out + i);
    if (i + 8 <= count) {  // pad a group of 8 or more with zeros (their sums are dropped)
      F pad[16];
      float sums[16];
      for (int j = 0; j < 16; ++j) pad[j] = i + j < count ? v[i + j] : _mm512_setzero_ps();
      Reduce16(pad, sums);
      for (int j = 0; i + j < count; ++j) out[i + j] = sums[j];
      return;
    }
    for (; i < count; ++i) out[i] = ReduceAdd(v[i]);
  }

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
