// `y = x · Wᵀ` for a batch of activation rows, W in FP8 (block scales applied in-kernel), BF16,
// F16 or F32. The weight matrix is streamed once per call: each output row of W is decoded to
// f32 once and dotted with every activation row, so a batch of tokens costs one pass over the
// weights. Parallel (OpenMP) over output rows. Thread-safe (no shared mutable state).
#pragma once

#include <cstdint>

#include "kernels/weight.h"

namespace dsinfer {

// Multiply-adds below which kernels do not open an OpenMP parallel region: a region costs a
// barrier, and far more than that when the cores are shared with other processes.
inline constexpr int64_t kParallelWork = int64_t{1} << 23;

// x: [n, w.cols] f32, y: [n, w.rows] f32 (row stride `y_stride`, default w.rows).
void Linear(const float* x, int64_t n, const WeightView& w, float* y, int64_t y_stride = -1);

// Σ a[i]·b[i] in f32 with 8 independent partial sums (vectorisable; fixed order).
float Dot(const float* a, const float* b, int64_t n);

}  // namespace dsinfer
