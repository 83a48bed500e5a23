// `y = x · Wᵀ` and its relatives for a batch of activation rows, W in FP8 e4m3 (128×128 block
// scales applied in-kernel, so weights stay FP8 in memory), BF16, F16, F32 or a ggml block type
// (Q8_0, Q2_K-Q6_K as a GGUF file stores them; kernels/qblocks.h: decoded a few rows at
// a time into f32 for the f32 kernels below — bitwise an F32 copy's results — or, with
// WeightView::int8_activations, integer products on int8-quantised activations). Block weights
// have no transposed vector path (LinearTransposed runs the scalar specification for them).
//
// Implementations, chosen at run time (kernels/cpu.h): AVX-512 → AVX2+FMA+F16C → scalar. The
// scalar code is the specification (`Isa::kScalar` overloads); the vector paths (gemm/) are
// tested against it on every ISA the machine supports.
//   * n ≤ 4 activation rows (decode): a GEMV that streams each weight row once for all rows of x,
//     several weight rows per pass so every activation load is reused (memory-bound).
//   * n > 4 (prefill, batched decode): a GEMM — each ≤128-row × 512-column weight tile is
//     decoded once to f32 and multiplied into 6 activation rows at a time by a register tile of
//     k-lane accumulators (compute-bound, f32 FMA).
// Numerics: f32 products and f32 accumulation everywhere (docs/numerics.md §1: activations are
// never rounded). BATCH INVARIANT: on one ISA every vector path computes an output with the same
// f32 operations in the same order (FP8 scale folded into the activation, fixed k-lane order),
// so y[t, :] is bitwise independent of n, of t's position and of the thread count (continuous
// batching relies on it). Across ISAs and vs the scalar specification results differ within
// γ_{K+4}·Σ|x·w| of the exact sum (K = the reduced length); see docs/kernels.md "Linear".
//
// Threading: one OpenMP region over output rows (or columns) when the product is large enough
// (`kParallelWork`; the memory-bound decode GEMV: 256 KiB of weights) and the caller is not already
// inside a parallel region — then it runs on the calling thread only, so callers may parallelise
// over heads themselves. The vector paths use a thread-local scratch that grows, never shrinks.
// Thread-safe: no shared mutable state.
#pragma once

#include <cstdint>
#include <string>

#include "kernels/cpu.h"
#include "kernels/weight.h"

