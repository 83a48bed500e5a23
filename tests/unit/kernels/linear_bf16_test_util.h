// What the bf16-activation product's tests share (linear_bf16_test.cc: FP8/BF16 weights,
// linear_bf16_blocks_test.cc: ggml block weights): an independent bf16 rounding and the
// implementations under test.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/cpu.h"
#include "kernels/linear.h"
#include "kernels/linear_bf16.h"
#include "kernels/weight.h"

namespace dsinfer::test {

// bf16 rounding of a normal (or zero) f32, computed in f64: 8 significant bits, ties to even
// (nearbyint in the default rounding mode).
inline double RoundBf16(float v) {
  if (v == 0.0f) return v;
  int e = 0;
  std::frexp(static_cast<double>(v), &e);  // v = m · 2^e, 0.5 ≤ |m| < 1
  const double quantum = std::ldexp(1.0, e - 8);
  return std::nearbyint(v / quantum) * quantum;
}

// An implementation under test: the scalar specification, or the AVX512-BF16 path on `kernel`
// (kAuto: `LinearRowsBf16` itself, the GEMV for n ≤ Bf16GemvMaxN() and the GEMM above).
struct Impl {
  bool scalar;
  Bf16Kernel kernel;

  std::string Name() const {
    return scalar ? "scalar" : std::string("avx512bf16-") + Bf16KernelName(kernel);
  }
  void Run(const float* x, int64_t xs, int64_t n, const WeightView& w, int64_t rb, int64_t re,
           float* y, int64_t ys) const {
    if (scalar) return LinearRowsBf16(Bf16Path::kScalar, x, xs, n, w, rb, re, y, ys);
    if (kernel == Bf16Kernel::kAuto)
      return LinearRowsBf16(Bf16Path::kAvx512Bf16, x, xs, n, w, rb, re, y, ys);
    LinearRowsBf16Kernel(kernel, x, xs, n, w, rb, re, y, ys);
  }
};

// The scalar specification first, then (on AVX512-BF16) the fast path: auto, GEMV, GEMM.
inline std::vector<Impl> Impls() {
  std::vector<Impl> impls{{true, Bf16Kernel::kAuto}};
  if (DetectCpu().SupportsBf16Dot())
    for (Bf16Kernel k : {Bf16Kernel::kAuto, Bf16Kernel::kGemv, Bf16Kernel::kGemm})
      impls.push_back({false, k});
  return impls;
}

}  // namespace dsinfer::test
