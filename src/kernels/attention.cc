#include "kernels/attention.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/threads.h"
#include "kernels/linear.h"
#include "kernels/quant.h"
#include "kernels/weight.h"

// GCC 12's _mm512_reduce_*_ps trip -Wuninitialized inside its own header.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#define DSINFER_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,fma")))
#define DSINFER_AVX2 __attribute__((target("avx2,fma")))

namespace dsinfer {

namespace {

// ---- the specification -------------------------------------------------------------------------

constexpr int64_t kScalarTile = 64;  // cached rows decoded at once

struct HeadState {
  float m = -INFINITY;  // running max
  double l = 0;         // running Σ exp(s - m)
};

// Folds one tile of decoded rows `kv` [n, width] into head h's running state and output.
void FoldTile(const MlaQuery& q, int64_t h, const float* kv, int64_t n, int64_t kv_lora,
              int64_t width, HeadState& st, float* o, float* s /*[kScalarTile]*/) {
  const int64_t rope = width - kv_lora;
  float tile_max = -INFINITY;
  for (int64_t j = 0; j < n; ++j) {
    const float* row = kv + j * width;
    s[j] = q.scale *
           (Dot(q.q_abs + h * kv_lora, row, kv_lora) + Dot(q.q_pe + h * rope, row + kv_lora, rope));
    tile_max = std::max(tile_max, s[j]);
  }
  const float m_new = std::max(st.m, tile_max);
  const float corr = std::exp(st.m - m_new);  // 0 on the first tile (m = -inf)
  st.l *= corr;
  for (int64_t c = 0; c < kv_lora; ++c) o[c] *= corr;
  for (int64_t j = 0; j < n; ++j) {
    const float p = std::exp(s[j] - m_new);
    st.l += p;
    const float* row = kv + j * width;
    for (int64_t c = 0; c < kv_lora; ++c) o[c] += p * row[c];
  }
  st.m = m_new;
}

// ---- vector paths ------------------------------------------------------------------------------

constexpr int64_t kTile = 64;  // keys per tile: 4 AVX-512 / 8 AVX2 vectors of scores

int64_t RoundUp(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// exp(x) for x ≤ 0 (softmax arguments s − max): 2^n · e^r with n = round(x·log2 e),
// r = x − n·ln 2 (two-constant Cody–Waite), e^r by its degree-7 Taylor polynomial
// (|r| ≤ ln2/2: truncation < 0.35^8/8! ≈ 6e-9, below f32 rounding). exp(x) = 0 for x < −87.3
// (the f32 result would be subnormal; it is < 2^-126 of the running sum's largest term, 1).
DSINFER_AVX512 inline __m512 Exp512(__m512 x) {
  const __mmask16 tiny = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.3f), _CMP_LT_OQ);
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.3f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145752f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860677e-6f), r);
  __m512 p = _mm512_set1_ps(1.0f / 5040);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_maskz_mov_ps(static_cast<__mmask16>(~tiny), _mm512_scalef_ps(p, n));
}

DSINFER_AVX2 inline __m256 Exp256(__m256 x) {
  const __m256 tiny = _mm256_cmp_ps(x, _mm256_set1_ps(-87.3f), _CMP_LT_OQ);
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.3f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145752f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.42860677e-6f), r);
  __m256 p = _mm256_set1_ps(1.0f / 5040);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  // 2^n for n ≥ -126: (n + 127) << 23 as f32 bits.
  const __m256i bits =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_andnot_ps(tiny, _mm256_mul_ps(p, _mm256_castsi256_ps(bits)));
}

// One query's view of a tile: q rows, its running state and output.
struct FoldArgs {
  const float* q_abs;  // [H, R]
  const float* q_pe;   // [H, dr]
  int64_t H, R, dr;
  float scale;
  const float* rows;  // [kTile, Wp] decoded rows
  int64_t Wp;
  const float* cols;  // [R + dr, kTile] transposed, columns ≥ n are zero
  int64_t n;          // valid keys of the tile (1 ≤ n ≤ kTile)
  float* m;           // [H]
  double* l;          // [H]
  float* o;           // [H, R]
  float* probs;       // [H, kTile]
};

