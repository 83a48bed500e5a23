#include "kernels/qblocks.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <span>

#include "base/error.h"
#include "format/ggml_types.h"

// GCC 12's _mm512_reduce_add_ps trips -Wuninitialized inside its own header.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

// The decoders must round every product and difference to f32 separately, exactly as
// DequantizeRow: this file is compiled with -ffp-contract=off (CMakeLists.txt), so `a * b - c`
// on vectors is never fused into an FMA (the FMAs meant are explicit intrinsics).
#define DSINFER_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,fma,f16c")))
#define DSINFER_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,fma,f16c")))
#define DSINFER_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace dsinfer::qblocks {
namespace {

constexpr int64_t kQK = 256;  // elements per K-quant super-block

inline uint16_t U16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

// Scales and mins of the 8 sub-blocks of a Q4_K/Q5_K super-block (the packing UnpackK4Scale
// reads, restated inline: it runs once per 256 weights in the inner loops), as the f32 products
// d·sc_j and dmin·m_j that DequantizeRow forms.
inline void K4Scales(const uint8_t* s, float d, float dmin, float* dsc, float* dm) {
  for (int j = 0; j < 4; ++j) {
    dsc[j] = d * static_cast<float>(s[j] & 63);
    dm[j] = dmin * static_cast<float>(s[j + 4] & 63);
  }
  for (int j = 4; j < 8; ++j) {
    dsc[j] = d * static_cast<float>((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4));
    dm[j] = dmin * static_cast<float>((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
  }
}

// ---- AVX-512: walkers over a row's 32-column steps ---------------------------------------------
// A walker decodes one row step by step — columns [k, k + 32) as two 16-lane vectors w0, w1,
// each element exactly DequantizeRow's value — and hands each step to a sink: StoreSink writes
// the decoded row (DecodeRows), FmaSink multiplies it into N tokens (FusedGemv).

// 16 bytes (unsigned) → f32 d·q − m (one rounding each).
DSINFER_AVX512 inline __m512 U16f(__m128i bytes, float d, float m) {
  const __m512 f = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(bytes));
  return _mm512_sub_ps(_mm512_mul_ps(_mm512_set1_ps(d), f), _mm512_set1_ps(m));
}
// 16 bytes (signed) → f32 d·q.
DSINFER_AVX512 inline __m512 S16f(__m128i bytes, float d) {
  return _mm512_mul_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(bytes)));
}

template <class Sink>
DSINFER_AVX512 void WalkQ8_0(const uint8_t* b, int64_t blocks, Sink& sink) {
  for (int64_t i = 0; i < blocks; ++i, b += 34) {
    const float d = _cvtsh_ss(U16(b));
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 2));
    sink.Step(32 * i, S16f(_mm256_castsi256_si128(q), d), S16f(_mm256_extracti128_si256(q, 1), d));
  }
}

// Q4_K (q5 = false) and Q5_K super-blocks: sub-block j = 2c + h holds elements 32j..32j+31,
// the low (h = 0) or high (h = 1) nibbles of qs[32c..32c+31], plus 16 if bit j of qh[l].
template <class Sink>
DSINFER_AVX512 void WalkK4or5(const uint8_t* b, int64_t blocks, bool q5, Sink& sink) {
  const size_t block_bytes = q5 ? 176 : 144;
  const __m256i low4 = _mm256_set1_epi8(0x0F), sixteen = _mm256_set1_epi8(16);
  for (int64_t i = 0; i < blocks; ++i, b += block_bytes) {
    float dsc[8], dm[8];
    K4Scales(b + 4, _cvtsh_ss(U16(b)), _cvtsh_ss(U16(b + 2)), dsc, dm);
    const uint8_t* qs = b + (q5 ? 48 : 16);
    const __m256i qh =
        q5 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 16)) : _mm256_setzero_si256();
    for (int c = 0; c < 4; ++c) {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * c));
      __m256i half[2] = {_mm256_and_si256(q, low4),
                         _mm256_and_si256(_mm256_srli_epi16(q, 4), low4)};
      for (int h = 0; h < 2; ++h) {
        const int j = 2 * c + h;
        if (q5) {
          const __m256i bit = _mm256_set1_epi8(static_cast<char>(1 << j));
          const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit);
          half[h] = _mm256_or_si256(half[h], _mm256_and_si256(set, sixteen));
        }
        sink.Step(kQK * i + 32 * j, U16f(_mm256_castsi256_si128(half[h]), dsc[j], dm[j]),
                  U16f(_mm256_extracti128_si256(half[h], 1), dsc[j], dm[j]));
      }
    }
  }
}

// Q6_K quarter k (0..3) of half n (0..1) of the super-block at b, 32 elements: u = q + 32
// (0..63) as unsigned bytes — the low (k < 2) or high nibbles of ql[64n + 32(k % 2) + l] and
// bits 2k, 2k + 1 of qh[32n + l] (`qh`: those 32 bytes) above them.
DSINFER_AVX2 inline __m256i Q6Quarter(const uint8_t* b, __m256i qh, int n, int k) {
  const __m256i low4 = _mm256_set1_epi8(0x0F), three = _mm256_set1_epi8(3);
  const __m256i src =
      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 64 * n + 32 * (k % 2)));
  const __m256i low =
      k < 2 ? _mm256_and_si256(src, low4) : _mm256_and_si256(_mm256_srli_epi16(src, 4), low4);
  const __m256i high = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * k)), three);
  return _mm256_or_si256(low, _mm256_slli_epi16(high, 4));
}

// Q6_K super-block: ql[128] | qh[64] | int8 scales[16] | f16 d. Half n (128 elements), quarter
// k: low nibbles of ql[64n + 32(k odd) + l] (k < 2) or high nibbles (k ≥ 2), high 2 bits from
// qh[32n + l] >> 2k; q − 32; scale index 8n + 2k + l/16.
template <class Sink>
DSINFER_AVX512 void WalkQ6_K(const uint8_t* b, int64_t blocks, Sink& sink) {
  const __m256i bias = _mm256_set1_epi8(32);
  for (int64_t i = 0; i < blocks; ++i, b += 210) {
    const auto* scales = reinterpret_cast<const int8_t*>(b + 192);
    const float d = _cvtsh_ss(U16(b + 208));
    for (int n = 0; n < 2; ++n) {
      const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 128 + 32 * n));
      for (int k = 0; k < 4; ++k) {
        const __m256i q = _mm256_sub_epi8(Q6Quarter(b, qh, n, k), bias);
        const float d0 = d * static_cast<float>(scales[8 * n + 2 * k]);
        const float d1 = d * static_cast<float>(scales[8 * n + 2 * k + 1]);
        sink.Step(kQK * i + 128 * n + 32 * k, S16f(_mm256_castsi256_si128(q), d0),
                  S16f(_mm256_extracti128_si256(q, 1), d1));
      }
    }
  }
}

// Q2_K super-block: scales[16] | qs[64] | f16 d | f16 dmin. Half n, step j (shift 2j): the
// 32 values (qs[32n + l] >> 2j) & 3, the first 16 in group 8n + 2j, the next in the one after
// (group g: d·(scales[g] & 15) and dmin·(scales[g] >> 4)).
template <class Sink>
DSINFER_AVX512 void WalkQ2_K(const uint8_t* b, int64_t blocks, Sink& sink) {
  const __m256i three = _mm256_set1_epi8(3);
  for (int64_t i = 0; i < blocks; ++i, b += 84) {
    const float d = _cvtsh_ss(U16(b + 80)), dmin = _cvtsh_ss(U16(b + 82));
    for (int n = 0; n < 2; ++n) {
      const __m256i qs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 16 + 32 * n));
      for (int j = 0; j < 4; ++j) {
        const __m256i q = _mm256_and_si256(_mm256_srl_epi16(qs, _mm_cvtsi32_si128(2 * j)), three);
        const uint8_t s0 = b[8 * n + 2 * j], s1 = b[8 * n + 2 * j + 1];
        sink.Step(kQK * i + 128 * n + 32 * j,
                  U16f(_mm256_castsi256_si128(q), d * static_cast<float>(s0 & 0xF),
                       dmin * static_cast<float>(s0 >> 4)),
                  U16f(_mm256_extracti128_si256(q, 1), d * static_cast<float>(s1 & 0xF),
                       dmin * static_cast<float>(s1 >> 4)));
      }
    }
  }
}

// Q3_K super-block: hmask[32] | qs[64] | scales[12] | f16 d. Half n, step j: the 32 values
// ((qs[32n + l] >> 2j) & 3) − 4 + 4·(bit 4n + j of hmask[l]) (Q3Step: `qs` the half's 32
// bytes, `hm` the hmask), groups as Q2_K's.
DSINFER_AVX2 inline __m256i Q3Step(__m256i qs, __m256i hm, int n, int j) {
  const __m256i three = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1), four = _mm256_set1_epi8(4);
  const __m256i low = _mm256_and_si256(_mm256_srl_epi16(qs, _mm_cvtsi32_si128(2 * j)), three);
  const __m256i bit = _mm256_and_si256(_mm256_srl_epi16(hm, _mm_cvtsi32_si128(4 * n + j)), one);
  return _mm256_sub_epi8(_mm256_add_epi8(low, _mm256_slli_epi16(bit, 2)), four);
}

template <class Sink>
DSINFER_AVX512 void WalkQ3_K(const uint8_t* b, int64_t blocks, Sink& sink) {
  for (int64_t i = 0; i < blocks; ++i, b += 110) {
    const float d = _cvtsh_ss(U16(b + 108));
    const __m256i hm = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b));
    for (int n = 0; n < 2; ++n) {
      const __m256i qs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 32 + 32 * n));
      for (int j = 0; j < 4; ++j) {
        const __m256i q = Q3Step(qs, hm, n, j);
        const int g = 8 * n + 2 * j;
        sink.Step(kQK * i + 128 * n + 32 * j,
                  S16f(_mm256_castsi256_si128(q), d * static_cast<float>(Q3Scale(b + 96, g))),
                  S16f(_mm256_extracti128_si256(q, 1),
                       d * static_cast<float>(Q3Scale(b + 96, g + 1))));
      }
    }
  }
}

// IQ4_NL / IQ4_XS: 16 bytes of 4-bit indices → the 32 elements step·level (one rounding each),
// the low nibbles first; the levels are looked up by a byte shuffle of kIq4Levels.
DSINFER_AVX512 inline void Iq4Step(const uint8_t* qs, float step, __m512& w0, __m512& w1) {
  const __m128i levels = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4Levels));
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i low4 = _mm_set1_epi8(0x0F);
  const __m128i lo = _mm_shuffle_epi8(levels, _mm_and_si128(q, low4));
  const __m128i hi = _mm_shuffle_epi8(levels, _mm_and_si128(_mm_srli_epi16(q, 4), low4));
  const __m512 d = _mm512_set1_ps(step);
  w0 = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(lo)));
  w1 = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(hi)));
}

// IQ4_NL block: f16 d | qs[16].
template <class Sink>
DSINFER_AVX512 void WalkIQ4_NL(const uint8_t* b, int64_t blocks, Sink& sink) {
  for (int64_t i = 0; i < blocks; ++i, b += 18) {
    __m512 w0, w1;
    Iq4Step(b + 2, _cvtsh_ss(U16(b)), w0, w1);
    sink.Step(32 * i, w0, w1);
  }
}