namespace dsinfer {

// Multiply-adds below which kernels do not open an OpenMP parallel region: a region costs a
// barrier, and far more than that when the cores are shared with other processes.
inline constexpr int64_t kParallelWork = int64_t{1} << 23;
// Weight bytes from which a GEMV opens a parallel region: a read that long is memory-bound, and
// two cores read it about twice as fast.
inline constexpr int64_t kParallelGemvBytes = int64_t{1} << 18;

// x: [n, w.cols] f32, y: [n, w.rows] f32 (row stride `y_stride`, default w.rows).
void Linear(const float* x, int64_t n, const WeightView& w, float* y, int64_t y_stride = -1);

// Rows [row_begin, row_end) of W with strided activations (e.g. one head of `wkv_b`):
// y[t*y_stride + (r - row_begin)] = Σ_c x[t*x_stride + c] · W[r, c].
// x: [n, x_stride ≥ w.cols], y: [n, y_stride ≥ row_end - row_begin]. FP8 block scales are
// indexed by the absolute row (r / 128); row_begin need not be a multiple of 128.
void LinearRows(const float* x, int64_t x_stride, int64_t n, const WeightView& w, int64_t row_begin,
                int64_t row_end, float* y, int64_t y_stride);

// The transposed product over a row range (e.g. `W_UKᵀ q` of one head of `wkv_b`):
// y[t*y_stride + c] = Σ_{i < row_end-row_begin} x[t*x_stride + i] · W[row_begin + i, c].
// x: [n, x_stride ≥ row_end - row_begin], y: [n, y_stride ≥ w.cols] (overwritten).
void LinearTransposed(const float* x, int64_t x_stride, int64_t n, const WeightView& w,
                      int64_t row_begin, int64_t row_end, float* y, int64_t y_stride);

// The same on an explicit implementation (tests, benchmarks). `Isa::kScalar` is the
// specification; a vector ISA requires DetectCpu().Supports(isa).
void LinearRows(Isa isa, const float* x, int64_t x_stride, int64_t n, const WeightView& w,
                int64_t row_begin, int64_t row_end, float* y, int64_t y_stride);
void LinearTransposed(Isa isa, const float* x, int64_t x_stride, int64_t n, const WeightView& w,
                      int64_t row_begin, int64_t row_end, float* y, int64_t y_stride);

// The implementation `Linear` uses: DetectCpu().best (DSINFER_ISA caps it).
Isa LinearIsa();

// ---- bf16-activation numerics (docs/numerics.md "bf16 numerics", issue #17) -----------------
// A kernel of DeepSeek's production numerics, used by the model in `Numerics::kBf16` (below):
//   FP8 weights:  y[t, r] = Σ_b s[r/128, b] · ( Σ_{c ∈ block b} bf16(x[t, c]) · e4m3(q[r, c]) )
//   BF16 weights: y[t, r] = Σ_c bf16(x[t, c]) · W[r, c]
//   Q8_0 / Q4_K / Q5_K / Q6_K / IQ4_NL / IQ4_XS: per scale block b (32 columns; Q6_K 16),
//                 partial_b = Σ_{c ∈ b} bf16(x[t, c]) · q[r, c] (the integer codes; Q6_K u − 32;
//                 IQ4 the levels of the indices), total = fma(partial_b, s_b, total) from 0, and
//                 for Q4_K/Q5_K then total = fma(−mm_b, xsum_b, total); s_b = d (Q8_0, IQ4_NL),
//                 d·sc_j (Q4_K, Q5_K), d·sc_i (Q6_K) or d·(ls_j − 32) (IQ4_XS), mm_b = dmin·m_j,
//                 xsum_b = Σ_{c ∈ b} bf16(x[t, c]) (ascending); the AVX512-BF16 path takes them
//                 repacked only (RepackBlocksBf16), the scalar one as stored.
// bf16() rounds to nearest even (`FloatToBF16`); every e4m3 and bf16 weight is a bf16 value, so
// each product is exact in f32. Sums are f32: per 128-column block one chain (FP8), folded
// into the total as total = partial_0 · s_0, then fma(partial_b, s_b, total); BF16 weights one
// chain over all columns. F16/F32 weights (not exact in bf16) and Q2_K/Q3_K are rejected.
// Paths: `kAvx512Bf16` (`vdpbf16ps`, gemm/avx512_bf16.cc: a GEMV for n ≤ 4, a row GEMM above,
// bitwise equal: kernels/linear_bf16.h) and the scalar specification `kScalar` (the fallback
// without AVX512-BF16). Between them results differ by f32 summation order only (within
// 2·γ_d·Σ|terms|, docs/numerics.md). The fast path is batch invariant. Threading: `LinearRows`.
enum class Bf16Path { kScalar, kAvx512Bf16 };
const char* Bf16PathName(Bf16Path path);
// The path `LinearBf16` uses: kAvx512Bf16 when DetectCpu().Bf16DotUsable(), else kScalar.
Bf16Path LinearBf16Path();
// x: [n, x_stride ≥ w.cols], y: [n, y_stride ≥ row_end - row_begin] (rows of W as `LinearRows`).
// kAvx512Bf16 requires DetectCpu().SupportsBf16Dot().
void LinearRowsBf16(Bf16Path path, const float* x, int64_t x_stride, int64_t n, const WeightView& w,
                    int64_t row_begin, int64_t row_end, float* y, int64_t y_stride);
// x: [n, w.cols], y: [n, w.rows], on LinearBf16Path(); on the AVX512-BF16 path a weight's
// repacked copy (WeightView::repacked) when it has one: the same bits, no transposes.
void LinearBf16(const float* x, int64_t n, const WeightView& w, float* y);

// ---- The model's numerics mode (docs/numerics.md "bf16 numerics", issue #17) ------------------
// kF32: the reference numerics (f32 activations, `Linear`). kBf16: DeepSeek's production
// numerics at the model's activation-side GEMMs (`LinearBf16`: activations rounded to bf16).
enum class Numerics : uint8_t { kF32, kBf16 };
// "f32" | "bf16" | "auto" (bf16 on a CPU whose AVX512-BF16 path is usable, else f32); throws
// Error naming `what` otherwise.
Numerics ParseNumerics(const std::string& name, const std::string& what);
const char* NumericsName(Numerics numerics);

// y = x·Wᵀ (x: [n, w.cols], y: [n, w.rows]) in `numerics`: kBf16 with FP8 e4m3 or BF16 weights,
// or Q8_0/Q4_K/Q5_K/Q6_K/IQ4_* weights that carry a repacked copy (--block-acts bf16), is `LinearBf16`;
// every other case (kF32, F16/F32 weights, which are not bf16 numbers, other block weights) is
// `Linear`. The choice depends on the weight only, never on n, so both stay batch invariant.
void Linear(Numerics numerics, const float* x, int64_t n, const WeightView& w, float* y);

// Σ a[i]·b[i] in f32 with 8 independent partial sums (vectorisable; fixed order).
float Dot(const float* a, const float* b, int64_t n);

}  // namespace dsinfer
