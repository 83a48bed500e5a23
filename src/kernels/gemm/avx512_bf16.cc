// AVX-512 BF16 instance of the bf16-activation row GEMM and GEMV (gemm/isa_kernels.h
// `Bf16Kernels`, kernels/linear.h `LinearRowsBf16`, docs/numerics.md "bf16 numerics"). The GEMV
// (decode; "GEMV" below) computes every output with the GEMM's operations in the GEMM's order,
// without the GEMM's panel: its results are bitwise the GEMM's.
//
// Structure, as the f32 row GEMM of gemm/kernels.inc: a piece of ≤ 128 weight rows (one scale
// row) is processed in chunks of kBf16Kc columns; each chunk is decoded once into a panel of
// bf16 pairs, then every group of kBf16Mr tokens runs against every register tile of it.
// Unlike the f32 path the lanes run over weight rows, not over k: `vdpbf16ps` takes a vector of
// 16 rows' (W[r, 2p], W[r, 2p+1]) pairs and one token's broadcast pair (x[t, 2p], x[t, 2p+1]),
// so each lane is one output and no horizontal sums are needed. Tile: 6 tokens × 64 rows = 24
// accumulators + 4 weight vectors + 1 broadcast.
//
// Numerics (the scalar specification is `LinearRowsBf16(Bf16Path::kScalar, ...)` in linear.cc):
// activations are rounded to bf16 once (`RoundX`, bit for bit FloatToBF16); FP8 codes become the
// bf16 bits of w̃ = e4m3 · 2^-8 (exact: through the f16 pattern of gemm/isa_kernels.h, whose f32
// value has 4 significant bits), and the block scale times 2^8 (exact) multiplies each
// 128-column partial sum: total = partial_0 · s'_0, then total = fma(partial_b, s'_b, total).
// Since w̃ and s' differ from e4m3 and s by exact powers of two, every rounding is the one the
// specification makes with e4m3 and s. BF16 weights: one accumulator chain over all columns.
// Each output's operations do not depend on n, on the token's place in its tile, on the row's
// lane or on how rows are cut into pieces: batch invariant, as the f32 paths.
// `vdpbf16ps` treats bf16 subnormal inputs as zero and flushes subnormal results (DAZ/FTZ): a
// difference from the specification only below 2^-126, which activations × weights never reach
// in practice (docs/numerics.md).
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels/gemm/avx512_bf16_common.h"
#include "kernels/gemm/isa_kernels.h"

namespace dsinfer::gemm {
namespace {

using bf16::kLanes;
using bf16::Mask;
constexpr int kVecs = kBf16TileRows / kLanes;      // weight vectors per register tile
constexpr int kPanelGroups = 128 / kBf16TileRows;  // row groups of a ≤ 128-row piece
constexpr int64_t kPanelWords = int64_t{kPanelGroups} * kBf16TileRows * (kBf16Kc / 2);
constexpr int64_t kRowWords = kBf16Kc / 2 + kLanes;  // one converted row segment (+ pad)
constexpr int64_t kRows16Words = kLanes * kRowWords;  // 16 of them (PackPanel)
constexpr int kBlockPairs = 64;                      // column pairs per 128-column block

// 16 floats → 16 bf16, FloatToBF16 bit for bit: (bits + 0x7FFF + lsb) >> 16, NaN truncated
// with the quiet bit forced (so a payload cannot become Inf).
DSINFER_BF16 inline __m256i RoundBf16(__m512 v) {
  const __m512i b = _mm512_castps_si512(v);
  const __m512i high = _mm512_srli_epi32(b, 16);
  const __m512i lsb = _mm512_and_si512(high, _mm512_set1_epi32(1));
  const __m512i rounded =
      _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(b, _mm512_set1_epi32(0x7FFF)), lsb), 16);
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(b, _mm512_set1_epi32(0x7FFFFFFF)),
                                                _mm512_set1_epi32(0x7F800000));
  const __m512i quiet = _mm512_or_si512(high, _mm512_set1_epi32(0x40));
  return _mm512_cvtepi32_epi16(_mm512_mask_blend_epi32(nan, rounded, quiet));
}

