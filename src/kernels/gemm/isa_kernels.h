// The per-ISA building blocks of `Linear` / `LinearRows` / `LinearTransposed` (kernels/linear.h):
// small-batch GEMV kernels that stream the weights once, a row GEMM over one piece of ≤ 128
// weight rows, and the pieces of the transposed GEMM (pre-scale activations, decode a weight
// tile into an f32 panel, a register-blocked micro-kernel). linear.cc owns the loops over
// pieces and the threading; these functions are single-threaded and allocation-free (scratch
// comes from the caller). One table per instruction set (gemm/avx2.cc, gemm/avx512.cc), both
// generated from gemm/kernels.inc.
//
// FP8 numerics: an e4m3 code becomes an f16 bit pattern ((b & 0x7f) << 7 | (b & 0x80) << 8),
// which `vcvtph2ps` turns into w̃ = e4m3(b) · 2^-8 exactly (subnormals included; weights never
// hold the NaN codes 0x7f/0xff). The block scale times 2^8 multiplies the ACTIVATION once
// (x' = x · s'), the same single rounding on every path, and every path of an ISA sums x'·w̃ in
// one fixed order (gemm/kernels.inc), so results are batch invariant bit for bit.
// Thread-safety: all functions are pure (they write only their output and scratch arguments).
#pragma once

#include <cstdint>

#include "kernels/weight.h"

namespace dsinfer::gemm {

// Transposed GEMM: weight rows per panel (panel [kKc][nr]).
inline constexpr int kKc = 128;
// Largest transposed panel width (`nr`) of any ISA, for stack buffers: kKc * kMaxNr floats.
inline constexpr int kMaxNr = 32;
// Row GEMM: columns decoded per panel chunk (a multiple of the 128-column scale block).
inline constexpr int kRowsKc = 512;

struct IsaKernels {
  const char* name;
  int nr;          // transposed panel width: output columns per micro-tile
  int mr;          // activation rows per transposed micro-tile (at most)
  int gemv_max_n;    // `gemv` handles n ≤ this
  int gemv_t_max_n;  // `gemv_t` handles n ≤ this
  int pair;        // columns per step of the pair order (2 vectors); x' rows are padded to it

