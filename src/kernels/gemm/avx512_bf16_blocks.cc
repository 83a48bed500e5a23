// AVX-512 BF16 GEMV and GEMM of Q8_0, Q4_K, Q5_K, Q6_K, IQ4_NL and IQ4_XS weights with bf16 activations (kernels/linear.h
// `LinearRowsBf16`, docs/numerics.md "bf16 numerics"), on the weights' repacked form
// (kernels/weight.h `RepackBlocksBf16`: 16-row tiles, each block's 16 rows side by side).
//
// The block codes are small integers — Q8_0's int8 q, Q4_K's 4-bit q, Q5_K's 5-bit q, Q6_K's u − 32,
// IQ4's levels (−127..113) — so each
// is an exact bf16 number, and `vdpbf16ps` multiplies them with the bf16 activations exactly.
// Per output (row r, token t) and scale block b (32 columns; Q6_K: 16), in this order:
//   partial = the vdpbf16ps chain over the block's column pairs, from zero, ascending pairs;
//   total   = fma(partial, s_b, total)                        (total starts at 0)
//   Q4_K, Q5_K: total = fma(−mm_b, xsum_b, total)
// with s_b = d (Q8_0, IQ4_NL), d·sc_j (Q4_K, Q5_K, exact in f32: an f16 times a 6-bit integer),
// d·sc_i (Q6_K, an f16 times an int8: exact) or d·(ls_j − 32) (IQ4_XS: exact), mm_b = dmin·m_j (exact), xsum_b = the block's sum of
// bf16(x) (f32, ascending columns, computed once per token by linear.cc). Lanes run over the tile's 16 weight rows (one output each), so the
// chain needs no horizontal sums and the GEMV and the GEMM compute every output with the same
// operations in the same order: bitwise equal for any n, batch and chunk invariant. The scalar
// specification (linear.cc) sums each block in ascending columns instead of vdpbf16ps's pair
// order: results differ by f32 rounding only (tests/unit/kernels/linear_bf16_blocks_test.cc).
//
// Conversions: Q8_0 through f32 (`vpmovsxbd`, `vcvtdq2ps`, `vcvtne2ps2bf16`: exact for
// |q| ≤ 128); Q4_K by a 16-word table (`vpermw`) from the nibbles, IQ4 (whose indices the copy
// lays out as Q4_K's codes) by a 16-word table of its levels; Q5_K by a 32-word one from
// the nibble and its 5th bit; Q6_K by a 64-word table (`vpermt2w`) from the nibble and its 2 high
// bits.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "format/ggml_types.h"
#include "kernels/gemm/avx512_bf16_common.h"
#include "kernels/gemm/isa_kernels.h"

namespace dsinfer::gemm {
namespace {

using bf16::kLanes;
using bf16::Mask;
constexpr int kGroupRows = 32;                      // GEMM register tile: 2 vectors of 16 rows
constexpr int kPieceGroups = 128 / kGroupRows;      // row groups of a ≤ 128-row piece
constexpr int64_t kKc = 512;                        // GEMM chunk: columns per panel
constexpr int64_t kChunkPairs = kKc / 2;            // column pairs per chunk
constexpr int kChunkBlocks = kKc / 16;              // scale blocks per chunk, at most (Q6_K's 16)
constexpr int64_t kPanelWords = int64_t{kPieceGroups} * kGroupRows * kChunkPairs;
constexpr int64_t kScaleWords = int64_t{2} * kChunkBlocks * 128;  // s and mm per block and row
static_assert(kKc % 256 == 0, "a chunk holds whole K-quant super-blocks");

// The block types: Q8_0 (32-column blocks), Q4_K and Q5_K (256-column super-blocks of 32-column
// blocks with mins), Q6_K (256-column super-blocks of 16-column blocks), IQ4_NL (32-column blocks)
// and IQ4_XS (256-column super-blocks of 32-column blocks).
enum Kind : int { kQ8 = 0, kQ4 = 1, kQ6 = 2, kQ5 = 3, kIn = 4, kIx = 5 };
constexpr bool HasMins(int kind) { return kind == kQ4 || kind == kQ5; }  // the −mm_b·xsum_b term
constexpr bool Iq4(int kind) { return kind == kIn || kind == kIx; }
constexpr int BlockCols(int kind) { return kind == kQ6 ? 16 : 32; }    // columns per scale
constexpr int SuperCols(int kind) { return kind == kQ8 || kind == kIn ? 32 : 256; }  // per repacked block
constexpr int64_t SuperBytes(int kind) {                               // bytes per repacked block
  return kind == kQ8   ? kQ8Bf16BlockBytes
         : kind == kQ4 ? kQ4KBf16BlockBytes
         : kind == kQ5 ? kQ5KBf16BlockBytes
         : kind == kIn ? kIq4NlTileBlockBytes
         : kind == kIx ? kIq4XsTileBlockBytes
                       : kQ6KBf16BlockBytes;
}

// bf16 bits of the integers 0..15 (the top half of their f32 bits).
constexpr uint16_t IntBf16(int v) {
  if (v == 0) return 0;
  int e = 0;
  while ((v >> (e + 1)) != 0) ++e;
  return static_cast<uint16_t>((127 + e) << 7 | ((v << (7 - e)) & 0x7F));
}

// 32 bytes of Q8_0 codes (byte 2a + e: row a's element e of a pair) → the vector of bf16 pairs.
DSINFER_BF16 inline __m512bh Q8Pairs(const uint8_t* p) {
  const __m512 lo = _mm512_cvtepi32_ps(
      _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
  const __m512 hi = _mm512_cvtepi32_ps(
      _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16))));
  return _mm512_cvtne2ps_pbh(hi, lo);  // words 0-15 from lo, 16-31 from hi
}

