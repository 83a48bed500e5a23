// int8-activation products of Q8_0, Q4_K, Q5_K, Q6_K, Q2_K, Q3_K, IQ4_NL and IQ4_XS weights on AVX-512 VNNI, on the weights' 16-row tile
// form (kernels/weight.h `RepackBlocksBf16`: each 16-row tile's blocks with the rows' fields side
// by side).
//
// They compute the specification (qblocks.h `Int8Rows`; scalar `DotQ8_0Int8`, `DotK4or5Int8`,
// `DotQ6_KInt8`, `DotQ2or3_KInt8`, `DotIq4Int8`) bit for bit: per output (row r, token t), over the scale
// blocks b in order (32 columns; Q6_K's, Q3_K's and Q2_K's 16),
//   isum = Σ_i qw_i·q_i over the block's columns (an exact integer, in any order),
//   acc  = acc + f32(isum) · (s_b · d_b)             (the product s_b·d_b, then ·, then +:
//                                                      each rounded to f32; no FMA)
//   Q4_K, Q5_K: acc = acc − mm_b · sum_b              (product, then difference)
// with s_b = d_w (Q8_0), d·sc_j (Q4_K, Q5_K, sub-block j) or d·sc_i (Q6_K, sub-block i; qw = u − 32;
// Q3_K, 16-column group i, qw = u − 4; Q2_K, group i, then acc = acc − f32(Σq)·(mm_i·d_b);
// IQ4_NL d, qw its index's level; IQ4_XS d·(ls_j − 32)),
// mm_b = dmin·m_j, d_b and sum_b the step and d·Σq of the activation block holding b. Lanes run over the tile's 16 rows: a vector whose lane a
// holds row a's codes of 4 columns meets one token's 4 activation bytes of the same columns,
// broadcast, in `vpdpbusd`, which adds the 4 products into that row's lane — each lane ends
// with its row's whole block sum: no horizontal sums, one f32 conversion, two multiplies and an
// add per block, row and token (Q4_K: and the min's multiply and subtraction).
//   Q8_0: a 64-byte load of two column pairs becomes that vector by one word permute (`vpermw`).
//     `vpdpbusd` multiplies unsigned by signed bytes: the weights enter as qw + 128 (the sign
//     bit flipped), and the sum starts from the token's −128·Σq of the block
//     (QuantizedActs::bias), so it ends exactly at Σ qw·q.
//   Q4_K: a 64-byte load of a sub-block's 16-bit words (word 2a + e: row a's codes of columns
//     8h + 2k + e, k < 4, at bits 4k..4k + 3) gives two vectors, its low nibbles (columns
//     8h + 0, 4, 1, 5 in each dword) and its high ones (8h + 2, 6, 3, 7): the 4-bit codes are
//     unsigned bytes as they are. The activations are read in that column order
//     (QuantizedActs::qk: each 8-column group of q as 0, 4, 1, 5, 2, 6, 3, 7).
//   Q5_K: each row's 2 bytes of low nibbles and 2 of 5th bits per 4 columns spread to q (0..31)
//     in 4 bytes, as Q6_K's below; the sum starts from 0.
//   Q6_K: each row's 2 bytes of nibbles and 2 bytes of high bits per 4 columns (the tile's
//     layout) are spread to u = q + 32 (0..63) in 4 bytes, 13 operations per vector; the sum
//     starts from −32·Σq of the 16 columns (QuantizedActs::bias16).
//   Q2_K: quad i of a group is bits 2i, 2i + 1 of each byte of its 64 bytes (one shift and a
//     mask); the sum starts from 0 and the mins use the token's 16-column sums (sum16).
//   IQ4_NL, IQ4_XS: the indices as Q4_K's codes, each looked up by one byte shuffle as its level
//     + 128 (1..241: unsigned); the sum starts from −128·Σq of the block (bias), as Q8_0's.
//   Q3_K: its low 2 bits as Q2_K's, its third bit from row a's 16-bit word (bit 4i + e),
//     copied to the row's 4 bytes by a byte shuffle, tested per byte and added as 4 under the
//     mask: u = q + 4 (0..7); the sum starts from −4·Σq of the 16 columns (bias16).
// The GEMV (the tiles read straight from the weight, up to 8 tokens) and the GEMM (a panel of the
// vectors built once per 512 columns and run against groups of 6 tokens) both give the
// specification's bits, so any batch split gives the same results. Thread-safety: pure
// functions; the GEMM's panel is per thread.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "base/error.h"
#include "format/ggml_types.h"
#include "kernels/qblocks.h"
#include "kernels/qblocks_tiles_layout.h"

// GCC 12's AVX-512 headers trip -Wmaybe-uninitialized inside their own code.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

// Products and sums must be rounded separately, as the specification does: this file is compiled
// with -ffp-contract=off (CMakeLists.txt).
#define DSINFER_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,fma,f16c")))