DSINFER_BF16 void RoundX(const float* x, int64_t xs, int64_t t0, int64_t t1, int64_t cols,
                         uint16_t* xb, int64_t xbs) {
  for (int64_t t = t0; t < t1; ++t) {
    const float* src = x + t * xs;
    uint16_t* dst = xb + t * xbs;
    int64_t c = 0;
    for (; c + kLanes <= cols; c += kLanes)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + c), RoundBf16(_mm512_loadu_ps(src + c)));
    if (c < cols) {
      const __mmask16 m = Mask(cols - c);
      _mm256_mask_storeu_epi16(dst + c, m, RoundBf16(_mm512_maskz_loadu_ps(m, src + c)));
    }
    if (cols % 2 != 0) dst[cols] = 0;  // the pad of the last pair
  }
}

// 16 e4m3 codes → the bf16 bits of e4m3 · 2^-8: the f16 pattern sign<<15 | (b & 0x7f)<<7
// (gemm/avx512.cc `E4m3Widened`), widened exactly to f32, whose low 16 bits are zero.
DSINFER_BF16 inline __m256i E4m3Bf16(__m128i codes) {
  const __m256i b16 = _mm256_cvtepu8_epi16(codes);
  const __m256i h = _mm256_and_si256(_mm256_srai_epi16(_mm256_slli_epi16(b16, 8), 1),
                                     _mm256_set1_epi16(static_cast<int16_t>(0xBFFF)));
  const __m512i f = _mm512_castps_si512(_mm512_cvtph_ps(h));
  return _mm512_cvtepi32_epi16(_mm512_srli_epi32(f, 16));
}

// out[c - k0] = bf16 bits of W[r, c] (FP8: e4m3 · 2^-8) for c ∈ [k0, k1), then one 0 pad.
template <bool kFp8>
DSINFER_BF16 void ConvertRow(const WeightView& w, int64_t r, int64_t k0, int64_t k1,
                             uint16_t* out) {
  const int64_t cols = k1 - k0;
  if constexpr (kFp8) {
    const uint8_t* q = static_cast<const uint8_t*>(w.data) + r * w.cols + k0;
    int64_t c = 0;
    for (; c + kLanes <= cols; c += kLanes)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + c),
                          E4m3Bf16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + c))));
    if (c < cols) {
      const __mmask16 m = Mask(cols - c);
      _mm256_mask_storeu_epi16(out + c, m, E4m3Bf16(_mm_maskz_loadu_epi8(m, q + c)));
    }
  } else {
    std::memcpy(out, static_cast<const uint16_t*>(w.data) + r * w.cols + k0,
                static_cast<size_t>(cols) * sizeof(uint16_t));
  }
  out[cols] = 0;
}

