// Multi-head latent attention with DeepSeek Sparse Attention (NUMERICS.md §4–§5, MODEL.md §3),
// over a batch of segments: projections over all rows at once, cache writes, key selection and
// attention per segment (each row at its own position, against its own sequence's cache).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include "base/error.h"
#include "kernels/attention.h"
#include "kernels/indexer.h"
#include "kernels/linear.h"
#include "kernels/norm.h"
#include "kernels/quant.h"
#include "kernels/topk.h"
#include "model/layers.h"

namespace dsinfer {

namespace {

struct Dims {
  int64_t H, dn, dr, dv, R, hidden;
  explicit Dims(const ModelConfig& c)
      : H(c.num_attention_heads), dn(c.qk_nope_head_dim), dr(c.qk_rope_head_dim),
        dv(c.v_head_dim), R(c.kv_lora_rank), hidden(c.hidden_size) {}
  int64_t dq() const { return dn + dr; }
};

const Segment& SegOf(const LayerContext& ctx, int64_t r) { return ctx.ws.segs[ctx.ws.row_seg[r]]; }

// q_abs[s,h,:] = W_UK_hᵀ q_nope[s,h,:]; each wkv_b row is decoded once for all tokens.
// q: [N, H, dn+dr], q_abs: [N, H, R]
void AbsorbQuery(const Dims& d, const WeightView& wkv_b, const float* q, int64_t N, float* q_abs,
                 std::vector<float>& rows) {
  std::fill(q_abs, q_abs + N * d.H * d.R, 0.0f);
  float* row_buf = Take(rows, omp_get_max_threads() * d.R);  // [threads, R]
#pragma omp parallel if (d.H * d.dn * d.R * (N + 1) >= kParallelWork)
  {
    float* row = row_buf + omp_get_thread_num() * d.R;  // [R] one W_UK row
#pragma omp for schedule(dynamic)
    for (int64_t h = 0; h < d.H; ++h)
      for (int64_t i = 0; i < d.dn; ++i) {
        DecodeRow(wkv_b, h * (d.dn + d.dv) + i, row);
        for (int64_t s = 0; s < N; ++s) {
          const float qv = q[(s * d.H + h) * d.dq() + i];
          float* dst = q_abs + (s * d.H + h) * d.R;
          for (int64_t c = 0; c < d.R; ++c) dst[c] += qv * row[c];
        }
      }
  }
}

// o[s, h*dv + i] = W_UV_h[i,:] · o_lat[s,h,:].  o_lat: [N, H, R], o: [N, H*dv]
void ProjectValues(const Dims& d, const WeightView& wkv_b, const float* o_lat, int64_t N,
                   float* o, std::vector<float>& rows) {
  float* row_buf = Take(rows, omp_get_max_threads() * d.R);  // [threads, R]
#pragma omp parallel if (d.H * d.dv * d.R * (N + 1) >= kParallelWork)
  {
    float* row = row_buf + omp_get_thread_num() * d.R;  // [R] one W_UV row
#pragma omp for schedule(dynamic)
    for (int64_t h = 0; h < d.H; ++h)
      for (int64_t i = 0; i < d.dv; ++i) {
        DecodeRow(wkv_b, h * (d.dn + d.dv) + d.dn + i, row);
        for (int64_t s = 0; s < N; ++s)
          o[s * d.H * d.dv + h * d.dv + i] = Dot(o_lat + (s * d.H + h) * d.R, row, d.R);
      }
  }
}

bool SegUsesIndexer(const Segment& seg, const LayerWeights& lw) {
  return seg.use_indexer && lw.indexer.has_value();
}

// Indexer keys of the batch's tokens → their caches (post-LayerNorm, RoPE, Hadamard, FP8).
// Computed for all N rows (row-wise, so rows of segments without the indexer are only wasted
// work), written for the segments that use it.
void IndexerKeys(const LayerContext& ctx, const IndexerWeights& iw, const float* x) {
  Workspace& ws = ctx.ws;
  const int64_t dI = *ctx.config.index_head_dim, N = ctx.N;
  float* k = Take(ws.ik, N * dI);                       // [N, index_head_dim]
  float* scales = Take(ws.ik_scales, QuantBlocks(dI));  // [index_head_dim / 128]
  Linear(x, N, iw.wk, k);
  LayerNorm(k, N, dI, iw.k_norm_w.data(), iw.k_norm_b.data(), 1e-6f, k);
  for (int64_t r = 0; r < N; ++r) {
    const Segment& seg = SegOf(ctx, r);
    if (!seg.use_indexer) continue;
    float* kr = k + r * dI;
    ctx.rope.ApplyHalves(kr, ws.pos[r]);
    Hadamard(kr, dI);
    std::byte* row = seg.cache->index_row(ws.pos[r]);
    ActQuant(kr, dI, reinterpret_cast<uint8_t*>(row), scales);
    std::memcpy(row + seg.cache->index_layout().head_dim, scales,
                QuantBlocks(dI) * sizeof(float));
  }
}

// Indexer queries of all N rows into ws.iq_codes / iq_scales / iq_weights.
void IndexerQueries(const LayerContext& ctx, const IndexerWeights& iw, const float* x,
                    const float* qr) {
  Workspace& ws = ctx.ws;
  const int64_t HI = *ctx.config.index_n_heads, dI = *ctx.config.index_head_dim, N = ctx.N;
  const int64_t nb = QuantBlocks(dI);
  float* q = Take(ws.iq, N * HI * dI);  // [N, H_I, d_I]
  uint8_t* codes = Take(ws.iq_codes, N * HI * dI);
  float* scales = Take(ws.iq_scales, N * HI * nb);
  float* weights = Take(ws.iq_weights, N * HI);
  Linear(qr, N, iw.wq_b, q);
  for (int64_t r = 0; r < N; ++r)
    for (int64_t h = 0; h < HI; ++h) {
      float* qh = q + (r * HI + h) * dI;
      ctx.rope.ApplyHalves(qh, ws.pos[r]);
      Hadamard(qh, dI);
      ActQuant(qh, dI, codes + (r * HI + h) * dI, scales + (r * HI + h) * nb);
    }
  Linear(x, N, iw.weights_proj, weights);
  const float c1 = 1.0f / std::sqrt(static_cast<float>(HI));
  const float c2 = 1.0f / std::sqrt(static_cast<float>(dI));
  for (int64_t i = 0; i < N * HI; ++i) weights[i] = weights[i] * c1 * c2;
}

// Whether row r's keys come from the indexer (else all of [0, p]).
bool NeedsScores(const LayerContext& ctx, const LayerWeights& lw, int64_t r) {
  const Segment& seg = SegOf(ctx, r);
  return SegUsesIndexer(seg, lw) && seg.index_topk < ctx.ws.pos[r] + 1;
}

// `--dump-dir` (a single segment): index_scores [S, n_ctx] and topk [S, min(k, n_ctx)].
void DumpSelection(const LayerContext& ctx, const LayerWeights& lw,
                   const std::vector<float>& scores) {
  const Segment& seg = ctx.ws.segs[0];
  const int64_t S = ctx.N, n_ctx = seg.start + S;
  if (scores.empty())
    ctx.dump->Put(lw.layer, "index_scores", std::vector<float>(S * n_ctx, -INFINITY).data(), S,
                  n_ctx);
  else
    ctx.dump->Put(lw.layer, "index_scores", scores.data(), S, n_ctx);
  const int64_t kmax = std::min(seg.index_topk, n_ctx);
  std::vector<int32_t> topk(S * kmax, -1);  // [S, k_max] −1 padded
  for (int64_t s = 0; s < S; ++s)
    std::copy_n(ctx.ws.sel_ptr[s], ctx.ws.sel_n[s], &topk[s * kmax]);
  ctx.dump->Put(lw.layer, "topk", topk.data(), S, kmax);
}

// Selected key positions of every row into ws.sel_ptr / sel_n (ascending): the indexer's top-k,
// or dense [0, p] when the row has no indexer or k ≥ p + 1. Returns the total selected count.
int64_t SelectKeys(const LayerContext& ctx, const LayerWeights& lw, const float* x,
                   const float* qr) {
  Workspace& ws = ctx.ws;
  const int64_t N = ctx.N;
  bool any_indexer = false, any_scores = false;
  int64_t ctx_max = 0, kmax = 0, score_work = 0;
  for (const Segment& seg : ws.segs) {
    ctx_max = std::max(ctx_max, seg.cache->capacity());
    if (SegUsesIndexer(seg, lw)) {
      any_indexer = true;
      kmax = std::max(kmax, seg.index_topk);
    }
  }
  for (int64_t r = 0; r < N; ++r)
    if (NeedsScores(ctx, lw, r)) {
      any_scores = true;
      score_work += (ws.pos[r] + 1) * *ctx.config.index_n_heads * *ctx.config.index_head_dim;
    }
  if (static_cast<int64_t>(ws.iota.size()) < ctx_max) {
    ws.iota.resize(ctx_max);
    std::iota(ws.iota.begin(), ws.iota.end(), 0);
  }
  const int32_t* iota = ws.iota.data();
  const int32_t** sel_ptr = Take(ws.sel_ptr, N);
  int64_t* sel_n = Take(ws.sel_n, N);
  for (int64_t r = 0; r < N; ++r) {
    sel_ptr[r] = iota;
    sel_n[r] = ws.pos[r] + 1;
  }
  if (any_indexer) IndexerKeys(ctx, *lw.indexer, x);
  std::vector<float> dump_scores;  // [S, n_ctx] −inf where t > p or not computed (dump only)
  if (any_scores) {
    IndexerQueries(ctx, *lw.indexer, x, qr);
    const int64_t HI = *ctx.config.index_n_heads, dI = *ctx.config.index_head_dim;
    const int64_t nb = QuantBlocks(dI);
    if (ctx.dump) dump_scores.assign(N * (ws.segs[0].start + N), -INFINITY);
    int32_t* sel = Take(ws.sel, N * kmax);
    float* scores_buf = Take(ws.iscores, omp_get_max_threads() * ctx_max);
    // One row alone runs outside any region, so the kernel may parallelise inside.
#pragma omp parallel for schedule(dynamic) if (N > 1 && score_work >= kParallelWork)
    for (int64_t r = 0; r < N; ++r) {
      if (!NeedsScores(ctx, lw, r)) continue;
      const Segment& seg = SegOf(ctx, r);
      const int64_t p = ws.pos[r];
      float* scores = scores_buf + omp_get_thread_num() * ctx_max;  // [p + 1]
      IndexerQuery q{&ws.iq_codes[r * HI * dI], &ws.iq_scales[r * HI * nb],
                     &ws.iq_weights[r * HI], HI, dI};
      IndexerScores(q, seg.cache->index_keys(), p + 1, scores);
      const std::vector<int32_t> top = TopK(scores, p + 1, seg.index_topk);
      std::copy(top.begin(), top.end(), sel + r * kmax);
      sel_ptr[r] = sel + r * kmax;
      sel_n[r] = seg.index_topk;
      if (!dump_scores.empty())
        std::copy_n(scores, p + 1, &dump_scores[r * (seg.start + N)]);
    }
  }
  if (any_indexer && ctx.dump) DumpSelection(ctx, lw, dump_scores);
  int64_t total = 0;
  for (int64_t r = 0; r < N; ++r) total += sel_n[r];
  return total;
}

// q: [N, H, dn + dr] with q_pe rotated; qr: [N, q_lora_rank] (null without q_lora).
void ProjectQuery(const LayerContext& ctx, const LayerWeights& lw, const Dims& d, const float* x,
                  float** qr_out, float* q) {
  const ModelConfig& c = ctx.config;
  const int64_t N = ctx.N;
  *qr_out = nullptr;
  if (lw.wq_a) {
    float* qr = Take(ctx.ws.qr, N * *c.q_lora_rank);
    Linear(x, N, *lw.wq_a, qr);
    RmsNorm(qr, N, *c.q_lora_rank, lw.q_norm.data(), c.rms_norm_eps, qr);
    if (ctx.dump) ctx.dump->Put(lw.layer, "q_latent", qr, N, *c.q_lora_rank);
    Linear(qr, N, lw.wq_b, q);
    *qr_out = qr;
  } else {
    Linear(x, N, lw.wq_b, q);  // q_proj
  }
  for (int64_t r = 0; r < N; ++r)
    for (int64_t h = 0; h < d.H; ++h)
      ctx.rope.ApplyInterleaved(&q[(r * d.H + h) * d.dq() + d.dn], ctx.ws.pos[r]);
}

// c = kv_norm(wkv_a x)[:R], k_pe = RoPE(wkv_a x)[R:], written to each segment's cache rows.
void WriteLatents(const LayerContext& ctx, const LayerWeights& lw, const Dims& d,
                  const float* x) {
  Workspace& ws = ctx.ws;
  const int64_t N = ctx.N;
  float* kv_a = Take(ws.kv_a, N * (d.R + d.dr));  // [N, R + dr]
  float* ckv = Take(ws.ckv, N * d.R);             // [N, R]
  float* k_pe = Take(ws.k_pe, N * d.dr);          // [N, dr]
  Linear(x, N, lw.wkv_a, kv_a);
  for (int64_t r = 0; r < N; ++r) {
    RmsNorm(kv_a + r * (d.R + d.dr), 1, d.R, lw.kv_norm.data(), ctx.config.rms_norm_eps,
            ckv + r * d.R);
    std::copy_n(kv_a + r * (d.R + d.dr) + d.R, d.dr, k_pe + r * d.dr);
    ctx.rope.ApplyInterleaved(k_pe + r * d.dr, ws.pos[r]);
    LayerKvCache& cache = *SegOf(ctx, r).cache;
    cache.layout().Encode(ckv + r * d.R, k_pe + r * d.dr, cache.latent_row(ws.pos[r]));
  }
  if (ctx.dump) {
    ctx.dump->Put(lw.layer, "kv_latent", ckv, N, d.R);
    ctx.dump->Put(lw.layer, "k_pe", k_pe, N, d.dr);
  }
}

}  // namespace

void AttentionForward(const LayerContext& ctx, const LayerWeights& lw, const float* x,
                      float* out) {
  const Dims d(ctx.config);
  Workspace& ws = ctx.ws;
  const int64_t N = ctx.N;
  float* q = Take(ws.q, N * d.H * d.dq());  // [N, H, dn + dr]
  float* qr = nullptr;                      // [N, q_lora_rank]
  ProjectQuery(ctx, lw, d, x, &qr, q);
  WriteLatents(ctx, lw, d, x);  // before attention reads the caches
  float* q_abs = Take(ws.q_abs, N * d.H * d.R);  // [N, H, R]
  AbsorbQuery(d, lw.wkv_b, q, N, q_abs, ws.wkv_rows);
  float* q_pe = Take(ws.q_pe, N * d.H * d.dr);  // [N, H, dr] contiguous per token
  for (int64_t rh = 0; rh < N * d.H; ++rh)
    std::copy_n(&q[rh * d.dq() + d.dn], d.dr, &q_pe[rh * d.dr]);
  const int64_t selected = SelectKeys(ctx, lw, x, qr);
  float* o_lat = Take(ws.o_lat, N * d.H * d.R);  // [N, H, R]
  const float scale = static_cast<float>(ctx.config.softmax_scale());
  // Every row of every segment is an independent query: one parallel loop over all of them
  // (a single row runs outside any region, so the kernel may parallelise inside).
#pragma omp parallel for schedule(dynamic) if (N > 1 && selected * d.H * d.R >= kParallelWork)
  for (int64_t r = 0; r < N; ++r) {
    const LayerKvCache& cache = *SegOf(ctx, r).cache;
    MlaQuery mq{q_abs + r * d.H * d.R, q_pe + r * d.H * d.dr, d.H, scale};
    SparseMlaAttention(mq, cache.layout(), cache.latent(), ws.sel_ptr[r], ws.sel_n[r],
                       o_lat + r * d.H * d.R);
  }
  float* o = Take(ws.o, N * d.H * d.dv);  // [N, H * dv]
  ProjectValues(d, lw.wkv_b, o_lat, N, o, ws.wkv_rows);
  Linear(o, N, lw.wo, out);
  if (ctx.dump) ctx.dump->Put(lw.layer, "attn_out", out, N, d.hidden);
}

}  // namespace dsinfer