  // Pre-scaled activations in pair order for weight rows of 128-row block `rblk`:
  // xp[t*xps + :] ← x[t*xs + k0 : k1] for t < n (k0 a multiple of 128), zero-padded to a
  // multiple of `pair`; xps ≥ that padded length.
  void (*prep_x)(const float* x, int64_t xs, int n, const WeightView& w, int64_t rblk, int64_t k0,
                 int64_t k1, float* xp, int64_t xps);
  // y[t*ys + (r - r0)] = x[t] · W[r, :] for r ∈ [r0, r1) inside one 128-row block, t < n ≤
  // gemv_max_n; xp = prep_x of all columns for that block. Weight rows up to pf_end ≥ r1 (the
  // caller's next calls) may be prefetched.
  void (*gemv)(const float* xp, int64_t xps, int n, const WeightView& w, int64_t r0, int64_t r1,
               float* y, int64_t ys, int64_t pf_end);
  // Floats of scratch `gemm_rows` needs for n tokens and w.cols = cols.
  int64_t (*gemm_rows_work)(int64_t n, int64_t cols);
  // y[t*ys + (r - r0)] = x[t*xs + :] · W[r, :] for r ∈ [r0, r1) inside one 128-row block, any n.
  void (*gemm_rows)(const float* x, int64_t xs, int64_t n, const WeightView& w, int64_t r0,
                    int64_t r1, float* y, int64_t ys, float* work);
  // y[t*ys + c] = Σ_{i < re-rb} x[t*xs + i] · W[rb + i, c] for c ∈ [c0, c1), n ≤ gemv_t_max_n.
  // c0 must be a multiple of 128 (so each column chunk shares one block scale).
  void (*gemv_t)(const float* x, int64_t xs, int n, const WeightView& w, int64_t rb, int64_t re,
                 int64_t c0, int64_t c1, float* y, int64_t ys);
  // xp[t*kKc + k] = x[t*xs + i0 + k] · s'(rb + i0 + k, c0) for t < n, k < kc ≤ kKc.
  void (*prep_t)(const float* x, int64_t xs, int64_t n, const WeightView& w, int64_t rb,
                 int64_t i0, int kc, int64_t c0, float* xp);
  // panel[k*nr + j] = w̃[i0 + k, c0 + j] (FP8 unscaled) for k < kc ≤ kKc, j < nv ≤ nr (0 for
  // j ≥ nv). c0 must be a multiple of nr.
  void (*pack_cols)(const WeightView& w, int64_t i0, int kc, int64_t c0, int nv, float* panel);
  // c[t*cs + j] = (accumulate ? c[t*cs + j] : 0) + Σ_{k < kc} a[t*as + k] · panel[k*nr + j], one
  // fma chain in ascending k, for t < m ≤ mr, j < nv.
  void (*tile)(const float* a, int64_t as, int m, const float* panel, int kc, float* c,
               int64_t cs, int nv, bool accumulate);
};

const IsaKernels& Avx2Kernels();
const IsaKernels& Avx512Kernels();

// ---- The bf16-activation row GEMM (`LinearRowsBf16`, kernels/linear.h) ----------------------
// Register tile: kBf16Mr tokens × kBf16TileRows weight rows (4 vectors of 16 rows), each lane
// one output, accumulated by `vdpbf16ps` over column pairs. A piece of ≤ 128 weight rows is
// packed per chunk of kBf16Kc columns into a panel of bf16 pairs: for row group g (64 rows),
// pair p, row j: the 32-bit word (W[j, 2p] | W[j, 2p+1] << 16) at [(g·pairs + p)·64 + j % 64].
inline constexpr int kBf16Mr = 6;
inline constexpr int kBf16TileRows = 64;
inline constexpr int kBf16Kc = 512;  // a multiple of the 128-column scale block
// GEMV (`gemv_rows`): tokens per pass over 16 weight rows (one accumulator vector each), and
// the largest n `LinearRowsBf16` sends to it (above, the GEMM packs panels once for all tokens).
inline constexpr int kBf16GemvMr = 4;
inline constexpr int kBf16GemvMaxN = 4;

struct Bf16Kernels {
  const char* name;
  // xb[t*xbs + c] = bf16(x[t*xs + c]) (round to nearest even, bit for bit `FloatToBF16`) for
  // t ∈ [t0, t1), c < cols, and xb[t*xbs + cols] = 0 when cols is odd (xbs ≥ cols + 1 then).
  void (*round_x)(const float* x, int64_t xs, int64_t t0, int64_t t1, int64_t cols, uint16_t* xb,
                  int64_t xbs);
  int64_t work_words;  // 32-bit words of scratch `gemm_rows` needs
  // y[t*ys + (r - r0)] for r ∈ [r0, r1) inside one 128-row block (r1 - r0 ≤ 128), t < n, from
  // xb = round_x of all columns (docs/numerics.md "bf16 numerics": FP8 block scales multiply
  // each 128-column partial sum). y doubles as the accumulator store between column blocks.
  void (*gemm_rows)(const uint16_t* xb, int64_t xbs, int64_t n, const WeightView& w, int64_t r0,
                    int64_t r1, float* y, int64_t ys, uint32_t* work);
  int gemv_max_n;  // LinearRowsBf16 takes a GEMV for n ≤ this, `gemm_rows` above
  // The same outputs as gemm_rows, bit for bit, for any n, without scratch: 16 weight rows at a
  // time read straight from W and converted to bf16 pairs in registers, kBf16GemvMr tokens per
  // pass (the rows are read once per pass: meant for few tokens). Weight rows before pf_end
  // (an absolute row index ≥ r1: the end of the caller's rows) may be prefetched.
  void (*gemv_rows)(const uint16_t* xb, int64_t xbs, int64_t n, const WeightView& w, int64_t r0,
                    int64_t r1, float* y, int64_t ys, int64_t pf_end);
};

// AVX-512 BF16 (`vdpbf16ps`); callable only when DetectCpu().SupportsBf16Dot().
const Bf16Kernels& Avx512Bf16Kernels();

// ---- The same for Q8_0, Q4_K, Q5_K, Q6_K, IQ4_NL and IQ4_XS weights repacked by RepackBlocksBf16 (gemm/avx512_bf16_blocks.cc;
// numerics: docs/numerics.md "bf16 numerics", block weights) ---------------------------------
// xb as round_x gives it; xsum[t*xss + b] = Σ bf16(x[t, 32b .. 32b+31]) in f32, ascending
// (read for Q4_K and Q5_K only). Rows [r0, r1): r0 a multiple of 16. The GEMV (any n and range; linear.cc
// takes it for n ≤ kBf16GemvMaxN) and the GEMM (a piece of ≤ 128 rows, `work` of
// Bf16BlockWorkWords() words) give the same bits. Callable only when DetectCpu().SupportsBf16Dot().
// GEMM tokens per register tile (× 32 rows): 8 measured best (bench gemm n = 512, w1/w2: 4 and
// 12 slower, 6 -8% for Q4_K, whose min terms push the tile past the 32 registers either way).
inline constexpr int kBf16BlockMr = 8;
int64_t Bf16BlockWorkWords();
void Bf16BlocksGemv(const uint16_t* xb, int64_t xbs, const float* xsum, int64_t xss, int64_t n,
                    const WeightView& w, int64_t r0, int64_t r1, float* y, int64_t ys);
void Bf16BlocksGemm(const uint16_t* xb, int64_t xbs, const float* xsum, int64_t xss, int64_t n,
                    const WeightView& w, int64_t r0, int64_t r1, float* y, int64_t ys,
                    uint32_t* work);

}  // namespace dsinfer::gemm
