// Kernels on ggml block weights (Q8_0, Q2_K-Q6_K, IQ4_NL, IQ4_XS; layouts in
// format/ggml_types.h) as they sit in a GGUF file: never copied whole, decoded or multiplied
// block by block.
// `Linear` (kernels/linear.h) uses them for WeightViews of a block dtype; tests and benchmarks
// call them directly.
//
// Two ways to multiply (WeightView::int8_activations chooses; docs/numerics.md):
//  * f32 (default, every block type): rows are decoded exactly — bit for bit the values
//    `DequantizeRow` gives — a few rows at a time into a per-thread f32 buffer, and the f32
//    kernels of linear.h multiply them. Results are therefore bitwise those of an F32 copy of
//    the dequantised weights on the same ISA (and batch invariant like them).
//  * int8 activations (every block type): each 32-element block of an activation row is
//    quantised to int8 with its own f32 step (QuantizeActs), integer dot products per block
//    (AVX-512 VNNI `vpdpbusd` when the CPU has it, else AVX2 `vpmaddubsw`, else the scalar
//    specification), scaled and summed in f32. Per token the operations do not depend on the batch,
//    so it is batch invariant too.
// Thread-safety: pure functions writing only their outputs.
#pragma once

#include <cstdint>
#include <type_traits>
#include <vector>

#include "kernels/cpu.h"
#include "kernels/weight.h"

