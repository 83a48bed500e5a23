// int8-activation products of Q8_0, Q4_K, Q5_K, Q6_K, Q2_K, Q3_K, IQ4_NL and IQ4_XS weights on AVX2 (CPUs without AVX-512
// VNNI), on the same 16-row tile copy as the VNNI kernels (qblocks_tiles.cc, whose header states
// the specification and the layout). They compute the same bits: per output, block after block,
// the block's exact integer sum, then acc + f32(isum)·(s·d) (Q4_K, Q5_K: − mm·sum; Q2_K:
// − f32(Σq)·(mm·d)), each operation
// rounded to f32 in that order (this file is compiled with -ffp-contract=off).
//
// What differs from VNNI:
//   * 8 lanes per vector: a tile's 16 rows are two vectors ("halves": rows 0-7 and 8-15).
//   * No vpdpbusd: vpmaddubsw multiplies a quad's unsigned codes by the token's 4 broadcast
//     activation bytes into 16-bit sums of 2 products, which add exactly in 16 bits while they
//     fit (|q| ≤ 127): Q4_K codes ≤ 15 → up to 8 quads (≤ 30,480; 4 are used, whose shorter
//     chains of additions measured faster); Q5_K ≤ 31 → 4 quads; Q6_K u ≤ 63 → 2 quads; Q2_K
//     (≤ 3) and Q3_K (u ≤ 7) their 16-column block's 4 quads (≤ 7,112); then
//     vpmaddwd by ones gives each row's 32-bit sum.
//   * Q8_0's codes are signed: |w| (≤ 128) times the activation byte with w's sign (vpsignb),
//     one quad per vpmaddwd (2·128·127 = 32,512), so its sum starts at 0 (no −128·Σq). So are
//     IQ4's: the indices are looked up as the signed levels (−127..113) by one byte shuffle.
//   * Q8_0's quad comes from two 16-byte loads of the tile's column pairs and one word
//     interleave (vpunpck[lh]wd), in place of vpermw.
// Thread-safety: pure functions; the GEMM's panel is per thread.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "base/error.h"
#include "format/ggml_types.h"
#include "kernels/qblocks.h"
#include "kernels/qblocks_tiles_layout.h"

#define DSINFER_AVX2_TILES __attribute__((target("avx2,fma,f16c")))

