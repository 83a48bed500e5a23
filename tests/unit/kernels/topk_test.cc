// Top-k against a full stable sort with the tie rule (larger first, then lower index).
#include "kernels/topk.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>

namespace dsinfer {
namespace {

std::vector<int32_t> SortReference(const std::vector<float>& s, int64_t k) {
  std::vector<int32_t> idx(s.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int32_t a, int32_t b) { return s[a] > s[b]; });
  idx.resize(k);
  std::sort(idx.begin(), idx.end());
  return idx;
}

TEST(TopKTest, MatchesSortWithTies) {
  std::mt19937 rng(3);
  for (int trial = 0; trial < 200; ++trial) {
    const int64_t n = 1 + rng() % 300;
    std::vector<float> s(n);
    for (float& v : s) v = static_cast<float>(rng() % 7);  // many exact ties
    if (n > 3) s[rng() % n] = -INFINITY;
    const int64_t k = rng() % (n + 1);
    EXPECT_EQ(TopK(s.data(), n, k), SortReference(s, k)) << "n=" << n << " k=" << k;
    std::vector<TopKCandidate> scratch(n);
    std::vector<int32_t> out(k);
    TopK(s.data(), n, k, scratch.data(), out.data());
    EXPECT_EQ(out, SortReference(s, k)) << "caller-buffer variant, n=" << n << " k=" << k;
  }
}

TEST(TopKTest, TiesPreferLowerIndex) {
  const std::vector<float> s = {1, 3, 3, 2, 3};
  EXPECT_EQ(TopK(s.data(), 5, 2), (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(TopK(s.data(), 5, 0), (std::vector<int32_t>{}));
  EXPECT_EQ(TopK(s.data(), 5, 5), (std::vector<int32_t>{0, 1, 2, 3, 4}));
}

}  // namespace
}  // namespace dsinfer