// s[h, 0..64) for heads h0 .. h0+HB-1 (scaled), keys in lanes.
template <int HB>
DSINFER_AVX512 inline void Scores512(const FoldArgs& a, int64_t h0) {
  __m512 acc[HB][4];
  for (int hb = 0; hb < HB; ++hb)
    for (int v = 0; v < 4; ++v) acc[hb][v] = _mm512_setzero_ps();
  // Latent part (q_abs · c), then rope part (q_pe · k_pe): the columns are c ‖ k_pe.
  for (int part = 0; part < 2; ++part) {
    const int64_t len = part == 0 ? a.R : a.dr;
    const float* q = part == 0 ? a.q_abs + h0 * a.R : a.q_pe + h0 * a.dr;
    const float* cols = a.cols + (part == 0 ? 0 : a.R * kTile);
    for (int64_t i = 0; i < len; ++i) {
      const float* col = cols + i * kTile;
      const __m512 c0 = _mm512_loadu_ps(col), c1 = _mm512_loadu_ps(col + 16),
                   c2 = _mm512_loadu_ps(col + 32), c3 = _mm512_loadu_ps(col + 48);
      for (int hb = 0; hb < HB; ++hb) {
        const __m512 qv = _mm512_set1_ps(q[hb * len + i]);
        acc[hb][0] = _mm512_fmadd_ps(qv, c0, acc[hb][0]);
        acc[hb][1] = _mm512_fmadd_ps(qv, c1, acc[hb][1]);
        acc[hb][2] = _mm512_fmadd_ps(qv, c2, acc[hb][2]);
        acc[hb][3] = _mm512_fmadd_ps(qv, c3, acc[hb][3]);
      }
    }
  }
  const __m512 sc = _mm512_set1_ps(a.scale);
  for (int hb = 0; hb < HB; ++hb)
    for (int v = 0; v < 4; ++v)
      _mm512_storeu_ps(a.probs + (h0 + hb) * kTile + 16 * v, _mm512_mul_ps(acc[hb][v], sc));
}

// Online-softmax step of head h: probabilities into probs[h], state and o[h] rescaled.
DSINFER_AVX512 inline void Softmax512(const FoldArgs& a, int64_t h) {
  float* s = a.probs + h * kTile;
  __m512 v[4];
  __m512 mx = _mm512_set1_ps(-INFINITY);
  for (int i = 0; i < 4; ++i) {
    const int64_t valid = std::clamp<int64_t>(a.n - 16 * i, 0, 16);
    const __mmask16 k = static_cast<__mmask16>((uint32_t{1} << valid) - 1);
    v[i] = _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), k, s + 16 * i);
    mx = _mm512_max_ps(mx, v[i]);
  }
  const float m_new = std::max(a.m[h], _mm512_reduce_max_ps(mx));
  const float corr = std::exp(a.m[h] - m_new);  // 0 on the first tile (m = -inf)
  const __m512 mv = _mm512_set1_ps(m_new);
  __m512 sum = _mm512_setzero_ps();
  for (int i = 0; i < 4; ++i) {
    const __m512 p = Exp512(_mm512_sub_ps(v[i], mv));  // exp(-inf) = 0 for invalid lanes
    sum = _mm512_add_ps(sum, p);
    _mm512_storeu_ps(s + 16 * i, p);
  }
  a.l[h] = a.l[h] * corr + _mm512_reduce_add_ps(sum);
  a.m[h] = m_new;
  if (corr != 1.0f) {
    float* o = a.o + h * a.R;
    const __m512 cv = _mm512_set1_ps(corr);
    int64_t c = 0;
    for (; c + 16 <= a.R; c += 16)
      _mm512_storeu_ps(o + c, _mm512_mul_ps(_mm512_loadu_ps(o + c), cv));
    for (; c < a.R; ++c) o[c] *= corr;
  }
}

// o[h, c0 .. c0+16·CV) += Σ_j p[h, j] · c(j) for heads h0 .. h0+HB-1; the last vector masked
// by `tail` (channels < R).
template <int HB, int CV>
DSINFER_AVX512 inline void Values512(const FoldArgs& a, int64_t h0, int64_t c0, __mmask16 tail) {
  __m512 acc[HB][CV];
  for (int hb = 0; hb < HB; ++hb)
    for (int v = 0; v < CV; ++v)
      acc[hb][v] =
          _mm512_maskz_loadu_ps(v == CV - 1 ? tail : 0xFFFF, a.o + (h0 + hb) * a.R + c0 + 16 * v);
  for (int64_t j = 0; j < a.n; ++j) {
    const float* row = a.rows + j * a.Wp + c0;
    __m512 c[CV];
    for (int v = 0; v < CV; ++v) c[v] = _mm512_loadu_ps(row + 16 * v);
    for (int hb = 0; hb < HB; ++hb) {
      const __m512 p = _mm512_set1_ps(a.probs[(h0 + hb) * kTile + j]);
      for (int v = 0; v < CV; ++v) acc[hb][v] = _mm512_fmadd_ps(p, c[v], acc[hb][v]);
    }
  }
  for (int hb = 0; hb < HB; ++hb)
    for (int v = 0; v < CV; ++v)
      _mm512_mask_storeu_ps(a.o + (h0 + hb) * a.R + c0 + 16 * v, v == CV - 1 ? tail : 0xFFFF,
                            acc[hb][v]);
}