// 64 bytes of Q4_K codes (32 words, word 2a + e holding the codes of 4 column pairs at bits
// 4k..4k + 3) → four vectors of bf16 pairs. `vpermw` reads the low 5 bits of each index word, so
// the table repeats its 16 entries and the bit above a nibble need not be cleared.
DSINFER_BF16 inline void Q4Quad(const uint8_t* p, __m512i table, __m512bh (&v)[4]) {
  const __m512i w = _mm512_loadu_si512(p);
  v[0] = (__m512bh)_mm512_permutexvar_epi16(w, table);
  v[1] = (__m512bh)_mm512_permutexvar_epi16(_mm512_srli_epi16(w, 4), table);
  v[2] = (__m512bh)_mm512_permutexvar_epi16(_mm512_srli_epi16(w, 8), table);
  v[3] = (__m512bh)_mm512_permutexvar_epi16(_mm512_srli_epi16(w, 12), table);
}

// bf16 bits of the integers 0..15, twice (index bit 4 ignored).
DSINFER_BF16 inline __m512i Q4Table() {
  return _mm512_set_epi16(IntBf16(15), IntBf16(14), IntBf16(13), IntBf16(12), IntBf16(11),
                          IntBf16(10), IntBf16(9), IntBf16(8), IntBf16(7), IntBf16(6), IntBf16(5),
                          IntBf16(4), IntBf16(3), IntBf16(2), IntBf16(1), IntBf16(0),  //
                          IntBf16(15), IntBf16(14), IntBf16(13), IntBf16(12), IntBf16(11),
                          IntBf16(10), IntBf16(9), IntBf16(8), IntBf16(7), IntBf16(6), IntBf16(5),
                          IntBf16(4), IntBf16(3), IntBf16(2), IntBf16(1), IntBf16(0));
}

// bf16 bits of the integers −32..31 (Q6_K's u − 32), in two tables of 32 words: u < 32, u ≥ 32.
constexpr uint16_t SignedBf16(int v) { return v < 0 ? 0x8000 | IntBf16(-v) : IntBf16(v); }

// bf16 bits of the IQ4 levels by index, twice (as Q4Table: index bit 4 ignored).
struct Iq4Words {
  alignas(64) uint16_t w[32];
};
constexpr Iq4Words MakeIq4Words() {
  Iq4Words t{};
  for (int i = 0; i < 32; ++i) t.w[i] = SignedBf16(kIq4Levels[i % 16]);
  return t;
}
inline constexpr Iq4Words kIq4Words = MakeIq4Words();

// The table of 16-bit words that Q4Quad looks a kind's 4-bit codes up in.
template <int kKind>
DSINFER_BF16 inline __m512i NibbleTable() {
  if constexpr (Iq4(kKind)) return _mm512_load_si512(kIq4Words.w);
  return Q4Table();
}
struct Q6Tables {
  alignas(64) uint16_t words[64];
};
constexpr Q6Tables MakeQ6Tables() {
  Q6Tables t{};
  for (int u = 0; u < 64; ++u) t.words[u] = SignedBf16(u - 32);
  return t;
}
inline constexpr Q6Tables kQ6Tables = MakeQ6Tables();

// 32 bytes of Q6_K nibbles and the 32 words of their high-bit byte (bits 2k, 2k + 1: pair
// 4g + k) → two vectors of bf16 pairs, pairs 2h and 2h + 1 of the sub-block (kOdd = h odd).
// `vpermt2w` reads the low 6 bits of each index word: bits 0-3 the nibble, bits 4-5 the high
// bits shifted there; the bits above are ignored.
template <bool kOdd>
DSINFER_BF16 inline void Q6Pairs(const uint8_t* p, __m512i hb, __m512i lo, __m512i hi,
                                 __m512bh& first, __m512bh& second) {
  const __m512i w = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  const __m512i nib = _mm512_set1_epi16(15);
  // (a & c) | (b & ~c) with c = 15: the nibble from a, bits 4+ from b.
  const __m512i h0 = kOdd ? hb : _mm512_slli_epi16(hb, 4);       // bits of pair 2h at 4-5
  const __m512i h1 = kOdd ? _mm512_srli_epi16(hb, 2) : _mm512_slli_epi16(hb, 2);  // pair 2h + 1
  const __m512i i0 = _mm512_ternarylogic_epi32(w, h0, nib, 0xE4);
  const __m512i i1 = _mm512_ternarylogic_epi32(_mm512_srli_epi16(w, 4), h1, nib, 0xE4);
  first = (__m512bh)_mm512_permutex2var_epi16(lo, i0, hi);
  second = (__m512bh)_mm512_permutex2var_epi16(lo, i1, hi);
}