// Transposes a 16×16 block of 32-bit words in registers: on entry v[a] holds row a (words
// c = 0..15 in lanes), on return v[c] holds column c (row a in lane a). Four stages: 32-bit and
// 64-bit interleaves within 128-bit lanes, then two 128-bit lane shuffles.
DSINFER_BF16 inline void Transpose16(__m512i (&v)[kLanes]) {
  __m512i t[kLanes];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {  // v[4i + m], lane L: word 4L + m of rows 4i .. 4i + 3
    v[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
    v[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
    v[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
    v[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
  }
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 4; ++j) {
      t[8 * i + j] = _mm512_shuffle_i32x4(v[8 * i + j], v[8 * i + j + 4], 0x88);
      t[8 * i + j + 4] = _mm512_shuffle_i32x4(v[8 * i + j], v[8 * i + j + 4], 0xdd);
    }
  for (int j = 0; j < 8; ++j) {
    v[j] = _mm512_shuffle_i32x4(t[j], t[j + 8], 0x88);
    v[j + 8] = _mm512_shuffle_i32x4(t[j], t[j + 8], 0xdd);
  }
}

// The panel of rows [r0, r0 + rows) × columns [k0, k1) (layout: gemm/isa_kernels.h), rows
// padded with zeros to whole groups of kBf16TileRows. 16 rows at a time: each converted into
// `rows16` (row a's pairs at rows16[a·kRowWords ..]), then moved into the panel by 16×16 word
// transposes: one vector store per pair and 16 rows instead of 16 scalar stores (with one token,
// a row of 64 pairs packed costs 64 word moves against 4 `vdpbf16ps`, so packing dominates decode).
template <bool kFp8>
DSINFER_BF16 void PackPanel(const WeightView& w, int64_t r0, int rows, int64_t k0, int64_t k1,
                            uint32_t* panel, uint32_t* rows16) {
  const int64_t pairs = (k1 - k0 + 1) / 2;
  const int groups = (rows + kBf16TileRows - 1) / kBf16TileRows;
  for (int j0 = 0; j0 < groups * kBf16TileRows; j0 += kLanes) {
    for (int a = 0; a < kLanes; ++a) {
      uint32_t* row = rows16 + a * kRowWords;
      if (j0 + a < rows)
        ConvertRow<kFp8>(w, r0 + j0 + a, k0, k1, reinterpret_cast<uint16_t*>(row));
      else
        std::memset(row, 0, static_cast<size_t>(pairs) * sizeof(uint32_t));
    }
    uint32_t* dst = panel + (j0 / kBf16TileRows) * pairs * kBf16TileRows + j0 % kBf16TileRows;
    int64_t p = 0;
    for (; p + kLanes <= pairs; p += kLanes) {
      __m512i v[kLanes];
      for (int a = 0; a < kLanes; ++a) v[a] = _mm512_loadu_si512(rows16 + a * kRowWords + p);
      Transpose16(v);
      for (int c = 0; c < kLanes; ++c) _mm512_storeu_si512(dst + (p + c) * kBf16TileRows, v[c]);
    }
    for (; p < pairs; ++p)
      for (int a = 0; a < kLanes; ++a) dst[p * kBf16TileRows + a] = rows16[a * kRowWords + p];
  }
}

// acc[t][v] += Σ_{p ∈ [p0, p1)} (x[t] pair p) · (panel pair p, rows 16v..16v+15), in ascending p.
template <int M>
DSINFER_BF16 inline void DotPairs(const uint16_t* const* xr, const uint32_t* wp, int64_t p0,
                                  int64_t p1, __m512 (&acc)[M][kVecs]) {
  for (int64_t p = p0; p < p1; ++p) {
    __m512bh wv[kVecs];
    for (int v = 0; v < kVecs; ++v)
      wv[v] = (__m512bh)_mm512_loadu_si512(wp + p * kBf16TileRows + v * kLanes);
    for (int t = 0; t < M; ++t) {
      int32_t pair;
      std::memcpy(&pair, xr[t] + 2 * p, sizeof pair);
      const __m512bh xv = (__m512bh)_mm512_set1_epi32(pair);
      for (int v = 0; v < kVecs; ++v) acc[t][v] = _mm512_dpbf16_ps(acc[t][v], wv[v], xv);
    }
  }
}

// M tokens × one row group of the panel over the chunk's columns [k0, k1). y (the first of the
// group's rows, `valid` of them real) holds the running totals between blocks and chunks;
// `first`: the chunk starts at column 0. s256[b]: block b's scale · 2^8 (FP8).
template <int M, bool kFp8>
DSINFER_BF16 void Tile(const uint16_t* xb, int64_t xbs, int64_t k0, int64_t k1, const uint32_t* wp,
                       const float* s256, bool first, float* y, int64_t ys, int valid) {
  const int64_t pairs = (k1 - k0 + 1) / 2;
  const uint16_t* xr[M];
  for (int t = 0; t < M; ++t) xr[t] = xb + t * xbs + k0;
  __mmask16 mask[kVecs];
  for (int v = 0; v < kVecs; ++v) mask[v] = Mask(valid - v * kLanes);
  __m512 acc[M][kVecs];
  if constexpr (kFp8) {
    for (int64_t b = 0; b * kBlockPairs < pairs; ++b) {
      for (int t = 0; t < M; ++t)
        for (int v = 0; v < kVecs; ++v) acc[t][v] = _mm512_setzero_ps();
      const int64_t p0 = b * kBlockPairs, p1 = p0 + kBlockPairs < pairs ? p0 + kBlockPairs : pairs;
      DotPairs<M>(xr, wp, p0, p1, acc);
      const __m512 s = _mm512_set1_ps(s256[b]);
      const bool start = first && b == 0;
      for (int t = 0; t < M; ++t)
        for (int v = 0; v < kVecs; ++v) {
          float* yp = y + t * ys + v * kLanes;
          const __m512 total =
              start ? _mm512_mul_ps(acc[t][v], s)
                    : _mm512_fmadd_ps(acc[t][v], s, _mm512_maskz_loadu_ps(mask[v], yp));
          _mm512_mask_storeu_ps(yp, mask[v], total);
        }
    }
  } else {
    for (int t = 0; t < M; ++t)
      for (int v = 0; v < kVecs; ++v)
        acc[t][v] =
            first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(mask[v], y + t * ys + v * kLanes);
    DotPairs<M>(xr, wp, 0, pairs, acc);
    for (int t = 0; t < M; ++t)
      for (int v = 0; v < kVecs; ++v)
        _mm512_mask_storeu_ps(y + t * ys + v * kLanes, mask[v], acc[t][v]);
  }
}

// Tile<m> for a run-time m ≤ M.
template <int M, bool kFp8>
DSINFER_BF16 void TileUpTo(int m, const uint16_t* xb, int64_t xbs, int64_t k0, int64_t k1,
                           const uint32_t* wp, const float* s256, bool first, float* y, int64_t ys,
                           int valid) {
  if constexpr (M > 1) {
    if (m < M) return TileUpTo<M - 1, kFp8>(m, xb, xbs, k0, k1, wp, s256, first, y, ys, valid);
  }
  Tile<M, kFp8>(xb, xbs, k0, k1, wp, s256, first, y, ys, valid);
}

// The panel of a repacked FP8 weight (below, with the GEMV's conversion).
DSINFER_BF16 void PackPanelPairs(const WeightView& w, int64_t r0, int rows, int64_t k0,
                                 int64_t k1, uint32_t* panel);

template <bool kFp8>
DSINFER_BF16 void GemmRowsD(const uint16_t* xb, int64_t xbs, int64_t n, const WeightView& w,
                            int64_t r0, int64_t r1, float* y, int64_t ys, uint32_t* work) {
  const int rows = static_cast<int>(r1 - r0);
  uint32_t* panel = work;
  uint32_t* rows16 = work + kPanelWords;  // [16, kRowWords] converted rows
  for (int64_t k0 = 0; k0 < w.cols; k0 += kBf16Kc) {
    const int64_t k1 = k0 + kBf16Kc < w.cols ? k0 + kBf16Kc : w.cols, pairs = (k1 - k0 + 1) / 2;
    if (kFp8 && w.bf16_pairs)
      PackPanelPairs(w, r0, rows, k0, k1, panel);
    else
      PackPanel<kFp8>(w, r0, rows, k0, k1, panel, rows16);
    float s256[kBf16Kc / 128] = {};
    if constexpr (kFp8) {
      const float* s = w.scales + (r0 / 128) * w.scale_cols() + k0 / 128;
      for (int64_t b = 0; b * 128 < k1 - k0; ++b) s256[b] = s[b] * 256.0f;
    }
    for (int64_t t0 = 0; t0 < n; t0 += kBf16Mr) {
      const int m = static_cast<int>(n - t0 < kBf16Mr ? n - t0 : kBf16Mr);
      for (int g = 0; g * kBf16TileRows < rows; ++g)
        TileUpTo<kBf16Mr, kFp8>(m, xb + t0 * xbs, xbs, k0, k1, panel + g * pairs * kBf16TileRows,
                                s256, k0 == 0, y + t0 * ys + g * kBf16TileRows, ys,
                                rows - g * kBf16TileRows);
    }
  }
}

DSINFER_BF16 void GemmRows(const uint16_t* xb, int64_t xbs, int64_t n, const WeightView& w,
                           int64_t r0, int64_t r1, float* y, int64_t ys, uint32_t* work) {
  if (w.dtype == DType::kF8E4M3) return GemmRowsD<true>(xb, xbs, n, w, r0, r1, y, ys, work);
  GemmRowsD<false>(xb, xbs, n, w, r0, r1, y, ys, work);  // BF16 (linear.cc checks the dtype)
}

// ---- GEMV (few tokens): the GEMM's arithmetic without a panel --------------------------------
// For one token the panel is the cost: packing a weight (convert, transpose, store, reload)
// outweighs its single use. The GEMV takes 16 weight rows at a time straight from the weight
// matrix; per segment of 16 column pairs it converts each row's 32
// values in registers, and Transpose16 turns them into 16 vectors of which vector c holds pair
// c of the 16 rows: the panel's vector for that pair (row a in lane a). Each token's accumulator
// then runs the chain of `DotPairs` (vdpbf16ps pair after pair, ascending, from zero at each
// 128-column block for FP8, from zero at column 0 for BF16) and the block folds of `Tile`
// (total = partial_0 · s'_0, then fma(partial_b, s'_b, total), s' = s · 2^8, y holding the total
// between blocks), with the same operands: the same weight bits (E4m3Bf16x32 gives E4m3Bf16's
// bits; a row's tail is padded with +0 as ConvertRow pads it), the same bf16 activation pairs (the
// GEMM's `xb`) and the same operand order. So every output is bitwise the GEMM's, for any n
// (tests/unit/kernels/linear_bf16_test.cc).
//
// FP8 codes are converted by arithmetic with a word table for the subnormals (E4m3Bf16x32: 8
// vector operations per 32 codes; E4m3Bf16's f16 route takes 14). (AVX512-VBMI byte tables, as
// the indexer's keys use, take 4 but measured 10% slower here: `bench gemm --n 1`.)

// bf16 bits of m · 2^-17, m < 8: the value e4m3 · 2^-8 of the e4m3 code with exponent field 0
// and mantissa m (zero and the subnormals m · 2^-9).
constexpr uint16_t SubnormalBf16(int m) {
  if (m == 0) return 0;
  int e = 0;  // floor(log2 m)
  while ((m >> (e + 1)) != 0) ++e;
  return static_cast<uint16_t>((110 + e) << 7 | ((m << (7 - e)) & 0x7F));
}

// 32 e4m3 codes → the bf16 bits of e4m3 · 2^-8, bit for bit E4m3Bf16's. A normal code (exponent
// field e ≥ 1, mantissa f) has the value 2^(e-15) · (1 + f/8): bf16 exponent field e + 112 and
// mantissa f << 4, i.e. the bits ((code & 0x7F) << 4) + (112 << 7); the 8 magnitudes below 8
// (zero and the subnormals) come from a word table; the sign moves from bit 7 to bit 15. (The
// NaN codes 0x7F/0xFF, which weights never hold, give ±1.875 on both routes.)
DSINFER_BF16 inline __m512i E4m3Bf16x32(__m256i codes) {
  const __m512i sub = _mm512_set_epi16(  // entries 0..7 (the rest unused)
      0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  //
      static_cast<int16_t>(SubnormalBf16(7)), static_cast<int16_t>(SubnormalBf16(6)),
      static_cast<int16_t>(SubnormalBf16(5)), static_cast<int16_t>(SubnormalBf16(4)),
      static_cast<int16_t>(SubnormalBf16(3)), static_cast<int16_t>(SubnormalBf16(2)),
      static_cast<int16_t>(SubnormalBf16(1)), static_cast<int16_t>(SubnormalBf16(0)));
  const __m512i c = _mm512_cvtepu8_epi16(codes);
  const __m512i mag = _mm512_and_si512(c, _mm512_set1_epi16(0x7F));
  const __m512i normal = _mm512_add_epi16(_mm512_slli_epi16(mag, 4), _mm512_set1_epi16(112 << 7));
  const __m512i v = _mm512_mask_permutexvar_epi16(
      normal, _mm512_cmplt_epu16_mask(mag, _mm512_set1_epi16(8)), mag, sub);
  return _mm512_ternarylogic_epi32(v, _mm512_slli_epi16(c, 8),
                                   _mm512_set1_epi16(static_cast<int16_t>(0x8000)),
                                   0xF8);  // v | (c << 8 & 0x8000)
}

DSINFER_BF16 inline __mmask32 Mask32(int n) {
  return n >= 32 ? static_cast<__mmask32>(0xFFFFFFFFu) : static_cast<__mmask32>((1u << n) - 1);
}

// Bytes ahead of the current column at which each of the 16 row streams is prefetched (as the
// f32 GEMV's long-row schedule, gemm/kernels.inc; memory schedule only).
constexpr int64_t kGemvPrefetchAhead = 1024;

DSINFER_BF16 inline void PrefetchLine(uintptr_t p, uintptr_t end) {
  if (p < end) __builtin_prefetch(reinterpret_cast<const void*>(p), 0, 3);
}

// The bf16 bits of the `cols` ≤ 32 weights at `row` + c0 (FP8: e4m3 · 2^-8) as 32 words, +0
// past cols (a masked load: nothing past the row is read).
template <bool kFp8>
DSINFER_BF16 inline __m512i LoadSegment(const uint8_t* row, int64_t c0, int cols) {
  if constexpr (kFp8) {
    const uint8_t* q = row + c0;
    return E4m3Bf16x32(cols >= 32 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q))
                                  : _mm256_maskz_loadu_epi8(Mask32(cols), q));
  } else {
    const uint16_t* q = reinterpret_cast<const uint16_t*>(row) + c0;
    return cols >= 32 ? _mm512_loadu_si512(q) : _mm512_maskz_loadu_epi16(Mask32(cols), q);
  }
}

// M tokens × the `valid` ≤ 16 rows from r (inside one 128-row block), all columns. pf_end: the
// first byte not to prefetch (the end of the caller's rows).
template <int M, bool kFp8>
DSINFER_BF16 void Gemv16(const uint16_t* xb, int64_t xbs, const WeightView& w, int64_t r, int valid,
                         float* y, int64_t ys, uintptr_t pf_end) {
  constexpr int64_t kSize = kFp8 ? 1 : 2;  // bytes per weight
  const int64_t K = w.cols, pairs = (K + 1) / 2, row_bytes = K * kSize;
  const uint8_t* base = static_cast<const uint8_t*>(w.data) + r * row_bytes;
  [[maybe_unused]] const float* s = kFp8 ? w.scales + (r / 128) * w.scale_cols() : nullptr;
  const __mmask16 out = Mask(valid);
  __m512 acc[M];
  for (int t = 0; t < M; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t p0 = 0; p0 < pairs; p0 += kLanes) {
    const int64_t c0 = 2 * p0;
    const int cols = K - c0 < 2 * kLanes ? static_cast<int>(K - c0) : 2 * kLanes;
    const int seg_pairs = (cols + 1) / 2;
    if (c0 * kSize % 64 == 0) {  // once per 64 bytes of each row; past a row's end, the row
      const int64_t at = c0 * kSize + kGemvPrefetchAhead;  // 16 further on (the next pass)
      const int64_t shift = at < row_bytes ? at : at + (kLanes - 1) * row_bytes;
      for (int a = 0; a < valid; ++a)
        PrefetchLine(
            reinterpret_cast<uintptr_t>(base) + static_cast<uintptr_t>(a * row_bytes + shift),
            pf_end);
    }
    __m512i v[kLanes];
#pragma GCC unroll 16
    for (int a = 0; a < kLanes; ++a)
      v[a] = a < valid ? LoadSegment<kFp8>(base + a * row_bytes, c0, cols) : _mm512_setzero_si512();
    Transpose16(v);  // v[c]: pair p0 + c of the 16 rows
#pragma GCC unroll 16
    for (int c = 0; c < kLanes; ++c) {
      if (c == seg_pairs) break;
      for (int t = 0; t < M; ++t) {
        int32_t pair;
        std::memcpy(&pair, xb + t * xbs + 2 * (p0 + c), sizeof pair);
        acc[t] = _mm512_dpbf16_ps(acc[t], (__m512bh)v[c], (__m512bh)_mm512_set1_epi32(pair));
      }
    }
    if constexpr (kFp8) {
      const int64_t p1 = p0 + seg_pairs;
      if (p1 % kBlockPairs == 0 || p1 == pairs) {  // the end of 128-column block b: fold it
        const int64_t b = p0 / kBlockPairs;
        const __m512 sv = _mm512_set1_ps(s[b] * 256.0f);
        for (int t = 0; t < M; ++t) {
          float* yp = y + t * ys;
          const __m512 total = b == 0 ? _mm512_mul_ps(acc[t], sv)
                                      : _mm512_fmadd_ps(acc[t], sv, _mm512_maskz_loadu_ps(out, yp));
          _mm512_mask_storeu_ps(yp, out, total);
          acc[t] = _mm512_setzero_ps();
        }
      }
    }
  }
  if constexpr (!kFp8)
    for (int t = 0; t < M; ++t) _mm512_mask_storeu_ps(y + t * ys, out, acc[t]);
}

// Gemv16<m> for a run-time m ≤ M.
template <int M, bool kFp8>
DSINFER_BF16 void Gemv16UpTo(int m, const uint16_t* xb, int64_t xbs, const WeightView& w, int64_t r,
                             int valid, float* y, int64_t ys, uintptr_t pf_end) {
  if constexpr (M > 1) {
    if (m < M) return Gemv16UpTo<M - 1, kFp8>(m, xb, xbs, w, r, valid, y, ys, pf_end);
  }
  Gemv16<M, kFp8>(xb, xbs, w, r, valid, y, ys, pf_end);
}

// ---- Repacked FP8 (WeightView::bf16_pairs, kernels/weight.h RepackFp8Pairs) -----------------
// The codes are stored as the kernels multiply them — 32 bytes = 16 rows' (even, odd) code pairs
// of one column pair — so E4m3Bf16x32 turns 32 bytes into one vector of bf16 pairs with row a in
// lane a, with no transpose. Same operations in the same order as above (the chain per output
// and 128-column block, the folds), hence the same bits as the row-major kernels.

// Pair p of the 16 rows from r (a multiple of 16): tile r / 64, chunk (r % 64) / 16.
inline const uint8_t* PairChunk(const WeightView& w, int64_t pairs, int64_t r, int64_t p) {
  return static_cast<const uint8_t*>(w.data) +
         ((r / kPairTileRows * pairs + p) * 4 + (r % kPairTileRows) / kLanes) * 32;
}

// M tokens × G ≤ 4 consecutive 16-row groups of one tile from r; the last group has `last` ≤ 16
// real rows. One chain per output (G·M independent chains per pass).
template <int M, int G>
DSINFER_BF16 void GemvPairs(const uint16_t* xb, int64_t xbs, const WeightView& w, int64_t r,
                            int last, float* y, int64_t ys) {
  const int64_t pairs = (w.cols + 1) / 2;
  const float* s = w.scales + (r / 128) * w.scale_cols();
  const uint8_t* base = PairChunk(w, pairs, r, 0);  // group g: + 32·g; pair p: + 128·p
  for (int64_t b = 0; b * kBlockPairs < pairs; ++b) {
    const int64_t p0 = b * kBlockPairs, p1 = p0 + kBlockPairs < pairs ? p0 + kBlockPairs : pairs;
    __m512 acc[G][M];
    for (int g = 0; g < G; ++g)
      for (int t = 0; t < M; ++t) acc[g][t] = _mm512_setzero_ps();
    for (int64_t p = p0; p < p1; ++p) {
      __m512bh xv[M];
      for (int t = 0; t < M; ++t) {
        int32_t pair;
        std::memcpy(&pair, xb + t * xbs + 2 * p, sizeof pair);
        xv[t] = (__m512bh)_mm512_set1_epi32(pair);
      }
      for (int g = 0; g < G; ++g) {
        const __m512bh v = (__m512bh)E4m3Bf16x32(
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(base + 128 * p + 32 * g)));
        for (int t = 0; t < M; ++t) acc[g][t] = _mm512_dpbf16_ps(acc[g][t], v, xv[t]);
      }
    }
    const __m512 sv = _mm512_set1_ps(s[b] * 256.0f);
    for (int g = 0; g < G; ++g) {
      const __mmask16 out = Mask(g == G - 1 ? last : kLanes);
      for (int t = 0; t < M; ++t) {
        float* yp = y + t * ys + g * kLanes;
        const __m512 total = b == 0 ? _mm512_mul_ps(acc[g][t], sv)
                                    : _mm512_fmadd_ps(acc[g][t], sv, _mm512_maskz_loadu_ps(out, yp));
        _mm512_mask_storeu_ps(yp, out, total);
      }
    }
  }
}

