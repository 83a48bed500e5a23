// RoPE: YaRN frequencies against docs/model.md §4.1's published values for the official config,
// and
// both rotation layouts against f64 rotations.
#include "kernels/rope.h"

#include <gtest/gtest.h>

#include <cmath>

#include "test_util.h"

namespace dsinfer {
namespace {

TEST(RopeTest, YarnFrequenciesOfTheOfficialConfig) {
  RopeTable t(64, 10000.0, YarnParams{.factor = 40, .original_max_position_embeddings = 4096,
                                      .beta_fast = 32, .beta_slow = 1});
  const std::vector<std::pair<int, double>> expected = {
      {0, 1.0}, {1, 0.749894}, {11, 0.0390069}, {16, 0.0055}, {22, 1.77828e-4},
      {23, 3.33380e-5}, {31, 3.33380e-6}};
  for (auto [i, v] : expected) EXPECT_NEAR(t.freqs()[i], v, v * (i == 16 ? 2e-2 : 1e-5)) << i;
  // i ≤ 10 keeps the original frequency, i ≥ 23 is divided by the factor.
  EXPECT_FLOAT_EQ(t.freqs()[10], 1.0f / std::pow(10000.0f, 20.0f / 64.0f));
  EXPECT_FLOAT_EQ(t.freqs()[25], 1.0f / std::pow(10000.0f, 50.0f / 64.0f) / 40.0f);
}

TEST(RopeTest, PlainRopeFrequencies) {
  RopeTable t(16, 10000.0, std::nullopt);
  for (int i = 0; i < 8; ++i)
    EXPECT_NEAR(t.freqs()[i], std::pow(10000.0, -2.0 * i / 16), 1e-6 * std::pow(10000.0, -2.0 * i / 16));
}

TEST(RopeTest, LayoutsMatchF64Rotation) {
  const int64_t d = 16;
  RopeTable t(d, 10000.0, YarnParams{.factor = 4, .original_max_position_embeddings = 256});
  t.Reserve(300);
  std::vector<float> x = test::RandomVector(d, 3);
  for (int64_t pos : {0, 1, 17, 299}) {
    std::vector<float> a = x, b = x;
    t.ApplyInterleaved(a.data(), pos);
    t.ApplyHalves(b.data(), pos);
    for (int64_t j = 0; j < d / 2; ++j) {
      const double th = static_cast<float>(pos) * t.freqs()[j];  // f32 angle, as specified
      const double c = std::cos(th), s = std::sin(th);
      const double tol = 8 * test::kU * (std::fabs(x[2 * j]) + std::fabs(x[2 * j + 1]) + 1e-3);
      EXPECT_NEAR(a[2 * j], x[2 * j] * c - x[2 * j + 1] * s, tol);
      EXPECT_NEAR(a[2 * j + 1], x[2 * j] * s + x[2 * j + 1] * c, tol);
      const double tolh = 8 * test::kU * (std::fabs(x[j]) + std::fabs(x[j + d / 2]) + 1e-3);
      EXPECT_NEAR(b[j], x[j] * c - x[j + d / 2] * s, tolh);
      EXPECT_NEAR(b[j + d / 2], x[j] * s + x[j + d / 2] * c, tolh);
    }
  }
}

}  // namespace
}  // namespace dsinfer
