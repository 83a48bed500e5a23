// Sampler: greedy is the argmax; the empirical distribution of temperature sampling matches
// softmax(logits / T) within 5 standard errors; top-p keeps exactly the nucleus; seeds replay;
// logprobs are the log-softmax at temperature 1 with sorted alternatives.
#include "runtime/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "base/error.h"

namespace dsinfer {
namespace {

TEST(SamplerTest, GreedyIsArgmaxLowestOnTies) {
  const std::vector<float> l = {0.5f, 2.0f, -1.0f, 2.0f};
  Sampler s({.temperature = 0});
  EXPECT_EQ(s.Sample(l.data(), 4), 1);
}

TEST(SamplerTest, TemperatureMatchesSoftmax) {
  const std::vector<float> l = {1.0f, 0.0f, -0.5f, 2.0f};
  const float T = 0.7f;
  Sampler s({.temperature = T, .top_p = 1.0f, .seed = 42});
  const int n = 40000;
  std::vector<int> count(4);
  for (int i = 0; i < n; ++i) ++count[s.Sample(l.data(), 4)];
  double z = 0;
  for (float v : l) z += std::exp(v / T);
  for (int i = 0; i < 4; ++i) {
    const double p = std::exp(l[i] / T) / z;
    EXPECT_NEAR(count[i] / double(n), p, 5 * std::sqrt(p * (1 - p) / n)) << i;
  }
}

TEST(SamplerTest, TopPKeepsTheNucleus) {
  // probabilities at T=1 ≈ {0.64, 0.24, 0.09, 0.03}: top_p 0.8 keeps ids 0 and 1 only.
  const std::vector<float> l = {3.0f, 2.0f, 1.0f, 0.0f};
  Sampler s({.temperature = 1.0f, .top_p = 0.8f, .seed = 1});
  std::vector<int> count(4);
  for (int i = 0; i < 5000; ++i) ++count[s.Sample(l.data(), 4)];
  EXPECT_GT(count[0], 0);
  EXPECT_GT(count[1], 0);
  EXPECT_EQ(count[2] + count[3], 0);
}

TEST(SamplerTest, SeedReplays) {
  std::vector<float> l(50);
  for (int i = 0; i < 50; ++i) l[i] = std::sin(i * 1.3f);
  Sampler a({.temperature = 1.0f, .top_p = 0.9f, .seed = 7}), b({.temperature = 1.0f, .top_p = 0.9f, .seed = 7});
  for (int i = 0; i < 100; ++i) EXPECT_EQ(a.Sample(l.data(), 50), b.Sample(l.data(), 50));
}

TEST(SamplerTest, RejectsBadOptions) {
  EXPECT_THROW(Sampler({.temperature = -1}), Error);
  EXPECT_THROW(Sampler({.temperature = 1, .top_p = 0}), Error);
  EXPECT_THROW(Sampler({.temperature = 1, .top_p = 1.5f}), Error);
}

// Against the definition computed here in long double. The implementation sums in double
// (relative error ~1e-15 for 7 terms) and rounds x_i − log Z once to f32 (≤ 2^-24 ≈ 6e-8
// relative), so 1e-6 relative + 1e-6 absolute is a generous bound.
TEST(SamplerTest, LogprobsAreLogSoftmaxAtTemperatureOne) {
  const std::vector<float> l = {1.0f, 3.0f, -2.0f, 3.0f, 0.25f, 80.0f, 79.5f};
  long double z = 0;
  for (float v : l) z += std::exp(static_cast<long double>(v) - 80.0L);
  const long double log_z = 80.0L + std::log(z);
  const TokenLogprobs r = ComputeLogprobs(l.data(), 7, /*chosen=*/2, /*top_n=*/4);
  EXPECT_EQ(r.token, 2);
  auto want = [&](int i) { return static_cast<double>(l[i] - log_z); };
  EXPECT_NEAR(r.logprob, want(2), 1e-6 * std::fabs(want(2)) + 1e-6);
  ASSERT_EQ(r.top.size(), 4u);
  const int order[] = {5, 6, 1, 3};  // 3.0 twice: the lower id first
  for (int k = 0; k < 4; ++k) {
    EXPECT_EQ(r.top[k].first, order[k]);
    EXPECT_NEAR(r.top[k].second, want(order[k]), 1e-6 * std::fabs(want(order[k])) + 1e-6);
    EXPECT_LE(r.top[k].second, 0.0f);
  }
  double mass = 0;  // the probabilities sum to 1
  for (int i = 0; i < 7; ++i) mass += std::exp(ComputeLogprobs(l.data(), 7, i, 0).logprob);
  EXPECT_NEAR(mass, 1.0, 1e-6);
  EXPECT_TRUE(ComputeLogprobs(l.data(), 7, 0, 0).top.empty());
}

}  // namespace
}  // namespace dsinfer