template <int M>
DSINFER_BF16 void GemvPairsG(int groups, const uint16_t* xb, int64_t xbs, const WeightView& w,
                             int64_t r, int last, float* y, int64_t ys) {
  switch (groups) {
    case 1:
      return GemvPairs<M, 1>(xb, xbs, w, r, last, y, ys);
    case 2:
      return GemvPairs<M, 2>(xb, xbs, w, r, last, y, ys);
    case 3:
      return GemvPairs<M, 3>(xb, xbs, w, r, last, y, ys);
    default:
      return GemvPairs<M, 4>(xb, xbs, w, r, last, y, ys);
  }
}

// Rows [r0, r1) of one 128-row block (r0 a multiple of 16), a tile's groups at a time.
DSINFER_BF16 void GemvRowsPairs(const uint16_t* xb, int64_t xbs, int64_t n, const WeightView& w,
                                int64_t r0, int64_t r1, float* y, int64_t ys) {
  for (int64_t r = r0; r < r1;) {
    const int64_t end = std::min(r1, (r / kPairTileRows + 1) * kPairTileRows);
    const int groups = static_cast<int>((end - r + kLanes - 1) / kLanes);
    const int last = static_cast<int>(end - r - (groups - 1) * kLanes);
    for (int64_t t0 = 0; t0 < n; t0 += kBf16GemvMr) {
      const int64_t m = std::min<int64_t>(n - t0, kBf16GemvMr);
      const uint16_t* x = xb + t0 * xbs;
      float* yt = y + t0 * ys + (r - r0);
      if (m == 1) GemvPairsG<1>(groups, x, xbs, w, r, last, yt, ys);
      else if (m == 2) GemvPairsG<2>(groups, x, xbs, w, r, last, yt, ys);
      else if (m == 3) GemvPairsG<3>(groups, x, xbs, w, r, last, yt, ys);
      else GemvPairsG<4>(groups, x, xbs, w, r, last, yt, ys);
    }
    r = end;
  }
}