namespace dsinfer::qblocks {
namespace {

using namespace tiles;  // NOLINT(google-build-using-namespace): this file's own layout

constexpr int kGemvTiles = 4;                    // GEMV: tiles per pass (one weight stream each)
constexpr int kGemvMr = 8;                       // GEMV: tokens per pass
constexpr int kV = 2;                            // GEMM register tile: kV vectors of 16 rows
constexpr int kGroupRows = kV * kLanes;          //   (kGroupRows rows)
constexpr int kPieceGroups = 4;                  // GEMM: row groups of a piece
constexpr int kMr = 6;                           // GEMM: tokens per register tile

// Per group and chunk block b: the quads × kV vectors, then s_b × kV, then mm_b × kV (64 bytes each).
constexpr int64_t BlockVecs(int kind) { return kV * Quads(kind) + 2 * kV; }
constexpr int64_t PanelVecs(int kind) { return int64_t{kPieceGroups} * ChunkBlocks(kind) * BlockVecs(kind); }
constexpr int64_t kPanelVecs =
    std::max({PanelVecs(kQ8), PanelVecs(kQ4), PanelVecs(kQ5), PanelVecs(kQ6), PanelVecs(kQ2),
              PanelVecs(kQ3), PanelVecs(kIn), PanelVecs(kIx)});

// vpermw index: word 2a takes word a (row a's codes of the first column pair), word 2a + 1 word
// 16 + a (its codes of the second): dword a = row a's codes of 4 consecutive columns.
struct QuadIndex {
  alignas(64) uint16_t words[32];
};
constexpr QuadIndex MakeQuadIndex() {
  QuadIndex q{};
  for (int a = 0; a < 16; ++a) {
    q.words[2 * a] = static_cast<uint16_t>(a);
    q.words[2 * a + 1] = static_cast<uint16_t>(16 + a);
  }
  return q;
}
inline constexpr QuadIndex kQuadIndex = MakeQuadIndex();

// The IQ4 levels + 128 (1..241) by index: unsigned bytes for vpdpbusd.
struct Iq4Bytes {
  alignas(16) uint8_t b[16];
};
constexpr Iq4Bytes MakeIq4Bytes() {
  Iq4Bytes t{};
  for (int i = 0; i < 16; ++i) t.b[i] = static_cast<uint8_t>(kIq4Levels[i] + 128);
  return t;
}
inline constexpr Iq4Bytes kIq4Bytes = MakeIq4Bytes();

// One tile's scale block b (32 columns; Q6_K, Q3_K, Q2_K 16): its quads (vectors of the 16 rows' codes as
// unsigned bytes, 4 columns each) and its per-row scales.
template <int kKind>
struct TileBlock {
  const uint8_t* sb;  // the super-block (Q8_0: the block)
  int64_t j;          // K-quants: the sub-block
  DSINFER_VNNI TileBlock(const uint8_t* tile, int64_t b)
      : sb(tile + b / SuperBlocks(kKind) * SuperBytes(kKind)), j(b % SuperBlocks(kKind)) {}
  // Quad i: Q8_0 columns 4i..4i + 3, qw + 128; Q4_K the low (i even) or high nibbles of the
  // words of column group i / 2; IQ4_* those nibbles' levels + 128 (a byte shuffle); Q6_K columns 4i..4i + 3 of sub-block j as u = q + 32 (0..63):
  // the row's 2 bytes of nibbles (low: columns 4i, 4i + 1; high: 4i + 2, 4i + 3) spread to 4
  // bytes, and the 2 high bits of each from its 2 bytes of high bits (pair 2i at bits
  // 2k, 2k + 1, k = 2(i % 2), pair 2i + 1 above them), as kernels/weight.h lays them out.
  DSINFER_VNNI __m512i Quad(int i, __m512i idx) const {
    if constexpr (kKind == kQ8) {
      return _mm512_xor_si512(_mm512_permutexvar_epi16(idx, _mm512_loadu_si512(sb + 32 + 64 * i)),
                              _mm512_set1_epi8(static_cast<char>(0x80)));
    } else if constexpr (NibbleCodes(kKind)) {
      const __m512i v = _mm512_loadu_si512(sb + NibbleCodesAt(kKind) + 256 * j + 64 * (i / 2));
      const __m512i u = _mm512_and_si512(i % 2 == 0 ? v : _mm512_srli_epi16(v, 4), _mm512_set1_epi8(0x0F));
      if constexpr (kKind == kQ4) return u;
      return _mm512_shuffle_epi8(_mm512_broadcast_i32x4(_mm_load_si128(reinterpret_cast<const __m128i*>(kIq4Bytes.b))), u);
    } else if constexpr (kKind == kQ5) {
      const __m512i nib = _mm512_cvtepu16_epi32(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sb + 320 + 256 * j + 32 * i)));
      const __m512i hb = _mm512_cvtepu16_epi32(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sb + 2368 + 64 * j + 32 * (i / 4))));
      const int k = 2 * (i % 4);
      const __m512i lo = _mm512_and_si512(_mm512_or_si512(nib, _mm512_slli_epi32(nib, 12)),
                                          _mm512_set1_epi32(0x0F0F0F0F));
      const __m512i one = _mm512_set1_epi32(0x0101);
      const __m512i b01 = _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(hb, k), one), 4);
      const __m512i b23 = _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(hb, k + 1), one), 20);
      return _mm512_or_si512(lo, _mm512_or_si512(b01, b23));
    } else if constexpr (kKind == kQ2 || kKind == kQ3) {
      // Quad i of group j: bits 2i, 2i + 1 of each byte; Q3_K's third bit from bit 4i + e of row
      // a's word, its byte i / 2 copied to the row's 4 bytes and tested per byte.
      const __m512i v = _mm512_loadu_si512(sb + (kKind == kQ2 ? 320 : 288) + 64 * j);
      __m512i u = _mm512_and_si512(_mm512_srli_epi32(v, 2 * i), _mm512_set1_epi8(3));
      if constexpr (kKind == kQ3) {
        const __m512i hw = _mm512_cvtepu16_epi32(
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sb + 1312 + 32 * j)));
        const __m512i pick = _mm512_add_epi8(
            _mm512_set1_epi8(static_cast<char>(i / 2)),
            _mm512_broadcast_i32x4(_mm_setr_epi32(0, 0x04040404, 0x08080808, 0x0C0C0C0C)));
        const __m512i bits = _mm512_set1_epi32(static_cast<int>(0x08040201u << (4 * (i % 2))));
        const __mmask64 set = _mm512_test_epi8_mask(_mm512_shuffle_epi8(hw, pick), bits);
        u = _mm512_mask_add_epi8(u, set, u, _mm512_set1_epi8(4));
      }
      return u;
    } else {
      const uint8_t* sub = sb + 288 + 192 * j;
      const __m512i nib = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(sub + 32 * i)));
      const __m512i hb = _mm512_cvtepu16_epi32(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sub + 128 + 32 * (i / 2))));
      const int k = 2 * (i % 2);
      const __m512i lo = _mm512_and_si512(_mm512_or_si512(nib, _mm512_slli_epi32(nib, 12)),
                                          _mm512_set1_epi32(0x0F0F0F0F));
      const __m512i three = _mm512_set1_epi32(0x0303);
      const __m512i h01 = _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(hb, 2 * k), three), 4);
      const __m512i h23 = _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(hb, 2 * k + 2), three), 20);
      return _mm512_or_si512(lo, _mm512_or_si512(h01, h23));
    }
  }
  // s_b per row: d (Q8_0, IQ4_NL), d·sc_j (Q4_K, Q5_K: 6-bit sc), d·sc_i (Q6_K, Q3_K: int8 sc),
  // d·(ls_j − 32) (IQ4_XS: int8) or d·(sc_i & 15) (Q2_K).
  DSINFER_VNNI __m512 Scale() const {
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(sb)));
    if constexpr (kKind == kQ8 || kKind == kIn) return d;
    if constexpr (kKind == kQ2)
      return _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_and_si512(
                                  _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sb + 64 + 16 * j))),
                                  _mm512_set1_epi32(15))));
    if constexpr (kKind == kQ6 || kKind == kQ3 || kKind == kIx)
      return _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
                                  _mm_loadu_si128(reinterpret_cast<const __m128i*>(sb + 32 + 16 * j)))));
    return _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(
                                _mm_loadu_si128(reinterpret_cast<const __m128i*>(sb + 64 + 16 * j)))));
  }
  // mm_b per row: dmin·m_j (Q4_K, Q5_K) or dmin·(sc_i >> 4) (Q2_K).
  DSINFER_VNNI __m512 Min() const {
    const __m512 dmin = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(sb + 32)));
    if constexpr (kKind == kQ2)
      return _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(_mm512_srli_epi32(
                                     _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sb + 64 + 16 * j))), 4)));
    return _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(
                                   _mm_loadu_si128(reinterpret_cast<const __m128i*>(sb + 192 + 16 * j)))));
  }
};