// IQ4_XS super-block: f16 d | scales_h | scales_l[4] | qs[128]; sub-block j: step
// d · (ls_j − 32) on qs[16j..16j+15].
template <class Sink>
DSINFER_AVX512 void WalkIQ4_XS(const uint8_t* b, int64_t blocks, Sink& sink) {
  for (int64_t i = 0; i < blocks; ++i, b += 136) {
    const float d = _cvtsh_ss(U16(b));
    for (int j = 0; j < 8; ++j) {
      __m512 w0, w1;
      Iq4Step(b + 8 + 16 * j, d * static_cast<float>(Iq4XsScale(b, j) - 32), w0, w1);
      sink.Step(kQK * i + 32 * j, w0, w1);
    }
  }
}

template <class Sink>
DSINFER_AVX512 void WalkRow(DType t, const uint8_t* row, int64_t blocks, Sink& sink) {
  switch (t) {
    case DType::kQ8_0:
      return WalkQ8_0(row, blocks, sink);
    case DType::kQ4_K:
      return WalkK4or5(row, blocks, /*q5=*/false, sink);
    case DType::kQ5_K:
      return WalkK4or5(row, blocks, /*q5=*/true, sink);
    case DType::kQ6_K:
      return WalkQ6_K(row, blocks, sink);
    case DType::kQ2_K:
      return WalkQ2_K(row, blocks, sink);
    case DType::kQ3_K:
      return WalkQ3_K(row, blocks, sink);
    case DType::kIQ4_NL:
      return WalkIQ4_NL(row, blocks, sink);
    case DType::kIQ4_XS:
      return WalkIQ4_XS(row, blocks, sink);
    default:
      DSINFER_CHECK(false, "WalkRow: no walker for " + std::string(DTypeName(t)));
  }
}

struct StoreSink {
  float* y;
  DSINFER_AVX512 void Step(int64_t k, __m512 w0, __m512 w1) {
    _mm512_storeu_ps(y + k, w0);
    _mm512_storeu_ps(y + k + 16, w1);
  }
};

DSINFER_AVX512 void DecodeRowAvx512(DType t, const uint8_t* row, int64_t blocks, float* y) {
  StoreSink sink{y};
  WalkRow(t, row, blocks, sink);
}

// The F32 GEMV's arithmetic (gemm/kernels.inc, AVX-512: pair steps of 32 columns split in two
// halves; per token acc = fma(w1, x'[k+16..], fma(w0, x'[k..], acc)); then the fixed reduction
// tree of the avx512 traits): fed with exactly decoded weights, it gives the F32 path's bits.
template <int N>
struct FmaSink {
  const float* xp;
  int64_t xps;
  __m512 acc[N];
  DSINFER_AVX512 void Step(int64_t k, __m512 w0, __m512 w1) {
    for (int t = 0; t < N; ++t) {
      const float* x = xp + t * xps + k;
      acc[t] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + 16),
                               _mm512_fmadd_ps(w0, _mm512_loadu_ps(x), acc[t]));
    }
  }
};

// V::ReduceAdd of gemm/avx512.cc: lane i + lane i+8, then i + i+4, i + i+2, i + i+1.
DSINFER_AVX512 inline float ReduceAdd512(__m512 v) {
  const __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v),
                                 _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  const __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  const __m128 c = _mm_add_ps(b, _mm_movehl_ps(b, b));
  return _mm_cvtss_f32(_mm_add_ss(c, _mm_movehdup_ps(c)));
}

template <int N>
DSINFER_AVX512 void FusedRowsN(const float* xp, int64_t xps, const WeightView& w, int64_t r0,
                               int64_t r1, float* y, int64_t ys) {
  const int64_t blocks = w.cols / DTypeBlockElems(w.dtype);
  for (int64_t r = r0; r < r1; ++r) {
    FmaSink<N> sink;
    sink.xp = xp;
    sink.xps = xps;
    for (int t = 0; t < N; ++t) sink.acc[t] = _mm512_setzero_ps();
    WalkRow(w.dtype, reinterpret_cast<const uint8_t*>(w.row(r)), blocks, sink);
    for (int t = 0; t < N; ++t) y[t * ys + (r - r0)] = ReduceAdd512(sink.acc[t]);
  }
}

DSINFER_AVX512 void FusedRowsAvx512(const float* xp, int64_t xps, int n, const WeightView& w,
                                    int64_t r0, int64_t r1, float* y, int64_t ys) {
  UpTo<8>(n, [&](auto k) { FusedRowsN<k()>(xp, xps, w, r0, r1, y, ys); });
}

// ---- AVX2 decoders (every block type) -----------------------------------------------------------------------
DSINFER_AVX2 inline void Put8U(const uint8_t* bytes, float d, float m, float* y) {
  const __m128i v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(bytes));
  const __m256 f = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v));
  _mm256_storeu_ps(y, _mm256_sub_ps(_mm256_mul_ps(_mm256_set1_ps(d), f), _mm256_set1_ps(m)));
}

DSINFER_AVX2 void DecodeQ8_0Avx2(const uint8_t* b, int64_t blocks, float* y) {
  for (int64_t i = 0; i < blocks; ++i, b += 34, y += 32) {
    const __m256 d = _mm256_set1_ps(_cvtsh_ss(U16(b)));
    for (int g = 0; g < 4; ++g) {
      const __m128i v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b + 2 + 8 * g));
      _mm256_storeu_ps(y + 8 * g, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v))));
    }
  }
}

DSINFER_AVX2 void DecodeQ4_KAvx2(const uint8_t* b, int64_t blocks, float* y) {
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  alignas(32) uint8_t nib[2][32];
  for (int64_t i = 0; i < blocks; ++i, b += 144, y += kQK) {
    float dsc[8], dm[8];
    K4Scales(b + 4, _cvtsh_ss(U16(b)), _cvtsh_ss(U16(b + 2)), dsc, dm);
    for (int c = 0; c < 4; ++c) {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 16 + 32 * c));
      _mm256_store_si256(reinterpret_cast<__m256i*>(nib[0]), _mm256_and_si256(q, low4));
      _mm256_store_si256(reinterpret_cast<__m256i*>(nib[1]),
                         _mm256_and_si256(_mm256_srli_epi16(q, 4), low4));
      for (int h = 0; h < 2; ++h) {
        const int j = 2 * c + h;
        for (int g = 0; g < 4; ++g) Put8U(nib[h] + 8 * g, dsc[j], dm[j], y + 32 * j + 8 * g);
      }
    }
  }
}

// 8 signed bytes → f32 d·q (S16f's values).
DSINFER_AVX2 inline void Put8S(const uint8_t* bytes, float d, float* y) {
  const __m128i v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(bytes));
  _mm256_storeu_ps(y, _mm256_mul_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v))));
}

// Q5_K: Q4_K's nibbles (at 48) plus 16 where bit j of qh[l] (at 16) is set, as WalkK4or5.
DSINFER_AVX2 void DecodeQ5_KAvx2(const uint8_t* b, int64_t blocks, float* y) {
  const __m256i low4 = _mm256_set1_epi8(0x0F), sixteen = _mm256_set1_epi8(16);
  alignas(32) uint8_t nib[32];
  for (int64_t i = 0; i < blocks; ++i, b += 176, y += kQK) {
    float dsc[8], dm[8];
    K4Scales(b + 4, _cvtsh_ss(U16(b)), _cvtsh_ss(U16(b + 2)), dsc, dm);
    const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 16));
    for (int c = 0; c < 4; ++c) {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 48 + 32 * c));
      for (int h = 0; h < 2; ++h) {
        const int j = 2 * c + h;
        const __m256i bit = _mm256_set1_epi8(static_cast<char>(1 << j));
        const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit);
        const __m256i v = _mm256_and_si256(h == 0 ? q : _mm256_srli_epi16(q, 4), low4);
        _mm256_store_si256(reinterpret_cast<__m256i*>(nib),
                           _mm256_or_si256(v, _mm256_and_si256(set, sixteen)));
        for (int g = 0; g < 4; ++g) Put8U(nib + 8 * g, dsc[j], dm[j], y + 32 * j + 8 * g);
      }
    }
  }
}

// Q6_K: the quarters of WalkQ6_K, q = u − 32, d·sc per 16 elements.
DSINFER_AVX2 void DecodeQ6_KAvx2(const uint8_t* b, int64_t blocks, float* y) {
  const __m256i bias = _mm256_set1_epi8(32);
  alignas(32) uint8_t q8[32];
  for (int64_t i = 0; i < blocks; ++i, b += 210, y += kQK) {
    const auto* scales = reinterpret_cast<const int8_t*>(b + 192);
    const float d = _cvtsh_ss(U16(b + 208));
    for (int n = 0; n < 2; ++n) {
      const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 128 + 32 * n));
      for (int k = 0; k < 4; ++k) {
        _mm256_store_si256(reinterpret_cast<__m256i*>(q8),
                           _mm256_sub_epi8(Q6Quarter(b, qh, n, k), bias));
        const float d0 = d * static_cast<float>(scales[8 * n + 2 * k]);
        const float d1 = d * static_cast<float>(scales[8 * n + 2 * k + 1]);
        float* yk = y + 128 * n + 32 * k;
        Put8S(q8, d0, yk);
        Put8S(q8 + 8, d0, yk + 8);
        Put8S(q8 + 16, d1, yk + 16);
        Put8S(q8 + 24, d1, yk + 24);
      }
    }
  }
}

// Q2_K: WalkQ2_K's steps (2-bit values, d·(s & 15) and dmin·(s >> 4) per 16 elements). The
// scales are formed once per super-block: with the scale byte read inside the loops, GCC 12.2
// at -O3 dropped every call of this function (reduced to a 30-line file: -O2 kept it).
DSINFER_AVX2 void DecodeQ2_KAvx2(const uint8_t* b, int64_t blocks, float* y) {
  const __m256i three = _mm256_set1_epi8(3);
  alignas(32) uint8_t q8[32];
  for (int64_t i = 0; i < blocks; ++i, b += 84, y += kQK) {
    const float d = _cvtsh_ss(U16(b + 80)), dmin = _cvtsh_ss(U16(b + 82));
    float dq[16], mq[16];
    for (int g = 0; g < 16; ++g) {
      dq[g] = d * static_cast<float>(b[g] & 0xF);
      mq[g] = dmin * static_cast<float>(b[g] >> 4);
    }
    for (int n = 0; n < 2; ++n) {
      const __m256i qs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 16 + 32 * n));
      for (int j = 0; j < 4; ++j) {
        _mm256_store_si256(reinterpret_cast<__m256i*>(q8),
                           _mm256_and_si256(_mm256_srl_epi16(qs, _mm_cvtsi32_si128(2 * j)), three));
        for (int g = 0; g < 4; ++g) {
          const int sc = 8 * n + 2 * j + g / 2;
          Put8U(q8 + 8 * g, dq[sc], mq[sc], y + 128 * n + 32 * j + 8 * g);
        }
      }
    }
  }
}

// Q3_K: WalkQ3_K's steps (low 2 bits, + 4 where the hmask bit is set, − 4; Q3Scale).
DSINFER_AVX2 void DecodeQ3_KAvx2(const uint8_t* b, int64_t blocks, float* y) {
  alignas(32) uint8_t q8[32];
  for (int64_t i = 0; i < blocks; ++i, b += 110, y += kQK) {
    const float d = _cvtsh_ss(U16(b + 108));
    float dq[16];
    for (int g = 0; g < 16; ++g) dq[g] = d * static_cast<float>(Q3Scale(b + 96, g));
    const __m256i hm = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b));
    for (int n = 0; n < 2; ++n) {
      const __m256i qs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 32 + 32 * n));
      for (int j = 0; j < 4; ++j) {
        _mm256_store_si256(reinterpret_cast<__m256i*>(q8), Q3Step(qs, hm, n, j));
        for (int g = 0; g < 4; ++g)
          Put8S(q8 + 8 * g, dq[8 * n + 2 * j + g / 2], y + 128 * n + 32 * j + 8 * g);
      }
    }
  }
}