// bf16 bits of the integers 0..31 (Q5_K's codes).
DSINFER_BF16 inline __m512i Q5Table() {
  alignas(64) static constexpr Q6Tables kWords = [] {
    Q6Tables t{};
    for (int u = 0; u < 32; ++u) t.words[u] = IntBf16(u);
    return t;
  }();
  return _mm512_load_si512(kWords.words);
}

// Bit kK of each word of `hb` moved to bit 4 (the bits above it are left as they fall).
template <int kK>
DSINFER_BF16 inline __m512i BitTo4(__m512i hb) {
  if constexpr (kK <= 4) return _mm512_slli_epi16(hb, 4 - kK);
  else return _mm512_srli_epi16(hb, kK - 4);
}

// 32 bytes of Q5_K nibbles (group kH of the sub-block) and the 32 words of their 5th-bit byte
// (bits 2(kH % 4), 2(kH % 4) + 1) → two vectors of bf16 pairs, pairs 2kH and 2kH + 1. `vpermw`
// reads the low 5 bits of each index word.
template <int kH>
DSINFER_BF16 inline void Q5Pairs(const uint8_t* p, __m512i hb, __m512i table, __m512bh& first,
                                 __m512bh& second) {
  const __m512i w = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  const __m512i nib = _mm512_set1_epi16(15);
  const __m512i i0 = _mm512_ternarylogic_epi32(w, BitTo4<2 * (kH % 4)>(hb), nib, 0xE4);
  const __m512i i1 =
      _mm512_ternarylogic_epi32(_mm512_srli_epi16(w, 4), BitTo4<2 * (kH % 4) + 1>(hb), nib, 0xE4);
  first = (__m512bh)_mm512_permutexvar_epi16(i0, table);
  second = (__m512bh)_mm512_permutexvar_epi16(i1, table);
}