// Channel blocks outer, heads inner: a block of the rows (n × 64 floats) stays in L1.
template <int CV>
DSINFER_AVX512 inline void ValuesChannels512(const FoldArgs& a, int64_t c0, __mmask16 tail) {
  int64_t h = 0;
  for (; h + 4 <= a.H; h += 4) Values512<4, CV>(a, h, c0, tail);
  for (; h < a.H; ++h) Values512<1, CV>(a, h, c0, tail);
}

DSINFER_AVX512 void Fold512(const FoldArgs& a) {
  int64_t h = 0;
  for (; h + 4 <= a.H; h += 4) Scores512<4>(a, h);
  for (; h < a.H; ++h) Scores512<1>(a, h);
  for (h = 0; h < a.H; ++h) Softmax512(a, h);
  int64_t c0 = 0;
  for (; c0 + 64 <= a.R; c0 += 64) ValuesChannels512<4>(a, c0, 0xFFFF);
  for (; c0 < a.R; c0 += 16) {
    const int64_t valid = std::min<int64_t>(16, a.R - c0);
    ValuesChannels512<1>(a, c0, static_cast<__mmask16>((uint32_t{1} << valid) - 1));
  }
}

// AVX2: the same steps with 8-lane vectors (scores: 2 heads × 32 keys per block).
template <int HB>
DSINFER_AVX2 inline void Scores256(const FoldArgs& a, int64_t h0, int64_t k0) {
  __m256 acc[HB][4];
  for (int hb = 0; hb < HB; ++hb)
    for (int v = 0; v < 4; ++v) acc[hb][v] = _mm256_setzero_ps();
  for (int part = 0; part < 2; ++part) {
    const int64_t len = part == 0 ? a.R : a.dr;
    const float* q = part == 0 ? a.q_abs + h0 * a.R : a.q_pe + h0 * a.dr;
    const float* cols = a.cols + (part == 0 ? 0 : a.R * kTile) + k0;
    for (int64_t i = 0; i < len; ++i) {
      const float* col = cols + i * kTile;
      const __m256 c0 = _mm256_loadu_ps(col), c1 = _mm256_loadu_ps(col + 8),
                   c2 = _mm256_loadu_ps(col + 16), c3 = _mm256_loadu_ps(col + 24);
      for (int hb = 0; hb < HB; ++hb) {
        const __m256 qv = _mm256_broadcast_ss(q + hb * len + i);
        acc[hb][0] = _mm256_fmadd_ps(qv, c0, acc[hb][0]);
        acc[hb][1] = _mm256_fmadd_ps(qv, c1, acc[hb][1]);
        acc[hb][2] = _mm256_fmadd_ps(qv, c2, acc[hb][2]);
        acc[hb][3] = _mm256_fmadd_ps(qv, c3, acc[hb][3]);
      }
    }
  }
  const __m256 sc = _mm256_set1_ps(a.scale);
  for (int hb = 0; hb < HB; ++hb)
    for (int v = 0; v < 4; ++v)
      _mm256_storeu_ps(a.probs + (h0 + hb) * kTile + k0 + 8 * v, _mm256_mul_ps(acc[hb][v], sc));
}

DSINFER_AVX2 inline float ReduceAdd256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

DSINFER_AVX2 inline void Softmax256(const FoldArgs& a, int64_t h) {
  float* s = a.probs + h * kTile;
  for (int64_t j = a.n; j < kTile; ++j) s[j] = -INFINITY;
  float tile_max = -INFINITY;
  for (int64_t j = 0; j < a.n; ++j) tile_max = std::max(tile_max, s[j]);
  const float m_new = std::max(a.m[h], tile_max);
  const float corr = std::exp(a.m[h] - m_new);
  const __m256 mv = _mm256_set1_ps(m_new);
  __m256 sum = _mm256_setzero_ps();
  for (int i = 0; i < kTile; i += 8) {
    const __m256 p = Exp256(_mm256_sub_ps(_mm256_loadu_ps(s + i), mv));
    sum = _mm256_add_ps(sum, p);
    _mm256_storeu_ps(s + i, p);
  }
  a.l[h] = a.l[h] * corr + ReduceAdd256(sum);
  a.m[h] = m_new;
  if (corr != 1.0f) {
    float* o = a.o + h * a.R;
    const __m256 cv = _mm256_set1_ps(corr);
    int64_t c = 0;
    for (; c + 8 <= a.R; c += 8) _mm256_storeu_ps(o + c, _mm256_mul_ps(_mm256_loadu_ps(o + c), cv));
    for (; c < a.R; ++c) o[c] *= corr;
  }
}