// IQ4_NL / IQ4_XS: Iq4Step's levels (a byte shuffle of kIq4Levels), step·level.
DSINFER_AVX2 inline void Iq4StepAvx2(const uint8_t* qs, float step, float* y) {
  const __m128i levels = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4Levels));
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i low4 = _mm_set1_epi8(0x0F);
  alignas(16) uint8_t v[32];
  _mm_store_si128(reinterpret_cast<__m128i*>(v), _mm_shuffle_epi8(levels, _mm_and_si128(q, low4)));
  _mm_store_si128(reinterpret_cast<__m128i*>(v + 16),
                  _mm_shuffle_epi8(levels, _mm_and_si128(_mm_srli_epi16(q, 4), low4)));
  for (int g = 0; g < 4; ++g) Put8S(v + 8 * g, step, y + 8 * g);
}

DSINFER_AVX2 void DecodeIQ4Avx2(bool xs, const uint8_t* b, int64_t blocks, float* y) {
  if (!xs) {
    for (int64_t i = 0; i < blocks; ++i, b += 18, y += 32) Iq4StepAvx2(b + 2, _cvtsh_ss(U16(b)), y);
    return;
  }
  for (int64_t i = 0; i < blocks; ++i, b += 136, y += kQK) {
    const float d = _cvtsh_ss(U16(b));
    for (int j = 0; j < 8; ++j)
      Iq4StepAvx2(b + 8 + 16 * j, d * static_cast<float>(Iq4XsScale(b, j) - 32), y + 32 * j);
  }
}

DSINFER_AVX2 void DecodeRowAvx2(DType t, const uint8_t* src, int64_t blocks, float* y) {
  switch (t) {
    case DType::kQ8_0: return DecodeQ8_0Avx2(src, blocks, y);
    case DType::kQ4_K: return DecodeQ4_KAvx2(src, blocks, y);
    case DType::kQ5_K: return DecodeQ5_KAvx2(src, blocks, y);
    case DType::kQ6_K: return DecodeQ6_KAvx2(src, blocks, y);
    case DType::kQ2_K: return DecodeQ2_KAvx2(src, blocks, y);
    case DType::kQ3_K: return DecodeQ3_KAvx2(src, blocks, y);
    case DType::kIQ4_NL: return DecodeIQ4Avx2(false, src, blocks, y);
    case DType::kIQ4_XS: return DecodeIQ4Avx2(true, src, blocks, y);
    default: DSINFER_CHECK(false, "DecodeRowAvx2: no decoder for " + std::string(DTypeName(t)));
  }
}

// One 32-element activation block: the specification (qblocks.h QuantizedActs).
void QuantizeBlock(const float* xb, int8_t* q, float& d, float& sum) {
  float amax = 0.0f;
  for (int64_t i = 0; i < kActBlock; ++i) {
    const float a = std::fabs(xb[i]);
    if (a > amax || a != a) amax = a;  // a NaN sticks (no a > NaN)
  }
  if (amax == 0.0f || !std::isfinite(amax)) {
    std::memset(q, 0, kActBlock);
    d = amax == 0.0f ? 0.0f : std::nanf("");
    sum = d;
    return;
  }
  const float inv = 127.0f / amax;
  int32_t isum = 0;
  for (int64_t i = 0; i < kActBlock; ++i) {
    float v = std::nearbyint(xb[i] * inv);  // round half to even (default mode)
    v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v;
    q[i] = static_cast<int8_t>(v);
    isum += q[i];
  }
  d = amax / 127.0f;
  sum = d * static_cast<float>(isum);
}

// The same operations on 16-lane vectors: the maximum is exact in any order, the product,
// vrndscaleps (round to nearest even), clamp and the two divisions are the specification's, so
// the bits are equal. Blocks whose maximum is 0, Inf or NaN go to the specification.
DSINFER_AVX512 void QuantizeRowAvx512(const float* x, int64_t blocks, int8_t* q, float* d,
                                      float* sum) {
  const __m512 lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
  for (int64_t b = 0; b < blocks; ++b) {
    const float* xb = x + kActBlock * b;
    const __m512 v0 = _mm512_loadu_ps(xb), v1 = _mm512_loadu_ps(xb + 16);
    const __mmask16 nan =
        _mm512_cmp_ps_mask(v0, v0, _CMP_UNORD_Q) | _mm512_cmp_ps_mask(v1, v1, _CMP_UNORD_Q);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    if (nan != 0 || amax == 0.0f || !std::isfinite(amax)) {
      QuantizeBlock(xb, q + kActBlock * b, d[b], sum[b]);
      continue;
    }
    const __m512 inv = _mm512_set1_ps(127.0f / amax);
    constexpr int kNearest = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
    const __m512 r0 = _mm512_roundscale_ps(_mm512_mul_ps(v0, inv), kNearest);
    const __m512 r1 = _mm512_roundscale_ps(_mm512_mul_ps(v1, inv), kNearest);
    const __m512i i0 = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(r0, lo), hi));
    const __m512i i1 = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(r1, lo), hi));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + kActBlock * b), _mm512_cvtepi32_epi8(i0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + kActBlock * b + 16), _mm512_cvtepi32_epi8(i1));
    const int32_t isum = _mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
    d[b] = amax / 127.0f;
    sum[b] = d[b] * static_cast<float>(isum);
  }
}

// ---- int8 products: the specification ---------------------------------------------------------
float DotQ8_0Int8(const uint8_t* row, const int8_t* q, const float* d, int64_t blocks) {
  float acc = 0.0f;
  for (int64_t b = 0; b < blocks; ++b) {
    const uint8_t* p = row + 34 * b;
    int32_t isum = 0;
    for (int i = 0; i < 32; ++i) isum += static_cast<int8_t>(p[2 + i]) * q[32 * b + i];
    const float s = F16ToFloat(U16(p)) * d[b];
    acc += static_cast<float>(isum) * s;
  }
  return acc;
}

// IQ4_NL (xs = false: 32-element blocks, step d) and IQ4_XS (sub-block j of super-block s is
// activation block 8s + j, step d·(ls_j − 32)): qw = the level of the element's index, as
// DequantizeRow; acc += f32(Σ qw·q)·(step·d_x).
float DotIq4Int8(const uint8_t* row, const int8_t* q, const float* d, int64_t blocks, bool xs) {
  float acc = 0.0f;
  const int64_t subs = xs ? 8 : 1, bytes = xs ? 136 : 18;
  for (int64_t s = 0; s < blocks; ++s) {
    const uint8_t* p = row + bytes * s;
    const float dw = F16ToFloat(U16(p));
    for (int64_t j = 0; j < subs; ++j) {
      const uint8_t* qs = p + (xs ? 8 + 16 * j : 2);
      const int64_t b = subs * s + j;  // activation block
      int32_t isum = 0;
      for (int i = 0; i < 16; ++i)
        isum +=
            kIq4Levels[qs[i] & 0xF] * q[32 * b + i] + kIq4Levels[qs[i] >> 4] * q[32 * b + 16 + i];
      const float step = xs ? dw * static_cast<float>(Iq4XsScale(p, static_cast<int>(j)) - 32) : dw;
      acc += static_cast<float>(isum) * (step * d[b]);
    }
  }
  return acc;
}

// Q4_K (q5 = false) and Q5_K: the 4-bit value of element l of sub-block j = 2c + h is the low
// (h = 0) or high nibble of qs[32c + l]; Q5_K adds 16 when bit j of qh[l] is set.
float DotK4or5Int8(const uint8_t* row, const int8_t* q, const float* d, const float* sum,
                   int64_t superblocks, bool q5) {
  float acc = 0.0f;
  const int64_t block_bytes = q5 ? 176 : 144, qs_at = q5 ? 48 : 16;
  for (int64_t s = 0; s < superblocks; ++s) {
    const uint8_t* p = row + block_bytes * s;
    float dsc[8], dm[8];
    K4Scales(p + 4, F16ToFloat(U16(p)), F16ToFloat(U16(p + 2)), dsc, dm);
    for (int j = 0; j < 8; ++j) {
      const int c = j / 2, h = j % 2;
      const int8_t* qx = q + kQK * s + 32 * j;
      int32_t isum = 0;
      for (int l = 0; l < 32; ++l) {
        const uint8_t byte = p[qs_at + 32 * c + l];
        int value = h == 0 ? (byte & 0xF) : (byte >> 4);
        if (q5 && ((p[16 + l] >> j) & 1)) value += 16;
        isum += value * qx[l];
      }
      const int64_t blk = 8 * s + j;
      acc += static_cast<float>(isum) * (dsc[j] * d[blk]);
      acc -= dm[j] * sum[blk];
    }
  }
  return acc;
}

// Q6_K: element e = 128n + 32k + l of a super-block is u − 32, u = the low (k < 2) or high
// nibble of ql[64n + 32(k % 2) + l] | ((qh[32n + l] >> 2k) & 3) << 4 (0..63); sub-block i
// (elements 16i..16i+15, in order) has the f32 scale d·sc_i (sc: int8), as DequantizeRow forms it.
float DotQ6_KInt8(const uint8_t* row, const int8_t* q, const float* d, int64_t superblocks) {
  float acc = 0.0f;
  for (int64_t s = 0; s < superblocks; ++s) {
    const uint8_t* p = row + 210 * s;
    const auto* sc = reinterpret_cast<const int8_t*>(p + 192);
    const float dd = F16ToFloat(U16(p + 208));
    for (int i = 0; i < 16; ++i) {
      int32_t isum = 0;
      for (int e = 16 * i; e < 16 * i + 16; ++e) {
        const int n = e / 128, k = (e % 128) / 32, l = e % 32;
        const uint8_t byte = p[64 * n + 32 * (k % 2) + l];
        const int low = k < 2 ? (byte & 0xF) : (byte >> 4);
        const int high = (p[128 + 32 * n + l] >> (2 * k)) & 3;
        isum += ((low | (high << 4)) - 32) * q[kQK * s + e];
      }
      acc += static_cast<float>(isum) * ((dd * static_cast<float>(sc[i])) * d[8 * s + i / 2]);
    }
  }
  return acc;
}

// Q2_K and Q3_K, per 16-element group i (activation block i / 2): Q2_K's value q = (qs[32n + l]
// >> 2j) & 3 with acc += f32(Σ q·x_q)·((d·sc_i)·d_x), acc −= f32(Σ x_q)·((dmin·m_i)·d_x); Q3_K's
// u = q + 4 = low bits | hmask bit << 2 (0..7) with acc += f32(Σ (u − 4)·x_q)·((d·s_i)·d_x).
float DotQ2or3_KInt8(const uint8_t* row, const int8_t* q, const float* d, int64_t superblocks,
                     bool q3) {
  float acc = 0.0f;
  const int64_t block_bytes = q3 ? 110 : 84;
  for (int64_t s = 0; s < superblocks; ++s) {
    const uint8_t* p = row + block_bytes * s;
    const uint8_t* qs = p + (q3 ? 32 : 16);
    const float dd = F16ToFloat(U16(p + (q3 ? 108 : 80)));
    const float dmin = q3 ? 0.0f : F16ToFloat(U16(p + 82));
    for (int i = 0; i < 16; ++i) {
      int32_t isum = 0, xsum = 0;
      for (int e = 16 * i; e < 16 * i + 16; ++e) {
        const int n = e / 128, j = (e % 128) / 32, l = e % 32;
        int v = (qs[32 * n + l] >> (2 * j)) & 3;
        if (q3) v = (v | (((p[l] >> (4 * n + j)) & 1) << 2)) - 4;
        isum += v * q[kQK * s + e];
        xsum += q[kQK * s + e];
      }
      const float dx = d[8 * s + i / 2];
      if (q3) {
        acc += static_cast<float>(isum) * ((dd * static_cast<float>(Q3Scale(p + 96, i))) * dx);
      } else {
        acc += static_cast<float>(isum) * ((dd * static_cast<float>(p[i] & 0xF)) * dx);
        acc -= static_cast<float>(xsum) * ((dmin * static_cast<float>(p[i] >> 4)) * dx);
      }
    }
  }
  return acc;
}

