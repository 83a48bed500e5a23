// Dense SwiGLU MLP and the MoE block (docs/numerics.md §6, docs/model.md §5) over all N rows
// of a batch.
// MoE tokens are grouped by expert (a counting sort), so each expert's weights are read once for
// all of the batch's tokens routed to it; each row still sums its experts in ascending id.
// Under expert parallelism each rank computes its own experts and one exchange per MoE layer
// shares their outputs before that sum (model/expert_parallel.h).
#include <algorithm>
#include <cmath>
#include <vector>

#include "base/threads.h"
#include "kernels/linear.h"
#include "kernels/norm.h"
#include "kernels/topk.h"
#include "model/layers.h"

namespace dsinfer {

void MlpForward(Numerics numerics, const MlpWeights& w, const float* x, int64_t S, float* out,
                float* g, float* u) {
  const int64_t inter = w.w1.rows;
  Linear(numerics, x, S, w.w1, g);  // [S, inter] gate projection
  Linear(numerics, x, S, w.w3, u);  // [S, inter] up projection
  for (int64_t i = 0; i < S * inter; ++i) g[i] = Silu(g[i]) * u[i];
  Linear(numerics, g, S, w.w2, out);  // bf16 mode rounds the f32 product silu(g)·u once
}

void RouteToken(const ModelConfig& c, Workspace& ws, const float* s, const float* b,
                bool has_bias, int32_t* experts, float* weights) {
  const int64_t E = c.n_routed_experts, G = c.n_group, per = E / G, k = c.num_experts_per_tok;
  TopKCandidate* scratch = Take(ws.topk_scratch, E);  // [E] TopK's scratch
  int32_t* top = Take(ws.topk_out, std::max({int64_t{2}, G, k}));  // one selection
  float* group_score = Take(ws.group_score, G);  // [n_group]
  for (int64_t g = 0; g < G; ++g) {
    // With a bias: the sum of the group's two largest b; without: its largest b (= s).
    const int64_t n = has_bias ? std::min<int64_t>(2, per) : 1;
    TopK(b + g * per, per, n, scratch, top);
    float sum = 0;
    for (int64_t j = 0; j < n; ++j) sum += b[g * per + top[j]];
    group_score[g] = sum;
  }
  TopK(group_score, G, c.topk_group, scratch, top);
  float* masked = Take(ws.masked, E);  // [E] b of experts in kept groups
  std::fill(masked, masked + E, -INFINITY);
  for (int64_t j = 0; j < c.topk_group; ++j)
    std::copy_n(b + top[j] * per, per, masked + top[j] * per);
  TopK(masked, E, k, scratch, top);
  const int32_t* chosen = top;
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

namespace {

// Routing of all rows into ws.r_experts / ws.r_weights: [N, k].
void Route(const ModelConfig& c, Workspace& ws, const MoeWeights& m, const float* x, int64_t N) {
  const int64_t E = c.n_routed_experts, k = c.num_experts_per_tok;
  float* s = Take(ws.gate_s, N * E);  // [N, E] sigmoid scores
  float* b = Take(ws.gate_b, N * E);  // [N, E] biased scores
  Linear(x, N, m.gate, s);
  for (int64_t i = 0; i < N * E; ++i) {
    s[i] = Sigmoid(s[i]);
    b[i] = s[i] + m.gate_bias[i % E];
  }
  int32_t* experts = Take(ws.r_experts, N * k);
  float* weights = Take(ws.r_weights, N * k);
  for (int64_t t = 0; t < N; ++t)
    RouteToken(c, ws, s + t * E, b + t * E, m.has_gate_bias, experts + t * k, weights + t * k);
}

// Groups the routed (row, weight) pairs by expert, rows ascending within an expert (counting
// sort): expert e's tokens are e_rows/e_weights[e_offset[e] .. e_offset[e+1]). Lists the
// experts with tokens in ws.active (ascending); returns how many there are.
int64_t GroupByExpert(const ModelConfig& c, Workspace& ws, int64_t N) {
  const int64_t E = c.n_routed_experts, k = c.num_experts_per_tok;
  int64_t* offset = Take(ws.e_offset, E + 1);
  int64_t* fill = Take(ws.e_fill, E);
  int64_t* rows = Take(ws.e_rows, N * k);
  float* weights = Take(ws.e_weights, N * k);
  int64_t* active = Take(ws.active, E);
  std::fill(offset, offset + E + 1, 0);
  for (int64_t i = 0; i < N * k; ++i) ++offset[ws.r_experts[i] + 1];
  int64_t n_active = 0;
  for (int64_t e = 0; e < E; ++e) {
    if (offset[e + 1] > 0) active[n_active++] = e;
    offset[e + 1] += offset[e];
    fill[e] = offset[e];
  }
  for (int64_t i = 0; i < N * k; ++i) {
    const int64_t at = fill[ws.r_experts[i]]++;
    rows[at] = i / k;
    weights[at] = ws.r_weights[i];
  }
  return n_active;
}

// ye rows [out_at, out_at + n) = E_e(x[rows[lo..hi)]) (n = hi − lo), with the scratch rows
// [at, at + n) of xe / eg / eu.
void RunExpert(const ModelConfig& c, Numerics numerics, const MlpWeights& w, Workspace& ws,
               const float* x, int64_t lo, int64_t hi, int64_t at, int64_t out_at) {
  const int64_t H = c.hidden_size, inter = w.w1.rows, n = hi - lo;
  float* xe = ws.xe.data() + at * H;  // [n_e, hidden] gathered inputs
  for (int64_t i = 0; i < n; ++i) std::copy_n(x + ws.e_rows[lo + i] * H, H, xe + i * H);
  MlpForward(numerics, w, xe, n, ws.ye.data() + out_at * H, ws.eg.data() + at * inter,
             ws.eu.data() + at * inter);
}

// Small batches (decode, short chunks): one thread per expert in a single parallel region,
// instead of many small parallel GEMMs (which stall when cores are shared).
constexpr int64_t kExpertParallelRows = 64;

// Expert parallelism: every rank's outputs (its experts' slots of ye, [N·k, hidden] in e_rows
// order) to every rank. Rank r's experts are contiguous, so its slots are too:
// [offset[first_r], offset[end_r]).
void ExchangeExpertOutputs(const ModelConfig& c, const ExpertParallel& ep, Workspace& ws) {
  const int ranks = ep.exchange->ranks();
  int64_t* bounds = Take(ws.ep_bounds, ranks + 1);  // [ranks + 1]
  for (int r = 0; r < ranks; ++r)
    bounds[r] = ws.e_offset[ExpertRangeOf(ep.experts, r, ranks).first];
  bounds[ranks] = ws.e_offset[ep.experts];
  ep.exchange->AllGatherRows(ws.ye.data(), c.hidden_size, {bounds, static_cast<size_t>(ranks) + 1});
}

// y += Σ_e w_e E_e(x), adding experts in ascending id; each expert's weights are read once
// for all of its tokens. x, y: [N, hidden]. With expert parallelism (`ep`) this rank computes
// only its own experts, into their slots of ye; after the exchange every rank holds every
// expert's outputs and adds them in the same order as one process: the values of each expert's
// outputs do not depend on where they were computed (same rows, same call), so y is bitwise
// the single-process y.
void RunExperts(const ModelConfig& c, Numerics numerics, const MoeWeights& m, Workspace& ws,
                const float* x, int64_t N, float* y, const ExpertParallel* ep, ExpertRange mine) {
  const int64_t H = c.hidden_size, k = c.num_experts_per_tok, inter = c.moe_intermediate_size;
  const int64_t n_active = GroupByExpert(c, ws, N);
  const int64_t* offset = ws.e_offset.data();
  const bool batch = N * k <= kExpertParallelRows;
  // ye keeps every expert's outputs at their slots (parallel over experts, or exchanged), or
  // else only the expert being added (at row 0).
  const bool keep = batch || ep;
  // Scratch rows: all experts' at once (parallel over experts) or the largest expert's.
  int64_t rows = 0;
  for (int64_t i = 0; i < n_active; ++i)
    rows = std::max(rows, offset[ws.active[i] + 1] - offset[ws.active[i]]);
  if (batch) rows = N * k;
  Take(ws.xe, rows * H);
  Take(ws.ye, (keep ? N * k : rows) * H);
  Take(ws.eg, rows * inter);
  Take(ws.eu, rows * inter);
#pragma omp parallel for schedule(dynamic) if (batch)
  for (int64_t i = 0; i < (batch ? n_active : 0); ++i) {
    DSINFER_NOTE_THREAD("moe.experts");
    const int64_t e = ws.active[i];
    if (mine.Has(e))
      RunExpert(c, numerics, m.experts[e], ws, x, offset[e], offset[e + 1], offset[e], offset[e]);
  }
  if (ep) {
    for (int64_t i = 0; i < (batch ? 0 : n_active); ++i) {
      const int64_t e = ws.active[i];
      if (mine.Has(e))
        RunExpert(c, numerics, m.experts[e], ws, x, offset[e], offset[e + 1], 0, offset[e]);
    }
    ExchangeExpertOutputs(c, *ep, ws);
  }
  for (int64_t i = 0; i < n_active; ++i) {
    const int64_t e = ws.active[i], lo = offset[e], hi = offset[e + 1];
    if (!keep) RunExpert(c, numerics, m.experts[e], ws, x, lo, hi, 0, 0);
    const float* out = ws.ye.data() + (keep ? lo : 0) * H;  // [n_e, hidden]
    for (int64_t t = 0; t < hi - lo; ++t) {
      float* yr = y + ws.e_rows[lo + t] * H;
      const float w = ws.e_weights[lo + t];
      for (int64_t j = 0; j < H; ++j) yr[j] += w * out[t * H + j];
    }
  }
}

void MoeForward(const LayerContext& ctx, const LayerWeights& lw, const float* x, float* out) {
  const ModelConfig& c = ctx.config;
  const MoeWeights& m = *lw.moe;
  Workspace& ws = ctx.ws;
  const int64_t N = ctx.N, H = c.hidden_size;
  PartLap lap(ws);
  Route(c, ws, m, x, N);
  if (ctx.dump) {
    ctx.dump->Put(lw.layer, "router_experts", ws.r_experts.data(), N, c.num_experts_per_tok);
    ctx.dump->Put(lw.layer, "router_weights", ws.r_weights.data(), N, c.num_experts_per_tok);
  }
  std::fill(out, out + N * H, 0.0f);
  lap(LayerPartTimes::kRouter);
  const ExpertRange mine =
      ctx.ep ? ctx.ep->mine : ExpertRange{.first = 0, .end = c.n_routed_experts};
  RunExperts(c, ctx.numerics, m, ws, x, N, out, ctx.ep, mine);
  lap(LayerPartTimes::kExperts);
  if (m.shared_experts) {
    const int64_t inter = m.shared_experts->w1.rows;
    float* sh = Take(ws.sh, N * H);  // [N, hidden]
    MlpForward(ctx.numerics, *m.shared_experts, x, N, sh, Take(ws.mg, N * inter),
               Take(ws.mu, N * inter));
    for (int64_t i = 0; i < N * H; ++i) out[i] += sh[i];
    lap(LayerPartTimes::kShared);
  }
}

}  // namespace

void FfnForward(const LayerContext& ctx, const LayerWeights& lw, const float* x, float* out) {
  if (lw.moe) {
    MoeForward(ctx, lw, x, out);
  } else {
    PartLap lap(ctx.ws);
    const int64_t inter = lw.mlp->w1.rows;
    MlpForward(ctx.numerics, *lw.mlp, x, ctx.N, out, Take(ctx.ws.mg, ctx.N * inter),
               Take(ctx.ws.mu, ctx.N * inter));
    lap(LayerPartTimes::kShared);  // a dense layer's MLP counts as its always-on expert
  }
  if (ctx.dump) ctx.dump->Put(lw.layer, "ffn_out", out, ctx.N, ctx.config.hidden_size);
}

}  // namespace dsinfer