template <int HB, int CV>
DSINFER_AVX2 inline void Values256(const FoldArgs& a, int64_t h0, int64_t c0, __m256i tail) {
  const __m256i all = _mm256_set1_epi32(-1);
  __m256 acc[HB][CV];
  for (int hb = 0; hb < HB; ++hb)
    for (int v = 0; v < CV; ++v)
      acc[hb][v] = _mm256_maskload_ps(a.o + (h0 + hb) * a.R + c0 + 8 * v, v == CV - 1 ? tail : all);
  for (int64_t j = 0; j < a.n; ++j) {
    const float* row = a.rows + j * a.Wp + c0;
    __m256 c[CV];
    for (int v = 0; v < CV; ++v) c[v] = _mm256_loadu_ps(row + 8 * v);
    for (int hb = 0; hb < HB; ++hb) {
      const __m256 p = _mm256_broadcast_ss(a.probs + (h0 + hb) * kTile + j);
      for (int v = 0; v < CV; ++v) acc[hb][v] = _mm256_fmadd_ps(p, c[v], acc[hb][v]);
    }
  }
  for (int hb = 0; hb < HB; ++hb)
    for (int v = 0; v < CV; ++v)
      _mm256_maskstore_ps(a.o + (h0 + hb) * a.R + c0 + 8 * v, v == CV - 1 ? tail : all, acc[hb][v]);
}

template <int HB>
DSINFER_AVX2 inline void ValuesHeads256(const FoldArgs& a, int64_t h0) {
  int64_t c0 = 0;
  for (; c0 + 32 <= a.R; c0 += 32) Values256<HB, 4>(a, h0, c0, _mm256_set1_epi32(-1));
  for (; c0 < a.R; c0 += 8) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i tail = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(a.R - c0)), lane);
    Values256<HB, 1>(a, h0, c0, tail);
  }
}

DSINFER_AVX2 void Fold256(const FoldArgs& a) {
  int64_t h = 0;
  for (; h + 2 <= a.H; h += 2)
    for (int64_t k0 = 0; k0 < kTile; k0 += 32) Scores256<2>(a, h, k0);
  for (; h < a.H; ++h)
    for (int64_t k0 = 0; k0 < kTile; k0 += 32) Scores256<1>(a, h, k0);
  for (h = 0; h < a.H; ++h) Softmax256(a, h);
  for (h = 0; h + 2 <= a.H; h += 2) ValuesHeads256<2>(a, h);
  for (; h < a.H; ++h) ValuesHeads256<1>(a, h);
}

DSINFER_AVX512 void SoftmaxExp512(const float* x, int64_t n, float* y) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = static_cast<__mmask16>((uint32_t{1} << std::min<int64_t>(16, n - i)) - 1);
    _mm512_mask_storeu_ps(y + i, k, Exp512(_mm512_maskz_loadu_ps(k, x + i)));
  }
}

DSINFER_AVX2 void SoftmaxExp256(const float* x, int64_t n, float* y) {
  for (int64_t i = 0; i < n; i += 8) {
    float in[8] = {}, out[8];
    std::copy(x + i, x + std::min(n, i + 8), in);
    _mm256_storeu_ps(out, Exp256(_mm256_loadu_ps(in)));
    std::copy(out, out + std::min<int64_t>(8, n - i), y + i);
  }
}

// 16 e4m3 codes → f32 (exact): normals re-bias the exponent (7 → 127), subnormals are
// m·2^-9, S.1111.111 is NaN — the values of E4M3Table().
DSINFER_AVX512 inline __m512 E4m3ToF32x16(const uint8_t* codes) {
  const __m512i w = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes)));
  const __m512i mag = _mm512_and_si512(w, _mm512_set1_epi32(0x7F));
  const __m512i normal = _mm512_add_epi32(_mm512_slli_epi32(mag, 20), _mm512_set1_epi32(120 << 23));
  const __m512 sub = _mm512_mul_ps(_mm512_cvtepi32_ps(mag), _mm512_set1_ps(1.0f / 512));
  __m512 v = _mm512_mask_blend_ps(_mm512_cmplt_epi32_mask(mag, _mm512_set1_epi32(8)),
                                  _mm512_castsi512_ps(normal), sub);
  v = _mm512_mask_blend_ps(_mm512_cmpeq_epi32_mask(mag, _mm512_set1_epi32(0x7F)), v,
                           _mm512_set1_ps(NAN));
  const __m512i sign = _mm512_slli_epi32(_mm512_and_si512(w, _mm512_set1_epi32(0x80)), 24);
  return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(v), sign));
}