// ---- int8 products: AVX-512 VNNI ---------------------------------------------------------------
// Up to kVnniTokens tokens share each weight row's unpacked bytes. Per 64 weight bytes and token:
// one vpdpbusd (u8 weights × s8 activations → 16 lanes of 4-product sums, exact), the lanes
// converted to f32 (exact: |sum| < 2^16) and fma'd with the lane's block scale into a per-token
// f32 accumulator; a fixed reduction ends the row.
constexpr int kVnniTokens = 8;

DSINFER_VNNI inline __m512 Halves(float lo, float hi) {
  return _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(lo), _mm512_set1_ps(hi));
}

// Signed int8 weights (Q8_0's codes, IQ4's levels): vpdpbusd takes |w| as the unsigned
// operand and moves w's sign onto the activation (x → −x where w < 0; |x| ≤ 127 so negation is
// exact; |−128| = 128 as u8). A source gives, for activation blocks b and b + 1 (b even, in
// increasing order), the 64 weights in element order (`Pair`) or block b's 32 in the lower half
// and zeros above (`Last`), with their f32 steps in the matching halves of `dw`; a source that
// walks its rows in larger units hands every pair to the kernel's step itself (`Pairs`).
struct Q8_0Source {
  const uint8_t* row;
  DSINFER_VNNI __m512i Pair(int64_t b, __m512& dw) {
    const uint8_t* p = row + 34 * b;
    dw = Halves(_cvtsh_ss(U16(p)), _cvtsh_ss(U16(p + 34)));
    const __m256i wa = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2));
    const __m256i wb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 36));
    return _mm512_inserti64x4(_mm512_castsi256_si512(wa), wb, 1);
  }
  DSINFER_VNNI __m512i Last(int64_t b, __m512& dw) {
    const uint8_t* p = row + 34 * b;
    dw = Halves(_cvtsh_ss(U16(p)), 0.0f);
    const __m256i wa = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2));
    return _mm512_inserti64x4(_mm512_setzero_si512(), wa, 0);
  }
};

// IQ4 levels of two 16-byte index runs (qs0 → 128-bit lanes 0, 1: low then high nibbles;
// qs1 → lanes 2, 3): the element order of two 32-element blocks. Iq4LevelsOf takes the runs
// already placed (qs0, qs0, qs1, qs1), keeps the low nibbles of lanes 0, 2 and the high ones of
// 1, 3, and looks the indices up in kIq4Levels by a byte shuffle per lane; Iq4Levels64At reads
// adjacent runs (qs1 = qs0 + 16) with one load and one permute.
DSINFER_VNNI inline __m512i Iq4LevelsOf(__m512i v) {
  v = _mm512_and_si512(_mm512_mask_srli_epi16(v, 0xFF00FF00u, v, 4), _mm512_set1_epi8(0x0F));
  const __m512i levels =
      _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4Levels)));
  return _mm512_shuffle_epi8(levels, v);
}
DSINFER_VNNI inline __m512i Iq4Levels64(const uint8_t* qs0, const uint8_t* qs1) {
  const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs0));
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs1));
  return Iq4LevelsOf(_mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set_m128i(a, a)),
                                        _mm256_set_m128i(b, b), 1));
}
DSINFER_VNNI inline __m512i Iq4Levels64At(const uint8_t* qs) {
  const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs));
  return Iq4LevelsOf(
      _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 1, 0, 1, 2, 3, 2, 3), _mm512_castsi256_si512(q)));
}

// IQ4_NL: 18-byte blocks of 32, step d.
struct Iq4NlSource {
  const uint8_t* row;
  DSINFER_VNNI __m512i Pair(int64_t b, __m512& dw) {
    const uint8_t* p = row + 18 * b;
    dw = Halves(_cvtsh_ss(U16(p)), _cvtsh_ss(U16(p + 18)));
    return Iq4Levels64(p + 2, p + 20);
  }
  DSINFER_VNNI __m512i Last(int64_t b, __m512& dw) {
    const uint8_t* p = row + 18 * b;
    dw = Halves(_cvtsh_ss(U16(p)), 0.0f);
    return _mm512_inserti64x4(_mm512_setzero_si512(),
                              _mm512_castsi512_si256(Iq4Levels64(p + 2, p + 2)), 0);
  }
};

// IQ4_XS: 136-byte super-blocks of eight 32-element sub-blocks. Entering a super-block, the
// eight steps d·(ls_j − 32) are formed in vector lanes (ls_j's low nibble is bits 4j..4j+3 of
// scales_l read as a u32, its top bits 2j, 2j+1 of scales_h; one f32 product each, as
// DequantizeRow forms them).
struct Iq4XsSource {
  const uint8_t* row;
  template <class Step>
  DSINFER_VNNI void Pairs(int64_t blocks, Step& step) {
    // Lanes 0..7 take step j, 8..15 step j + 1, for the pairs j = 0, 2, 4, 6.
    __m512i pick[4];
    for (int j = 0; j < 4; ++j)
      pick[j] = _mm512_add_epi32(_mm512_set1_epi32(2 * j),
                                 _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1));
    for (int64_t sb = 0; 8 * sb < blocks; ++sb) {
      const uint8_t* p = row + 136 * sb;
      uint32_t low;
      std::memcpy(&low, p + 4, 4);
      const __m256i lo = _mm256_and_si256(
          _mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(low)),
                            _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28)),
          _mm256_set1_epi32(15));
      const __m256i hi = _mm256_and_si256(
          _mm256_srlv_epi32(_mm256_set1_epi32(U16(p + 2)),
                            _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14)),
          _mm256_set1_epi32(3));
      const __m256i ls = _mm256_or_si256(lo, _mm256_slli_epi32(hi, 4));
      const __m512 steps = _mm512_castps256_ps512(
          _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(U16(p))),
                        _mm256_cvtepi32_ps(_mm256_sub_epi32(ls, _mm256_set1_epi32(32)))));
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j)
        step(8 * sb + 2 * j, Iq4Levels64At(p + 8 + 32 * j),
             _mm512_permutexvar_ps(pick[j], steps));
    }
  }
  DSINFER_VNNI __m512i Last(int64_t, __m512&) {  // never: 8 blocks per super-block
    DSINFER_CHECK(false, "IQ4_XS rows hold whole super-blocks");
    return _mm512_setzero_si512();
  }
};

// The per-token work of RowSignedVnniN for the 64 weights `w` of blocks b, b + 1 (their steps
// in the halves of dw; a lone last block has zeros in the upper halves, `last`).
template <int N>
struct SignedStep {
  const QuantizedActs& a;
  int64_t t0;
  __m512 acc[N];
  DSINFER_VNNI void operator()(int64_t b, __m512i w, __m512 dw, bool last = false) {
    const __m512i zero = _mm512_setzero_si512();
    const __m512i aw = _mm512_abs_epi8(w);
    const __mmask64 neg = _mm512_movepi8_mask(w);
    for (int t = 0; t < N; ++t) {
      const int64_t tok = t0 + t;
      const int8_t* q = a.q.data() + tok * a.cols + 32 * b;
      const float* dx = a.d.data() + tok * a.blocks + b;
      __m512i x = last ? _mm512_maskz_loadu_epi8(0xFFFFFFFFull, q) : _mm512_loadu_si512(q);
      x = _mm512_mask_sub_epi8(x, neg, zero, x);
      const __m512i dp = _mm512_dpbusd_epi32(zero, aw, x);
      const __m512 s = _mm512_mul_ps(dw, Halves(dx[0], last ? 0.0f : dx[1]));
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp), s, acc[t]);
    }
  }
};

template <int N, class Source>
DSINFER_VNNI void RowSignedVnniN(const uint8_t* row, int64_t blocks, const QuantizedActs& a,
                                 int64_t t0, float* out, int64_t ys) {
  SignedStep<N> step{a, t0, {}};
  for (int t = 0; t < N; ++t) step.acc[t] = _mm512_setzero_ps();
  Source src{row};
  const int64_t even = blocks & ~int64_t{1};
  if constexpr (requires { src.Pairs(even, step); }) {
    src.Pairs(even, step);
  } else {
    for (int64_t b = 0; b < even; b += 2) {
      __m512 dw;
      const __m512i w = src.Pair(b, dw);
      step(b, w, dw);
    }
  }
  if (blocks % 2 == 1) {  // an odd last block: the upper half of every vector is zero
    __m512 dw;
    const __m512i w = src.Last(blocks - 1, dw);
    step(blocks - 1, w, dw, /*last=*/true);
  }
  for (int t = 0; t < N; ++t) out[t * ys] = _mm512_reduce_add_ps(step.acc[t]);
}

// Register accumulators for every token count (the arithmetic per token does not depend on it).
template <class Source>
DSINFER_VNNI void RowSignedVnni(const uint8_t* row, int64_t blocks, const QuantizedActs& a,
                                int64_t t0, int n, float* out, int64_t ys) {
  UpTo<kVnniTokens>(n, [&](auto k) { RowSignedVnniN<k(), Source>(row, blocks, a, t0, out, ys); });
}

// Q4_K on VNNI. Per super-block, shared by the tokens: the 12 bytes of packed 6-bit scales and
// mins are unpacked by two byte shuffles, shifts and masks (K4ScaleBytes) into the pairs
// (sc_j, m_j), converted and multiplied by (d, dmin) in one vector: the specification's f32
// products d·sc_j and dmin·m_j (K4Scales), bit for bit. Chunk c's 32 bytes are broadcast to both
// halves of a vector and the upper half shifted by 4: its nibbles [sub-block 2c | 2c+1] meet
// the 64 activation bytes 64c..64c+63 in one vpdpbusd. Per token, one multiply with the
// activations' (d, sum) pairs gives the pairs (d·sc_j·d_x, dmin·m_j·sum_j) — the
// specification's products — vpermps spreads d·sc_j·d_x over sub-block j's 8 lanes, and the
// mins are subtracted in the odd lanes of the second accumulator. Two accumulators per token,
// the same for every batch size (batch invariance); up to kQ4Tokens tokens per pass.
constexpr int kQ4Tokens = 4;