namespace dsinfer::qblocks {
namespace {

using namespace tiles;  // NOLINT(google-build-using-namespace): the tile layout

constexpr int kHalf = 8;          // rows per vector
constexpr int kPieceTiles = 8;    // GEMM: tiles of a piece (128 rows)
constexpr int kGemvMr = 3;        // GEMV: tokens per pass
constexpr int kGemmMr = 2;        // GEMM: tokens per register tile (3 and 4 measured slower)
// Quads summed in 16 bits before vpmaddwd (see the header; for Q5_K and Q6_K the tests' largest
// codes and activations would overflow with twice as many).
// Q2_K (codes ≤ 3) and Q3_K (u ≤ 7) sum their block's 4 quads in 16 bits (≤ 7,112).
constexpr int Group16(int kind) {
  return kind == kQ4 || kind == kQ5 || kind == kQ2 || kind == kQ3 ? 4 : kind == kQ6 ? 2 : 1;
}

DSINFER_AVX2_TILES inline __m128i Load16(const uint8_t* p) {
  return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
}
DSINFER_AVX2_TILES inline __m128i Load8(const uint8_t* p) {
  return _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
}

// One tile's scale block b: its quads (per half h, a vector of the 8 rows' codes of 4 columns:
// unsigned, Q8_0 signed) and its per-row scales.
template <int kKind>
struct TileBlock {
  const uint8_t* sb;  // the super-block (Q8_0: the block)
  int64_t j;          // K-quants: the sub-block
  DSINFER_AVX2_TILES TileBlock(const uint8_t* tile, int64_t b)
      : sb(tile + b / SuperBlocks(kKind) * SuperBytes(kKind)), j(b % SuperBlocks(kKind)) {}
  DSINFER_AVX2_TILES __m256i Quad(int i, int h) const {
    if constexpr (kKind == kQ8) {  // column pairs 2i (words of rows 0-15) and 2i + 1
      const __m128i p0 = Load16(sb + 32 + 64 * i + 16 * h), p1 = Load16(sb + 64 + 64 * i + 16 * h);
      return _mm256_set_m128i(_mm_unpackhi_epi16(p0, p1), _mm_unpacklo_epi16(p0, p1));
    } else if constexpr (NibbleCodes(kKind)) {
      const __m256i v = _mm256_loadu_si256(
          reinterpret_cast<const __m256i*>(sb + NibbleCodesAt(kKind) + 256 * j + 64 * (i / 2) + 32 * h));
      const __m256i u = _mm256_and_si256(i % 2 == 0 ? v : _mm256_srli_epi16(v, 4), _mm256_set1_epi8(0x0F));
      if constexpr (kKind == kQ4) return u;
      return _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(Load16(reinterpret_cast<const uint8_t*>(kIq4Levels))), u);
    } else if constexpr (kKind == kQ5) {
      const __m256i nib = _mm256_cvtepu16_epi32(Load16(sb + 320 + 256 * j + 32 * i + 16 * h));
      const __m256i hb = _mm256_cvtepu16_epi32(Load16(sb + 2368 + 64 * j + 32 * (i / 4) + 16 * h));
      const int k = 2 * (i % 4);
      const __m256i lo = _mm256_and_si256(_mm256_or_si256(nib, _mm256_slli_epi32(nib, 12)),
                                          _mm256_set1_epi32(0x0F0F0F0F));
      const __m256i one = _mm256_set1_epi32(0x0101);
      const __m256i b01 = _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(hb, k), one), 4);
      const __m256i b23 = _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(hb, k + 1), one), 20);
      return _mm256_or_si256(lo, _mm256_or_si256(b01, b23));
    } else if constexpr (kKind == kQ2 || kKind == kQ3) {  // as qblocks_tiles.cc
      __m256i u = _mm256_and_si256(
          _mm256_srli_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(
                                sb + (kKind == kQ2 ? 320 : 288) + 64 * j + 32 * h)),
                            2 * i),
          _mm256_set1_epi8(3));
      if constexpr (kKind == kQ3) {
        const __m256i hw = _mm256_cvtepu16_epi32(Load16(sb + 1312 + 32 * j + 16 * h));
        const __m256i pick = _mm256_add_epi8(
            _mm256_set1_epi8(static_cast<char>(i / 2)),
            _mm256_setr_epi32(0, 0x04040404, 0x08080808, 0x0C0C0C0C, 0, 0x04040404, 0x08080808, 0x0C0C0C0C));
        const __m256i bits = _mm256_set1_epi32(static_cast<int>(0x08040201u << (4 * (i % 2))));
        const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(hw, pick), bits), bits);
        u = _mm256_or_si256(u, _mm256_and_si256(set, _mm256_set1_epi8(4)));
      }
      return u;
    } else {
      const uint8_t* sub = sb + 288 + 192 * j;
      const __m256i nib = _mm256_cvtepu16_epi32(Load16(sub + 32 * i + 16 * h));
      const __m256i hb = _mm256_cvtepu16_epi32(Load16(sub + 128 + 32 * (i / 2) + 16 * h));
      const int k = 2 * (i % 2);
      const __m256i lo = _mm256_and_si256(_mm256_or_si256(nib, _mm256_slli_epi32(nib, 12)),
                                          _mm256_set1_epi32(0x0F0F0F0F));
      const __m256i three = _mm256_set1_epi32(0x0303);
      const __m256i h01 = _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(hb, 2 * k), three), 4);
      const __m256i h23 = _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(hb, 2 * k + 2), three), 20);
      return _mm256_or_si256(lo, _mm256_or_si256(h01, h23));
    }
  }
  // s_b per row of half h: d (Q8_0, IQ4_NL), d·sc_j (Q4_K, Q5_K), d·sc_i (Q6_K, Q3_K),
  // d·(ls_j − 32) (IQ4_XS) or d·(sc_i & 15) (Q2_K).
  DSINFER_AVX2_TILES __m256 Scale(int h) const {
    const __m256 d = _mm256_cvtph_ps(Load16(sb + 16 * h));
    if constexpr (kKind == kQ8 || kKind == kIn) return d;
    if constexpr (kKind == kQ2)
      return _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_and_si256(
                                  _mm256_cvtepu8_epi32(Load8(sb + 64 + 16 * j + 8 * h)), _mm256_set1_epi32(15))));
    if constexpr (kKind == kQ6 || kKind == kQ3 || kKind == kIx)
      return _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(Load8(sb + 32 + 16 * j + 8 * h))));
    return _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(Load8(sb + 64 + 16 * j + 8 * h))));
  }
  // mm_b per row of half h: dmin·m_j (Q4_K, Q5_K) or dmin·(sc_i >> 4) (Q2_K).
  DSINFER_AVX2_TILES __m256 Min(int h) const {
    const __m256 dmin = _mm256_cvtph_ps(Load16(sb + 32 + 16 * h));
    if constexpr (kKind == kQ2)
      return _mm256_mul_ps(dmin, _mm256_cvtepi32_ps(_mm256_srli_epi32(
                                     _mm256_cvtepu8_epi32(Load8(sb + 64 + 16 * j + 8 * h)), 4)));
    return _mm256_mul_ps(dmin, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(Load8(sb + 192 + 16 * j + 8 * h))));
  }
};