DSINFER_AVX512 inline void Bf16ToF32(const std::byte* in, int64_t n, float* out) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512i w =
        _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + 2 * i)));
    _mm512_storeu_ps(out + i, _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)));
  }
  for (; i < n; ++i) {
    uint16_t b;
    std::memcpy(&b, in + 2 * i, 2);
    const uint32_t bits = static_cast<uint32_t>(b) << 16;
    std::memcpy(&out[i], &bits, 4);
  }
}

// LatentLayout::Decode, vectorised (bit-identical: the same exact conversions and products).
DSINFER_AVX512 void DecodeRow512(const LatentLayout& l, const std::byte* row, float* out) {
  const int64_t R = l.kv_lora_rank;
  switch (l.type) {
    case KvCacheType::kF32:
      std::memcpy(out, row, l.width() * 4);
      return;
    case KvCacheType::kBF16:
      Bf16ToF32(row, l.width(), out);
      return;
    case KvCacheType::kFP8: {
      const int64_t nb = QuantBlocks(R);
      const uint8_t* codes = reinterpret_cast<const uint8_t*>(row);
      int64_t i = 0;
      for (; i + 16 <= R; i += 16) {
        float scale;
        std::memcpy(&scale, row + R + (i / kQuantBlock) * 4, 4);
        _mm512_storeu_ps(out + i, _mm512_mul_ps(E4m3ToF32x16(codes + i), _mm512_set1_ps(scale)));
      }
      const float* lut = E4M3Table();
      for (; i < R; ++i) {
        float scale;
        std::memcpy(&scale, row + R + (i / kQuantBlock) * 4, 4);
        out[i] = lut[codes[i]] * scale;
      }
      Bf16ToF32(row + R + nb * 4, l.rope_dim, out + R);
      return;
    }
  }
}

// cols[c, r0 + r] = rows[r0 + r, c] for a 16×16 block (rows beyond `valid` read as zero).
DSINFER_AVX512 inline void Transpose16(const float* rows, int64_t row_stride, int64_t valid,
                                       float* cols, int64_t col_stride) {
  __m512 r[16], t[16];
  for (int i = 0; i < 16; ++i)
    r[i] = i < valid ? _mm512_loadu_ps(rows + i * row_stride) : _mm512_setzero_ps();
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
    r[i + 1] =
        _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
    r[i + 2] = _mm512_castpd_ps(
        _mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
    r[i + 3] = _mm512_castpd_ps(
        _mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
  }
  // r[4g + k] now holds, in 128-bit lane L, column 4L + k of rows 4g .. 4g+3.
  for (int k = 0; k < 4; ++k) {
    t[k] = _mm512_shuffle_f32x4(r[k], r[4 + k], 0x88);      // lanes 0,2 of rows 0-3 / 4-7
    t[4 + k] = _mm512_shuffle_f32x4(r[k], r[4 + k], 0xDD);  // lanes 1,3
    t[8 + k] = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0x88);
    t[12 + k] = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0xDD);
  }
  for (int k = 0; k < 4; ++k) {
    // columns k (lane 0), 8 + k (lane 2) from t[k] / t[8+k]; 4 + k, 12 + k from t[4+k] / t[12+k]
    _mm512_storeu_ps(cols + k * col_stride, _mm512_shuffle_f32x4(t[k], t[8 + k], 0x88));
    _mm512_storeu_ps(cols + (8 + k) * col_stride, _mm512_shuffle_f32x4(t[k], t[8 + k], 0xDD));
    _mm512_storeu_ps(cols + (4 + k) * col_stride, _mm512_shuffle_f32x4(t[4 + k], t[12 + k], 0x88));
    _mm512_storeu_ps(cols + (12 + k) * col_stride, _mm512_shuffle_f32x4(t[4 + k], t[12 + k], 0xDD));
  }
}

DSINFER_AVX512 void DecodeTile512(const LatentLayout& l, const PagedRows& cache, const int32_t* ids,
                                  int64_t first, int64_t n, float* rows, int64_t Wp, float* cols) {
  const int64_t W = l.width();
  for (int64_t j = 0; j < n; ++j) {
    float* r = rows + j * Wp;
    DecodeRow512(l, cache.row(ids ? ids[j] : first + j), r);
    std::fill(r + W, r + Wp, 0.0f);
  }
  for (int64_t r0 = 0; r0 < kTile; r0 += 16)
    for (int64_t c0 = 0; c0 < Wp; c0 += 16)
      Transpose16(rows + r0 * Wp + c0, Wp, std::max<int64_t>(0, n - r0), cols + c0 * kTile + r0,
                  kTile);
}

// Throws Error(message) when `ok` is false; the message is built only then (no allocation on
// the hot path).
#define DSINFER_REQUIRE(ok, message) \
  do {                               \
    if (!(ok)) throw Error(message); \
  } while (0)