DSINFER_BF16 inline __m512i HighBits(const uint8_t* p) {  // 32 high-bit bytes → 32 words
  return _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

DSINFER_BF16 inline __m512 HalfVec(const uint8_t* p) {  // 16 f16 → f32
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
DSINFER_BF16 inline __m512 ByteVec(const uint8_t* p) {  // 16 u8 → f32
  return _mm512_cvtepi32_ps(
      _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}

DSINFER_BF16 inline __m512 SByteVec(const uint8_t* p) {  // 16 int8 → f32
  return _mm512_cvtepi32_ps(
      _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}

// Q4_K's and Q5_K's s_b = d·sc_j and mm_b = dmin·m_j of sub-block j, per row of the tile, from
// its repacked super-block (d, dmin, sc and m at the same offsets in both).
DSINFER_BF16 inline void KScales(const uint8_t* blk, int64_t j, __m512& s, __m512& mm) {
  s = _mm512_mul_ps(HalfVec(blk), ByteVec(blk + 64 + 16 * j));
  mm = _mm512_mul_ps(HalfVec(blk + 32), ByteVec(blk + 192 + 16 * j));
}

DSINFER_BF16 inline __m512bh Broadcast(const uint16_t* pair) {
  int32_t v;
  std::memcpy(&v, pair, sizeof v);
  return (__m512bh)_mm512_set1_epi32(v);
}

// The GEMV's Q6_K column pairs 2h, 2h + 1 of 16-column block b, for G tiles × M tokens.
template <int M, int G, bool kOdd>
DSINFER_BF16 inline void Q6Step(int h, const uint16_t* xb, int64_t xbs, int64_t b,
                                const uint8_t* const* codes, __m512i lo, __m512i hi,
                                __m512 (&partial)[G][M]) {
  __m512bh x0[M], x1[M];
  for (int t = 0; t < M; ++t) {
    x0[t] = Broadcast(xb + t * xbs + 16 * b + 4 * h);
    x1[t] = Broadcast(xb + t * xbs + 16 * b + 4 * h + 2);
  }
  for (int g = 0; g < G; ++g) {
    __m512bh v0, v1;
    Q6Pairs<kOdd>(codes[g] + 32 * h, HighBits(codes[g] + 128 + 32 * (h / 2)), lo, hi, v0, v1);
    for (int t = 0; t < M; ++t) partial[g][t] = _mm512_dpbf16_ps(partial[g][t], v0, x0[t]);
    for (int t = 0; t < M; ++t) partial[g][t] = _mm512_dpbf16_ps(partial[g][t], v1, x1[t]);
  }
}

// The GEMV's Q5_K column pairs 2kH, 2kH + 1 of 32-column block b, for G tiles × M tokens.
template <int M, int G, int kH>
DSINFER_BF16 inline void Q5Step(const uint16_t* xb, int64_t xbs, int64_t b,
                                const uint8_t* const* codes, const uint8_t* const* highs,
                                __m512i table, __m512 (&partial)[G][M]) {
  __m512bh x0[M], x1[M];
  for (int t = 0; t < M; ++t) {
    x0[t] = Broadcast(xb + t * xbs + 32 * b + 4 * kH);
    x1[t] = Broadcast(xb + t * xbs + 32 * b + 4 * kH + 2);
  }
  for (int g = 0; g < G; ++g) {
    __m512bh v0, v1;
    Q5Pairs<kH>(codes[g] + 32 * kH, HighBits(highs[g] + 32 * (kH / 4)), table, v0, v1);
    for (int t = 0; t < M; ++t) partial[g][t] = _mm512_dpbf16_ps(partial[g][t], v0, x0[t]);
    for (int t = 0; t < M; ++t) partial[g][t] = _mm512_dpbf16_ps(partial[g][t], v1, x1[t]);
  }
}

// ---- GEMV: M ≤ 4 tokens × G ≤ 4 tiles of 16 rows, straight from the repacked weight ----------
// Software prefetch (memory schedule only: the arithmetic is untouched). Each of the G tile
// streams requests the lines kGemvAhead bytes ahead of the block it reads; near the end of its
// tile it continues into the same stream of the next pass (tile + G), never at or past pf_end
// (the end of the caller's tiles). Without it the hardware prefetchers leave the cold GEMV at
// 0.6-0.7 of the read bandwidth (`dsinfer bench gemv`, Q4_K at the 671B expert shapes); 2048
// bytes measured best of 512-8192 (docs/gguf.md).
constexpr int64_t kGemvAhead = 2048;

DSINFER_BF16 inline void PrefetchLine(uintptr_t p, uintptr_t end) {
  if (p < end) __builtin_prefetch(reinterpret_cast<const void*>(p), 0, 3);
}

template <int M, int G, int kKind>
DSINFER_BF16 void GemvTiles(const uint16_t* xb, int64_t xbs, const float* xsum, int64_t xss,
                            const WeightView& w, int64_t r, int last, float* y, int64_t ys,
                            uintptr_t pf_end) {
  const int64_t tile_bytes = w.cols / SuperCols(kKind) * SuperBytes(kKind);
  const uint8_t* tiles = static_cast<const uint8_t*>(w.data) + r / kLanes * tile_bytes;
  constexpr int64_t kBlockBytes = SuperBytes(kKind) / (SuperCols(kKind) / BlockCols(kKind));
  [[maybe_unused]] const __m512i table = NibbleTable<kKind>();
  __m512 total[G][M];
  int64_t pf[G];
  for (int g = 0; g < G; ++g) {
    for (int t = 0; t < M; ++t) total[g][t] = _mm512_setzero_ps();
    pf[g] = kGemvAhead;
  }
  for (int64_t b = 0; b < w.cols / BlockCols(kKind); ++b) {
    for (int g = 0; g < G; ++g) {
      const int64_t want = (b + 1) * kBlockBytes + kGemvAhead;
      for (; pf[g] < want; pf[g] += 64) {
        const int64_t o = pf[g] < tile_bytes ? pf[g] : pf[g] + (G - 1) * tile_bytes;
        PrefetchLine(reinterpret_cast<uintptr_t>(tiles) + static_cast<uintptr_t>(g * tile_bytes + o),
                     pf_end);
      }
    }
    __m512 partial[G][M];
    for (int g = 0; g < G; ++g)
      for (int t = 0; t < M; ++t) partial[g][t] = _mm512_setzero_ps();
    // Pair after pair, the G tiles' chains interleaved (G·M independent chains in flight).
    __m512 s[G], mm[G];
    if constexpr (kKind == kQ5) {
      const int64_t sb = b / 8, j = b % 8;
      const uint8_t *codes[G], *highs[G];
      for (int g = 0; g < G; ++g) {
        const uint8_t* blk = tiles + g * tile_bytes + sb * 2880;
        KScales(blk, j, s[g], mm[g]);
        codes[g] = blk + 320 + 256 * j;
        highs[g] = blk + 2368 + 64 * j;
      }
      const __m512i table = Q5Table();
      Q5Step<M, G, 0>(xb, xbs, b, codes, highs, table, partial);
      Q5Step<M, G, 1>(xb, xbs, b, codes, highs, table, partial);
      Q5Step<M, G, 2>(xb, xbs, b, codes, highs, table, partial);
      Q5Step<M, G, 3>(xb, xbs, b, codes, highs, table, partial);
      Q5Step<M, G, 4>(xb, xbs, b, codes, highs, table, partial);
      Q5Step<M, G, 5>(xb, xbs, b, codes, highs, table, partial);
      Q5Step<M, G, 6>(xb, xbs, b, codes, highs, table, partial);
      Q5Step<M, G, 7>(xb, xbs, b, codes, highs, table, partial);
    } else if constexpr (kKind == kQ4 || Iq4(kKind)) {
      const int64_t sb = b / (SuperCols(kKind) / 32), j = b % (SuperCols(kKind) / 32);
      const uint8_t* codes[G];
      for (int g = 0; g < G; ++g) {
        const uint8_t* blk = tiles + g * tile_bytes + sb * SuperBytes(kKind);
        if constexpr (kKind == kQ4) {
          KScales(blk, j, s[g], mm[g]);
          codes[g] = blk + 320 + 256 * j;
        } else if constexpr (kKind == kIx) {  // d·(ls_j − 32)
          s[g] = _mm512_mul_ps(HalfVec(blk), SByteVec(blk + 32 + 16 * j));
          codes[g] = blk + 160 + 256 * j;
        } else {
          s[g] = HalfVec(blk);
          codes[g] = blk + 32;
        }
      }
#pragma GCC unroll 4
      for (int q = 0; q < 4; ++q) {  // column pairs 4q..4q + 3 of the block
        for (int g = 0; g < G; ++g) {
          __m512bh v[4];
          Q4Quad(codes[g] + 64 * q, table, v);
          for (int k = 0; k < 4; ++k)
            for (int t = 0; t < M; ++t)
              partial[g][t] = _mm512_dpbf16_ps(partial[g][t], v[k],
                                               Broadcast(xb + t * xbs + 32 * b + 8 * q + 2 * k));
        }
      }
    } else if constexpr (kKind == kQ6) {
      const __m512i lo = _mm512_load_si512(kQ6Tables.words), hi = _mm512_load_si512(kQ6Tables.words + 32);
      const uint8_t* codes[G];
      for (int g = 0; g < G; ++g) {
        const uint8_t* blk = tiles + g * tile_bytes + b / 16 * 3360;
        s[g] = _mm512_mul_ps(HalfVec(blk), SByteVec(blk + 32 + 16 * (b % 16)));
        codes[g] = blk + 288 + 192 * (b % 16);
      }
      Q6Step<M, G, false>(0, xb, xbs, b, codes, lo, hi, partial);
      Q6Step<M, G, true>(1, xb, xbs, b, codes, lo, hi, partial);
      Q6Step<M, G, false>(2, xb, xbs, b, codes, lo, hi, partial);
      Q6Step<M, G, true>(3, xb, xbs, b, codes, lo, hi, partial);
    } else {  // Q8_0: int8 codes, 32 bytes per column pair of the tile's 16 rows
      const uint8_t* codes[G];
      for (int g = 0; g < G; ++g) {
        const uint8_t* blk = tiles + g * tile_bytes + b * 544;
        s[g] = HalfVec(blk);
        codes[g] = blk + 32;
      }
#pragma GCC unroll 16
      for (int p = 0; p < 16; ++p) {
        __m512bh xv[M];
        for (int t = 0; t < M; ++t) xv[t] = Broadcast(xb + t * xbs + 32 * b + 2 * p);
        for (int g = 0; g < G; ++g) {
          const __m512bh v = Q8Pairs(codes[g] + 32 * p);
          for (int t = 0; t < M; ++t) partial[g][t] = _mm512_dpbf16_ps(partial[g][t], v, xv[t]);
        }
      }
    }
    for (int g = 0; g < G; ++g)
      for (int t = 0; t < M; ++t) {
        total[g][t] = _mm512_fmadd_ps(partial[g][t], s[g], total[g][t]);
        if constexpr (HasMins(kKind))
          total[g][t] = _mm512_fnmadd_ps(mm[g], _mm512_set1_ps(xsum[t * xss + b]), total[g][t]);
      }
  }
  for (int g = 0; g < G; ++g)
    for (int t = 0; t < M; ++t)
      _mm512_mask_storeu_ps(y + t * ys + g * kLanes, Mask(g == G - 1 ? last : kLanes), total[g][t]);
}

template <int M, int kKind>
DSINFER_BF16 void GemvTilesG(int groups, const uint16_t* xb, int64_t xbs, const float* xsum,
                             int64_t xss, const WeightView& w, int64_t r, int last, float* y,
                             int64_t ys, uintptr_t pf_end) {
  switch (groups) {
    case 1:
      return GemvTiles<M, 1, kKind>(xb, xbs, xsum, xss, w, r, last, y, ys, pf_end);
    case 2:
      return GemvTiles<M, 2, kKind>(xb, xbs, xsum, xss, w, r, last, y, ys, pf_end);
    case 3:
      return GemvTiles<M, 3, kKind>(xb, xbs, xsum, xss, w, r, last, y, ys, pf_end);
    default:
      return GemvTiles<M, 4, kKind>(xb, xbs, xsum, xss, w, r, last, y, ys, pf_end);
  }
}

template <int kKind>
DSINFER_BF16 void GemvD(const uint16_t* xb, int64_t xbs, const float* xsum, int64_t xss, int64_t n,
                        const WeightView& w, int64_t r0, int64_t r1, float* y, int64_t ys) {
  constexpr int64_t kStep = 4 * kLanes;
  const int64_t tile_bytes = w.cols / SuperCols(kKind) * SuperBytes(kKind);
  const uintptr_t pf_end = reinterpret_cast<uintptr_t>(static_cast<const uint8_t*>(w.data) +
                                                       (r1 + kLanes - 1) / kLanes * tile_bytes);
  for (int64_t r = r0; r < r1; r += kStep) {
    const int64_t end = std::min(r1, r + kStep);
    const int groups = static_cast<int>((end - r + kLanes - 1) / kLanes);
    const int last = static_cast<int>(end - r - (groups - 1) * kLanes);
    for (int64_t t0 = 0; t0 < n; t0 += kBf16GemvMr) {
      const int64_t m = std::min<int64_t>(n - t0, kBf16GemvMr);
      const uint16_t* x = xb + t0 * xbs;
      const float* xsu = xsum + t0 * xss;
      float* yt = y + t0 * ys + (r - r0);
      if (m == 1) GemvTilesG<1, kKind>(groups, x, xbs, xsu, xss, w, r, last, yt, ys, pf_end);
      else if (m == 2) GemvTilesG<2, kKind>(groups, x, xbs, xsu, xss, w, r, last, yt, ys, pf_end);
      else if (m == 3) GemvTilesG<3, kKind>(groups, x, xbs, xsu, xss, w, r, last, yt, ys, pf_end);
      else GemvTilesG<4, kKind>(groups, x, xbs, xsu, xss, w, r, last, yt, ys, pf_end);
    }
  }
}

// ---- GEMM: a ≤ 128-row piece, per chunk of kKc columns a panel of bf16 pairs -----------------
// Panel: for row group g (32 rows), pair p of the chunk, row j: word [(g·kChunkPairs + p)·32 + j].
// Scales: sc[b·128 + row] and mm[b·128 + row] for the chunk's block b (rows past the piece: 0).
template <int kKind>
DSINFER_BF16 void PackPanel(const WeightView& w, int64_t r0, int rows, int64_t k0, int64_t k1,
                            uint32_t* panel, float* sc, float* mm) {
  const int64_t tile_bytes = w.cols / SuperCols(kKind) * SuperBytes(kKind);
  const int tiles16 = (rows + kLanes - 1) / kLanes;
  const int groups = (rows + kGroupRows - 1) / kGroupRows;
  constexpr int kPb = BlockCols(kKind) / 2;  // column pairs per scale block
  const int64_t b0 = k0 / BlockCols(kKind), nb = (k1 - k0) / BlockCols(kKind);
  [[maybe_unused]] const __m512i table = NibbleTable<kKind>();
  [[maybe_unused]] const __m512i q6lo = _mm512_load_si512(kQ6Tables.words);
  [[maybe_unused]] const __m512i q6hi = _mm512_load_si512(kQ6Tables.words + 32);
  [[maybe_unused]] const __m512i q5table = Q5Table();
  for (int i = 0; i < groups * 2; ++i) {
    uint32_t* dst = panel + (i / 2) * kChunkPairs * kGroupRows + (i % 2) * kLanes;
    if (i >= tiles16) {  // the odd 16 rows of the last group: zeros
      for (int64_t p = 0; p < nb * kPb; ++p)
        _mm512_storeu_si512(dst + p * kGroupRows, _mm512_setzero_si512());
      for (int64_t b = 0; b < nb; ++b) {
        _mm512_storeu_ps(sc + b * 128 + i * kLanes, _mm512_setzero_ps());
        _mm512_storeu_ps(mm + b * 128 + i * kLanes, _mm512_setzero_ps());
      }
      continue;
    }
    const uint8_t* tile = static_cast<const uint8_t*>(w.data) + (r0 / kLanes + i) * tile_bytes;
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t gb = b0 + b;
      uint32_t* d = dst + b * kPb * kGroupRows;
      if constexpr (kKind == kQ6) {
        const uint8_t* blk = tile + gb / 16 * 3360;
        const int64_t sub = gb % 16;
        _mm512_storeu_ps(sc + b * 128 + i * kLanes,
                         _mm512_mul_ps(HalfVec(blk), SByteVec(blk + 32 + 16 * sub)));
        const uint8_t* codes = blk + 288 + 192 * sub;
        const __m512i h01 = HighBits(codes + 128), h23 = HighBits(codes + 160);
        __m512bh v[8];
        Q6Pairs<false>(codes, h01, q6lo, q6hi, v[0], v[1]);
        Q6Pairs<true>(codes + 32, h01, q6lo, q6hi, v[2], v[3]);
        Q6Pairs<false>(codes + 64, h23, q6lo, q6hi, v[4], v[5]);
        Q6Pairs<true>(codes + 96, h23, q6lo, q6hi, v[6], v[7]);
        for (int p = 0; p < 8; ++p) _mm512_storeu_si512(d + p * kGroupRows, (__m512i)v[p]);
      } else if constexpr (Iq4(kKind)) {
        const int64_t per = SuperCols(kKind) / 32, j = gb % per;  // sub-block j of its block
        const uint8_t* blk = tile + gb / per * SuperBytes(kKind);
        _mm512_storeu_ps(sc + b * 128 + i * kLanes,
                         kKind == kIx ? _mm512_mul_ps(HalfVec(blk), SByteVec(blk + 32 + 16 * j))
                                      : HalfVec(blk));
        const uint8_t* codes = blk + (kKind == kIx ? 160 + 256 * j : 32);
        for (int q = 0; q < 4; ++q) {
          __m512bh v[4];
          Q4Quad(codes + 64 * q, table, v);
          for (int k = 0; k < 4; ++k) _mm512_storeu_si512(d + (4 * q + k) * kGroupRows, (__m512i)v[k]);
        }
      } else if constexpr (HasMins(kKind)) {
        const uint8_t* blk = tile + gb / 8 * SuperBytes(kKind);
        const int64_t j = gb % 8;
        __m512 s, m;
        KScales(blk, j, s, m);
        _mm512_storeu_ps(sc + b * 128 + i * kLanes, s);
        _mm512_storeu_ps(mm + b * 128 + i * kLanes, m);
        const uint8_t* codes = blk + 320 + 256 * j;
        if constexpr (kKind == kQ4) {
          for (int q = 0; q < 4; ++q) {
            __m512bh v[4];
            Q4Quad(codes + 64 * q, table, v);
            for (int k = 0; k < 4; ++k) _mm512_storeu_si512(d + (4 * q + k) * kGroupRows, (__m512i)v[k]);
          }
        } else {  // Q5_K
          const __m512i h0 = HighBits(blk + 2368 + 64 * j), h1 = HighBits(blk + 2368 + 64 * j + 32);
          __m512bh v[16];
          Q5Pairs<0>(codes, h0, q5table, v[0], v[1]);
          Q5Pairs<1>(codes + 32, h0, q5table, v[2], v[3]);
          Q5Pairs<2>(codes + 64, h0, q5table, v[4], v[5]);
          Q5Pairs<3>(codes + 96, h0, q5table, v[6], v[7]);
          Q5Pairs<4>(codes + 128, h1, q5table, v[8], v[9]);
          Q5Pairs<5>(codes + 160, h1, q5table, v[10], v[11]);
          Q5Pairs<6>(codes + 192, h1, q5table, v[12], v[13]);
          Q5Pairs<7>(codes + 224, h1, q5table, v[14], v[15]);
          for (int p = 0; p < 16; ++p) _mm512_storeu_si512(d + p * kGroupRows, (__m512i)v[p]);
        }
      } else {
        const uint8_t* blk = tile + gb * 544;
        _mm512_storeu_ps(sc + b * 128 + i * kLanes, HalfVec(blk));
        for (int p = 0; p < 16; ++p)
          _mm512_storeu_si512(d + p * kGroupRows, (__m512i)Q8Pairs(blk + 32 + 32 * p));
      }
    }
  }
}

// M tokens × one 32-row group of the panel over the chunk's nb blocks; y (the group's first
// row, `valid` real rows) holds the totals between chunks; `first`: the chunk starts at column 0.
template <int M, int kKind>
DSINFER_BF16 void Tile(const uint16_t* xb, int64_t xbs, const float* xsum, int64_t xss, int64_t k0,
                       int64_t nb, const uint32_t* wp, const float* sc, const float* mm,
                       bool first, float* y, int64_t ys, int valid) {
  const __mmask16 mask[2] = {Mask(valid), Mask(valid - kLanes)};
  __m512 total[M][2];
  for (int t = 0; t < M; ++t)
    for (int v = 0; v < 2; ++v)
      total[t][v] = first ? _mm512_setzero_ps()
                          : _mm512_maskz_loadu_ps(mask[v], y + t * ys + v * kLanes);
  for (int64_t b = 0; b < nb; ++b) {
    __m512 partial[M][2];
    for (int t = 0; t < M; ++t)
      for (int v = 0; v < 2; ++v) partial[t][v] = _mm512_setzero_ps();
    constexpr int kPb = BlockCols(kKind) / 2;  // column pairs per scale block
    const uint32_t* wb = wp + b * kPb * kGroupRows;
    const uint16_t* xr = xb + k0 + 2 * kPb * b;
#pragma GCC unroll 4
    for (int p = 0; p < kPb; ++p) {
      const __m512bh w0 = (__m512bh)_mm512_loadu_si512(wb + p * kGroupRows);
      const __m512bh w1 = (__m512bh)_mm512_loadu_si512(wb + p * kGroupRows + kLanes);
      for (int t = 0; t < M; ++t) {
        const __m512bh xv = Broadcast(xr + t * xbs + 2 * p);
        partial[t][0] = _mm512_dpbf16_ps(partial[t][0], w0, xv);
        partial[t][1] = _mm512_dpbf16_ps(partial[t][1], w1, xv);
      }
    }
    for (int v = 0; v < 2; ++v) {
      const __m512 s = _mm512_loadu_ps(sc + b * 128 + v * kLanes);
      for (int t = 0; t < M; ++t) total[t][v] = _mm512_fmadd_ps(partial[t][v], s, total[t][v]);
      if constexpr (HasMins(kKind)) {
        const __m512 m = _mm512_loadu_ps(mm + b * 128 + v * kLanes);
        for (int t = 0; t < M; ++t)
          total[t][v] =
              _mm512_fnmadd_ps(m, _mm512_set1_ps(xsum[t * xss + k0 / 32 + b]), total[t][v]);
      }
    }
  }
  for (int t = 0; t < M; ++t)
    for (int v = 0; v < 2; ++v) _mm512_mask_storeu_ps(y + t * ys + v * kLanes, mask[v], total[t][v]);
}

template <int M, int kKind>
DSINFER_BF16 void TileUpTo(int m, const uint16_t* xb, int64_t xbs, const float* xsum, int64_t xss,
                           int64_t k0, int64_t nb, const uint32_t* wp, const float* sc,
                           const float* mm, bool first, float* y, int64_t ys, int valid) {
  if constexpr (M > 1) {
    if (m < M) return TileUpTo<M - 1, kKind>(m, xb, xbs, xsum, xss, k0, nb, wp, sc, mm, first, y, ys, valid);
  }
  Tile<M, kKind>(xb, xbs, xsum, xss, k0, nb, wp, sc, mm, first, y, ys, valid);
}

template <int kKind>
DSINFER_BF16 void GemmD(const uint16_t* xb, int64_t xbs, const float* xsum, int64_t xss, int64_t n,
                        const WeightView& w, int64_t r0, int64_t r1, float* y, int64_t ys,
                        uint32_t* work) {
  const int rows = static_cast<int>(r1 - r0);
  uint32_t* panel = work;
  float* sc = reinterpret_cast<float*>(work + kPanelWords);
  float* mm = sc + kScaleWords / 2;
  for (int64_t k0 = 0; k0 < w.cols; k0 += kKc) {
    const int64_t k1 = std::min<int64_t>(k0 + kKc, w.cols), nb = (k1 - k0) / BlockCols(kKind);
    PackPanel<kKind>(w, r0, rows, k0, k1, panel, sc, mm);
    constexpr int kMr = kBf16BlockMr;
    for (int64_t t0 = 0; t0 < n; t0 += kMr) {
      const int m = static_cast<int>(std::min<int64_t>(n - t0, kMr));
      for (int g = 0; g * kGroupRows < rows; ++g)
        TileUpTo<kMr, kKind>(m, xb + t0 * xbs, xbs, xsum + t0 * xss, xss, k0, nb,
                                    panel + g * kChunkPairs * kGroupRows, sc + g * kGroupRows,
                                    mm + g * kGroupRows, k0 == 0, y + t0 * ys + g * kGroupRows, ys,
                                    rows - g * kGroupRows);
    }
  }
}

}  // namespace

int64_t Bf16BlockWorkWords() { return kPanelWords + kScaleWords; }

DSINFER_BF16 void Bf16BlocksGemv(const uint16_t* xb, int64_t xbs, const float* xsum, int64_t xss,
                                 int64_t n, const WeightView& w, int64_t r0, int64_t r1, float* y,
                                 int64_t ys) {
  if (w.dtype == DType::kQ4_K) return GemvD<kQ4>(xb, xbs, xsum, xss, n, w, r0, r1, y, ys);
  if (w.dtype == DType::kQ5_K) return GemvD<kQ5>(xb, xbs, xsum, xss, n, w, r0, r1, y, ys);
  if (w.dtype == DType::kQ6_K) return GemvD<kQ6>(xb, xbs, xsum, xss, n, w, r0, r1, y, ys);
  if (w.dtype == DType::kIQ4_NL) return GemvD<kIn>(xb, xbs, xsum, xss, n, w, r0, r1, y, ys);
  if (w.dtype == DType::kIQ4_XS) return GemvD<kIx>(xb, xbs, xsum, xss, n, w, r0, r1, y, ys);
  GemvD<kQ8>(xb, xbs, xsum, xss, n, w, r0, r1, y, ys);
}

DSINFER_BF16 void Bf16BlocksGemm(const uint16_t* xb, int64_t xbs, const float* xsum, int64_t xss,
                                 int64_t n, const WeightView& w, int64_t r0, int64_t r1, float* y,
                                 int64_t ys, uint32_t* work) {
  if (w.dtype == DType::kQ4_K) return GemmD<kQ4>(xb, xbs, xsum, xss, n, w, r0, r1, y, ys, work);
  if (w.dtype == DType::kQ5_K) return GemmD<kQ5>(xb, xbs, xsum, xss, n, w, r0, r1, y, ys, work);
  if (w.dtype == DType::kQ6_K) return GemmD<kQ6>(xb, xbs, xsum, xss, n, w, r0, r1, y, ys, work);
  if (w.dtype == DType::kIQ4_NL) return GemmD<kIn>(xb, xbs, xsum, xss, n, w, r0, r1, y, ys, work);
  if (w.dtype == DType::kIQ4_XS) return GemmD<kIx>(xb, xbs, xsum, xss, n, w, r0, r1, y, ys, work);
  GemmD<kQ8>(xb, xbs, xsum, xss, n, w, r0, r1, y, ys, work);
}

}  // namespace dsinfer::gemm
