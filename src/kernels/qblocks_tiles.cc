// int8-activation products of Q8_0 weights on AVX-512 VNNI, on the weights' 16-row tile form
// (kernels/weight.h `RepackBlocksBf16`: per 32-column block the tile's 16 f16 steps, then per
// column pair 32 bytes holding the 16 rows' two codes side by side).
//
// They compute the specification (qblocks.h `Int8Rows`, scalar `DotQ8_0Int8`) bit for bit:
// per output (row r, token t), over the blocks b in order,
//   isum = Σ_i qw_i·q_i over the block's 32 columns (an exact integer, in any order),
//   acc  = acc + f32(isum) · (d_w,b · d_b)           (the product d_w,b·d_b, then ·, then +:
//                                                      each rounded to f32; no FMA)
// Lanes run over the tile's 16 rows: a 64-byte load of two column pairs becomes, by one word
// permute (`vpermw`), the vector whose lane a holds row a's codes of 4 consecutive columns, and
// `vpdpbusd` with one token's 4 activation bytes broadcast (the instruction's memory operand)
// accumulates that row's block sum in its lane — no horizontal sums, one f32 conversion, two
// multiplies and an add per block, row and token. `vpdpbusd` multiplies unsigned by signed
// bytes: the weights enter as qw + 128 (the sign bit flipped), and the sum starts from the
// token's −128·Σ q of the block (QuantizedActs::bias), so it ends exactly at Σ qw·q. The GEMV
// (the tile read straight from the weight, a few tokens) and the GEMM (a panel of those vectors
// built once per 512 columns and run against groups of 6 tokens) both give the specification's
// bits, so any batch split gives the same results. Thread-safety: pure functions; the GEMM's
// panel is per thread.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "base/error.h"
#include "kernels/qblocks.h"

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

constexpr int kLanes = 16;                       // rows per tile (kBlockTileRows)
constexpr int64_t kBlock = kQ8Bf16BlockBytes;    // 544 bytes per tile and 32-column block
constexpr int kQuads = 8;                        // 4-column groups per block
constexpr int kGemvTiles = 4;                    // GEMV: tiles per pass (one weight stream each)
constexpr int kGemvMr = 8;                       // GEMV: tokens per pass
constexpr int kV = 2;                            // GEMM register tile: kV vectors of 16 rows
constexpr int kGroupRows = kV * kLanes;          //   (kGroupRows rows)
constexpr int kPieceGroups = 4;                  // GEMM: row groups of a piece
constexpr int kMr = 6;                           // GEMM: tokens per register tile
constexpr int64_t kKc = 512;                     // GEMM: columns per panel
constexpr int kChunkBlocks = kKc / 32;
// Per group, chunk block b: 8 quads × kV vectors, then d_w × kV (64 bytes each).
constexpr int64_t kBlockVecs = kV * kQuads + kV;
constexpr int64_t kPanelVecs = int64_t{kPieceGroups} * kChunkBlocks * kBlockVecs;

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

// ... with the sign bits flipped: qw + 128 as unsigned bytes.
DSINFER_VNNI inline __m512i Quad(const uint8_t* p, __m512i idx) {
  return _mm512_xor_si512(_mm512_permutexvar_epi16(idx, _mm512_loadu_si512(p)),
                          _mm512_set1_epi8(static_cast<char>(0x80)));
}

DSINFER_VNNI inline __m512i Bcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof v);
  return _mm512_set1_epi32(v);
}

inline __mmask16 Mask(int valid) {
  return valid >= kLanes ? static_cast<__mmask16>(0xFFFF)
         : valid <= 0    ? static_cast<__mmask16>(0)
                         : static_cast<__mmask16>((1u << valid) - 1);
}

// The specification's fold of one block: acc + f32(isum)·(d_w·d_x).
DSINFER_VNNI inline __m512 Fold(__m512 acc, __m512i isum, __m512 dw, float dx) {
  const __m512 s = _mm512_mul_ps(dw, _mm512_set1_ps(dx));
  return _mm512_add_ps(acc, _mm512_mul_ps(_mm512_cvtepi32_ps(isum), s));
}