// A token's activations as these kernels read them (Q4_K, IQ4_*: in Q4_K's column order; Q6_K's
// sums start at −32·Σq of the 16 columns, Q3_K's at −4·Σq, the others' at 0).
template <int kKind>
struct TokenActs : TokenRow<kKind> {
  TokenActs() = default;
  TokenActs(const QuantizedActs& a, int64_t t)
      : TokenRow<kKind>(a, t, kKind == kQ6 || kKind == kQ3 ? &a.bias16 : nullptr) {}
  DSINFER_AVX2_TILES __m256i Start(int64_t b) const {
    if constexpr (kKind != kQ6 && kKind != kQ3) return _mm256_setzero_si256();
    return _mm256_set1_epi32(this->start[b]);
  }
  DSINFER_AVX2_TILES __m256i Bcast(int64_t b, int i) const {
    return _mm256_set1_epi32(this->Quad(b, i));
  }
};

// 16-bit sums of a quad's products: unsigned codes `w` (Q8_0, IQ4_*: signed, |w| and the sign
// moved to the activation) by the broadcast activation bytes `x`.
template <int kKind>
DSINFER_AVX2_TILES inline __m256i Products(__m256i w, __m256i x) {
  if constexpr (kKind == kQ8 || Iq4(kKind)) return _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w));
  return _mm256_maddubs_epi16(w, x);
}

// The exact block sum of one half and token, from `start`: quads w[0..kQuads) (stride `ws`).
template <int kKind>
DSINFER_AVX2_TILES inline __m256i BlockSum(__m256i start, const __m256i* w, int64_t ws,
                                           const TokenActs<kKind>& x, int64_t b) {
  constexpr int kQuads = Quads(kKind), kGroup = Group16(kKind);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i acc = start;
#pragma GCC unroll 8
  for (int g = 0; g < kQuads; g += kGroup) {
    __m256i s16 = Products<kKind>(w[g * ws], x.Bcast(b, g));
    for (int i = g + 1; i < g + kGroup; ++i)
      s16 = _mm256_add_epi16(s16, Products<kKind>(w[i * ws], x.Bcast(b, i)));
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(s16, ones));
  }
  return acc;
}