// The 8 scales and mins of a Q4_K super-block (the 12 bytes at s, UnpackK4Scale's packing; 4
// more bytes are read, which the block holds) as bytes sc_0, m_0, sc_1, m_1, …, sc_7, m_7:
// j < 4: sc = s[j] & 63, m = s[j+4] & 63; j ≥ 4: sc = (s[j+4] & 15) | (s[j-4] >> 6) << 4,
// m = (s[j+4] >> 4) | (s[j] >> 6) << 4.
DSINFER_AVX2 inline __m128i K4ScaleBytes(const uint8_t* s) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s));
  // a: the bytes holding each value's low bits; b: those holding the top 2 bits (j ≥ 4).
  const __m128i a =
      _mm_shuffle_epi8(v, _mm_setr_epi8(0, 4, 1, 5, 2, 6, 3, 7, 8, 8, 9, 9, 10, 10, 11, 11));
  const __m128i b =
      _mm_shuffle_epi8(v, _mm_setr_epi8(-1, -1, -1, -1, -1, -1, -1, -1, 0, 4, 1, 5, 2, 6, 3, 7));
  const __m128i low =
      _mm_and_si128(a, _mm_setr_epi8(63, 63, 63, 63, 63, 63, 63, 63, 15, 0, 15, 0, 15, 0, 15, 0));
  // Odd bytes are the high byte of their 16-bit word: the shift brings in zeros.
  const __m128i high = _mm_and_si128(
      _mm_srli_epi16(a, 4), _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 0, 15, 0, 15, 0, 15));
  // (byte >> 6) << 4 = (byte >> 2) & 0x30: the bits the 16-bit shift brings in are masked off.
  const __m128i top = _mm_and_si128(_mm_srli_epi16(b, 2), _mm_set1_epi8(0x30));
  return _mm_or_si128(_mm_or_si128(low, high), top);
}

// [d·sc_0, dmin·m_0, …, d·sc_7, dmin·m_7] of the super-block at p.
DSINFER_VNNI inline __m512 K4ScalesVnni(const uint8_t* p) {
  uint32_t dd;  // f16 d, f16 dmin
  std::memcpy(&dd, p, 4);
  const __m512 f = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(K4ScaleBytes(p + 4)));
  return _mm512_mul_ps(f, _mm512_cvtph_ps(_mm256_set1_epi32(static_cast<int>(dd))));
}

// Q5_K (Q5): the same with each chunk's 5th bits added before vpdpbusd — qh's 32 bytes
// broadcast to both halves; a byte test against bit 2c (lower half) or 2c + 1 (upper half)
// selects the lanes that get 16 (values 0..31, still unsigned bytes).
template <int N, bool Q5 = false>
DSINFER_VNNI void RowQ4_KVnni(const uint8_t* row, int64_t superblocks, const QuantizedActs& a,
                              int64_t t0, float* out, int64_t ys) {
  __m512 acc0[N], acc1[N];
  for (int t = 0; t < N; ++t) acc0[t] = acc1[t] = _mm512_setzero_ps();
  const __m512i low4 = _mm512_set1_epi8(0x0F), sixteen = _mm512_set1_epi8(16);
  constexpr int64_t kBlockBytes = Q5 ? 176 : 144, kQsAt = Q5 ? 48 : 16;
  __m512i bit_of[4];  // chunk c: bytes 1 << 2c in the lower half, 1 << (2c + 1) in the upper
  for (int c = 0; c < 4; ++c)
    bit_of[c] = _mm512_inserti64x4(_mm512_set1_epi8(static_cast<char>(1 << (2 * c))),
                                   _mm256_set1_epi8(static_cast<char>(1 << (2 * c + 1))), 1);
  // Lanes of chunk c's products: sub-block 2c (lanes 0..7), 2c+1 (8..15); their scales sit
  // in lanes 4c and 4c + 2 of the (scale, min) pairs.
  const __m512i spread[4] = {
      _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2),
      _mm512_setr_epi32(4, 4, 4, 4, 4, 4, 4, 4, 6, 6, 6, 6, 6, 6, 6, 6),
      _mm512_setr_epi32(8, 8, 8, 8, 8, 8, 8, 8, 10, 10, 10, 10, 10, 10, 10, 10),
      _mm512_setr_epi32(12, 12, 12, 12, 12, 12, 12, 12, 14, 14, 14, 14, 14, 14, 14, 14)};
  constexpr __mmask16 kMinLanes = 0xAAAA;
  for (int64_t s = 0; s < superblocks; ++s) {
    const uint8_t* p = row + kBlockBytes * s;
    const __m512 scales = K4ScalesVnni(p);
    __m512i w[4];
    for (int c = 0; c < 4; ++c) {
      const __m512i b = _mm512_broadcast_i64x4(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + kQsAt + 32 * c)));
      w[c] = _mm512_and_si512(_mm512_mask_srli_epi16(b, 0xFFFF0000u, b, 4), low4);
    }
    if constexpr (Q5) {
      const __m512i qh =
          _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 16)));
      for (int c = 0; c < 4; ++c)
        w[c] = _mm512_mask_add_epi8(w[c], _mm512_test_epi8_mask(qh, bit_of[c]), w[c], sixteen);
    }
#pragma GCC unroll 4
    for (int t = 0; t < N; ++t) {
      const int64_t tok = t0 + t;
      const int8_t* q = a.q.data() + tok * a.cols + kQK * s;
      const __m512 st =
          _mm512_mul_ps(scales, _mm512_loadu_ps(a.ds.data() + 2 * (tok * a.blocks + 8 * s)));
#pragma GCC unroll 4
      for (int c = 0; c < 4; ++c) {
        const __m512i dp =
            _mm512_dpbusd_epi32(_mm512_setzero_si512(), w[c], _mm512_loadu_si512(q + 64 * c));
        const __m512 f = _mm512_cvtepi32_ps(dp);
        const __m512 sc = _mm512_permutexvar_ps(spread[c], st);
        if (c % 2 == 0)
          acc0[t] = _mm512_fmadd_ps(f, sc, acc0[t]);
        else
          acc1[t] = _mm512_fmadd_ps(f, sc, acc1[t]);
      }
      acc1[t] = _mm512_mask_sub_ps(acc1[t], kMinLanes, acc1[t], st);
    }
  }
  for (int t = 0; t < N; ++t) out[t * ys] = _mm512_reduce_add_ps(_mm512_add_ps(acc0[t], acc1[t]));
}

// Q6_K on VNNI. Per super-block, shared by the tokens: the 16 scales d·sc_i (one convert and
// multiply) and the 6-bit values u = q + 32 (0..63, unsigned bytes) of the 256 elements in
// element order, as four 64-byte vectors: half h's 64 ql bytes give quarters 0, 1 (low nibbles)
// and 2, 3 (high nibbles), qh's 32 bytes broadcast to both halves give the top bits (shifted by
// 0 | 2 and 4 | 6, the upper half by a masked shift). Per token and vector: vpdpbusd of u with
// the activations minus vpdpbusd of 32 with them (Σ(u − 32)·x per 4 elements, exact), converted
// and fma'd with d·sc_i·d_x (sub-block i = lane / 4 of the vector's four, spread by vpermps).
// One accumulator per token for every batch size; up to kQ4Tokens tokens per pass.
// Lane j of the v-th 64-byte vector of a super-block covers elements 64v + 4j..64v + 4j + 3:
// 16-element sub-block 4v + j / 4 (the index vector that spreads its scale over the lanes).
DSINFER_VNNI inline __m512i SubBlockSpread(int v) {
  return _mm512_setr_epi32(4 * v, 4 * v, 4 * v, 4 * v, 4 * v + 1, 4 * v + 1, 4 * v + 1, 4 * v + 1,
                           4 * v + 2, 4 * v + 2, 4 * v + 2, 4 * v + 2, 4 * v + 3, 4 * v + 3,
                           4 * v + 3, 4 * v + 3);
}

template <int N>
DSINFER_VNNI void RowQ6_KVnni(const uint8_t* row, int64_t superblocks, const QuantizedActs& a,
                              int64_t t0, float* out, int64_t ys) {
  __m512 acc[N];
  for (int t = 0; t < N; ++t) acc[t] = _mm512_setzero_ps();
  const __m512i low4 = _mm512_set1_epi8(0x0F), three = _mm512_set1_epi8(3),
                bias = _mm512_set1_epi8(32);
  __m512i spread[4];
  for (int v = 0; v < 4; ++v) spread[v] = SubBlockSpread(v);
  // Sub-block i's activation block: i / 2.
  const __m512i pairs = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
  for (int64_t s = 0; s < superblocks; ++s) {
    const uint8_t* p = row + 210 * s;
    const __m512 dsc = _mm512_mul_ps(
        _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 192)))),
        _mm512_set1_ps(_cvtsh_ss(U16(p + 208))));
    __m512i w[4];
    for (int h = 0; h < 2; ++h) {
      const __m512i ql = _mm512_loadu_si512(p + 64 * h);
      const __m512i qh = _mm512_broadcast_i64x4(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 128 + 32 * h)));
      const __m512i top01 = _mm512_and_si512(_mm512_mask_srli_epi16(qh, 0xFFFF0000u, qh, 2), three);
      const __m512i top23 = _mm512_and_si512(
          _mm512_mask_srli_epi16(_mm512_srli_epi16(qh, 4), 0xFFFF0000u, qh, 6), three);
      w[2 * h] = _mm512_or_si512(_mm512_and_si512(ql, low4), _mm512_slli_epi16(top01, 4));
      w[2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), low4),
                                     _mm512_slli_epi16(top23, 4));
    }
#pragma GCC unroll 4
    for (int t = 0; t < N; ++t) {
      const int64_t tok = t0 + t;
      const int8_t* q = a.q.data() + tok * a.cols + kQK * s;
      const __m512 dx = _mm512_permutexvar_ps(
          pairs, _mm512_castps256_ps512(_mm256_loadu_ps(a.d.data() + tok * a.blocks + 8 * s)));
      const __m512 st = _mm512_mul_ps(dsc, dx);
#pragma GCC unroll 4
      for (int v = 0; v < 4; ++v) {
        const __m512i x = _mm512_loadu_si512(q + 64 * v);
        const __m512i dp = _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), w[v], x),
                                            _mm512_dpbusd_epi32(_mm512_setzero_si512(), bias, x));
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp), _mm512_permutexvar_ps(spread[v], st),
                                 acc[t]);
      }
    }
  }
  for (int t = 0; t < N; ++t) out[t * ys] = _mm512_reduce_add_ps(acc[t]);
}