// ---- GEMV: G tiles × M tokens, the tiles read straight from the weight -----------------------
// Each tile's bytes are one stream, prefetched kAhead bytes ahead; near its end the prefetch
// continues into the same stream of the next pass (tile + G), never at or past pf_end.
constexpr int64_t kAhead = 2048;

template <int M, int G>
DSINFER_VNNI void GemvTiles(const QuantizedActs& a, int64_t t0, const uint8_t* tiles,
                            int64_t tile_bytes, int64_t blocks, int last, float* y, int64_t ys,
                            uintptr_t pf_end) {
  const __m512i idx = _mm512_load_si512(kQuadIndex.words);
  __m512 total[G][M];
  int64_t pf[G];
  for (int g = 0; g < G; ++g) {
    for (int t = 0; t < M; ++t) total[g][t] = _mm512_setzero_ps();
    pf[g] = kAhead;
  }
  const int8_t* q[M];
  const float* dx[M];
  const int32_t* bias[M];
  for (int t = 0; t < M; ++t) {
    q[t] = a.q.data() + (t0 + t) * a.cols;
    dx[t] = a.d.data() + (t0 + t) * a.blocks;
    bias[t] = a.bias.data() + (t0 + t) * a.blocks;
  }
  for (int64_t b = 0; b < blocks; ++b) {
    for (int g = 0; g < G; ++g) {
      for (; pf[g] < (b + 1) * kBlock + kAhead; pf[g] += 64) {
        const int64_t o = pf[g] < tile_bytes ? pf[g] : pf[g] + (G - 1) * tile_bytes;
        const uintptr_t p = reinterpret_cast<uintptr_t>(tiles) +
                            static_cast<uintptr_t>(g * tile_bytes + o);
        if (p < pf_end) __builtin_prefetch(reinterpret_cast<const void*>(p), 0, 3);
      }
    }
    __m512i acc[G][M];
    for (int t = 0; t < M; ++t) {
      const __m512i start = _mm512_set1_epi32(bias[t][b]);
      for (int g = 0; g < G; ++g) acc[g][t] = start;
    }
#pragma GCC unroll 8
    for (int i = 0; i < kQuads; ++i) {
      for (int g = 0; g < G; ++g) {
        const __m512i w = Quad(tiles + g * tile_bytes + b * kBlock + 32 + 64 * i, idx);
        for (int t = 0; t < M; ++t)
          acc[g][t] = _mm512_dpbusd_epi32(acc[g][t], w, Bcast4(q[t] + 32 * b + 4 * i));
      }
    }
    for (int g = 0; g < G; ++g) {
      const __m512 dw = _mm512_cvtph_ps(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(tiles + g * tile_bytes + b * kBlock)));
      for (int t = 0; t < M; ++t) total[g][t] = Fold(total[g][t], acc[g][t], dw, dx[t][b]);
    }
  }
  for (int g = 0; g < G; ++g)
    for (int t = 0; t < M; ++t)
      _mm512_mask_storeu_ps(y + t * ys + g * kLanes, Mask(g == G - 1 ? last : kLanes), total[g][t]);
}

// M tokens over `groups` tiles: up to 4 tiles per call for M ≤ 2, 2 for M = 3, 4, 1 above
// (registers).
template <int M>
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
        GemvTiles<M, 1>(a, t0, tg, tile_bytes, blocks, lst, yg, ys, pf_end);
        break;
      case 2:
        if constexpr (kMaxG >= 2) GemvTiles<M, 2>(a, t0, tg, tile_bytes, blocks, lst, yg, ys, pf_end);
        break;
      case 3:
        if constexpr (kMaxG == 4) GemvTiles<M, 3>(a, t0, tg, tile_bytes, blocks, lst, yg, ys, pf_end);
        break;
      default:
        if constexpr (kMaxG == 4) GemvTiles<M, 4>(a, t0, tg, tile_bytes, blocks, lst, yg, ys, pf_end);
        break;
    }
  }
}