// The specification's fold of block b: acc + f32(isum)·(s·d_b), then (Q4_K, Q5_K) − mm·sum_b
// or (Q2_K) − Σq·(mm·d_b).
template <int kKind>
DSINFER_AVX2_TILES inline __m256 Fold(__m256 acc, __m256i isum, __m256 s, __m256 mm,
                                      const TokenActs<kKind>& x, int64_t b) {
  const __m256 step = _mm256_set1_ps(x.Step(b));
  acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(s, step)));
  if constexpr (kKind == kQ2)
    acc = _mm256_sub_ps(acc, _mm256_mul_ps(_mm256_set1_ps(x.sum16[b]), _mm256_mul_ps(mm, step)));
  else if constexpr (HasMins(kKind))
    acc = _mm256_sub_ps(acc, _mm256_mul_ps(mm, _mm256_set1_ps(x.sum[b])));
  return acc;
}

// Stores the first `valid` lanes of v.
DSINFER_AVX2_TILES inline void StoreRows(float* y, __m256 v, int valid) {
  if (valid >= kHalf) return _mm256_storeu_ps(y, v);
  alignas(32) float tmp[kHalf];
  _mm256_store_ps(tmp, v);
  for (int r = 0; r < valid; ++r) y[r] = tmp[r];
}
DSINFER_AVX2_TILES inline __m256 LoadRows(const float* y, int valid) {
  if (valid >= kHalf) return _mm256_loadu_ps(y);
  alignas(32) float tmp[kHalf] = {};
  for (int r = 0; r < valid; ++r) tmp[r] = y[r];
  return _mm256_load_ps(tmp);
}

// ---- GEMV: one tile × M tokens, read straight from the weight --------------------------------
constexpr int64_t kAhead = 4096;  // prefetch distance in the tile's stream (bytes)

template <int kKind, int M>
DSINFER_AVX2_TILES void GemvTile(const QuantizedActs& a, int64_t t0, const uint8_t* tile,
                                 int64_t blocks, int valid, float* y, int64_t ys, uintptr_t pf_end) {
  constexpr int64_t kBlockBytes = SuperBytes(kKind) / SuperBlocks(kKind);
  constexpr int kQuads = Quads(kKind);
  __m256 total[M][2];
  for (int t = 0; t < M; ++t) total[t][0] = total[t][1] = _mm256_setzero_ps();
  TokenActs<kKind> x[M];
  for (int t = 0; t < M; ++t) x[t] = TokenActs<kKind>(a, t0 + t);
  int64_t pf = kAhead;
  for (int64_t b = 0; b < blocks; ++b) {
    for (; pf < (b + 1) * kBlockBytes + kAhead; pf += 64) {
      const uintptr_t p = reinterpret_cast<uintptr_t>(tile) + static_cast<uintptr_t>(pf);
      if (p < pf_end) __builtin_prefetch(reinterpret_cast<const void*>(p), 0, 3);
    }
    const TileBlock<kKind> blk(tile, b);
    for (int h = 0; h < 2; ++h) {
      __m256i w[kQuads];
      for (int i = 0; i < kQuads; ++i) w[i] = blk.Quad(i, h);
      const __m256 s = blk.Scale(h);
      __m256 mm = _mm256_setzero_ps();
      if constexpr (HasMins(kKind)) mm = blk.Min(h);
      for (int t = 0; t < M; ++t)
        total[t][h] = Fold(total[t][h], BlockSum<kKind>(x[t].Start(b), w, 1, x[t], b), s, mm, x[t], b);
    }
  }
  for (int t = 0; t < M; ++t)
    for (int h = 0; h < 2; ++h) StoreRows(y + t * ys + h * kHalf, total[t][h], valid - h * kHalf);
}

template <int kKind>
DSINFER_AVX2_TILES void Gemv(const QuantizedActs& a, int64_t t0, int64_t t1, const WeightView& w,
                             int64_t r0, int64_t r1, float* y, int64_t ys) {
  const int64_t blocks = w.cols / BlockCols(kKind);
  const int64_t tile_bytes = TileBytes(kKind, w.cols);
  const auto* base = static_cast<const uint8_t*>(w.data);
  const uintptr_t pf_end =
      reinterpret_cast<uintptr_t>(base + (r1 + kLanes - 1) / kLanes * tile_bytes);
  for (int64_t r = r0; r < r1; r += kLanes) {
    const int valid = static_cast<int>(std::min<int64_t>(r1 - r, kLanes));
    const uint8_t* tile = base + r / kLanes * tile_bytes;
    for (int64_t t = t0; t < t1; t += kGemvMr) {
      float* yt = y + (t - t0) * ys + (r - r0);
      UpTo<kGemvMr>(static_cast<int>(std::min<int64_t>(t1 - t, kGemvMr)),
                    [&](auto k) { GemvTile<kKind, k()>(a, t, tile, blocks, valid, yt, ys, pf_end); });
    }
  }
}

