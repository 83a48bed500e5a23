// Weight matrices for the Linear tests: random (or small-integer) values in each weight dtype,
// with their exactly decoded f64 values, plus the f32 error bound γ_d of a d-deep summation.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "format/dtype.h"
#include "kernels/weight.h"
#include "test_util.h"

namespace dsinfer::test {

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

}  // namespace dsinfer::test
