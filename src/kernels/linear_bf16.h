// The two kernels behind `LinearRowsBf16`'s AVX512-BF16 path (kernels/linear.h,
// docs/numerics.md "bf16 numerics"), for tests and benchmarks that pick one explicitly:
//   * GEMV (gemm/avx512_bf16.cc `GemvRows`): 16 weight rows at a time read straight from W,
//     converted to bf16 pairs in registers and transposed there into the GEMM panel's layout;
//     4 tokens per pass over the rows. What decode runs (n ≤ Bf16GemvMaxN()).
//   * GEMM (`GemmRows`): each ≤ 128-row × 512-column weight tile packed once into a panel of
//     bf16 pairs, then 6 tokens × 64 rows per register tile. What prefill runs.
// Both compute every output with the same operations in the same order (the same products,
// the same vdpbf16ps chain per 128-column block, the same block-scale folds), so for any n their
// results are BITWISE equal: the choice between them is speed only, and batch and chunk
// invariance hold across it. Thread-safety as `LinearRowsBf16`.
#pragma once

#include <cstdint>

#include "kernels/weight.h"

namespace dsinfer {

enum class Bf16Kernel { kAuto, kGemv, kGemm };
const char* Bf16KernelName(Bf16Kernel kernel);  // "auto" | "gemv" | "gemm"

// LinearRowsBf16(Bf16Path::kAvx512Bf16, ...) on `kernel` (kAuto: the GEMV for n ≤
// Bf16GemvMaxN(), the GEMM above — exactly what LinearRowsBf16 does). Requires
// DetectCpu().SupportsBf16Dot(); arguments as LinearRowsBf16.
void LinearRowsBf16Kernel(Bf16Kernel kernel, const float* x, int64_t x_stride, int64_t n,
                          const WeightView& w, int64_t row_begin, int64_t row_end, float* y,
                          int64_t y_stride);

// The largest n for which kAuto takes the GEMV.
int64_t Bf16GemvMaxN();

}  // namespace dsinfer