DSINFER_VNNI void Gemv(const QuantizedActs& a, int64_t t0, int64_t t1, const WeightView& w,
                       int64_t r0, int64_t r1, float* y, int64_t ys) {
  constexpr int64_t kStep = int64_t{kGemvTiles} * kLanes;
  const int64_t blocks = w.cols / 32, tile_bytes = blocks * kBlock;
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
      if (m == 1) GemvPass<1>(groups, a, t, tiles, tile_bytes, blocks, last, yt, ys, pf_end);
      else if (m == 2) GemvPass<2>(groups, a, t, tiles, tile_bytes, blocks, last, yt, ys, pf_end);
      else if (m == 3) GemvPass<3>(groups, a, t, tiles, tile_bytes, blocks, last, yt, ys, pf_end);
      else if (m == 4) GemvPass<4>(groups, a, t, tiles, tile_bytes, blocks, last, yt, ys, pf_end);
      else if (m == 5) GemvPass<5>(groups, a, t, tiles, tile_bytes, blocks, last, yt, ys, pf_end);
      else if (m == 6) GemvPass<6>(groups, a, t, tiles, tile_bytes, blocks, last, yt, ys, pf_end);
      else if (m == 7) GemvPass<7>(groups, a, t, tiles, tile_bytes, blocks, last, yt, ys, pf_end);
      else GemvPass<8>(groups, a, t, tiles, tile_bytes, blocks, last, yt, ys, pf_end);
    }
  }
}

// ---- GEMM: a ≤ 128-row piece; per chunk of kKc columns a panel of the permuted vectors --------
// Panel, per 32-row group g and chunk block b (vectors of 64 bytes, from
// (g·kChunkBlocks + b)·kBlockVecs): quad i of rows 0-15 and 16-31 (2i, 2i + 1: qw + 128), then
// d_w per row (16, 17: f32). Rows past the piece are 0.
DSINFER_VNNI void PackPanel(const WeightView& w, int64_t r0, int rows, int64_t b0, int64_t nb,
                            __m512i* panel) {
  const __m512i idx = _mm512_load_si512(kQuadIndex.words);
  const int64_t tile_bytes = w.cols / 32 * kBlock;
  const int tiles = (rows + kLanes - 1) / kLanes;
  const int groups = (rows + kGroupRows - 1) / kGroupRows;
  for (int i = 0; i < kV * groups; ++i) {
    const int g = i / kV, v = i % kV;
    const uint8_t* tile =
        static_cast<const uint8_t*>(w.data) + (r0 / kLanes + i) * tile_bytes;
    for (int64_t b = 0; b < nb; ++b) {
      __m512i* dst = panel + (g * kChunkBlocks + b) * kBlockVecs;
      if (i >= tiles) {  // the odd 16 rows of the last group: zeros
        for (int q = 0; q < kQuads; ++q) dst[kV * q + v] = _mm512_setzero_si512();
        dst[kV * kQuads + v] = _mm512_setzero_si512();
        continue;
      }
      const uint8_t* blk = tile + (b0 + b) * kBlock;
      for (int q = 0; q < kQuads; ++q) dst[kV * q + v] = Quad(blk + 32 + 64 * q, idx);
      dst[kV * kQuads + v] = _mm512_castps_si512(
          _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk))));
    }
  }
}

