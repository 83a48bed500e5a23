// Weight matrices for the Linear tests: random (or small-integer) values in each weight dtype,
// with their exactly decoded f64 values, plus the f32 error bound γ_d of a d-deep summation.
#pragma once

#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <random>
#include <vector>

#include "format/dtype.h"
#include "kernels/weight.h"
#include "test_util.h"

namespace dsinfer::test {

// Written into the padding of y by the linear tests: must survive every call.
inline constexpr float kSentinel = -12345.0f;

// γ_d = d·u / (1 − d·u): any f32 evaluation of a sum of products whose every term passes
// through at most d roundings differs from the exact sum by at most γ_d · Σ|x·w| (Higham 3.1).
inline double Gamma(int64_t d) { return d * kU / (1.0 - d * kU); }

struct Matrix {
  WeightView view;
  std::vector<uint8_t> bytes;
  std::vector<float> scales;  // FP8: [ceil(rows/128), ceil(cols/128)]
  std::vector<double> exact;  // [rows, cols] decoded values in f64

  double At(int64_t r, int64_t c) const { return exact[r * view.cols + c]; }
};

// FP8 draws every finite e4m3 code (subnormals included; the NaN codes 0x7f/0xff never occur
// in weights) with arbitrary positive block scales. `integers`: values are small integers and
// FP8 scales powers of two, so every partial sum of a product with integer activations is
// exact in f32 whatever the summation order.
inline Matrix MakeMatrix(DType dtype, int64_t rows, int64_t cols, uint32_t seed,
                         bool integers = false) {
  Matrix m;
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.5f);
  std::uniform_int_distribution<int> small(-15, 15), code(0, 253);
  m.exact.resize(rows * cols);
  m.bytes.resize(rows * cols * DTypeSize(dtype));
  const int64_t sr = (rows + 127) / 128, sc = (cols + 127) / 128;
  if (dtype == DType::kF8E4M3) {
    for (int64_t i = 0; i < sr * sc; ++i)
      m.scales.push_back(integers ? std::ldexp(1.0f, static_cast<int>(rng() % 3) - 1)
                                  : 1e-3f + std::fabs(normal(rng)) * 0.02f);
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t i = r * cols + c;
      const float v = integers ? static_cast<float>(small(rng)) : normal(rng);
      if (dtype == DType::kF8E4M3) {
        int q = code(rng);
        if (q >= 0x7f) ++q;  // skip the NaN code 0x7f (0xff is out of range)
        m.bytes[i] = integers ? FloatToE4M3(v) : static_cast<uint8_t>(q);
        m.exact[i] = static_cast<double>(E4M3ToFloat(m.bytes[i])) * m.scales[(r / 128) * sc + c / 128];
      } else if (dtype == DType::kBF16 || dtype == DType::kF16) {
        const uint16_t b = dtype == DType::kBF16 ? FloatToBF16(v) : FloatToF16(v);
        std::memcpy(&m.bytes[2 * i], &b, 2);
        m.exact[i] = dtype == DType::kBF16 ? BF16ToFloat(b) : F16ToFloat(b);
      } else {
        std::memcpy(&m.bytes[4 * i], &v, 4);
        m.exact[i] = v;
      }
    }
  m.view = WeightView{.dtype = dtype, .rows = rows, .cols = cols, .data = m.bytes.data(),
                      .scales = m.scales.empty() ? nullptr : m.scales.data()};
  return m;
}

// Small integers in [-3, 3] (exact products and sums with `MakeMatrix(..., integers=true)`).
inline std::vector<float> IntegerVector(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(static_cast<int>(rng() % 7) - 3);
  return v;
}

// Batch and thread invariance of a product: `run(xp, n, y)` multiplies n activation rows from xp
// (row stride of the caller's choice) into y (row stride ys, `width` outputs per row). Every
// token's row alone is the reference; batches of each n in `ns` taken from `total` rows at an
// offset, with 1 and 2 threads, must give every row bit for bit. Call with ASSERT_NO_FATAL_FAILURE.
template <class Run>
void ExpectBatchAndThreadInvariant(const Run& run, const std::vector<float>& x, int64_t xs,
                                   int64_t ys, int64_t width, int64_t total,
                                   std::initializer_list<int64_t> ns) {
  std::vector<float> alone(total * ys, -12345.0f);
  for (int64_t t = 0; t < total; ++t) run(x.data() + t * xs, 1, alone.data() + t * ys);
  const int saved = omp_get_max_threads();
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    for (int64_t n : ns) {
      const int64_t off = (n * 37) % (total - n + 1);
      std::vector<float> y(n * ys, -12345.0f);
      run(x.data() + off * xs, n, y.data());
      for (int64_t t = 0; t < n; ++t)
        ASSERT_EQ(std::memcmp(&y[t * ys], &alone[(off + t) * ys], width * sizeof(float)), 0)
            << "threads=" << threads << " n=" << n << " row " << off + t;
    }
  }
  omp_set_num_threads(saved);
}

}  // namespace dsinfer::test