// A token's activations as the kernels of kKind read them: the int8 codes (Q4_K, IQ4_*: in
// Q4_K's column order), the steps and sums of its 32-column blocks, and where each weight block's
// sum starts (Q8_0, IQ4_*: −128·Σq of the block, Q6_K: −32·Σq of the 16 columns, Q3_K: −4·Σq of
// them, Q4_K, Q5_K and Q2_K: 0).
template <int kKind>
struct TokenActs : TokenRow<kKind> {
  TokenActs() = default;
  TokenActs(const QuantizedActs& a, int64_t t)
      : TokenRow<kKind>(a, t, kKind == kQ6 || kKind == kQ3            ? &a.bias16
                              : kKind == kQ8 || Iq4(kKind) ? &a.bias
                                                           : nullptr) {}
  DSINFER_VNNI __m512i Start(int64_t b) const {
    if constexpr (HasMins(kKind)) return _mm512_setzero_si512();
    return _mm512_set1_epi32(this->start[b]);
  }
  DSINFER_VNNI __m512i Bcast(int64_t b, int i) const { return _mm512_set1_epi32(this->Quad(b, i)); }
};

inline __mmask16 Mask(int valid) {
  return valid >= kLanes ? static_cast<__mmask16>(0xFFFF)
         : valid <= 0    ? static_cast<__mmask16>(0)
                         : static_cast<__mmask16>((1u << valid) - 1);
}