// Q2_K (Q3 = false) and Q3_K on VNNI, as Q6_K's: the 256 values of a super-block in element
// order as four 64-byte vectors (vector v: half v / 2, shifts 2j for j = 2(v % 2) and the next,
// 32 bytes each; Q3_K adds its hmask bit as bit 2), per token one vpdpbusd with the activations
// (Q3_K minus one of 4 with them: values u − 4), fma'd with (d·sc_i)·d_x spread over sub-block
// i's four lanes; Q2_K subtracts, once per super-block, the token's 16 group sums
// (QuantizedActs::sum16) times (dmin·m_i)·d_x. One accumulator per token; up to kQ4Tokens tokens
// per pass.
template <int N, bool Q3>
DSINFER_VNNI void RowQ2or3_KVnni(const uint8_t* row, int64_t superblocks, const QuantizedActs& a,
                                 int64_t t0, float* out, int64_t ys) {
  __m512 acc[N];
  for (int t = 0; t < N; ++t) acc[t] = _mm512_setzero_ps();
  const __m256i three = _mm256_set1_epi8(3), one8 = _mm256_set1_epi8(1);
  const __m512i fours = _mm512_set1_epi8(4);
  __m512i spread[4];
  for (int v = 0; v < 4; ++v) spread[v] = SubBlockSpread(v);
  const __m512i pairs = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
  constexpr int64_t kBytes = Q3 ? 110 : 84;
  for (int64_t s = 0; s < superblocks; ++s) {
    const uint8_t* p = row + kBytes * s;
    // The 16 group scales as f32 lanes, d·sc_i (and dmin·m_i), each product rounded once.
    __m512 vsc, vm = _mm512_setzero_ps();
    if (Q3) {
      // Lane g: low 4 bits from byte g % 8 (its high nibble for g ≥ 8), top 2 bits from byte
      // 8 + g % 4 shifted by 2·(g / 4), as Q3Scale.
      // The 12 scale bytes (a masked load: nothing past them is read, nor faults).
      const __m512i bytes = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(0x0FFF, p + 96));
      const __m512i low = _mm512_and_si512(
          _mm512_srlv_epi32(
              _mm512_permutexvar_epi32(
                  _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7), bytes),
              _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 4, 4, 4, 4, 4, 4, 4, 4)),
          _mm512_set1_epi32(15));
      const __m512i high = _mm512_and_si512(
          _mm512_srlv_epi32(
              _mm512_permutexvar_epi32(
                  _mm512_setr_epi32(8, 9, 10, 11, 8, 9, 10, 11, 8, 9, 10, 11, 8, 9, 10, 11), bytes),
              _mm512_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2, 4, 4, 4, 4, 6, 6, 6, 6)),
          _mm512_set1_epi32(3));
      const __m512i sc = _mm512_sub_epi32(_mm512_or_si512(low, _mm512_slli_epi32(high, 4)),
                                          _mm512_set1_epi32(32));
      vsc = _mm512_mul_ps(_mm512_set1_ps(_cvtsh_ss(U16(p + 108))), _mm512_cvtepi32_ps(sc));
    } else {
      const __m512i bytes =
          _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
      vsc = _mm512_mul_ps(_mm512_set1_ps(_cvtsh_ss(U16(p + 80))),
                          _mm512_cvtepi32_ps(_mm512_and_si512(bytes, _mm512_set1_epi32(15))));
      vm = _mm512_mul_ps(_mm512_set1_ps(_cvtsh_ss(U16(p + 82))),
                         _mm512_cvtepi32_ps(_mm512_srli_epi32(bytes, 4)));
    }
    const __m256i hm = Q3 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)) : __m256i{};
    __m512i w[4];
    for (int v = 0; v < 4; ++v) {
      const int n = v / 2, j = 2 * (v % 2);
      const __m256i qs =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + (Q3 ? 32 : 16) + 32 * n));
      __m256i lo = _mm256_and_si256(_mm256_srl_epi16(qs, _mm_cvtsi32_si128(2 * j)), three);
      __m256i hi = _mm256_and_si256(_mm256_srl_epi16(qs, _mm_cvtsi32_si128(2 * j + 2)), three);
      if (Q3) {
        const __m256i blo =
            _mm256_and_si256(_mm256_srl_epi16(hm, _mm_cvtsi32_si128(4 * n + j)), one8);
        const __m256i bhi =
            _mm256_and_si256(_mm256_srl_epi16(hm, _mm_cvtsi32_si128(4 * n + j + 1)), one8);
        lo = _mm256_or_si256(lo, _mm256_slli_epi16(blo, 2));
        hi = _mm256_or_si256(hi, _mm256_slli_epi16(bhi, 2));
      }
      w[v] = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
    }
#pragma GCC unroll 4
    for (int t = 0; t < N; ++t) {
      const int64_t tok = t0 + t;
      const int8_t* q = a.q.data() + tok * a.cols + kQK * s;
      const __m512 dx = _mm512_permutexvar_ps(
          pairs, _mm512_castps256_ps512(_mm256_loadu_ps(a.d.data() + tok * a.blocks + 8 * s)));
      const __m512 st = _mm512_mul_ps(vsc, dx);
      const __m512 mt = _mm512_mul_ps(vm, dx);
#pragma GCC unroll 4
      for (int v = 0; v < 4; ++v) {
        const __m512i x = _mm512_loadu_si512(q + 64 * v);
        __m512i dp = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w[v], x);
        if (Q3) dp = _mm512_sub_epi32(dp, _mm512_dpbusd_epi32(_mm512_setzero_si512(), fours, x));
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp), _mm512_permutexvar_ps(spread[v], st),
                                 acc[t]);
      }
      // Q2_K's mins: the token's 16 group sums (QuantizedActs::sum16) times dmin·m_i·d_x.
      if (!Q3)
        acc[t] = _mm512_fnmadd_ps(_mm512_loadu_ps(a.sum16.data() + tok * (a.cols / 16) + 16 * s),
                                  mt, acc[t]);
    }
  }
  for (int t = 0; t < N; ++t) out[t * ys] = _mm512_reduce_add_ps(acc[t]);
}


// ---- int8 products: AVX2 (maddubs) --------------------------------------------------------------
// Per 32 weight bytes and token: vpmaddubsw (u8 × s8, adjacent pairs summed into 16 lanes of
// int16: at most 2·128·127 = 32512, never saturating), vpmaddwd with ones (8 lanes of int32,
// exact), converted and fma'd with the block scale into a per-token 8-lane accumulator.
DSINFER_AVX2 inline float ReduceAdd256(__m256 v) {
  const __m128 b = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 c = _mm_add_ps(b, _mm_movehl_ps(b, b));
  return _mm_cvtss_f32(_mm_add_ss(c, _mm_movehdup_ps(c)));
}

DSINFER_AVX2 inline __m256 Dot32Avx2(__m256i w_u8, __m256i x_s8) {
  const __m256i p16 = _mm256_maddubs_epi16(w_u8, x_s8);
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
}

// Q8_0: |w| unsigned, w's sign moved onto x (vpsignb: −x where w < 0, 0 where w = 0).
DSINFER_AVX2 void RowQ8_0Avx2(const uint8_t* row, int64_t blocks, const QuantizedActs& a,
                              int64_t t0, int n, float* out, int64_t ys) {
  __m256 acc[kVnniTokens];
  for (int t = 0; t < n; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b) {
    const uint8_t* p = row + 34 * b;
    const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2));
    const __m256i aw = _mm256_sign_epi8(w, w);
    const float dw = _cvtsh_ss(U16(p));
    for (int t = 0; t < n; ++t) {
      const int64_t tok = t0 + t;
      const __m256i x =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.q.data() + tok * a.cols + 32 * b));
      const float s = dw * a.d[tok * a.blocks + b];
      acc[t] = _mm256_fmadd_ps(Dot32Avx2(aw, _mm256_sign_epi8(x, w)), _mm256_set1_ps(s), acc[t]);
    }
  }
  for (int t = 0; t < n; ++t) out[t * ys] = ReduceAdd256(acc[t]);
}

// Q4_K on AVX2: the scales unpacked as for VNNI (K4ScaleBytes; the (d·sc_j, dmin·m_j) pairs of
// sub-blocks 0..3 and 4..7 in two vectors), one multiply per half with the activations'
// (d, sum) pairs per token, vpermps spreading d·sc_j·d_x over the 8 lanes of sub-block j's
// products, the mins subtracted in the odd lanes of the second accumulator. Two accumulators
// per token for every batch size; up to kQ4Tokens tokens per pass.
// Q5_K (Q5): sub-block j's bytes get 16 where bit j of qh[l] is set (as WalkK4or5).
template <int N, bool Q5 = false>
DSINFER_AVX2 void RowQ4_KAvx2(const uint8_t* row, int64_t superblocks, const QuantizedActs& a,
                              int64_t t0, float* out, int64_t ys) {
  __m256 acc0[N], acc1[N];
  for (int t = 0; t < N; ++t) acc0[t] = acc1[t] = _mm256_setzero_ps();
  const __m256i low4 = _mm256_set1_epi8(0x0F), sixteen = _mm256_set1_epi8(16);
  const __m256 min_lanes = _mm256_castsi256_ps(_mm256_setr_epi32(0, -1, 0, -1, 0, -1, 0, -1));
  constexpr int64_t kBlockBytes = Q5 ? 176 : 144, kQsAt = Q5 ? 48 : 16;
  for (int64_t s = 0; s < superblocks; ++s) {
    const uint8_t* p = row + kBlockBytes * s;
    uint32_t dd;  // f16 d, f16 dmin
    std::memcpy(&dd, p, 4);
    const __m256 dmul = _mm256_cvtph_ps(_mm_set1_epi32(static_cast<int>(dd)));
    const __m128i sm = K4ScaleBytes(p + 4);
    const __m256 scales[2] = {
        _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(sm)), dmul),
        _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(sm, 8))), dmul)};
    __m256i w[8];  // sub-block j: nibbles 0..15 (Q5_K: 0..31)
    for (int c = 0; c < 4; ++c) {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + kQsAt + 32 * c));
      w[2 * c] = _mm256_and_si256(q, low4);
      w[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16(q, 4), low4);
    }
    if constexpr (Q5) {
      const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 16));
      for (int j = 0; j < 8; ++j) {
        const __m256i bit = _mm256_set1_epi8(static_cast<char>(1 << j));
        const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit);
        w[j] = _mm256_or_si256(w[j], _mm256_and_si256(set, sixteen));
      }
    }
#pragma GCC unroll 4
    for (int t = 0; t < N; ++t) {
      const int64_t tok = t0 + t;
      const int8_t* q = a.q.data() + tok * a.cols + kQK * s;
      const float* ds = a.ds.data() + 2 * (tok * a.blocks + 8 * s);
      const __m256 st[2] = {_mm256_mul_ps(scales[0], _mm256_loadu_ps(ds)),
                            _mm256_mul_ps(scales[1], _mm256_loadu_ps(ds + 8))};
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) {
        const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32 * j));
        const __m256 sc = _mm256_permutevar8x32_ps(st[j / 4], _mm256_set1_epi32(2 * (j % 4)));
        if (j % 2 == 0)
          acc0[t] = _mm256_fmadd_ps(Dot32Avx2(w[j], x), sc, acc0[t]);
        else
          acc1[t] = _mm256_fmadd_ps(Dot32Avx2(w[j], x), sc, acc1[t]);
      }
      acc1[t] = _mm256_sub_ps(acc1[t], _mm256_and_ps(st[0], min_lanes));
      acc1[t] = _mm256_sub_ps(acc1[t], _mm256_and_ps(st[1], min_lanes));
    }
  }
  for (int t = 0; t < N; ++t) out[t * ys] = ReduceAdd256(_mm256_add_ps(acc0[t], acc1[t]));
}

// Q6_K on AVX2: per quarter (32 elements) the values u = q + 32 as the walker builds them,
// vpmaddubsw products (u ≤ 63: pairs ≤ 2·63·128, never saturating) minus those of 32, and
// d·sc_i·d_x spread over each sub-block's 4 lanes by vpermps. One accumulator per token.
template <int N>
DSINFER_AVX2 void RowQ6_KAvx2(const uint8_t* row, int64_t superblocks, const QuantizedActs& a,
                              int64_t t0, float* out, int64_t ys) {
  __m256 acc[N];
  for (int t = 0; t < N; ++t) acc[t] = _mm256_setzero_ps();
  const __m256i bias = _mm256_set1_epi8(32);
  for (int64_t s = 0; s < superblocks; ++s) {
    const uint8_t* p = row + 210 * s;
    const __m256 d = _mm256_set1_ps(_cvtsh_ss(U16(p + 208)));
    const __m128i sc = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 192));
    const __m256 dsc[2] = {_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc)), d),
                           _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
                                             _mm_srli_si128(sc, 8))), d)};
    __m256i w[8];  // quarter 4n + k: elements 128n + 32k ..
    for (int n = 0; n < 2; ++n) {
      const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 128 + 32 * n));
      for (int k = 0; k < 4; ++k) w[4 * n + k] = Q6Quarter(p, qh, n, k);
    }
