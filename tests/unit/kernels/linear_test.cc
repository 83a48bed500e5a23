// `Linear` (y = x · Wᵀ on the implementation DetectCpu() picks) for FP8 block-scaled, BF16, F16
// and F32 weights against f64 sums of the exactly decoded weights. Tolerance: whichever path
// runs, every term meets at most K + 4 f32 roundings (linear_isa_test.cc), so
// |y − exact| ≤ γ_{K+4} Σ|x·w|.
#include "kernels/linear.h"

#include <gtest/gtest.h>

#include "linear_test_util.h"

namespace dsinfer {
namespace {

class LinearTest : public ::testing::TestWithParam<DType> {};

TEST_P(LinearTest, MatchesF64) {
  const int64_t rows = 300, cols = 259;  // odd sizes: partial 128-blocks both ways
  const test::Matrix m = test::MakeMatrix(GetParam(), rows, cols, 7);
  for (int64_t n : {1, 5, 40}) {  // GEMV and GEMM paths
    std::vector<float> x = test::RandomVector(n * cols, 11);
    std::vector<float> y(n * rows);
    Linear(x.data(), n, m.view, y.data());
    for (int64_t t = 0; t < n; ++t)
      for (int64_t r = 0; r < rows; ++r) {
        double exact = 0, mag = 0;
        for (int64_t c = 0; c < cols; ++c) {
          exact += x[t * cols + c] * m.At(r, c);
          mag += std::fabs(x[t * cols + c] * m.At(r, c));
        }
        ASSERT_NEAR(y[t * rows + r], exact, test::Gamma(cols + 4) * mag) << n << ":" << t << "," << r;
      }
  }
}

INSTANTIATE_TEST_SUITE_P(AllDtypes, LinearTest,
                         ::testing::Values(DType::kF8E4M3, DType::kBF16, DType::kF16,
                                           DType::kF32));

TEST(LinearTest, OutputStride) {
  const test::Matrix m = test::MakeMatrix(DType::kF32, 3, 4, 1);
  std::vector<float> x = test::RandomVector(2 * 4, 2);
  std::vector<float> y(2 * 5, -7.0f);
  Linear(x.data(), 2, m.view, y.data(), /*y_stride=*/5);
  EXPECT_EQ(y[3], -7.0f);
  EXPECT_EQ(y[4], -7.0f);
  double e = 0;
  for (int c = 0; c < 4; ++c) e += x[4 + c] * m.At(2, c);
  EXPECT_NEAR(y[5 + 2], e, 1e-5);
}

}  // namespace
}  // namespace dsinfer