// The specification's fold of block b: acc + f32(isum)·(s·d_b), then (Q4_K, Q5_K) − mm·sum_b
// or (Q2_K) − Σq·(mm·d_b).
template <int kKind>
DSINFER_VNNI inline __m512 Fold(__m512 acc, __m512i isum, __m512 s, __m512 mm,
                                const TokenActs<kKind>& x, int64_t b) {
  const __m512 step = _mm512_set1_ps(x.Step(b));
  acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(s, step)));
  if constexpr (kKind == kQ2)
    acc = _mm512_sub_ps(acc, _mm512_mul_ps(_mm512_set1_ps(x.sum16[b]), _mm512_mul_ps(mm, step)));
  else if constexpr (HasMins(kKind))
    acc = _mm512_sub_ps(acc, _mm512_mul_ps(mm, _mm512_set1_ps(x.sum[b])));
  return acc;
}

// ---- GEMV: G tiles × M tokens, the tiles read straight from the weight -----------------------
// Each tile's bytes are one stream, prefetched kAhead bytes ahead; near its end the prefetch
// continues into the same stream of the next pass (tile + G), never at or past pf_end.
constexpr int64_t kAhead = 2048;

template <int kKind, int M, int G>
DSINFER_VNNI void GemvTiles(const QuantizedActs& a, int64_t t0, const uint8_t* tiles,
                            int64_t tile_bytes, int64_t blocks, int last, float* y, int64_t ys,
                            uintptr_t pf_end) {
  const __m512i idx = _mm512_load_si512(kQuadIndex.words);
  constexpr int64_t kBlockBytes = SuperBytes(kKind) / SuperBlocks(kKind);
  __m512 total[G][M];
  int64_t pf[G];
  for (int g = 0; g < G; ++g) {
    for (int t = 0; t < M; ++t) total[g][t] = _mm512_setzero_ps();
    pf[g] = kAhead;
  }
  TokenActs<kKind> x[M];
  for (int t = 0; t < M; ++t) x[t] = TokenActs<kKind>(a, t0 + t);
  for (int64_t b = 0; b < blocks; ++b) {
    for (int g = 0; g < G; ++g) {
      for (; pf[g] < (b + 1) * kBlockBytes + kAhead; pf[g] += 64) {
        const int64_t o = pf[g] < tile_bytes ? pf[g] : pf[g] + (G - 1) * tile_bytes;
        const uintptr_t p = reinterpret_cast<uintptr_t>(tiles) +
                            static_cast<uintptr_t>(g * tile_bytes + o);
        if (p < pf_end) __builtin_prefetch(reinterpret_cast<const void*>(p), 0, 3);
      }
    }
    __m512i acc[G][M];
    for (int t = 0; t < M; ++t) {
      const __m512i start = x[t].Start(b);
      for (int g = 0; g < G; ++g) acc[g][t] = start;
    }
    constexpr int kQuads = Quads(kKind);
#pragma GCC unroll 8
    for (int i = 0; i < kQuads; ++i) {
      for (int g = 0; g < G; ++g) {
        const __m512i w = TileBlock<kKind>(tiles + g * tile_bytes, b).Quad(i, idx);
        for (int t = 0; t < M; ++t) acc[g][t] = _mm512_dpbusd_epi32(acc[g][t], w, x[t].Bcast(b, i));
      }
    }
    for (int g = 0; g < G; ++g) {
      const TileBlock<kKind> blk(tiles + g * tile_bytes, b);
      const __m512 s = blk.Scale();
      __m512 mm = _mm512_setzero_ps();
      if constexpr (HasMins(kKind)) mm = blk.Min();
      for (int t = 0; t < M; ++t) total[g][t] = Fold(total[g][t], acc[g][t], s, mm, x[t], b);
    }
  }
  for (int g = 0; g < G; ++g)
    for (int t = 0; t < M; ++t)
      _mm512_mask_storeu_ps(y + t * ys + g * kLanes, Mask(g == G - 1 ? last : kLanes), total[g][t]);
}