namespace dsinfer::qblocks {

// Rows [r0, r1) of block weight `w` decoded to f32 `out` [(r1 - r0), w.cols], bit for bit as
// DequantizeRow; vector decoders for AVX-512 (every block type) and AVX2 (Q8_0, Q4_K), the
// scalar DequantizeRow otherwise (`isa` must be supported by the CPU).
void DecodeRows(Isa isa, const WeightView& w, int64_t r0, int64_t r1, float* out);

// Decode GEMV fused with the decoding (AVX-512, 1 ≤ n ≤ 8, every block type): each 32-column
// step of a row is decoded in registers and multiplied in the AVX-512 F32 GEMV's order, so
// y[t*ys + (r - r0)] is bitwise what the F32 kernels give on the decoded rows — without the f32
// buffer. xp: the activations as IsaKernels::prep_x prepares them for an F32 weight (rows of
// w.cols, stride xps). Returns false, doing nothing, for another ISA or n.
bool FusedGemv(Isa isa, const float* xp, int64_t xps, int n, const WeightView& w, int64_t r0,
               int64_t r1, float* y, int64_t ys);

// f(std::integral_constant<int, min(m, M)>{}) for m ≥ 1: the kernels' register accumulators
// for up to M tokens, chosen at compile time from the m left.
template <int M, class F>
void UpTo(int m, F&& f) {
  if constexpr (M > 1) {
    if (m < M) return UpTo<M - 1>(m, f);
  }
  f(std::integral_constant<int, M>{});
}

// ---- int8 activations -----------------------------------------------------------------------
inline constexpr int64_t kActBlock = 32;  // activation elements per int8 block

// Activations quantised per 32-element block, for n rows of `cols` (a multiple of 32):
// amax = max|x| over the block; step d = amax / 127 (f32); q = round-half-even(x · (127 / amax))
// (the f32 product; |q| ≤ 127); sum = d · Σq (f32). A block of zeros has d = 0, q = 0; a block
// holding Inf or NaN has d = NaN (the products it enters become NaN, as in f32).
struct QuantizedActs {
  int64_t n = 0, cols = 0, blocks = 0;  // blocks = cols / 32 per row
  std::vector<int8_t> q;                // [n, cols]
  std::vector<float> d, sum;            // [n, blocks]
  // For the tile kernels (PrepareTileActRows): [n, blocks] −128·Σq per block (Q8_0's and IQ4_*'s
  // start on VNNI only), and
  // [n, cols] q with each 8 columns as 0, 4, 1, 5, 2, 6, 3, 7 (Q4_K's and IQ4_*'s column order;
  // else empty).
  std::vector<int32_t> bias;
  std::vector<int8_t> qk;
  std::vector<int32_t> bias16;  // [n, cols / 16]: −c·Σq per 16 columns (Q6_K's start, c = 32;
                                //   Q3_K's, c = 4)
  std::vector<float> ds;                // [n, blocks, 2]: (d, sum) pairs (the Q4_K VNNI kernel)
  std::vector<float> sum16;  // [n, cols / 16]: Σq per 16 columns as f32, exact (Q2_K's mins)
};
// The specification (scalar).
void QuantizeActs(const float* x, int64_t xs, int64_t n, int64_t cols, QuantizedActs& out);
// The same bits on `isa` (AVX-512: vector blocks; a block holding 0, Inf or NaN as the
// specification; another isa: the specification).
void QuantizeActs(Isa isa, const float* x, int64_t xs, int64_t n, int64_t cols, QuantizedActs& out);
// QuantizeActs in two steps, for threads: SizeActs sizes `out` for n rows of `cols` (on one
// thread), then QuantizeActRows quantises tokens [t0, t1) — disjoint ranges from any threads
// write disjoint bytes. The same bits as QuantizeActs.
void SizeActs(int64_t n, int64_t cols, QuantizedActs& out);
void QuantizeActRows(Isa isa, const float* x, int64_t xs, int64_t t0, int64_t t1,
                     QuantizedActs& out);

// Whether the int8-activation path handles `t` (Q8_0, Q2_K-Q6_K, IQ4_NL and IQ4_XS).
bool Int8Dtype(DType t);
// Whether `isa` runs the int8 products with VNNI (AVX-512 with avx512_vnni), or with AVX2
// (vpmaddubsw: an AVX-512 CPU without VNNI, or isa = kAvx2); else (kScalar) the scalar
// specification runs.
bool Int8UsesVnni(Isa isa);
bool Int8UsesAvx2(Isa isa);

// What Int8Rows reads besides QuantizeActs' fields: Q2_K's group sums (`sum16`) on VNNI and AVX2
// (so that its mins cost one product per super-block and token, not one per 16 columns and row).
// In two steps, as SizeActs / QuantizeActRows: SizeInt8RowActs on one thread, then
// PrepareInt8RowActs for disjoint token ranges, each after its tokens are quantised.
void SizeInt8RowActs(Isa isa, DType dtype, QuantizedActs& a);
void PrepareInt8RowActs(Isa isa, DType dtype, QuantizedActs& a, int64_t t0, int64_t t1);

// y[(t - t0)*ys + (r - r0)] = row r of w · activation row t, for r ∈ [r0, r1), t ∈ [t0, t1),
// with activations `a` (a.cols = w.cols). The specification (scalar): per row, over blocks in
// order, acc += f32(Σ_i qw_i·q_i) · s_b, with s_b = d_w·d (Q8_0), (d·sc_j)·d (Q4_K/Q5_K, then
// acc −= (dmin·m_j) · sum of the block) or, per 16-element sub-block, (d·sc_i)·d with
// qw = u − 32 (Q6_K), or per 16-element group (d·sc_i)·d with acc −= (dmin·m_i)·d·Σ q_i
// (Q2_K) or qw = u − 4 (Q3_K),
// or per 32-element block with qw = the index's level, s_b = d·d_x (IQ4_NL) or
// (d·(ls_j − 32))·d_x (IQ4_XS); every product and sum rounded to f32. The VNNI and
// AVX2 paths sum the same scaled integer partials in other orders (within γ_K·Σ|terms|), with
// a fixed order per token (batch invariant). `a` must come from QuantizeActs (either form),
// and for Q2_K on VNNI or AVX2 have its group sums (SizeInt8RowActs, PrepareInt8RowActs).
void Int8Rows(Isa isa, const QuantizedActs& a, int64_t t0, int64_t t1, const WeightView& w,
              int64_t r0, int64_t r1, float* y, int64_t ys);

// Q8_0, Q4_K, Q5_K, Q6_K, Q2_K, Q3_K, IQ4_NL and IQ4_XS weights (every block type) in the 16-row
// tile form (kernels/weight.h `RepackBlocksBf16`, bf16_pairs) on AVX-512 VNNI (qblocks_tiles.cc) or AVX2 (qblocks_tiles_avx2.cc): Int8Rows' results for those rows, bit for bit
// the scalar specification's — per row, block after block in order, acc = acc + f32(Σ qw·q)·(s·d)
// with the integer sum exact (Q4_K, Q5_K: then acc − mm·sum; Q2_K: acc − f32(Σq)·(mm·d)) — for any n (a GEMV up to
// kInt8TileGemvMaxN tokens, else a GEMM: the same bits). Int8TilesRun: whether `w` runs there on
// `isa`. SizeTileActs / PrepareTileActRows: what the tile kernels of `dtype` read besides
// QuantizeActs' fields (`bias`, `qk`, `bias16`, `sum16`), once per call before Int8TileRows.
inline constexpr int64_t kInt8TileGemvMaxN = 8;
bool Int8TilesRun(const WeightView& w, Isa isa);
// Whether `isa` has tile kernels (AVX-512 VNNI, or AVX2: qblocks_tiles_avx2.cc, the same bits).
bool Int8TilesOn(Isa isa);
inline bool Int8TileDtype(DType t) {
  return t == DType::kQ8_0 || t == DType::kQ4_K || t == DType::kQ5_K || t == DType::kQ6_K ||
         t == DType::kQ2_K || t == DType::kQ3_K || t == DType::kIQ4_NL || t == DType::kIQ4_XS;
}
// In two steps, for threads (as SizeActs/QuantizeActRows): SizeTileActs on one thread, then
// PrepareTileActRows for disjoint token ranges, each after its tokens are quantised. `isa`: the
// one Int8TileRows will run (Q8_0's and IQ4_*'s `bias` only for VNNI; the vector code on VNNI,
// else scalar).
void SizeTileActs(Isa isa, DType dtype, QuantizedActs& a);
void PrepareTileActRows(Isa isa, DType dtype, QuantizedActs& a, int64_t t0, int64_t t1);
void Int8TileRows(Isa isa, const QuantizedActs& a, int64_t t0, int64_t t1, const WeightView& w,
                  int64_t r0, int64_t r1, float* y, int64_t ys);

}  // namespace dsinfer::qblocks