void Validate(const MlaChunk& q, const LatentLayout& layout, const PagedRows& cache, Isa isa,
              const char* who) {
  DSINFER_REQUIRE(q.n_queries >= 1 && q.n_heads >= 1 && q.first_pos >= 0,
                  std::string(who) + ": empty or negative shape (queries " +
                      std::to_string(q.n_queries) + ", heads " + std::to_string(q.n_heads) +
                      ", first position " + std::to_string(q.first_pos) + ")");
  DSINFER_REQUIRE(layout.kv_lora_rank >= 1 && layout.rope_dim >= 0,
                  std::string(who) + ": bad latent layout");
  DSINFER_REQUIRE(cache.row_bytes == layout.RowBytes(),
                  std::string(who) + ": cache rows are " + std::to_string(cache.row_bytes) +
                      " bytes, the " + KvCacheTypeName(layout.type) + " layout needs " +
                      std::to_string(layout.RowBytes()));
  DSINFER_REQUIRE(static_cast<int>(isa) <= static_cast<int>(DetectCpu().best),
                  std::string(who) + ": " + IsaName(isa) + " is not supported on this CPU");
}

}  // namespace

// Tiles decoded once and folded into every query that reads them.
struct MlaEngine {
  const MlaChunk& q;
  const LatentLayout& layout;
  const PagedRows& cache;
  MlaWorkspace& ws;
  Isa isa;
  int64_t H, R, dr, W, Wp;

  MlaEngine(const MlaChunk& chunk, const LatentLayout& l, const PagedRows& c, MlaWorkspace& w,
            Isa i)
      : q(chunk),
        layout(l),
        cache(c),
        ws(w),
        isa(i),
        H(chunk.n_heads),
        R(l.kv_lora_rank),
        dr(l.rope_dim),
        W(l.width()),
        Wp(RoundUp(l.width(), 16)) {
    ws.Need(ws.rows_, kTile * Wp);
    ws.Need(ws.cols_, Wp * kTile);
    ws.Need(ws.probs_, H * kTile);
    ws.Need(ws.max_, q.n_queries * H);
    ws.Need(ws.sum_, q.n_queries * H);
    std::fill_n(ws.max_.data(), q.n_queries * H, -INFINITY);
    std::fill_n(ws.sum_.data(), q.n_queries * H, 0.0);
  }

  // Decodes rows ids[0..n) (or first, first+1, … when ids is null) into both tile layouts.
  void Decode(const int32_t* ids, int64_t first, int64_t n) const {
    if (isa == Isa::kAvx512) {
      DecodeTile512(layout, cache, ids, first, n, ws.rows_.data(), Wp, ws.cols_.data());
      return;
    }
    float* rows = ws.rows_.data();
    for (int64_t j = 0; j < n; ++j) {
      float* r = rows + j * Wp;
      layout.Decode(cache.row(ids ? ids[j] : first + j), r);
      std::fill(r + W, r + Wp, 0.0f);
    }
    float* cols = ws.cols_.data();
    for (int64_t i = 0; i < W; ++i) {
      float* col = cols + i * kTile;
      for (int64_t j = 0; j < n; ++j) col[j] = rows[j * Wp + i];
      std::fill(col + n, col + kTile, 0.0f);
    }
  }

  // Starts loading the gathered rows ids[0..n) (the next tile) while this one is computed.
  void Prefetch(const int32_t* ids, int64_t n) const {
    for (int64_t j = 0; j < n; ++j) {
      const char* row = reinterpret_cast<const char*>(cache.row(ids[j]));
      for (int64_t b = 0; b < cache.row_bytes; b += 64) __builtin_prefetch(row + b);
    }
  }

  void Fold(int64_t s, int64_t n, float* o) const {
    const FoldArgs a{q.q_abs + s * H * R,
                     q.q_pe + s * H * dr,
                     H,
                     R,
                     dr,
                     q.scale,
                     ws.rows_.data(),
                     Wp,
                     ws.cols_.data(),
                     n,
                     ws.max_.data() + s * H,
                     ws.sum_.data() + s * H,
                     o,
                     ws.probs_.data()};
    if (isa == Isa::kAvx512)
      Fold512(a);
    else
      Fold256(a);
  }

  void Normalise(int64_t s, float* o) const {
    for (int64_t h = 0; h < H; ++h) {
      const float inv = static_cast<float>(1.0 / ws.sum_[s * H + h]);
      for (int64_t c = 0; c < R; ++c) o[h * R + c] *= inv;
    }
  }

