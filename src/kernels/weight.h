// A matrix of weights as the kernels see it: a dtype, a shape and raw bytes (typically inside
// an mmapped safetensors shard), plus the 128×128 block scales of FP8 weights. Kernels never
// know tensor names; the model builds these views. Cheap to copy; read-only.
#pragma once

#include <cstdint>

#include "format/dtype.h"

namespace dsinfer {

struct WeightView {
  DType dtype = DType::kF32;     // kF8E4M3, kBF16, kF16 or kF32
  int64_t rows = 0;              // out features
  int64_t cols = 0;              // in features
  const void* data = nullptr;    // [rows, cols] row-major
  const float* scales = nullptr; // FP8 only: [ceil(rows/128), ceil(cols/128)] (weight_scale_inv)

  int64_t scale_cols() const { return (cols + 127) / 128; }
};

// e4m3fn code → f32 through a 256-entry table (built once from `E4M3ToFloat`).
const float* E4M3Table();

// Row `row` of `w` as f32 `out[cols]`: FP8 rows are `e4m3(q) * scale[row/128, col/128]`
// (MODEL.md §6.1), BF16/F16 exact, F32 copied.
void DecodeRow(const WeightView& w, int64_t row, float* out);

}  // namespace dsinfer
