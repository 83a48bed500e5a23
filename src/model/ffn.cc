// Dense SwiGLU MLP and the MoE block (NUMERICS.md §6, MODEL.md §5).
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "kernels/linear.h"
#include "kernels/norm.h"
#include "kernels/topk.h"
#include "model/layers.h"

namespace dsinfer {

void MlpForward(const MlpWeights& w, const float* x, int64_t S, float* out) {
  const int64_t inter = w.w1.rows;
  std::vector<float> g(S * inter), u(S * inter);  // [S, inter] gate / up projections
  Linear(x, S, w.w1, g.data());
  Linear(x, S, w.w3, u.data());
  for (int64_t i = 0; i < S * inter; ++i) g[i] = Silu(g[i]) * u[i];
  Linear(g.data(), S, w.w2, out);
}

namespace {

struct Routing {
  std::vector<int32_t> experts;  // [S, k] ascending expert ids
  std::vector<float> weights;    // [S, k] same order
};

// noaux_tc routing of one token: scores s [E] (sigmoid), biased b [E].
void RouteToken(const ModelConfig& c, const float* s, const float* b, int32_t* experts,
                float* weights) {
  const int64_t E = c.n_routed_experts, G = c.n_group, per = E / G, k = c.num_experts_per_tok;
  std::vector<float> group_score(G);  // [n_group]
  for (int64_t g = 0; g < G; ++g) {
    std::vector<int32_t> top = TopK(b + g * per, per, std::min<int64_t>(2, per));
    float sum = 0;
    for (int32_t i : top) sum += b[g * per + i];
    group_score[g] = sum;
  }
  std::vector<int32_t> groups = TopK(group_score.data(), G, c.topk_group);
  std::vector<float> masked(E, -INFINITY);  // [E] b of experts in kept groups
  for (int32_t g : groups) std::copy_n(b + g * per, per, &masked[g * per]);
  std::vector<int32_t> chosen = TopK(masked.data(), E, k);
  float total = 0;
  for (int64_t j = 0; j < k; ++j) {
    experts[j] = chosen[j];
    weights[j] = s[chosen[j]];
    total += weights[j];
  }
  for (int64_t j = 0; j < k; ++j) {
    if (c.norm_topk_prob) weights[j] /= total;
    weights[j] *= static_cast<float>(c.routed_scaling_factor);
  }
}

Routing Route(const ModelConfig& c, const MoeWeights& m, const float* x, int64_t S) {
  const int64_t E = c.n_routed_experts, k = c.num_experts_per_tok;
  std::vector<float> s(S * E), b(S * E);  // [S, E] sigmoid scores, biased scores
  Linear(x, S, m.gate, s.data());
  for (int64_t i = 0; i < S * E; ++i) {
    s[i] = Sigmoid(s[i]);
    b[i] = s[i] + m.gate_bias[i % E];
  }
  Routing r{std::vector<int32_t>(S * k), std::vector<float>(S * k)};
  for (int64_t t = 0; t < S; ++t)
    RouteToken(c, &s[t * E], &b[t * E], &r.experts[t * k], &r.weights[t * k]);
  return r;
}

using TokenWeights = std::vector<std::pair<int64_t, float>>;  // (token row, routing weight)

// ye = E_e(x[toks]): [n_e, hidden].
void RunExpert(const MlpWeights& w, const TokenWeights& toks, const float* x, int64_t H,
               std::vector<float>& ye) {
  const int64_t n = static_cast<int64_t>(toks.size());
  std::vector<float> xe(n * H);  // [n_e, hidden] gathered inputs
  for (int64_t i = 0; i < n; ++i) std::copy_n(x + toks[i].first * H, H, &xe[i * H]);
  ye.resize(n * H);
  MlpForward(w, xe.data(), n, ye.data());
}

// Small batches (decode, short chunks): one thread per expert in a single parallel region,
// instead of many small parallel GEMMs (which stall when cores are shared).
constexpr int64_t kExpertParallelRows = 64;

// y += Σ_e w_e E_e(x), adding experts in ascending id; each expert's weights are read once
// for all of its tokens. x, y: [S, hidden]
void RunExperts(const ModelConfig& c, const MoeWeights& m, const Routing& r, const float* x,
                int64_t S, float* y) {
  const int64_t H = c.hidden_size, k = c.num_experts_per_tok;
  std::vector<TokenWeights> by_expert(c.n_routed_experts);
  for (int64_t t = 0; t < S; ++t)
    for (int64_t j = 0; j < k; ++j)
      by_expert[r.experts[t * k + j]].push_back({t, r.weights[t * k + j]});
  std::vector<int64_t> active;  // expert ids with tokens, ascending
  for (int64_t e = 0; e < c.n_routed_experts; ++e)
    if (!by_expert[e].empty()) active.push_back(e);
  const bool batch = S * k <= kExpertParallelRows;
  std::vector<std::vector<float>> ye(batch ? active.size() : 1);  // [n_e, hidden] per expert
#pragma omp parallel for schedule(dynamic) if (batch)
  for (size_t i = 0; i < (batch ? active.size() : 0); ++i)
    RunExpert(m.experts[active[i]], by_expert[active[i]], x, H, ye[i]);
  for (size_t i = 0; i < active.size(); ++i) {
    const TokenWeights& toks = by_expert[active[i]];
    std::vector<float>& out = batch ? ye[i] : ye[0];
    if (!batch) RunExpert(m.experts[active[i]], toks, x, H, out);
    for (size_t t = 0; t < toks.size(); ++t)
      for (int64_t j = 0; j < H; ++j) y[toks[t].first * H + j] += toks[t].second * out[t * H + j];
  }
}

void MoeForward(const LayerContext& ctx, const LayerWeights& lw, const float* x, int64_t S,
                float* out) {
  const ModelConfig& c = ctx.config;
  const MoeWeights& m = *lw.moe;
  Routing r = Route(c, m, x, S);
  if (ctx.dump) {
    ctx.dump->Put(lw.layer, "router_experts", r.experts.data(), S, c.num_experts_per_tok);
    ctx.dump->Put(lw.layer, "router_weights", r.weights.data(), S, c.num_experts_per_tok);
  }
  std::fill(out, out + S * c.hidden_size, 0.0f);
  RunExperts(c, m, r, x, S, out);
  if (m.shared_experts) {
    std::vector<float> sh(S * c.hidden_size);  // [S, hidden]
    MlpForward(*m.shared_experts, x, S, sh.data());
    for (int64_t i = 0; i < S * c.hidden_size; ++i) out[i] += sh[i];
  }
}

}  // namespace

void FfnForward(const LayerContext& ctx, const LayerWeights& lw, const float* x, int64_t S,
                float* out) {
  if (lw.moe)
    MoeForward(ctx, lw, x, S, out);
  else
    MlpForward(*lw.mlp, x, S, out);
  if (ctx.dump) ctx.dump->Put(lw.layer, "ffn_out", out, S, ctx.config.hidden_size);
}

}  // namespace dsinfer