  // Folds the keys [t_begin, t_end) (t_begin a multiple of kTile) into every query that reads
  // them (causal: query s reads t ≤ first_pos + s); o: [S, H, R] unnormalised outputs.
  void FoldRange(int64_t t_begin, int64_t t_end, float* o) const {
    for (int64_t t0 = t_begin; t0 < t_end; t0 += kTile) {
      const int64_t n = std::min(kTile, t_end - t0);
      const int64_t first = std::max<int64_t>(0, t0 - q.first_pos);  // queries with p ≥ t0
      if (first >= q.n_queries) break;
      Decode(nullptr, t0, n);
      for (int64_t s = first; s < q.n_queries; ++s)
        Fold(s, std::min(n, q.first_pos + s - t0 + 1), o + s * H * R);
    }
  }

  float Max(int64_t sh) const { return ws.max_[sh]; }
  double Sum(int64_t sh) const { return ws.sum_[sh]; }
  template <class T>
  T* Need(std::vector<T>& v, int64_t n) const {
    return ws.Need(v, n);
  }

  int32_t* Iota(int64_t n) const {
    int32_t* idx = ws.Need(ws.index_, n);
    std::iota(idx, idx + n, 0);
    return idx;
  }
};

void SparseMlaAttention(const MlaQuery& q, const LatentLayout& layout, const PagedRows& cache,
                        const int32_t* selected, int64_t n_selected, float* o_lat) {
  DSINFER_CHECK(n_selected >= 1, "attention over an empty set");
  DSINFER_DCHECK(cache.row_bytes == layout.RowBytes());
  const int64_t kv_lora = layout.kv_lora_rank, width = layout.width();
  std::vector<float> kv(kScalarTile * width);  // [kScalarTile, kv_lora + rope] decoded rows
  std::vector<float> s(kScalarTile);           // [kScalarTile] scores of one head
  std::vector<HeadState> st(q.n_heads);
  std::fill(o_lat, o_lat + q.n_heads * kv_lora, 0.0f);
  for (int64_t t0 = 0; t0 < n_selected; t0 += kScalarTile) {
    const int64_t n = std::min(kScalarTile, n_selected - t0);
    for (int64_t j = 0; j < n; ++j) layout.Decode(cache.row(selected[t0 + j]), &kv[j * width]);
    for (int64_t h = 0; h < q.n_heads; ++h)
      FoldTile(q, h, kv.data(), n, kv_lora, width, st[h], o_lat + h * kv_lora, s.data());
  }
  for (int64_t h = 0; h < q.n_heads; ++h) {
    const float inv = static_cast<float>(1.0 / st[h].l);
    for (int64_t c = 0; c < kv_lora; ++c) o_lat[h * kv_lora + c] *= inv;
  }
}

void SparseMlaAttentionChunk(const MlaChunk& q, const LatentLayout& layout, const PagedRows& cache,
                             const int32_t* selected, int64_t k, float* o_lat, MlaWorkspace& ws,
                             Isa isa) {
  Validate(q, layout, cache, isa, "SparseMlaAttentionChunk");
  DSINFER_REQUIRE(k >= 1, "SparseMlaAttentionChunk: k must be >= 1, got " + std::to_string(k));
  const int64_t H = q.n_heads, R = layout.kv_lora_rank, dr = layout.rope_dim;
  const MlaEngine e(q, layout, cache, ws, isa);
  for (int64_t s = 0; s < q.n_queries; ++s) {
    const int64_t n_sel = std::min(k, q.first_pos + s + 1);
    const int32_t* sel = selected + s * k;
    for (int64_t j = 0; j < n_sel; ++j)
      DSINFER_REQUIRE(sel[j] >= 0 && sel[j] <= q.first_pos + s,
                      "SparseMlaAttentionChunk: query " + std::to_string(s) + " selects row " +
                          std::to_string(sel[j]) + ", outside [0, " +
                          std::to_string(q.first_pos + s) + "]");
    float* o = o_lat + s * H * R;
    if (isa == Isa::kScalar) {
      SparseMlaAttention(MlaQuery{q.q_abs + s * H * R, q.q_pe + s * H * dr, H, q.scale}, layout,
                         cache, sel, n_sel, o);
      continue;
    }
    std::fill_n(o, H * R, 0.0f);
    for (int64_t t0 = 0; t0 < n_sel; t0 += kTile) {
      const int64_t n = std::min(kTile, n_sel - t0);
      e.Decode(sel + t0, 0, n);
      e.Prefetch(sel + t0 + n, std::min(kTile, n_sel - t0 - n));
      e.Fold(s, n, o);
    }
    e.Normalise(s, o);
  }
}

