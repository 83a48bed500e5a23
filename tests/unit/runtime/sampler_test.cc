// Sampler: greedy is the argmax; the empirical distribution of temperature sampling matches
// softmax(logits / T) within 5 standard errors; top-p keeps exactly the nucleus; seeds replay;
// logprobs are the log-softmax at temperature 1 with sorted alternatives. The partial selection
// of top-k/top-p candidates gives, seed for seed, the token of a reference that sorts the whole
// vocabulary, and the same distribution.
#include "runtime/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
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
  Sampler a({.temperature = 1.0f, .top_p = 0.9f, .seed = 7}),
      b({.temperature = 1.0f, .top_p = 0.9f, .seed = 7});
  for (int i = 0; i < 100; ++i) EXPECT_EQ(a.Sample(l.data(), 50), b.Sample(l.data(), 50));
}

// The specification, written the slow way: sort the whole vocabulary (probability descending,
// id ascending), keep at most k, cut the nucleus, draw u in [0, kept) and walk the order.
struct FullSortReference {
  SamplerOptions o;
  std::mt19937_64 rng;
  explicit FullSortReference(const SamplerOptions& options) : o(options), rng(options.seed) {}
  // probs: the candidates' renormalised probabilities.
  int32_t Sample(const std::vector<float>& l, std::vector<double>* probs = nullptr) {
    const int64_t V = static_cast<int64_t>(l.size());
    const double m = *std::max_element(l.begin(), l.end());
    std::vector<double> p(V);
    for (int64_t i = 0; i < V; ++i) p[i] = std::exp((l[i] - m) / o.temperature);
    const double total = std::accumulate(p.begin(), p.end(), 0.0);
    std::vector<int32_t> order(V);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return p[a] > p[b]; });
    const int64_t limit = o.top_k > 0 ? std::min<int64_t>(o.top_k, V) : V;
    int64_t n = V;
    double kept = total;
    if (limit < V || o.top_p < 1.0f) {
      kept = 0;
      n = 0;
      while (n < limit && (n == 0 || kept < o.top_p * total)) kept += p[order[n++]];
    }
    if (probs) {
      probs->assign(V, 0.0);
      for (int64_t i = 0; i < n; ++i) (*probs)[order[i]] = p[order[i]] / kept;
    }
    double u = std::uniform_real_distribution<double>(0.0, kept)(rng);
    for (int64_t i = 0; i < n; ++i) {
      u -= p[order[i]];
      if (u < 0) return order[i];
    }
    return order[n - 1];
  }
};

TEST(SamplerTest, PartialSelectionEqualsFullSort) {
  const int64_t V = 5000;
  std::mt19937 gen(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<std::vector<float>> rows;
  for (float scale : {0.5f, 3.0f, 12.0f}) {  // flat, moderate, peaked
    std::vector<float> l(V);
    for (float& v : l) v = scale * normal(gen);
    rows.push_back(l);
  }
  std::vector<float> ties(V, 0.0f);  // equal probabilities: the id order decides
  for (int64_t i = 0; i < V; i += 7) ties[i] = 1.0f;
  rows.push_back(ties);
  int64_t checked = 0;
  for (const auto& l : rows)
    for (float top_p : {0.3f, 0.9f, 1.0f})
      for (int64_t top_k : {0, 1, 5, 300})
        for (float temp : {0.6f, 1.0f}) {
          const SamplerOptions o{.temperature = temp, .top_p = top_p, .seed = 17, .top_k = top_k};
          Sampler fast(o);
          FullSortReference ref(o);
          std::vector<double> want, got;
          for (int i = 0; i < 20; ++i, ++checked)
            ASSERT_EQ(fast.Sample(l.data(), V), ref.Sample(l, i == 0 ? &want : nullptr))
                << "top_p " << top_p << " top_k " << top_k << " T " << temp << " draw " << i;
          fast.Distribution(l.data(), V, got);
          for (int64_t t = 0; t < V; ++t) ASSERT_NEAR(got[t], want[t], 1e-15) << t;
        }
  EXPECT_EQ(checked, 4 * 3 * 4 * 2 * 20);
}

TEST(SamplerTest, TopKKeepsTheKMostLikely) {
  const std::vector<float> l = {0.0f, 3.0f, 1.0f, 2.0f, 2.5f};
  Sampler s({.temperature = 1.0f, .top_p = 1.0f, .seed = 4, .top_k = 2});
  std::vector<int> count(5);
  for (int i = 0; i < 4000; ++i) ++count[s.Sample(l.data(), 5)];
  EXPECT_EQ(count[0] + count[2] + count[3], 0);
  // ids 1 and 4 with probabilities e^3 : e^2.5 renormalised.
  const double p1 = 1.0 / (1.0 + std::exp(-0.5));
  EXPECT_NEAR(count[1] / 4000.0, p1, 5 * std::sqrt(p1 * (1 - p1) / 4000));
}

TEST(SamplerTest, RejectsBadOptions) {
  EXPECT_THROW(Sampler({.temperature = -1}), Error);
  EXPECT_THROW(Sampler({.temperature = 1, .top_p = 0}), Error);
  EXPECT_THROW(Sampler({.temperature = 1, .top_p = 1.5f}), Error);
  EXPECT_THROW(Sampler({.temperature = 1, .top_p = 1, .top_k = -1}), Error);
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