// M tokens over `groups` tiles: up to 4 tiles per call for M ≤ 2, 2 for M = 3, 4, 1 above
// (registers).
template <int kKind, int M>
DSINFER_VNNI void GemvPass(int groups, const QuantizedActs& a, int64_t t0, const uint8_t* tiles,
                           int64_t tile_bytes, int64_t blocks, int last, float* y, int64_t ys,
                           uintptr_t pf_end) {
  constexpr int kMaxG = M <= 2 ? 4 : M <= 4 ? 2 : 1;
  for (int g0 = 0; g0 < groups; g0 += kMaxG) {
    const int gs = std::min(kMaxG, groups - g0);
    const int lst = g0 + gs == groups ? last : kLanes;
    const uint8_t* tg = tiles + g0 * tile_bytes;
    float* yg = y + g0 * kLanes;
    switch (gs) {
      case 1:
        GemvTiles<kKind, M, 1>(a, t0, tg, tile_bytes, blocks, lst, yg, ys, pf_end);
        break;
      case 2:
        if constexpr (kMaxG >= 2)
          GemvTiles<kKind, M, 2>(a, t0, tg, tile_bytes, blocks, lst, yg, ys, pf_end);
        break;
      case 3:
        if constexpr (kMaxG == 4)
          GemvTiles<kKind, M, 3>(a, t0, tg, tile_bytes, blocks, lst, yg, ys, pf_end);
        break;
      default:
        if constexpr (kMaxG == 4)
          GemvTiles<kKind, M, 4>(a, t0, tg, tile_bytes, blocks, lst, yg, ys, pf_end);
        break;
    }
  }
}

template <int kKind>
DSINFER_VNNI void Gemv(const QuantizedActs& a, int64_t t0, int64_t t1, const WeightView& w,
                       int64_t r0, int64_t r1, float* y, int64_t ys) {
  constexpr int64_t kStep = int64_t{kGemvTiles} * kLanes;
  const int64_t blocks = w.cols / BlockCols(kKind);
  const int64_t tile_bytes = TileBytes(kKind, w.cols);
  const auto* base = static_cast<const uint8_t*>(w.data);
  const uintptr_t pf_end =
      reinterpret_cast<uintptr_t>(base + (r1 + kLanes - 1) / kLanes * tile_bytes);
  for (int64_t r = r0; r < r1; r += kStep) {
    const int64_t end = std::min(r1, r + kStep);
    const int groups = static_cast<int>((end - r + kLanes - 1) / kLanes);
    const int last = static_cast<int>(end - r - (groups - 1) * kLanes);
    const uint8_t* tiles = base + r / kLanes * tile_bytes;
    for (int64_t t = t0; t < t1; t += kGemvMr) {
      const int64_t m = std::min<int64_t>(t1 - t, kGemvMr);
      float* yt = y + (t - t0) * ys + (r - r0);
      UpTo<kGemvMr>(static_cast<int>(m), [&](auto k) {
        GemvPass<kKind, k()>(groups, a, t, tiles, tile_bytes, blocks, last, yt, ys, pf_end);
      });
    }
  }
}

// ---- GEMM: a ≤ 128-row piece; per chunk of kKc columns a panel of the quads ------------------
// Panel, per 32-row group g and chunk block b (vectors of 64 bytes, from
// (g·kChunkBlocks + b)·kBlockVecs): quad i of the group's kV row vectors (kV·i + v), then s_b per
// row (kV·kQuads + v: f32), then mm_b per row (Q4_K, Q5_K, Q2_K; kV·kQuads + kV + v). Rows past the piece
// are 0.
template <int kKind>
DSINFER_VNNI void PackPanel(const WeightView& w, int64_t r0, int rows, int64_t b0, int64_t nb,
                            __m512i* panel) {
  const __m512i idx = _mm512_load_si512(kQuadIndex.words);
  const int64_t tile_bytes = TileBytes(kKind, w.cols);
  constexpr int kQuads = Quads(kKind);
  constexpr int64_t kBlockVecs = BlockVecs(kKind), kChunkBlocks = ChunkBlocks(kKind);
  const int tiles = (rows + kLanes - 1) / kLanes;
  const int groups = (rows + kGroupRows - 1) / kGroupRows;
  for (int i = 0; i < kV * groups; ++i) {
    const int g = i / kV, v = i % kV;
    const uint8_t* tile = static_cast<const uint8_t*>(w.data) + (r0 / kLanes + i) * tile_bytes;
    for (int64_t b = 0; b < nb; ++b) {
      __m512i* dst = panel + (g * kChunkBlocks + b) * kBlockVecs;
      if (i >= tiles) {  // the missing row vectors of the last group: zeros
        for (int q = 0; q < kQuads; ++q) dst[kV * q + v] = _mm512_setzero_si512();
        dst[kV * kQuads + v] = dst[kV * kQuads + kV + v] = _mm512_setzero_si512();
        continue;
      }
      const TileBlock<kKind> blk(tile, b0 + b);
      for (int q = 0; q < kQuads; ++q) dst[kV * q + v] = blk.Quad(q, idx);
      dst[kV * kQuads + v] = _mm512_castps_si512(blk.Scale());
      if constexpr (HasMins(kKind)) dst[kV * kQuads + kV + v] = _mm512_castps_si512(blk.Min());
    }
  }
}

