// Hadamard against the explicit Sylvester matrix in f64; act_quant against its definition
// (docs/model.md §6.2): power-of-two scales, the smallest with amax/s ≤ 448, and e4m3 rounding
// error ≤ 2^-4 relative (3 mantissa bits, round to nearest) above the subnormal range.
#include "kernels/quant.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>

#include "format/dtype.h"
#include "test_util.h"

namespace dsinfer {
namespace {

TEST(QuantTest, HadamardMatchesMatrix) {
  for (int64_t n : {1, 2, 64, 128}) {
    std::vector<float> x = test::RandomVector(n, 5), y = x;
    Hadamard(y.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      double e = 0, mag = 0;
      for (int64_t j = 0; j < n; ++j) {
        const double h = (std::popcount(static_cast<uint64_t>(i & j)) % 2) ? -1.0 : 1.0;
        e += h * x[j];
        mag += std::fabs(x[j]);
      }
      e /= std::sqrt(static_cast<double>(n));
      EXPECT_NEAR(y[i], e, (std::log2(n) + 2) * test::kU * mag) << n << " " << i;
    }
  }
}

TEST(QuantTest, HadamardRejectsNonPowerOfTwo) {
  std::vector<float> x(12);
  EXPECT_DEATH(Hadamard(x.data(), 12), "power of two");
}

TEST(QuantTest, ActQuantDefinition) {
  const int64_t n = 300;  // blocks of 128, 128, 44
  std::vector<float> x = test::RandomVector(n, 9, 3.0f);
  x[5] = 0;
  std::vector<uint8_t> codes(n);
  std::vector<float> scales(QuantBlocks(n)), y(n);
  ActQuant(x.data(), n, codes.data(), scales.data());
  Dequant(codes.data(), scales.data(), n, y.data());
  ASSERT_EQ(scales.size(), 3u);
  for (int64_t b = 0; b < 3; ++b) {
    double amax = 0;
    for (int64_t i = b * 128; i < std::min<int64_t>(n, (b + 1) * 128); ++i)
      amax = std::max(amax, std::fabs(double(x[i])));
    const double s = scales[b];
    EXPECT_EQ(std::exp2(std::round(std::log2(s))), s) << "power of two";
    EXPECT_LE(amax / s, 448.0);
    EXPECT_GT(amax / (s / 2), 448.0) << "smallest such power of two";
  }
  for (int64_t i = 0; i < n; ++i) {
    const double s = scales[i / 128];
    const double tol = std::max(std::fabs(double(x[i])) / 16, s * std::exp2(-10));
    EXPECT_NEAR(y[i], x[i], tol) << i;
    EXPECT_EQ(codes[i], FloatToE4M3(x[i] / static_cast<float>(s)));
  }
}

TEST(QuantTest, ActQuantZeroBlockUsesFloor) {
  std::vector<float> x(128, 0.0f);
  std::vector<uint8_t> codes(128);
  float s = 0;
  ActQuant(x.data(), 128, codes.data(), &s);
  EXPECT_EQ(s, Ue8m0Scale(0.0f));
  EXPECT_GT(s, 0.0f);
  for (uint8_t c : codes) EXPECT_EQ(E4M3ToFloat(c), 0.0f);
}

}  // namespace
}  // namespace dsinfer
