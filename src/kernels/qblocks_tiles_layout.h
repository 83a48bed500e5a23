// The int8 tile kernels' view of the 16-row tile copy (kernels/weight.h `RepackBlocksBf16`),
// shared by their AVX-512 VNNI (qblocks_tiles.cc) and AVX2 (qblocks_tiles_avx2.cc) forms.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "kernels/qblocks.h"
#include "kernels/weight.h"

namespace dsinfer::qblocks::tiles {

inline constexpr int kLanes = 16;    // rows per tile (kBlockTileRows)
inline constexpr int64_t kKc = 512;  // GEMM: columns per panel (whole super-blocks)

// The weight types: Q8_0 (32-column blocks), Q4_K and Q5_K (256-column super-blocks of 32-column
// blocks with mins), Q6_K, Q3_K (256-column super-blocks of 16-column blocks) and Q2_K (the same,
// with mins), IQ4_NL (kIn: 32-column blocks) and IQ4_XS (kIx: 256-column super-blocks of 32-column
// sub-blocks), whose 4-bit level indices the tile holds as Q4_K's codes. A "block" is one scale's
// columns: 32, or 16 for Q6_K, Q3_K and Q2_K; a "quad" 4 of its columns.
enum Kind : int { kQ8 = 0, kQ4 = 1, kQ6 = 2, kQ5 = 3, kQ2 = 4, kQ3 = 5, kIn = 6, kIx = 7 };
constexpr bool Iq4(int kind) { return kind == kIn || kind == kIx; }
// Whether the tile's codes are 4-bit in Q4_K's layout (and the activations read in its column
// order, QuantizedActs::qk), and where a (super-)block's codes start.
constexpr bool NibbleCodes(int kind) { return kind == kQ4 || Iq4(kind); }
constexpr int64_t NibbleCodesAt(int kind) { return kind == kQ4 ? 320 : kind == kIx ? 160 : 32; }
// Whether the tile holds a min per block and row (Q4_K, Q5_K: mm·sum_b; Q2_K: Σq·(mm·d_b)).
constexpr bool HasMins(int kind) { return kind == kQ4 || kind == kQ5 || kind == kQ2; }
constexpr int BlockCols(int kind) { return kind == kQ6 || kind == kQ2 || kind == kQ3 ? 16 : 32; }
constexpr int Quads(int kind) { return BlockCols(kind) / 4; }  // 4-column vectors per block
constexpr int64_t SuperBlocks(int kind) { return kind == kQ8 || kind == kIn ? 1 : 256 / BlockCols(kind); }
constexpr int64_t SuperBytes(int kind) {
  return kind == kQ8   ? kQ8Bf16BlockBytes
         : kind == kQ4 ? kQ4KBf16BlockBytes
         : kind == kQ5 ? kQ5KBf16BlockBytes
         : kind == kQ2 ? kQ2KTileBlockBytes
         : kind == kQ3 ? kQ3KTileBlockBytes
         : kind == kIn ? kIq4NlTileBlockBytes
         : kind == kIx ? kIq4XsTileBlockBytes
                       : kQ6KBf16BlockBytes;
}
constexpr int ChunkBlocks(int kind) { return static_cast<int>(kKc / BlockCols(kind)); }
// Bytes of one tile (16 rows of `cols` columns).
constexpr int64_t TileBytes(int kind, int64_t cols) {
  return cols / BlockCols(kind) / SuperBlocks(kind) * SuperBytes(kind);
}

// A token's activations as the tile kernels read them: its int8 codes (Q4_K, IQ4_*: in Q4_K's
// column order, QuantizedActs::qk), the steps and sums of its 32-column blocks, where each weight
// block's integer sum starts (`start`: per block, or null for 0) and, for Q2_K, each 16-column
// block's Σq (`sum16`).
template <int kKind>
struct TokenRow {
  const int8_t* q = nullptr;
  const float *d = nullptr, *sum = nullptr, *sum16 = nullptr;
  const int32_t* start = nullptr;
  TokenRow() = default;
  TokenRow(const QuantizedActs& a, int64_t t, const std::vector<int32_t>* starts)
      : q((NibbleCodes(kKind) ? a.qk.data() : a.q.data()) + t * a.cols),
        d(a.d.data() + t * a.blocks),
        sum(a.sum.data() + t * a.blocks),
        sum16(kKind == kQ2 ? a.sum16.data() + t * (a.cols / 16) : nullptr),
        start(starts ? starts->data() + t * (a.cols / BlockCols(kKind)) : nullptr) {}
  int32_t Quad(int64_t b, int i) const {  // quad i's 4 activation bytes of block b
    int32_t v;
    std::memcpy(&v, q + BlockCols(kKind) * b + 4 * i, sizeof v);
    return v;
  }
  float Step(int64_t b) const { return d[b * BlockCols(kKind) / 32]; }
};

// The calling thread's GEMM panel: `vecs` vectors of type Vector, aligned to their size.
template <typename Vector>
Vector* ThreadPanel(int64_t vecs) {
  struct alignas(sizeof(Vector)) Slot {
    std::byte bytes[sizeof(Vector)];
  };
  thread_local std::vector<Slot> storage;
  storage.resize(static_cast<size_t>(vecs));
  return reinterpret_cast<Vector*>(storage.data());
}

}  // namespace dsinfer::qblocks::tiles

namespace dsinfer::qblocks {
// qblocks.h Int8TileRows on AVX2 (qblocks_tiles_avx2.cc), for rows r0..r1 with r0 at a tile's
// start; Int8TileRows checks the arguments.
void Int8TileRowsAvx2(const QuantizedActs& a, int64_t t0, int64_t t1, const WeightView& w,
                      int64_t r0, int64_t r1, float* y, int64_t ys);
}  // namespace dsinfer::qblocks