// PackPanel for a repacked weight (r0 a multiple of 16): each 16-row group's pairs are one
// vector each, converted straight into the panel.
DSINFER_BF16 void PackPanelPairs(const WeightView& w, int64_t r0, int rows, int64_t k0,
                                 int64_t k1, uint32_t* panel) {
  const int64_t all_pairs = (w.cols + 1) / 2, pairs = (k1 - k0 + 1) / 2;
  const int groups = (rows + kBf16TileRows - 1) / kBf16TileRows;
  for (int j0 = 0; j0 < groups * kBf16TileRows; j0 += kLanes) {
    uint32_t* dst = panel + (j0 / kBf16TileRows) * pairs * kBf16TileRows + j0 % kBf16TileRows;
    if (j0 >= rows) {  // rows past the piece: zeros, as PackPanel
      for (int64_t p = 0; p < pairs; ++p)
        _mm512_storeu_si512(dst + p * kBf16TileRows, _mm512_setzero_si512());
      continue;
    }
    const uint8_t* src = PairChunk(w, all_pairs, r0 + j0, k0 / 2);
    for (int64_t p = 0; p < pairs; ++p)
      _mm512_storeu_si512(dst + p * kBf16TileRows,
                          E4m3Bf16x32(_mm256_loadu_si256(
                              reinterpret_cast<const __m256i*>(src + 128 * p))));
  }
}