// M tokens (from t) × one group over the chunk's nb blocks from block b0; y (the group's first
// row, `valid` real rows) holds the running totals between chunks; `first`: b0 = 0.
template <int kKind, int M>
DSINFER_VNNI void Tile(const QuantizedActs& a, int64_t t, int64_t b0, int64_t nb,
                       const __m512i* wp, bool first, float* y, int64_t ys, int valid) {
  __mmask16 mask[kV];
  for (int v = 0; v < kV; ++v) mask[v] = Mask(valid - v * kLanes);
  __m512 total[M][kV];
  for (int k = 0; k < M; ++k)
    for (int v = 0; v < kV; ++v)
      total[k][v] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(mask[v], y + k * ys + v * kLanes);
  TokenActs<kKind> x[M];
  for (int k = 0; k < M; ++k) x[k] = TokenActs<kKind>(a, t + k);
  constexpr int kQuads = Quads(kKind);
  constexpr int64_t kBlockVecs = BlockVecs(kKind);
  for (int64_t bb = 0; bb < nb; ++bb) {
    const int64_t b = b0 + bb;
    const __m512i* blk = wp + bb * kBlockVecs;
    __m512i acc[M][kV];
    for (int k = 0; k < M; ++k) {
      const __m512i start = x[k].Start(b);
      for (int v = 0; v < kV; ++v) acc[k][v] = start;
    }
#pragma GCC unroll 8
    for (int q = 0; q < kQuads; ++q) {
      __m512i w[kV];
      for (int v = 0; v < kV; ++v) w[v] = blk[kV * q + v];
      for (int k = 0; k < M; ++k) {
        const __m512i xv = x[k].Bcast(b, q);
        for (int v = 0; v < kV; ++v) acc[k][v] = _mm512_dpbusd_epi32(acc[k][v], w[v], xv);
      }
    }
    for (int v = 0; v < kV; ++v) {
      const __m512 s = _mm512_castsi512_ps(blk[kV * kQuads + v]);
      const __m512 mm = _mm512_castsi512_ps(blk[kV * kQuads + kV + v]);
      for (int k = 0; k < M; ++k) total[k][v] = Fold(total[k][v], acc[k][v], s, mm, x[k], b);
    }
  }
  for (int k = 0; k < M; ++k)
    for (int v = 0; v < kV; ++v) _mm512_mask_storeu_ps(y + k * ys + v * kLanes, mask[v], total[k][v]);
}

template <int kKind>
DSINFER_VNNI void Gemm(const QuantizedActs& a, int64_t t0, int64_t t1, const WeightView& w,
                       int64_t r0, int64_t r1, float* y, int64_t ys) {
  __m512i* const panel = ThreadPanel<__m512i>(kPanelVecs);
  const int64_t blocks = w.cols / BlockCols(kKind);
  constexpr int64_t kBlockVecs = BlockVecs(kKind), kChunkBlocks = ChunkBlocks(kKind);
  for (int64_t p0 = r0; p0 < r1; p0 += kPieceGroups * kGroupRows) {
    const int rows = static_cast<int>(std::min<int64_t>(r1 - p0, kPieceGroups * kGroupRows));
    for (int64_t b0 = 0; b0 < blocks; b0 += kChunkBlocks) {
      const int64_t nb = std::min<int64_t>(kChunkBlocks, blocks - b0);
      PackPanel<kKind>(w, p0, rows, b0, nb, panel);
      for (int g = 0; g * kGroupRows < rows; ++g)
        for (int64_t t = t0; t < t1; t += kMr)
          UpTo<kMr>(static_cast<int>(std::min<int64_t>(t1 - t, kMr)), [&](auto m) {
            Tile<kKind, m()>(a, t, b0, nb, panel + g * kChunkBlocks * kBlockVecs, b0 == 0,
                             y + (t - t0) * ys + (p0 - r0) + g * kGroupRows, ys,
                             rows - g * kGroupRows);
          });
    }
  }
}

}  // namespace

bool Int8TilesRun(const WeightView& w, Isa isa) {
  return Int8TileDtype(w.dtype) && w.bf16_pairs && Int8TilesOn(isa);
}

bool Int8TilesOn(Isa isa) { return Int8UsesVnni(isa) || Int8UsesAvx2(isa); }