#pragma GCC unroll 4
    for (int t = 0; t < N; ++t) {
      const int64_t tok = t0 + t;
      const int8_t* q = a.q.data() + tok * a.cols + kQK * s;
      const float* dx = a.d.data() + tok * a.blocks + 8 * s;
      // st[h] = d·sc_i·d_x for sub-blocks 8h..8h+7 (d_x of block i / 2).
      const __m256 st[2] = {
          _mm256_mul_ps(dsc[0], _mm256_setr_ps(dx[0], dx[0], dx[1], dx[1], dx[2], dx[2], dx[3],
                                               dx[3])),
          _mm256_mul_ps(dsc[1], _mm256_setr_ps(dx[4], dx[4], dx[5], dx[5], dx[6], dx[6], dx[7],
                                               dx[7]))};
#pragma GCC unroll 8
      for (int qt = 0; qt < 8; ++qt) {
        const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32 * qt));
        const __m256 f = _mm256_sub_ps(Dot32Avx2(w[qt], x), Dot32Avx2(bias, x));
        const int b = 2 * (qt % 4);  // lanes 0..3: sub-block 2qt, 4..7: 2qt + 1
        const __m256 sc =
            _mm256_permutevar8x32_ps(st[qt / 4], _mm256_setr_epi32(b, b, b, b, b + 1, b + 1,
                                                                   b + 1, b + 1));
        acc[t] = _mm256_fmadd_ps(f, sc, acc[t]);
      }
    }
  }
  for (int t = 0; t < N; ++t) out[t * ys] = ReduceAdd256(acc[t]);
}

// Q2_K (Q3 = false) and Q3_K on AVX2, as RowQ6_KAvx2: per super-block the values of each
// 32-element quarter (half n = qt / 4, shift 2j with j = qt % 4) as bytes, Q3_K with its hmask
// bit as bit 2 (u = q + 4, 0..7, the products of 4 subtracted as integers); vpmaddubsw pairs stay
// far inside int16 (2·7·127). d·sc_i·d_x spread over each 16-element group's 4 lanes by vpermps;
// Q2_K's mins once per super-block, dmin·m_i·d_x times the token's group sums (sum16). One
// accumulator per token.
DSINFER_AVX2 inline __m256i Dot32IntAvx2(__m256i w_u8, __m256i x_s8) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(w_u8, x_s8), _mm256_set1_epi16(1));
}

// Q3_K's 16 group scales s_g − 32 (Q3Scale) from its 12 scale bytes: groups 0..7 in sc[0],
// 8..15 in sc[1].
DSINFER_AVX2 inline void Q3ScalesAvx2(const uint8_t* s, __m256i sc[2]) {
  const __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(s)));
  uint32_t top;
  std::memcpy(&top, s + 8, 4);
  const __m256i h = _mm256_set1_epi32(static_cast<int>(top)), three = _mm256_set1_epi32(3);
  // group g's top 2 bits: byte 8 + g % 4 of the scales, shifted by 2·(g / 4)
  const __m256i high0 =
      _mm256_and_si256(_mm256_srlv_epi32(h, _mm256_setr_epi32(0, 8, 16, 24, 2, 10, 18, 26)), three);
  const __m256i high1 =
      _mm256_and_si256(_mm256_srlv_epi32(h, _mm256_setr_epi32(4, 12, 20, 28, 6, 14, 22, 30)), three);
  const __m256i k32 = _mm256_set1_epi32(32);
  sc[0] = _mm256_sub_epi32(
      _mm256_or_si256(_mm256_and_si256(b, _mm256_set1_epi32(15)), _mm256_slli_epi32(high0, 4)), k32);
  sc[1] = _mm256_sub_epi32(_mm256_or_si256(_mm256_srli_epi32(b, 4), _mm256_slli_epi32(high1, 4)), k32);
}

template <int N, bool Q3>
DSINFER_AVX2 void RowQ2or3_KAvx2(const uint8_t* row, int64_t superblocks, const QuantizedActs& a,
                                 int64_t t0, float* out, int64_t ys) {
  __m256 acc[N];
  for (int t = 0; t < N; ++t) acc[t] = _mm256_setzero_ps();
  const __m256i three = _mm256_set1_epi8(3), one8 = _mm256_set1_epi8(1), four8 = _mm256_set1_epi8(4);
  constexpr int64_t kBytes = Q3 ? 110 : 84;
  for (int64_t s = 0; s < superblocks; ++s) {
    const uint8_t* p = row + kBytes * s;
    __m256 dsc[2], dm[2];  // groups 8h..8h + 7: d·sc_i (Q2_K: and dmin·m_i)
    if constexpr (Q3) {
      __m256i sc[2];
      Q3ScalesAvx2(p + 96, sc);
      const __m256 d = _mm256_set1_ps(_cvtsh_ss(U16(p + 108)));
      for (int h = 0; h < 2; ++h) dsc[h] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(sc[h]));
    } else {
      const __m256 d = _mm256_set1_ps(_cvtsh_ss(U16(p + 80))), dmin = _mm256_set1_ps(_cvtsh_ss(U16(p + 82)));
      for (int h = 0; h < 2; ++h) {
        const __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 8 * h)));
        dsc[h] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_and_si256(b, _mm256_set1_epi32(15))));
        dm[h] = _mm256_mul_ps(dmin, _mm256_cvtepi32_ps(_mm256_srli_epi32(b, 4)));
      }
    }
    __m256i w[8];  // quarter qt: elements 32qt .. 32qt + 31
    const __m256i hm = Q3 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)) : __m256i{};
    for (int qt = 0; qt < 8; ++qt) {
      const int n = qt / 4, j = qt % 4;
      const __m256i qs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + (Q3 ? 32 : 16) + 32 * n));
      w[qt] = _mm256_and_si256(_mm256_srl_epi16(qs, _mm_cvtsi32_si128(2 * j)), three);
      if constexpr (Q3) {
        const __m256i bit = _mm256_and_si256(_mm256_srl_epi16(hm, _mm_cvtsi32_si128(4 * n + j)), one8);
        w[qt] = _mm256_or_si256(w[qt], _mm256_slli_epi16(bit, 2));
      }
    }
#pragma GCC unroll 4
    for (int t = 0; t < N; ++t) {
      const int64_t tok = t0 + t;
      const int8_t* q = a.q.data() + tok * a.cols + kQK * s;
      const float* dx = a.d.data() + tok * a.blocks + 8 * s;
      __m256 st[2], mt[2];  // groups 8h..8h + 7 (d_x of block i / 2)
      for (int h = 0; h < 2; ++h) {
        const __m256 dxs = _mm256_setr_ps(dx[4 * h], dx[4 * h], dx[4 * h + 1], dx[4 * h + 1],
                                          dx[4 * h + 2], dx[4 * h + 2], dx[4 * h + 3], dx[4 * h + 3]);
        st[h] = _mm256_mul_ps(dsc[h], dxs);
        if constexpr (!Q3) mt[h] = _mm256_mul_ps(dm[h], dxs);
      }
#pragma GCC unroll 8
      for (int qt = 0; qt < 8; ++qt) {
        const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32 * qt));
        __m256i dp = Dot32IntAvx2(w[qt], x);
        if constexpr (Q3) dp = _mm256_sub_epi32(dp, Dot32IntAvx2(four8, x));
        const int b = 2 * (qt % 4);  // lanes 0..3: group 2qt, 4..7: 2qt + 1
        const __m256i spread = _mm256_setr_epi32(b, b, b, b, b + 1, b + 1, b + 1, b + 1);
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dp), _mm256_permutevar8x32_ps(st[qt / 4], spread), acc[t]);
      }
      if constexpr (!Q3) {  // the mins: the token's group sums (QuantizedActs::sum16)
        const float* gs = a.sum16.data() + tok * (a.cols / 16) + 16 * s;
        for (int h = 0; h < 2; ++h) acc[t] = _mm256_fnmadd_ps(_mm256_loadu_ps(gs + 8 * h), mt[h], acc[t]);
      }
    }
  }
  for (int t = 0; t < N; ++t) out[t * ys] = ReduceAdd256(acc[t]);
}

// IQ4_NL (Xs = false: 18-byte blocks of 32, step d) and IQ4_XS (136-byte super-blocks of eight
// 32-element sub-blocks, step d·(ls_j − 32)) on AVX2: a block's 32 levels by one byte shuffle of
// kIq4Levels (elements 0..15: the low nibbles, 16..31: the high ones), multiplied as Q8_0's signed
// codes (|w| unsigned, w's sign moved onto x). Per 8 blocks the steps are formed in one vector
// (IQ4_XS: its scales unpacked by variable shifts, as the VNNI kernel) and multiplied by the
// token's 8 activation steps at once; vpermps gives each block its lane. One accumulator per
// token, N a compile-time count (at N = 8 some of the steps spill).
template <int N, bool Xs>
DSINFER_AVX2 void RowIq4Avx2N(const uint8_t* row, int64_t blocks, const QuantizedActs& a,
                              int64_t t0, float* out, int64_t ys) {
  __m256 acc[N];
  for (int t = 0; t < N; ++t) acc[t] = _mm256_setzero_ps();
  const __m256i levels =
      _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4Levels)));
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  for (int64_t b0 = 0; b0 < blocks; b0 += 8) {  // 8 activation blocks of 32 (IQ4_XS: a super-block)
    const int nb = static_cast<int>(std::min<int64_t>(8, blocks - b0));
    __m256 steps;
    if constexpr (Xs) {
      const uint8_t* p = row + 136 * (b0 / 8);
      uint32_t low;
      std::memcpy(&low, p + 4, 4);
      const __m256i lo = _mm256_and_si256(
          _mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(low)), _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28)),
          _mm256_set1_epi32(15));
      const __m256i hi = _mm256_and_si256(
          _mm256_srlv_epi32(_mm256_set1_epi32(U16(p + 2)), _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14)),
          _mm256_set1_epi32(3));
      const __m256i ls = _mm256_or_si256(lo, _mm256_slli_epi32(hi, 4));
      steps = _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(U16(p))),
                            _mm256_cvtepi32_ps(_mm256_sub_epi32(ls, _mm256_set1_epi32(32))));
    } else {
      // (the 8 steps inserted in a register, not stored to memory: 8 stores and a 16-byte load
      // stall store forwarding)
      const auto d = [&](int k) { return static_cast<short>(k < nb ? U16(row + 18 * (b0 + k)) : 0); };
      steps = _mm256_cvtph_ps(_mm_setr_epi16(d(0), d(1), d(2), d(3), d(4), d(5), d(6), d(7)));
    }
    // per token, step_b·d_b of the 8 blocks (the activation steps past the row's end read as 0)
    __m256 st[N];
    const __m256i valid = _mm256_cmpgt_epi32(_mm256_set1_epi32(nb), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    for (int t = 0; t < N; ++t) {
      const float* dx = a.d.data() + (t0 + t) * a.blocks + b0;
      st[t] = _mm256_mul_ps(steps, nb == 8 ? _mm256_loadu_ps(dx) : _mm256_maskload_ps(dx, valid));
    }
    for (int k = 0; k < nb; ++k) {
      const uint8_t* qs = Xs ? row + 136 * (b0 / 8) + 8 + 16 * k : row + 18 * (b0 + k) + 2;
      const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
      const __m256i w = _mm256_shuffle_epi8(
          levels, _mm256_and_si256(_mm256_inserti128_si256(_mm256_castsi128_si256(q), _mm_srli_epi16(q, 4), 1), low4));
      const __m256i aw = _mm256_sign_epi8(w, w);
      const __m256i lane = _mm256_set1_epi32(k);
#pragma GCC unroll 8
      for (int t = 0; t < N; ++t) {
        const int64_t tok = t0 + t;
        const __m256i x = _mm256_loadu_si256(
            reinterpret_cast<const __m256i*>(a.q.data() + tok * a.cols + 32 * (b0 + k)));
        acc[t] = _mm256_fmadd_ps(Dot32Avx2(aw, _mm256_sign_epi8(x, w)),
                                 _mm256_permutevar8x32_ps(st[t], lane), acc[t]);
      }
    }
  }
  for (int t = 0; t < N; ++t) out[t * ys] = ReduceAdd256(acc[t]);
}