// ---- GEMM: a ≤ 128-row piece; per chunk of kKc columns a panel of the quads ------------------
// Panel, per tile i of the piece and chunk block b (32-byte vectors, from
// (i·kChunkBlocks + b)·kBlockVecs): quad q of half h at 2q + h, then s_b of half h at
// 2·kQuads + h, then mm_b (Q4_K, Q5_K, Q2_K) at 2·kQuads + 2 + h.
constexpr int64_t BlockVecs(int kind) { return 2 * Quads(kind) + 4; }
constexpr int64_t PanelVecs(int kind) { return int64_t{kPieceTiles} * ChunkBlocks(kind) * BlockVecs(kind); }
constexpr int64_t kPanelVecs = std::max(
    {PanelVecs(kQ8), PanelVecs(kQ4), PanelVecs(kQ5), PanelVecs(kQ6), PanelVecs(kQ2), PanelVecs(kQ3),
     PanelVecs(kIn), PanelVecs(kIx)});

template <int kKind>
DSINFER_AVX2_TILES void PackPanel(const WeightView& w, int64_t r0, int tiles, int64_t b0, int64_t nb,
                                  __m256i* panel) {
  const int64_t tile_bytes = TileBytes(kKind, w.cols);
  constexpr int kQuads = Quads(kKind);
  constexpr int64_t kBlockVecs = BlockVecs(kKind), kChunkBlocks = ChunkBlocks(kKind);
  for (int i = 0; i < tiles; ++i) {
    const uint8_t* tile = static_cast<const uint8_t*>(w.data) + (r0 / kLanes + i) * tile_bytes;
    for (int64_t b = 0; b < nb; ++b) {
      __m256i* dst = panel + (i * kChunkBlocks + b) * kBlockVecs;
      const TileBlock<kKind> blk(tile, b0 + b);
      for (int h = 0; h < 2; ++h) {
        for (int q = 0; q < kQuads; ++q) dst[2 * q + h] = blk.Quad(q, h);
        dst[2 * kQuads + h] = _mm256_castps_si256(blk.Scale(h));
        if constexpr (HasMins(kKind)) dst[2 * kQuads + 2 + h] = _mm256_castps_si256(blk.Min(h));
      }
    }
  }
}

// M tokens (from t) × one tile over the chunk's nb blocks from block b0; y (the tile's first
// row, `valid` real rows) holds the running totals between chunks; `first`: b0 = 0.
template <int kKind, int M>
DSINFER_AVX2_TILES void Tile(const QuantizedActs& a, int64_t t, int64_t b0, int64_t nb,
                             const __m256i* wp, bool first, float* y, int64_t ys, int valid) {
  __m256 total[M][2];
  for (int k = 0; k < M; ++k)
    for (int h = 0; h < 2; ++h)
      total[k][h] = first ? _mm256_setzero_ps() : LoadRows(y + k * ys + h * kHalf, valid - h * kHalf);
  TokenActs<kKind> x[M];
  for (int k = 0; k < M; ++k) x[k] = TokenActs<kKind>(a, t + k);
  constexpr int kQuads = Quads(kKind);
  constexpr int64_t kBlockVecs = BlockVecs(kKind);
  for (int64_t bb = 0; bb < nb; ++bb) {
    const int64_t b = b0 + bb;
    const __m256i* blk = wp + bb * kBlockVecs;
    for (int h = 0; h < 2; ++h) {
      const __m256 s = _mm256_castsi256_ps(blk[2 * kQuads + h]);
      const __m256 mm = HasMins(kKind) ? _mm256_castsi256_ps(blk[2 * kQuads + 2 + h]) : _mm256_setzero_ps();
      for (int k = 0; k < M; ++k)
        total[k][h] = Fold(total[k][h], BlockSum<kKind>(x[k].Start(b), blk + h, 2, x[k], b), s, mm, x[k], b);
    }
  }
  for (int k = 0; k < M; ++k)
    for (int h = 0; h < 2; ++h) StoreRows(y + k * ys + h * kHalf, total[k][h], valid - h * kHalf);
}