namespace {

// PrepareTileActRows' two jobs on one span of q (`bytes`, a multiple of 32), on VNNI (AVX2 CPUs
// run the scalar loops of PrepareTileActRows):
// out[k] = −c · Σ of the k-th group of `width` (16 or 32) bytes, and Q4_K's column order.
DSINFER_VNNI void GroupSumsVnni(const int8_t* q, int64_t bytes, int64_t width, int32_t c,
                                int32_t* out) {
  const __m512i ones = _mm512_set1_epi8(1), neg_c = _mm512_set1_epi32(-c);
  // dword 0 of each 128-bit lane (16-byte groups), of lanes 0 and 2 (32-byte groups)
  const __m512i pick16 = _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
  const __m512i pick32 = _mm512_setr_epi32(0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
  int64_t i = 0;
  for (; i + 64 <= bytes; i += 64) {
    // dword j = Σ of bytes 4j..4j+3 (1 · q, unsigned by signed); then each lane's 4 dwords
    __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, _mm512_loadu_si512(q + i));
    s = _mm512_add_epi32(s, _mm512_shuffle_epi32(s, _MM_PERM_BADC));
    s = _mm512_add_epi32(s, _mm512_shuffle_epi32(s, _MM_PERM_CDAB));
    if (width == 16) {
      s = _mm512_mullo_epi32(s, neg_c);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i / 16),
                       _mm512_castsi512_si128(_mm512_permutexvar_epi32(pick16, s)));
    } else {
      s = _mm512_add_epi32(s, _mm512_shuffle_i32x4(s, s, _MM_SHUFFLE(2, 3, 0, 1)));
      s = _mm512_mullo_epi32(s, neg_c);
      _mm_storel_epi64(reinterpret_cast<__m128i*>(out + i / 32),
                       _mm512_castsi512_si128(_mm512_permutexvar_epi32(pick32, s)));
    }
  }
  for (; i < bytes; i += width) {
    int32_t sum = 0;
    for (int64_t j = 0; j < width; ++j) sum += q[i + j];
    out[i / width] = -c * sum;
  }
}

DSINFER_VNNI void Q4OrderVnni(const int8_t* q, int64_t bytes, int8_t* qk) {
  const __m128i order = _mm_setr_epi8(0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15);
  const __m512i order4 = _mm512_broadcast_i32x4(order);
  int64_t i = 0;
  for (; i + 64 <= bytes; i += 64)
    _mm512_storeu_si512(qk + i, _mm512_shuffle_epi8(_mm512_loadu_si512(q + i), order4));
  if (i < bytes)  // 32 bytes left
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(qk + i),
                        _mm256_shuffle_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + i)),
                                            _mm512_castsi512_si256(order4)));
}

}  // namespace

void SizeTileActs(Isa isa, DType dtype, QuantizedActs& a) {
  a.bias.clear();
  a.bias16.clear();
  a.qk.clear();
  a.sum16.clear();
  const bool iq4 = dtype == DType::kIQ4_NL || dtype == DType::kIQ4_XS;
  // (Q8_0's and IQ4_*'s −128·Σq: the VNNI kernels' start only; the AVX2 ones multiply signed
  // codes.)
  if ((dtype == DType::kQ8_0 || iq4) && Int8UsesVnni(isa)) a.bias.resize(static_cast<size_t>(a.n * a.cols / 32));
  if (dtype == DType::kQ6_K || dtype == DType::kQ3_K) a.bias16.resize(static_cast<size_t>(a.n * a.cols / 16));
  if (dtype == DType::kQ2_K) a.sum16.resize(static_cast<size_t>(a.n * a.cols / 16));
  if (dtype == DType::kQ4_K || iq4) a.qk.resize(a.q.size());
}

void PrepareTileActRows(Isa isa, DType dtype, QuantizedActs& a, int64_t t0, int64_t t1) {
  DSINFER_CHECK(0 <= t0 && t0 <= t1 && t1 <= a.n, "PrepareTileActRows: tokens out of range");
  const int64_t b0 = t0 * a.cols, b1 = t1 * a.cols;  // the tokens' bytes of q
  const bool vnni = Int8UsesVnni(isa);
  const bool iq4 = dtype == DType::kIQ4_NL || dtype == DType::kIQ4_XS;
  if (dtype == DType::kQ2_K) {  // Σq per 16 columns (sum16)
    DSINFER_CHECK(static_cast<int64_t>(a.sum16.size()) == a.n * a.cols / 16,
                  "PrepareTileActRows: SizeTileActs first");
    return PrepareInt8RowActs(isa, dtype, a, t0, t1);
  }
  // −c·Σq over each weight block
  if (((dtype == DType::kQ8_0 || iq4) && vnni) || dtype == DType::kQ6_K || dtype == DType::kQ3_K) {
    const int64_t width = dtype == DType::kQ6_K || dtype == DType::kQ3_K ? 16 : 32;
    const int32_t c = width == 32 ? 128 : dtype == DType::kQ6_K ? 32 : 4;
    std::vector<int32_t>& out = width == 32 ? a.bias : a.bias16;
    DSINFER_CHECK(static_cast<int64_t>(out.size()) == a.n * a.cols / width,
                  "PrepareTileActRows: SizeTileActs first");
    if (vnni) {
      GroupSumsVnni(a.q.data() + b0, b1 - b0, width, c, out.data() + b0 / width);
    } else {
      for (int64_t k = b0 / width; k < b1 / width; ++k) {
        const int8_t* q = a.q.data() + k * width;
        int32_t sum = 0;
        for (int64_t i = 0; i < width; ++i) sum += q[i];
        out[k] = -c * sum;
      }
    }
  }
  if (dtype == DType::kQ4_K || iq4) {  // each 8 bytes as 0, 4, 1, 5, 2, 6, 3, 7
    DSINFER_CHECK(a.qk.size() == a.q.size(), "PrepareTileActRows: SizeTileActs first");
    if (vnni) return Q4OrderVnni(a.q.data() + b0, b1 - b0, a.qk.data() + b0);
    for (int64_t i = b0; i < b1; i += 8)
      for (int k = 0; k < 4; ++k) {
        a.qk[i + 2 * k] = a.q[i + k];
        a.qk[i + 2 * k + 1] = a.q[i + 4 + k];
      }
  }
}