void DenseMlaAttentionChunk(const MlaChunk& q, const LatentLayout& layout, const PagedRows& cache,
                            float* o_lat, MlaWorkspace& ws, Isa isa) {
  Validate(q, layout, cache, isa, "DenseMlaAttentionChunk");
  const int64_t S = q.n_queries, H = q.n_heads, R = layout.kv_lora_rank, dr = layout.rope_dim;
  const int64_t n_ctx = q.first_pos + S;
  const MlaEngine e(q, layout, cache, ws, isa);
  if (isa == Isa::kScalar) {
    const int32_t* all = e.Iota(n_ctx);
    for (int64_t s = 0; s < S; ++s)
      SparseMlaAttention(MlaQuery{q.q_abs + s * H * R, q.q_pe + s * H * dr, H, q.scale}, layout,
                         cache, all, q.first_pos + s + 1, o_lat + s * H * R);
    return;
  }
  std::fill_n(o_lat, S * H * R, 0.0f);
  e.FoldRange(0, n_ctx, o_lat);
  for (int64_t s = 0; s < S; ++s) e.Normalise(s, o_lat + s * H * R);
}

namespace {

// Per-thread scratch of the dense key split: a workspace and the unnormalised output.
struct SplitScratch {
  MlaWorkspace ws;
  std::vector<float> o;  // [S, H, R]
};

SplitScratch& ThreadSplitScratch() {
  static thread_local SplitScratch scratch;
  return scratch;
}

}  // namespace

// Every thread folds blocks of the key range (round robin) into its own online
// softmax state (m_t, l_t, o_t); the states combine exactly as tiles do:
//   M = max_t m_t,  L = Σ_t l_t e^{m_t − M},  o = Σ_t o_t e^{m_t − M} / L.
void DenseMlaAttentionSplitKeys(const MlaChunk& q, const LatentLayout& layout,
                                const PagedRows& cache, float* o_lat, Isa isa) {
  Validate(q, layout, cache, isa, "DenseMlaAttentionSplitKeys");
  constexpr int kMaxThreads = 64;
  constexpr int64_t kBlock = 16 * kTile;  // keys per block
  const int64_t S = q.n_queries, H = q.n_heads, R = layout.kv_lora_rank;
  const int64_t n_ctx = q.first_pos + S, blocks = (n_ctx + kBlock - 1) / kBlock;
  const int nt = static_cast<int>(std::min<int64_t>({omp_get_max_threads(), kMaxThreads, blocks}));
  if (isa == Isa::kScalar || nt <= 1 || omp_in_parallel()) {
    DenseMlaAttentionChunk(q, layout, cache, o_lat, ThreadSplitScratch().ws, isa);
    return;
  }
  std::array<SplitScratch*, kMaxThreads> parts{};
  std::array<const MlaEngine*, kMaxThreads> engines{};
  int n_th = 1;
#pragma omp parallel num_threads(nt)
  {
    DSINFER_NOTE_THREAD("attention.split");
    SplitScratch& mine = ThreadSplitScratch();
    const MlaEngine e(q, layout, cache, mine.ws, isa);
    const int th = omp_get_thread_num();
    parts[th] = &mine;
    engines[th] = &e;
#pragma omp single nowait
    n_th = omp_get_num_threads();
    float* o = e.Need(mine.o, S * H * R);
    std::fill_n(o, S * H * R, 0.0f);
#pragma omp for schedule(static, 1) nowait
    for (int64_t b = 0; b < blocks; ++b)
      e.FoldRange(b * kBlock, std::min(n_ctx, (b + 1) * kBlock), o);
#pragma omp barrier
#pragma omp for schedule(static)
    for (int64_t sh = 0; sh < S * H; ++sh) {
      float m = -INFINITY;
      for (int i = 0; i < n_th; ++i) m = std::max(m, engines[i]->Max(sh));
      double l = 0;
      float* out = o_lat + sh * R;
      std::fill_n(out, R, 0.0f);
      for (int i = 0; i < n_th; ++i) {
        const float mi = engines[i]->Max(sh);
        if (mi == -INFINITY) continue;  // this thread saw none of the query's keys
        const float w = std::exp(mi - m);
        l += engines[i]->Sum(sh) * w;
        const float* oi = parts[i]->o.data() + sh * R;
        for (int64_t c = 0; c < R; ++c) out[c] += w * oi[c];
      }
      const float inv = static_cast<float>(1.0 / l);
      for (int64_t c = 0; c < R; ++c) out[c] *= inv;
    }
  }
}

void SoftmaxExp(const float* x, int64_t n, float* y, Isa isa) {
  if (isa == Isa::kAvx512)
    SoftmaxExp512(x, n, y);
  else if (isa == Isa::kAvx2)
    SoftmaxExp256(x, n, y);
  else
    for (int64_t i = 0; i < n; ++i) y[i] = std::exp(x[i]);
}

}  // namespace dsinfer