// M tokens (from t) × one 32-row group over the chunk's nb blocks from block b0; y (the group's
// first row, `valid` real rows) holds the running totals between chunks; `first`: b0 = 0.
template <int M>
DSINFER_VNNI void Tile(const QuantizedActs& a, int64_t t, int64_t b0, int64_t nb,
                       const __m512i* wp, bool first, float* y, int64_t ys, int valid) {
  __mmask16 mask[kV];
  for (int v = 0; v < kV; ++v) mask[v] = Mask(valid - v * kLanes);
  __m512 total[M][kV];
  for (int k = 0; k < M; ++k)
    for (int v = 0; v < kV; ++v)
      total[k][v] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(mask[v], y + k * ys + v * kLanes);
  const int8_t* qx = a.q.data() + t * a.cols + 32 * b0;
  const float* dx = a.d.data() + t * a.blocks + b0;
  const int32_t* bias = a.bias.data() + t * a.blocks + b0;
  for (int64_t b = 0; b < nb; ++b) {
    const __m512i* blk = wp + b * kBlockVecs;
    __m512i acc[M][kV];
    for (int k = 0; k < M; ++k) {
      const __m512i start = _mm512_set1_epi32(bias[k * a.blocks + b]);
      for (int v = 0; v < kV; ++v) acc[k][v] = start;
    }
#pragma GCC unroll 8
    for (int q = 0; q < kQuads; ++q) {
      __m512i w[kV];
      for (int v = 0; v < kV; ++v) w[v] = blk[kV * q + v];
      for (int k = 0; k < M; ++k) {
        const __m512i xv = Bcast4(qx + k * a.cols + 32 * b + 4 * q);
        for (int v = 0; v < kV; ++v) acc[k][v] = _mm512_dpbusd_epi32(acc[k][v], w[v], xv);
      }
    }
    for (int v = 0; v < kV; ++v) {
      const __m512 dw = _mm512_castsi512_ps(blk[kV * kQuads + v]);
      for (int k = 0; k < M; ++k) total[k][v] = Fold(total[k][v], acc[k][v], dw, dx[k * a.blocks + b]);
    }
  }
  for (int k = 0; k < M; ++k)
    for (int v = 0; v < kV; ++v) _mm512_mask_storeu_ps(y + k * ys + v * kLanes, mask[v], total[k][v]);
}

template <int M>
DSINFER_VNNI void TileUpTo(int m, const QuantizedActs& a, int64_t t, int64_t b0, int64_t nb,
                           const __m512i* wp, bool first, float* y, int64_t ys, int valid) {
  if constexpr (M > 1) {
    if (m < M) return TileUpTo<M - 1>(m, a, t, b0, nb, wp, first, y, ys, valid);
  }
  Tile<M>(a, t, b0, nb, wp, first, y, ys, valid);
}

DSINFER_VNNI void Gemm(const QuantizedActs& a, int64_t t0, int64_t t1, const WeightView& w,
                       int64_t r0, int64_t r1, float* y, int64_t ys) {
  struct alignas(64) Vec {
    uint8_t bytes[64];
  };
  thread_local std::vector<Vec> storage;
  storage.resize(static_cast<size_t>(kPanelVecs));
  __m512i* const panel = reinterpret_cast<__m512i*>(storage.data());
  const int64_t blocks = w.cols / 32;
  for (int64_t p0 = r0; p0 < r1; p0 += kPieceGroups * kGroupRows) {
    const int rows = static_cast<int>(std::min<int64_t>(r1 - p0, kPieceGroups * kGroupRows));
    for (int64_t b0 = 0; b0 < blocks; b0 += kChunkBlocks) {
      const int64_t nb = std::min<int64_t>(kChunkBlocks, blocks - b0);
      PackPanel(w, p0, rows, b0, nb, panel);
      for (int g = 0; g * kGroupRows < rows; ++g)
        for (int64_t t = t0; t < t1; t += kMr)
          TileUpTo<kMr>(static_cast<int>(std::min<int64_t>(t1 - t, kMr)), a, t, b0, nb,
                        panel + g * kChunkBlocks * kBlockVecs, b0 == 0,
                        y + (t - t0) * ys + (p0 - r0) + g * kGroupRows, ys,
                        rows - g * kGroupRows);
    }
  }
}

}  // namespace

bool Int8TilesRun(const WeightView& w, Isa isa) {
  return w.dtype == DType::kQ8_0 && w.bf16_pairs && Int8UsesVnni(isa);
}

void Int8TileRows(Isa isa, const QuantizedActs& a, int64_t t0, int64_t t1, const WeightView& w,
                  int64_t r0, int64_t r1, float* y, int64_t ys) {
  DSINFER_CHECK(Int8TilesRun(w, isa), "Int8TileRows takes a Q8_0 weight in 16-row tiles on VNNI");
  DSINFER_CHECK(a.cols == w.cols && t0 >= 0 && t1 <= a.n &&
                    static_cast<int64_t>(a.bias.size()) == a.n * a.blocks,
                "Int8TileRows: activations do not match the weight");
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
  if (t1 - t0 <= kInt8TileGemvMaxN) return Gemv(a, t0, t1, w, r0, r1, y, ys);
  Gemm(a, t0, t1, w, r0, r1, y, ys);
}

}  // namespace dsinfer::qblocks
