// AVX2 + FMA + F16C instance of the linear-algebra kernels (gemm/isa_kernels.h): 8-lane f32
// vectors, 4 tokens × 3 weight rows of k-lane accumulators in the row GEMM (12 ymm), 6 × 16
// transposed micro-tiles (12 ymm); tails go through small zero-padded copies.
#include <immintrin.h>

#include <cstdint>

#include "kernels/gemm/isa_kernels.h"

#define DSINFER_SIMD __attribute__((target("avx2,fma,f16c")))

namespace dsinfer::gemm {
namespace avx2 {

struct V {
  using F = __m256;
  static constexpr const char* kName = "avx2";
  static constexpr int kLanes = 8;
  static constexpr int kMr = 6;      // 6 × 2 accumulators + 2 panel vectors + 1 broadcast
  static constexpr int kRowMr = 4, kRowNr = 3;  // 12 accumulators + 3 weights + 1 x
  static constexpr int kGemvMaxN = 4;
  static constexpr int GemvRows(int n) { return n <= 2 ? 2 : 1; }     // × n accumulators
  static constexpr int GemvTVecs(int n) { return n <= 2 ? 4 : 2; }    // × n accumulators

  DSINFER_SIMD static __m256i Mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  DSINFER_SIMD static F Zero() { return _mm256_setzero_ps(); }
  DSINFER_SIMD static F Set1(float v) { return _mm256_set1_ps(v); }
  DSINFER_SIMD static F Load(const float* p) { return _mm256_loadu_ps(p); }
  DSINFER_SIMD static F LoadN(const float* p, int n) { return _mm256_maskload_ps(p, Mask(n)); }
  DSINFER_SIMD static void Store(float* p, F v) { _mm256_storeu_ps(p, v); }
  DSINFER_SIMD static void StoreN(float* p, F v, int n) { _mm256_maskstore_ps(p, Mask(n), v); }
  DSINFER_SIMD static F Fma(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  DSINFER_SIMD static F Mul(F a, F b) { return _mm256_mul_ps(a, b); }
  DSINFER_SIMD static float ReduceAdd(F v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
  }
  // out[i] = ReduceAdd(v[i]) for i < count.
  DSINFER_SIMD static void ReduceMany(const F* v, int count, float* out) {
    for (int i = 0; i < count; ++i) out[i] = ReduceAdd(v[i]);
  }

  // 8 codes → f16 bits sign<<15 | (b & 0x7f)<<7 (see avx512.cc) → f32.
  DSINFER_SIMD static F E4m3(const uint8_t* p) {
    const __m128i b16 = _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    const __m128i h = _mm_srai_epi16(_mm_slli_epi16(b16, 8), 1);
    return _mm256_cvtph_ps(_mm_and_si128(h, _mm_set1_epi16(static_cast<int16_t>(0xBFFF))));
  }
  // 16 codes as 8 words, split into even and odd positions (see avx512.cc).
  DSINFER_SIMD static void E4m3Pair(const uint8_t* p, F* even, F* odd) {
    const __m128i w = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i o = _mm_and_si128(_mm_srai_epi16(w, 1), _mm_set1_epi16(static_cast<int16_t>(0xBF80)));
    const __m128i e = _mm_and_si128(_mm_srai_epi16(_mm_slli_epi16(w, 8), 1),
                                    _mm_set1_epi16(static_cast<int16_t>(0xBFFF)));
    *even = _mm256_cvtph_ps(e);
    *odd = _mm256_cvtph_ps(o);
  }
  // x[0..15] → x[0, 2, ..., 14] and x[1, 3, ..., 15].
  DSINFER_SIMD static void Deinterleave(const float* x, F* even, F* odd) {
    const F a = _mm256_loadu_ps(x), b = _mm256_loadu_ps(x + 8);
    *even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xD8));
    *odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xDD)), 0xD8));
  }
  DSINFER_SIMD static F Bf16(const uint16_t* p) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  DSINFER_SIMD static F F16(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  // Tails: copy the first n codes into a zeroed block (code 0 decodes to +0).
  template <class T>
  DSINFER_SIMD static void Pad(const T* p, int n, T* out) {
    for (int i = 0; i < 8; ++i) out[i] = i < n ? p[i] : T{0};
  }
  DSINFER_SIMD static F E4m3N(const uint8_t* p, int n) {
    uint8_t b[8];
    Pad(p, n, b);
    return E4m3(b);
  }
  DSINFER_SIMD static F Bf16N(const uint16_t* p, int n) {
    uint16_t b[8];
    Pad(p, n, b);
    return Bf16(b);
  }
  DSINFER_SIMD static F F16N(const uint16_t* p, int n) {
    uint16_t b[8];
    Pad(p, n, b);
    return F16(b);
  }
};

#include "kernels/gemm/kernels.inc"

}  // namespace avx2

const IsaKernels& Avx2Kernels() { return avx2::kTable; }

}  // namespace dsinfer::gemm
