// Linear (y = x · Wᵀ) for FP8 block-scaled, BF16, F16 and F32 weights against f64 sums of the
// exactly decoded weights. Tolerance: recursive f32 summation of n products is bounded by
// γ_{n+1} Σ|x·w| with γ_k ≈ k·u (the +1 covers rounding of e4m3·scale).
#include "kernels/linear.h"

#include <gtest/gtest.h>

#include <cstring>

#include "format/dtype.h"
#include "test_util.h"

namespace dsinfer {
namespace {

struct Matrix {
  WeightView view;
  std::vector<uint8_t> bytes;
  std::vector<float> scales;
  std::vector<double> exact;  // [rows, cols] the decoded values in f64
};

Matrix MakeMatrix(DType dtype, int64_t rows, int64_t cols, uint32_t seed) {
  Matrix m;
  std::vector<float> v = test::RandomVector(rows * cols, seed, 0.5f);
  m.exact.resize(rows * cols);
  m.bytes.resize(rows * cols * DTypeSize(dtype));
  const int64_t sr = (rows + 127) / 128, sc = (cols + 127) / 128;
  if (dtype == DType::kF8E4M3) {
    std::vector<float> sv = test::RandomVector(sr * sc, seed + 1, 0.01f);
    for (float s : sv) m.scales.push_back(std::fabs(s) + 1e-3f);  // arbitrary, not powers of 2
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t i = r * cols + c;
      if (dtype == DType::kF8E4M3) {
        const uint8_t q = FloatToE4M3(v[i] * 200);
        m.bytes[i] = q;
        m.exact[i] = static_cast<double>(E4M3ToFloat(q)) * m.scales[(r / 128) * sc + c / 128];
      } else if (dtype == DType::kBF16 || dtype == DType::kF16) {
        const uint16_t b = dtype == DType::kBF16 ? FloatToBF16(v[i]) : FloatToF16(v[i]);
        std::memcpy(&m.bytes[2 * i], &b, 2);
        m.exact[i] = dtype == DType::kBF16 ? BF16ToFloat(b) : F16ToFloat(b);
      } else {
        std::memcpy(&m.bytes[4 * i], &v[i], 4);
        m.exact[i] = v[i];
      }
    }
  m.view = WeightView{.dtype = dtype, .rows = rows, .cols = cols, .data = m.bytes.data(),
                      .scales = m.scales.empty() ? nullptr : m.scales.data()};
  return m;
}

class LinearTest : public ::testing::TestWithParam<DType> {};

TEST_P(LinearTest, MatchesF64) {
  const int64_t rows = 300, cols = 259, n = 5;  // odd sizes: partial 128-blocks both ways
  Matrix m = MakeMatrix(GetParam(), rows, cols, 7);
  std::vector<float> x = test::RandomVector(n * cols, 11);
  std::vector<float> y(n * rows);
  Linear(x.data(), n, m.view, y.data());
  for (int64_t t = 0; t < n; ++t)
    for (int64_t r = 0; r < rows; ++r) {
      double exact = 0, mag = 0;
      for (int64_t c = 0; c < cols; ++c) {
        exact += x[t * cols + c] * m.exact[r * cols + c];
        mag += std::fabs(x[t * cols + c] * m.exact[r * cols + c]);
      }
      ASSERT_NEAR(y[t * rows + r], exact, (cols + 2) * test::kU * mag) << t << "," << r;
    }
}

INSTANTIATE_TEST_SUITE_P(AllDtypes, LinearTest,
                         ::testing::Values(DType::kF8E4M3, DType::kBF16, DType::kF16,
                                           DType::kF32));

TEST(LinearTest, OutputStride) {
  Matrix m = MakeMatrix(DType::kF32, 3, 4, 1);
  std::vector<float> x = test::RandomVector(2 * 4, 2);
  std::vector<float> y(2 * 5, -7.0f);
  Linear(x.data(), 2, m.view, y.data(), /*y_stride=*/5);
  EXPECT_EQ(y[3], -7.0f);
  EXPECT_EQ(y[4], -7.0f);
  double e = 0;
  for (int c = 0; c < 4; ++c) e += x[4 + c] * m.exact[2 * 4 + c];
  EXPECT_NEAR(y[5 + 2], e, 1e-5);
}

}  // namespace
}  // namespace dsinfer