template <bool kFp8>
DSINFER_BF16 void GemvRowsD(const uint16_t* xb, int64_t xbs, int64_t n, const WeightView& w,
                            int64_t r0, int64_t r1, float* y, int64_t ys, int64_t pf_end) {
  const uintptr_t end = reinterpret_cast<uintptr_t>(w.data) +
                        static_cast<uintptr_t>(pf_end * w.cols * (kFp8 ? 1 : 2));
  for (int64_t r = r0; r < r1; r += kLanes) {
    const int valid = static_cast<int>(r1 - r < kLanes ? r1 - r : kLanes);
    for (int64_t t0 = 0; t0 < n; t0 += kBf16GemvMr) {
      const int m = static_cast<int>(n - t0 < kBf16GemvMr ? n - t0 : kBf16GemvMr);
      Gemv16UpTo<kBf16GemvMr, kFp8>(m, xb + t0 * xbs, xbs, w, r, valid, y + t0 * ys + (r - r0), ys,
                                    end);
    }
  }
}

DSINFER_BF16 void GemvRows(const uint16_t* xb, int64_t xbs, int64_t n, const WeightView& w,
                           int64_t r0, int64_t r1, float* y, int64_t ys, int64_t pf_end) {
  if (w.bf16_pairs) return GemvRowsPairs(xb, xbs, n, w, r0, r1, y, ys);
  if (w.dtype == DType::kF8E4M3) return GemvRowsD<true>(xb, xbs, n, w, r0, r1, y, ys, pf_end);
  GemvRowsD<false>(xb, xbs, n, w, r0, r1, y, ys, pf_end);  // BF16 (linear.cc checks the dtype)
}

static_assert(kBf16Kc % 128 == 0 && 128 % kBf16TileRows == 0 && kBf16TileRows % kLanes == 0);

constexpr Bf16Kernels kTable = {.name = "avx512bf16",
                                .round_x = &RoundX,
                                .work_words = kPanelWords + kRows16Words,
                                .gemm_rows = &GemmRows,
                                .gemv_max_n = kBf16GemvMaxN,
                                .gemv_rows = &GemvRows};

}  // namespace

const Bf16Kernels& Avx512Bf16Kernels() { return kTable; }

}  // namespace dsinfer::gemm