template <int kKind>
DSINFER_AVX2_TILES void Gemm(const QuantizedActs& a, int64_t t0, int64_t t1, const WeightView& w,
                             int64_t r0, int64_t r1, float* y, int64_t ys) {
  __m256i* const panel = ThreadPanel<__m256i>(kPanelVecs);
  const int64_t blocks = w.cols / BlockCols(kKind);
  constexpr int64_t kBlockVecs = BlockVecs(kKind), kChunkBlocks = ChunkBlocks(kKind);
  for (int64_t p0 = r0; p0 < r1; p0 += int64_t{kPieceTiles} * kLanes) {
    const int64_t rows = std::min<int64_t>(r1 - p0, int64_t{kPieceTiles} * kLanes);
    const int tiles = static_cast<int>((rows + kLanes - 1) / kLanes);
    for (int64_t b0 = 0; b0 < blocks; b0 += kChunkBlocks) {
      const int64_t nb = std::min<int64_t>(kChunkBlocks, blocks - b0);
      PackPanel<kKind>(w, p0, tiles, b0, nb, panel);
      for (int i = 0; i < tiles; ++i) {
        const int valid = static_cast<int>(std::min<int64_t>(rows - i * kLanes, kLanes));
        for (int64_t t = t0; t < t1; t += kGemmMr) {
          float* yt = y + (t - t0) * ys + (p0 - r0) + i * kLanes;
          const __m256i* wp = panel + i * kChunkBlocks * kBlockVecs;
          UpTo<kGemmMr>(static_cast<int>(std::min<int64_t>(t1 - t, kGemmMr)), [&](auto m) {
            Tile<kKind, m()>(a, t, b0, nb, wp, b0 == 0, yt, ys, valid);
          });
        }
      }
    }
  }
}

template <int kKind>
void Run(bool gemv, const QuantizedActs& a, int64_t t0, int64_t t1, const WeightView& w, int64_t r0,
         int64_t r1, float* y, int64_t ys) {
  gemv ? Gemv<kKind>(a, t0, t1, w, r0, r1, y, ys) : Gemm<kKind>(a, t0, t1, w, r0, r1, y, ys);
}

}  // namespace

void Int8TileRowsAvx2(const QuantizedActs& a, int64_t t0, int64_t t1, const WeightView& w,
                      int64_t r0, int64_t r1, float* y, int64_t ys) {
  const bool gemv = t1 - t0 <= kInt8TileGemvMaxN;
  switch (w.dtype) {
    case DType::kQ4_K: return Run<kQ4>(gemv, a, t0, t1, w, r0, r1, y, ys);
    case DType::kQ5_K: return Run<kQ5>(gemv, a, t0, t1, w, r0, r1, y, ys);
    case DType::kQ6_K: return Run<kQ6>(gemv, a, t0, t1, w, r0, r1, y, ys);
    case DType::kQ2_K: return Run<kQ2>(gemv, a, t0, t1, w, r0, r1, y, ys);
    case DType::kQ3_K: return Run<kQ3>(gemv, a, t0, t1, w, r0, r1, y, ys);
    case DType::kIQ4_NL: return Run<kIn>(gemv, a, t0, t1, w, r0, r1, y, ys);
    case DType::kIQ4_XS: return Run<kIx>(gemv, a, t0, t1, w, r0, r1, y, ys);
    default: return Run<kQ8>(gemv, a, t0, t1, w, r0, r1, y, ys);
  }
}

}  // namespace dsinfer::qblocks