void Int8TileRows(Isa isa, const QuantizedActs& a, int64_t t0, int64_t t1, const WeightView& w,
                  int64_t r0, int64_t r1, float* y, int64_t ys) {
  DSINFER_CHECK(Int8TilesRun(w, isa),
                "Int8TileRows takes a block weight in 16-row tiles on AVX-512 VNNI or AVX2");
  const bool q4 = w.dtype == DType::kQ4_K, q5 = w.dtype == DType::kQ5_K,
             q6 = w.dtype == DType::kQ6_K, q2 = w.dtype == DType::kQ2_K, q3 = w.dtype == DType::kQ3_K,
             nl = w.dtype == DType::kIQ4_NL, xs = w.dtype == DType::kIQ4_XS;
  const bool bias_ok = !Int8UsesVnni(isa) || static_cast<int64_t>(a.bias.size()) == a.n * a.blocks;
  DSINFER_CHECK(a.cols == w.cols && t0 >= 0 && t1 <= a.n &&
                    (q5         ? true
                     : q4       ? a.qk.size() == a.q.size()
                     : nl || xs ? a.qk.size() == a.q.size() && bias_ok
                     : q6 || q3 ? static_cast<int64_t>(a.bias16.size()) == a.n * a.cols / 16
                     : q2       ? static_cast<int64_t>(a.sum16.size()) == a.n * a.cols / 16
                                : bias_ok),
                "Int8TileRows: activations do not match the weight (SizeTileActs, PrepareTileActRows)");
  DSINFER_CHECK(0 <= r0 && r0 <= r1 && r1 <= w.rows, "Int8TileRows: rows out of range");
  if (t0 >= t1 || r0 >= r1) return;
  if (r0 % kLanes != 0) {  // a range starting inside a tile: that tile's rows through a buffer
    const int64_t tile0 = r0 / kLanes * kLanes, tile1 = std::min(r1, tile0 + kLanes);
    std::vector<float> part(static_cast<size_t>((t1 - t0) * kLanes));
    Int8TileRows(isa, a, t0, t1, w, tile0, tile1, part.data(), kLanes);
    for (int64_t t = 0; t < t1 - t0; ++t)
      std::memcpy(y + t * ys, part.data() + t * kLanes + (r0 - tile0), (tile1 - r0) * sizeof(float));
    return Int8TileRows(isa, a, t0, t1, w, tile1, r1, y + (tile1 - r0), ys);
  }
  if (!Int8UsesVnni(isa)) return Int8TileRowsAvx2(a, t0, t1, w, r0, r1, y, ys);
  const bool gemv = t1 - t0 <= kInt8TileGemvMaxN;
  if (q4) return gemv ? Gemv<kQ4>(a, t0, t1, w, r0, r1, y, ys) : Gemm<kQ4>(a, t0, t1, w, r0, r1, y, ys);
  if (q6) return gemv ? Gemv<kQ6>(a, t0, t1, w, r0, r1, y, ys) : Gemm<kQ6>(a, t0, t1, w, r0, r1, y, ys);
  if (q5) return gemv ? Gemv<kQ5>(a, t0, t1, w, r0, r1, y, ys) : Gemm<kQ5>(a, t0, t1, w, r0, r1, y, ys);
  if (q2) return gemv ? Gemv<kQ2>(a, t0, t1, w, r0, r1, y, ys) : Gemm<kQ2>(a, t0, t1, w, r0, r1, y, ys);
  if (q3) return gemv ? Gemv<kQ3>(a, t0, t1, w, r0, r1, y, ys) : Gemm<kQ3>(a, t0, t1, w, r0, r1, y, ys);
  if (nl) return gemv ? Gemv<kIn>(a, t0, t1, w, r0, r1, y, ys) : Gemm<kIn>(a, t0, t1, w, r0, r1, y, ys);
  if (xs) return gemv ? Gemv<kIx>(a, t0, t1, w, r0, r1, y, ys) : Gemm<kIx>(a, t0, t1, w, r0, r1, y, ys);
  gemv ? Gemv<kQ8>(a, t0, t1, w, r0, r1, y, ys) : Gemm<kQ8>(a, t0, t1, w, r0, r1, y, ys);
}

}  // namespace dsinfer::qblocks
