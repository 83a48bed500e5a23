// The per-ISA building blocks of `Linear` / `LinearRows` / `LinearTransposed` (kernels/linear.h):
// small-batch GEMV kernels that stream the weights once, and the three pieces of a packed GEMM —
// decode a weight tile into an f32 panel, and a register-blocked micro-kernel that multiplies
// activation rows by that panel. linear.cc owns the loops over tiles and the threading; these
// functions are single-threaded and allocation-free. One table per instruction set
// (gemm/avx2.cc, gemm/avx512.cc), both generated from gemm/kernels.inc.
//
// FP8 numerics: an e4m3 code becomes an f16 bit pattern ((b & 0x7f) << 7 | (b & 0x80) << 8),
// which `vcvtph2ps` turns into e4m3(b) · 2^-8 exactly (subnormals included; weights never hold
// the NaN codes 0x7f/0xff); the 2^8 is folded into the block scale. Panels hold
// e4m3(b) · scale rounded once, the same f32 value the scalar `DecodeRow` produces.
// Thread-safety: all functions are pure (they write only their output arguments).
#pragma once

#include <cstdint>

#include "kernels/weight.h"

namespace dsinfer::gemm {

// k-block of a panel: one FP8 scale block, so a panel row of `pack_rows` has a single scale.
inline constexpr int kKc = 128;
// Largest panel width (`nr`) of any ISA, for stack buffers: kKc * kMaxNr floats.
inline constexpr int kMaxNr = 32;

struct IsaKernels {
  const char* name;
  int nr;          // panel width: output columns per micro-tile
  int mr;          // activation rows per micro-tile (at most)
  int gemv_max_n;  // `gemv` / `gemv_t` handle n ≤ this

  // y[t*ys + (r - r0)] = x[t*xs + :] · W[r, :] for r ∈ [r0, r1), t < n ≤ gemv_max_n.
  void (*gemv)(const float* x, int64_t xs, int n, const WeightView& w, int64_t r0, int64_t r1,
               float* y, int64_t ys);
  // y[t*ys + c] = Σ_{i < re-rb} x[t*xs + i] · W[rb + i, c] for c ∈ [c0, c1), n ≤ gemv_max_n.
  // c0 must be a multiple of 128 (so each column chunk shares one block scale).
  void (*gemv_t)(const float* x, int64_t xs, int n, const WeightView& w, int64_t rb, int64_t re,
                 int64_t c0, int64_t c1, float* y, int64_t ys);
  // panel[k*nr + j] = W[r0 + j, k0 + k] for k < kc ≤ kKc, j < nv ≤ nr (0 for j ≥ nv).
  // k0 must be a multiple of kKc.
  void (*pack_rows)(const WeightView& w, int64_t r0, int nv, int64_t k0, int kc, float* panel);
  // panel[k*nr + j] = W[i0 + k, c0 + j] for k < kc ≤ kKc, j < nv ≤ nr (0 for j ≥ nv).
  // c0 must be a multiple of nr.
  void (*pack_cols)(const WeightView& w, int64_t i0, int kc, int64_t c0, int nv, float* panel);
  // c[t*cs + j] (= or +=) Σ_{k < kc} a[t*as + k] · panel[k*nr + j] for t < m ≤ mr, j < nv.
  void (*tile)(const float* a, int64_t as, int m, const float* panel, int kc, float* c,
               int64_t cs, int nv, bool accumulate);
};

const IsaKernels& Avx2Kernels();
const IsaKernels& Avx512Kernels();

}  // namespace dsinfer::gemm
