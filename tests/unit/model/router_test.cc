// Group-limited routing (docs/model.md §5.2) on hand-made scores whose expected choice is worked
// out below by hand: with a router bias, groups are ranked by the sum of their two best scores;
// without one, by their best score (DeepSeek's `Gate`: `amax` when `bias is None`). The scores
// are chosen so that the two rules keep different groups, so either rule applied in the wrong
// case fails.
#include <gtest/gtest.h>

#include <vector>

#include "model/layers.h"

namespace dsinfer {
namespace {

// 8 experts in 4 groups of 2; keep 2 groups, choose 2 experts; weights normalised, × 2.5.
ModelConfig RouterConfig() {
  ModelConfig c;
  c.n_routed_experts = 8;
  c.n_group = 4;
  c.topk_group = 2;
  c.num_experts_per_tok = 2;
  c.norm_topk_prob = true;
  c.routed_scaling_factor = 2.5;
  return c;
}

// group:         0            1             2             3
// scores:    .90  .10     .62  .58      .80  .05      .50  .45
// max:          .90          .62           .80           .50     → keep groups 0, 2
// top-2 sum:   1.00         1.20           .85           .95     → keep groups 1, 0
const std::vector<float> kScores = {0.90f, 0.10f, 0.62f, 0.58f, 0.80f, 0.05f, 0.50f, 0.45f};

struct Routed {
  std::vector<int32_t> experts;
  std::vector<float> weights;
};

Routed Route(const std::vector<float>& s, const std::vector<float>& b, bool has_bias) {
  const ModelConfig c = RouterConfig();
  Workspace ws;
  Routed r{std::vector<int32_t>(2), std::vector<float>(2)};
  RouteToken(c, ws, s.data(), b.data(), has_bias, r.experts.data(), r.weights.data());
  if (r.experts[0] > r.experts[1]) {
    std::swap(r.experts[0], r.experts[1]);
    std::swap(r.weights[0], r.weights[1]);
  }
  return r;
}

TEST(Router, WithoutBiasGroupsRankedByTheirMaximum) {
  // Groups 0 and 2 kept; best experts there: 0 (.90) and 4 (.80).
  const Routed r = Route(kScores, kScores, /*has_bias=*/false);
  EXPECT_EQ(r.experts, (std::vector<int32_t>{0, 4}));
  EXPECT_NEAR(r.weights[0], 2.5 * 0.90 / 1.70, 1e-6);  // f32 division and product: ≤ 2 ulp
  EXPECT_NEAR(r.weights[1], 2.5 * 0.80 / 1.70, 1e-6);
}

TEST(Router, WithBiasGroupsRankedBySumOfTopTwo) {
  // A zero bias: the selection scores equal the scores, only the rule differs. Groups 1 and 0
  // kept; best experts there: 0 (.90) and 2 (.62).
  const Routed r = Route(kScores, kScores, /*has_bias=*/true);
  EXPECT_EQ(r.experts, (std::vector<int32_t>{0, 2}));
  EXPECT_NEAR(r.weights[0], 2.5 * 0.90 / 1.52, 1e-6);
  EXPECT_NEAR(r.weights[1], 2.5 * 0.62 / 1.52, 1e-6);
}

TEST(Router, BiasSelectsButWeightsUseUnbiasedScores) {
  // A bias of +.5 on expert 7 lifts group 3 to a top-2 sum of 1.45 (first) and expert 7 to the
  // best selection score (.95); group 1 (1.20) is second. Chosen: 7 and 2 (.62 beats .58);
  // weights from the unbiased scores .45 and .62.
  std::vector<float> b = kScores;
  b[7] += 0.5f;
  const Routed r = Route(kScores, b, /*has_bias=*/true);
  EXPECT_EQ(r.experts, (std::vector<int32_t>{2, 7}));
  EXPECT_NEAR(r.weights[0], 2.5 * 0.62 / 1.07, 1e-6);
  EXPECT_NEAR(r.weights[1], 2.5 * 0.45 / 1.07, 1e-6);
}

}  // namespace
}  // namespace dsinfer
