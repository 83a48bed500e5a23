// RMSNorm, LayerNorm, softmax, SiLU against f64 definitions. The kernels reduce in f64 and
// round a few times per element, so the error is a small multiple of u relative to the output
// magnitude (bound 8u·(|y| + |w|·...) taken as 16u·max|y|).
#include "kernels/norm.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "test_util.h"

namespace dsinfer {
namespace {

TEST(NormTest, RmsNormMatchesF64) {
  const int64_t n = 3, dim = 200;
  std::vector<float> x = test::RandomVector(n * dim, 1, 3.0f), w = test::RandomVector(dim, 2);
  std::vector<float> y(n * dim);
  RmsNorm(x.data(), n, dim, w.data(), 1e-6f, y.data());
  for (int64_t i = 0; i < n; ++i) {
    double ss = 0;
    for (int64_t j = 0; j < dim; ++j) ss += double(x[i * dim + j]) * x[i * dim + j];
    const double inv = 1.0 / std::sqrt(ss / dim + 1e-6);
    for (int64_t j = 0; j < dim; ++j) {
      const double e = x[i * dim + j] * inv * w[j];
      EXPECT_NEAR(y[i * dim + j], e, 8 * test::kU * (std::fabs(e) + 1e-30));
    }
  }
}

TEST(NormTest, RmsNormInPlace) {
  std::vector<float> x = test::RandomVector(64, 3), w(64, 1.0f), y(64);
  RmsNorm(x.data(), 1, 64, w.data(), 1e-6f, y.data());
  RmsNorm(x.data(), 1, 64, w.data(), 1e-6f, x.data());
  EXPECT_EQ(x, y);
}

TEST(NormTest, LayerNormMatchesF64) {
  const int64_t n = 2, dim = 64;
  std::vector<float> x = test::RandomVector(n * dim, 4, 2.0f);
  for (float& v : x) v += 5.0f;  // a mean far from 0 exercises the centring
  std::vector<float> w = test::RandomVector(dim, 5), b = test::RandomVector(dim, 6), y(n * dim);
  LayerNorm(x.data(), n, dim, w.data(), b.data(), 1e-6f, y.data());
  for (int64_t i = 0; i < n; ++i) {
    double mean = 0, var = 0;
    for (int64_t j = 0; j < dim; ++j) mean += x[i * dim + j];
    mean /= dim;
    for (int64_t j = 0; j < dim; ++j) var += (x[i * dim + j] - mean) * (x[i * dim + j] - mean);
    var /= dim;
    for (int64_t j = 0; j < dim; ++j) {
      const double e = (x[i * dim + j] - mean) / std::sqrt(var + 1e-6) * w[j] + b[j];
      // |x| ≈ 5 is centred to ≈ 2: relative error of (x - mean) is ≤ u·|x|/|x-mean|.
      EXPECT_NEAR(y[i * dim + j], e, 32 * test::kU * (std::fabs(e) + std::fabs(w[j]) * 8 + 1));
    }
  }
}

TEST(NormTest, SoftmaxMatchesF64) {
  std::vector<float> x = test::RandomVector(100, 7, 10.0f), y = x;
  Softmax(y.data(), 100);
  const double m = *std::max_element(x.begin(), x.end());
  double sum = 0;
  for (float v : x) sum += std::exp(v - m);
  for (int i = 0; i < 100; ++i) {
    const double e = std::exp(x[i] - m) / sum;
    // exp amplifies the rounding of (x - m) by |x - m|.
    EXPECT_NEAR(y[i], e, (std::fabs(x[i] - m) + 16) * test::kU * e + 1e-30);
  }
}

TEST(NormTest, SiluAndSigmoid) {
  for (float v : {-20.0f, -1.5f, 0.0f, 0.3f, 7.0f}) {
    const double s = 1.0 / (1.0 + std::exp(-double(v)));
    EXPECT_NEAR(Sigmoid(v), s, 4 * test::kU * s);
    EXPECT_NEAR(Silu(v), v * s, 4 * test::kU * std::fabs(v * s) + 1e-30);
  }
}

}  // namespace
}  // namespace dsinfer