template <bool Xs>
DSINFER_AVX2 void RowIq4Avx2(const uint8_t* row, int64_t blocks, const QuantizedActs& a,
                             int64_t t0, int n, float* out, int64_t ys) {
  UpTo<kVnniTokens>(n, [&](auto k) { RowIq4Avx2N<k(), Xs>(row, blocks, a, t0, out, ys); });
}

// One row of Q6_K for n ≤ kQ4Tokens tokens, on VNNI or AVX2.
void RowQ6(bool vnni, int n, const uint8_t* row, int64_t blocks, const QuantizedActs& a,
           int64_t t0, float* out, int64_t ys) {
  UpTo<kQ4Tokens>(n, [&](auto k) {
    vnni ? RowQ6_KVnni<k()>(row, blocks, a, t0, out, ys) : RowQ6_KAvx2<k()>(row, blocks, a, t0, out, ys);
  });
}

// One row of Q4_K (Q5 = false) or Q5_K for n ≤ kQ4Tokens tokens, on VNNI or AVX2.
template <bool Q5>
void RowK4or5(bool vnni, int n, const uint8_t* row, int64_t blocks, const QuantizedActs& a,
              int64_t t0, float* out, int64_t ys) {
  UpTo<kQ4Tokens>(n, [&](auto k) {
    vnni ? RowQ4_KVnni<k(), Q5>(row, blocks, a, t0, out, ys)
         : RowQ4_KAvx2<k(), Q5>(row, blocks, a, t0, out, ys);
  });
}

// One row of Q2_K (Q3 = false) or Q3_K for n ≤ kQ4Tokens tokens, on VNNI or AVX2.
template <bool Q3>
void RowQ2or3(bool vnni, int n, const uint8_t* row, int64_t blocks, const QuantizedActs& a,
              int64_t t0, float* out, int64_t ys) {
  UpTo<kQ4Tokens>(n, [&](auto k) {
    vnni ? RowQ2or3_KVnni<k(), Q3>(row, blocks, a, t0, out, ys)
         : RowQ2or3_KAvx2<k(), Q3>(row, blocks, a, t0, out, ys);
  });
}

}  // namespace

void DecodeRows(Isa isa, const WeightView& w, int64_t r0, int64_t r1, float* out) {
  DSINFER_CHECK(IsBlockDType(w.dtype), "DecodeRows: not a block dtype");
  const int64_t blocks = w.cols / DTypeBlockElems(w.dtype);
  for (int64_t r = r0; r < r1; ++r) {
    const auto* src = reinterpret_cast<const uint8_t*>(w.row(r));
    float* y = out + (r - r0) * w.cols;
    if (isa == Isa::kAvx512) {
      DecodeRowAvx512(w.dtype, src, blocks, y);
      continue;
    }
    if (isa == Isa::kAvx2) {
      DecodeRowAvx2(w.dtype, src, blocks, y);
      continue;
    }
    DecodeRow(w, r, y);
  }
}

bool FusedGemv(Isa isa, const float* xp, int64_t xps, int n, const WeightView& w, int64_t r0,
               int64_t r1, float* y, int64_t ys) {
  if (isa != Isa::kAvx512 || n < 1 || n > 8 || !IsBlockDType(w.dtype)) return false;
  FusedRowsAvx512(xp, xps, n, w, r0, r1, y, ys);
  return true;
}

void QuantizeActs(const float* x, int64_t xs, int64_t n, int64_t cols, QuantizedActs& out) {
  QuantizeActs(Isa::kScalar, x, xs, n, cols, out);
}

void QuantizeActs(Isa isa, const float* x, int64_t xs, int64_t n, int64_t cols,
                  QuantizedActs& out) {
  SizeActs(n, cols, out);
  QuantizeActRows(isa, x, xs, 0, n, out);
}

void SizeActs(int64_t n, int64_t cols, QuantizedActs& out) {
  DSINFER_CHECK(cols % kActBlock == 0, "QuantizeActs: cols must be a multiple of 32");
  out.n = n;
  out.cols = cols;
  out.blocks = cols / kActBlock;
  out.q.resize(static_cast<size_t>(n * cols));
  out.d.resize(static_cast<size_t>(n * out.blocks));
  out.sum.resize(static_cast<size_t>(n * out.blocks));
  out.ds.resize(static_cast<size_t>(2 * n * out.blocks));
  out.bias.clear();  // the tile kernels' fields: PrepareTileActRows fills them for these values
  out.qk.clear();
  out.bias16.clear();
  out.sum16.clear();  // (and PrepareInt8RowActs / PrepareTileActRows this one)
}

void QuantizeActRows(Isa isa, const float* x, int64_t xs, int64_t t0, int64_t t1,
                     QuantizedActs& out) {
  DSINFER_CHECK(0 <= t0 && t0 <= t1 && t1 <= out.n, "QuantizeActRows: tokens out of range");
  const bool vector = isa == Isa::kAvx512 && DetectCpu().Supports(Isa::kAvx512);
  const int64_t cols = out.cols;
  for (int64_t t = t0; t < t1; ++t) {
    int8_t* q = out.q.data() + t * cols;
    float* d = out.d.data() + t * out.blocks;
    float* sum = out.sum.data() + t * out.blocks;
    if (vector) {
      QuantizeRowAvx512(x + t * xs, out.blocks, q, d, sum);
    } else {
      for (int64_t b = 0; b < out.blocks; ++b)
        QuantizeBlock(x + t * xs + kActBlock * b, q + kActBlock * b, d[b], sum[b]);
    }
  }
  for (int64_t k = t0 * out.blocks; k < t1 * out.blocks; ++k) {
    out.ds[2 * k] = out.d[k];
    out.ds[2 * k + 1] = out.sum[k];
  }
}

void SizeInt8RowActs(Isa isa, DType dtype, QuantizedActs& a) {
  const bool sums = dtype == DType::kQ2_K && (Int8UsesVnni(isa) || Int8UsesAvx2(isa));
  a.sum16.resize(sums ? static_cast<size_t>(a.n * a.cols / 16) : 0);
}

void PrepareInt8RowActs(Isa isa, DType dtype, QuantizedActs& a, int64_t t0, int64_t t1) {
  DSINFER_CHECK(0 <= t0 && t0 <= t1 && t1 <= a.n, "PrepareInt8RowActs: tokens out of range");
  if (a.sum16.empty()) return;
  DSINFER_CHECK(static_cast<int64_t>(a.sum16.size()) == a.n * a.cols / 16,
                "PrepareInt8RowActs: SizeInt8RowActs first");
  for (int64_t g = t0 * a.cols / 16; g < t1 * a.cols / 16; ++g) {
    const int8_t* q = a.q.data() + 16 * g;
    int32_t sum = 0;
    for (int i = 0; i < 16; ++i) sum += q[i];
    a.sum16[g] = static_cast<float>(sum);
  }
}

bool Int8Dtype(DType t) {
  return t == DType::kQ8_0 || t == DType::kQ4_K || t == DType::kQ5_K || t == DType::kQ6_K ||
         t == DType::kQ2_K || t == DType::kQ3_K || t == DType::kIQ4_NL || t == DType::kIQ4_XS;
}

bool Int8UsesVnni(Isa isa) {
  return isa == Isa::kAvx512 && DetectCpu().Supports(Isa::kAvx512) && DetectCpu().avx512_vnni;
}

bool Int8UsesAvx2(Isa isa) {
  return !Int8UsesVnni(isa) && isa != Isa::kScalar && DetectCpu().Supports(Isa::kAvx2);
}

void Int8Rows(Isa isa, const QuantizedActs& a, int64_t t0, int64_t t1, const WeightView& w,
              int64_t r0, int64_t r1, float* y, int64_t ys) {
  DSINFER_CHECK(Int8Dtype(w.dtype) && a.cols == w.cols && t0 >= 0 && t1 <= a.n &&
                    static_cast<int64_t>(a.ds.size()) == 2 * a.n * a.blocks,
                "Int8Rows: activations do not match the weight");
  const int64_t blocks = w.cols / DTypeBlockElems(w.dtype);
  const bool q8 = w.dtype == DType::kQ8_0, q5 = w.dtype == DType::kQ5_K,
             q6 = w.dtype == DType::kQ6_K, q2 = w.dtype == DType::kQ2_K,
             q3 = w.dtype == DType::kQ3_K;
  const bool iq4 = w.dtype == DType::kIQ4_NL || w.dtype == DType::kIQ4_XS,
             iq4xs = w.dtype == DType::kIQ4_XS;
  const bool vnni = Int8UsesVnni(isa), avx2 = Int8UsesAvx2(isa);
  DSINFER_CHECK(!(q2 && (vnni || avx2)) || static_cast<int64_t>(a.sum16.size()) == a.n * a.cols / 16,
                "Int8Rows: Q2_K's group sums are missing (SizeInt8RowActs, PrepareInt8RowActs)");
  if (vnni || avx2) {
    const int group = q8 || iq4 ? kVnniTokens : kQ4Tokens;
    for (int64_t tg = t0; tg < t1; tg += group) {
      const int n = static_cast<int>(std::min<int64_t>(group, t1 - tg));
      for (int64_t r = r0; r < r1; ++r) {
        const auto* row = reinterpret_cast<const uint8_t*>(w.row(r));
        float* out = y + (tg - t0) * ys + (r - r0);
        if (iq4) {  // activation blocks of 32
          if (iq4xs)
            vnni ? RowSignedVnni<Iq4XsSource>(row, 8 * blocks, a, tg, n, out, ys)
                 : RowIq4Avx2<true>(row, 8 * blocks, a, tg, n, out, ys);
          else
            vnni ? RowSignedVnni<Iq4NlSource>(row, blocks, a, tg, n, out, ys)
                 : RowIq4Avx2<false>(row, blocks, a, tg, n, out, ys);
          continue;
        }
        if (q8) {
          if (vnni)
            RowSignedVnni<Q8_0Source>(row, blocks, a, tg, n, out, ys);
          else
            RowQ8_0Avx2(row, blocks, a, tg, n, out, ys);
          continue;
        }
        if (q2 || q3) {
          if (q3)
            RowQ2or3<true>(vnni, n, row, blocks, a, tg, out, ys);
          else
            RowQ2or3<false>(vnni, n, row, blocks, a, tg, out, ys);
        } else if (q6)
          RowQ6(vnni, n, row, blocks, a, tg, out, ys);
        else if (q5)
          RowK4or5<true>(vnni, n, row, blocks, a, tg, out, ys);
        else
          RowK4or5<false>(vnni, n, row, blocks, a, tg, out, ys);
      }
    }
    return;
  }
  for (int64_t r = r0; r < r1; ++r) {
    const auto* row = reinterpret_cast<const uint8_t*>(w.row(r));
    for (int64_t t = t0; t < t1; ++t) {
      const int8_t* q = a.q.data() + t * a.cols;
      const float* d = a.d.data() + t * a.blocks;
      y[(t - t0) * ys + (r - r0)] =
          iq4          ? DotIq4Int8(row, q, d, blocks, iq4xs)
          : q8         ? DotQ8_0Int8(row, q, d, blocks)
          : q6         ? DotQ6_KInt8(row, q, d, blocks)
          : (q2 || q3) ? DotQ2or3_KInt8(row, q, d, blocks, q3)
                       : DotK4or5Int8(row, q, d, a.sum.data() + t * a.blocks, blocks, q5);
    }
  }
}

}  // namespace dsinfer::qblocks
