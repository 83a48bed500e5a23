// Multi-head latent attention with DeepSeek Sparse Attention (NUMERICS.md §4–§5, MODEL.md §3).
#include <algorithm>
#include <cmath>
#include <cstring>
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

// q_abs[s,h,:] = W_UK_hᵀ q_nope[s,h,:]; each wkv_b row is decoded once for all tokens.
// q: [S, H, dn+dr], q_abs: [S, H, R]
void AbsorbQuery(const Dims& d, const WeightView& wkv_b, const float* q, int64_t S,
                 float* q_abs) {
  std::fill(q_abs, q_abs + S * d.H * d.R, 0.0f);
#pragma omp parallel if (d.H * d.dn * d.R * (S + 1) >= kParallelWork)
  {
    std::vector<float> row(d.R);  // [R] one W_UK row
#pragma omp for schedule(dynamic)
    for (int64_t h = 0; h < d.H; ++h)
      for (int64_t i = 0; i < d.dn; ++i) {
        DecodeRow(wkv_b, h * (d.dn + d.dv) + i, row.data());
        for (int64_t s = 0; s < S; ++s) {
          const float qv = q[(s * d.H + h) * d.dq() + i];
          float* dst = q_abs + (s * d.H + h) * d.R;
          for (int64_t c = 0; c < d.R; ++c) dst[c] += qv * row[c];
        }
      }
  }
}

// o[s, h*dv + i] = W_UV_h[i,:] · o_lat[s,h,:].  o_lat: [S, H, R], o: [S, H*dv]
void ProjectValues(const Dims& d, const WeightView& wkv_b, const float* o_lat, int64_t S,
                   float* o) {
#pragma omp parallel if (d.H * d.dv * d.R * (S + 1) >= kParallelWork)
  {
    std::vector<float> row(d.R);  // [R] one W_UV row
#pragma omp for schedule(dynamic)
    for (int64_t h = 0; h < d.H; ++h)
      for (int64_t i = 0; i < d.dv; ++i) {
        DecodeRow(wkv_b, h * (d.dn + d.dv) + d.dn + i, row.data());
        for (int64_t s = 0; s < S; ++s)
          o[s * d.H * d.dv + h * d.dv + i] = Dot(o_lat + (s * d.H + h) * d.R, row.data(), d.R);
      }
  }
}

// Indexer keys of the current tokens → cache (post-LayerNorm, RoPE, Hadamard, FP8).
void IndexerKeys(const LayerContext& ctx, const IndexerWeights& iw, LayerKvCache& cache,
                 const float* x, int64_t S, int64_t start) {
  const int64_t dI = *ctx.config.index_head_dim;
  const IndexKeyLayout& layout = cache.index_layout();
  std::vector<float> k(S * dI);  // [S, index_head_dim]
  std::vector<float> scales(QuantBlocks(dI));  // [index_head_dim / 128]
  Linear(x, S, iw.wk, k.data());
  LayerNorm(k.data(), S, dI, iw.k_norm_w.data(), iw.k_norm_b.data(), 1e-6f, k.data());
  for (int64_t s = 0; s < S; ++s) {
    float* ks = &k[s * dI];
    ctx.rope.ApplyHalves(ks, start + s);
    Hadamard(ks, dI);
    std::byte* row = cache.index_row(start + s);
    ActQuant(ks, dI, reinterpret_cast<uint8_t*>(row), scales.data());
    std::memcpy(row + layout.head_dim, scales.data(), scales.size() * sizeof(float));
  }
}

struct IndexerQueries {
  std::vector<uint8_t> codes;  // [S, H_I, d_I] e4m3
  std::vector<float> scales;   // [S, H_I, d_I/128]
  std::vector<float> weights;  // [S, H_I]
};

IndexerQueries ComputeIndexerQueries(const LayerContext& ctx, const IndexerWeights& iw, const float* x,
                            const float* qr, int64_t S, int64_t start) {
  const int64_t HI = *ctx.config.index_n_heads, dI = *ctx.config.index_head_dim;
  const int64_t nb = QuantBlocks(dI);
  std::vector<float> q(S * HI * dI);  // [S, H_I, d_I]
  Linear(qr, S, iw.wq_b, q.data());
  IndexerQueries out{std::vector<uint8_t>(S * HI * dI), std::vector<float>(S * HI * nb),
                     std::vector<float>(S * HI)};
  for (int64_t s = 0; s < S; ++s)
    for (int64_t h = 0; h < HI; ++h) {
      float* qh = &q[(s * HI + h) * dI];
      ctx.rope.ApplyHalves(qh, start + s);
      Hadamard(qh, dI);
      ActQuant(qh, dI, &out.codes[(s * HI + h) * dI], &out.scales[(s * HI + h) * nb]);
    }
  Linear(x, S, iw.weights_proj, out.weights.data());
  const float c1 = 1.0f / std::sqrt(static_cast<float>(HI));
  const float c2 = 1.0f / std::sqrt(static_cast<float>(dI));
  for (float& w : out.weights) w = w * c1 * c2;
  return out;
}

// Selected key positions per query (ascending), dense [0, p] when k ≥ p + 1.
std::vector<std::vector<int32_t>> SelectKeys(const LayerContext& ctx, const LayerWeights& lw,
                                             LayerKvCache& cache, const float* x,
                                             const float* qr, int64_t S, int64_t start) {
  std::vector<std::vector<int32_t>> sel(S);
  const bool indexer = ctx.use_indexer && lw.indexer.has_value();
  if (indexer) IndexerKeys(ctx, *lw.indexer, cache, x, S, start);
  const int64_t n_ctx = start + S;
  const bool need_scores = indexer && ctx.index_topk < n_ctx;
  std::vector<float> scores;  // [S, n_ctx] −inf where t > p or not computed
  if (need_scores) {
    IndexerQueries iq = ComputeIndexerQueries(ctx, *lw.indexer, x, qr, S, start);
    const int64_t HI = *ctx.config.index_n_heads, dI = *ctx.config.index_head_dim;
    scores.assign(S * n_ctx, -INFINITY);
#pragma omp parallel for schedule(dynamic) if (S * n_ctx * HI * dI >= kParallelWork)
    for (int64_t s = 0; s < S; ++s) {
      const int64_t p = start + s;
      if (ctx.index_topk >= p + 1) continue;
      IndexerQuery q{&iq.codes[s * HI * dI], &iq.scales[s * HI * QuantBlocks(dI)],
                     &iq.weights[s * HI], HI, dI};
      IndexerScores(q, cache.index_keys(), p + 1, &scores[s * n_ctx]);
      sel[s] = TopK(&scores[s * n_ctx], p + 1, ctx.index_topk);
    }
  }
  for (int64_t s = 0; s < S; ++s)
    if (sel[s].empty())
      for (int32_t t = 0; t <= start + s; ++t) sel[s].push_back(t);
  if (indexer && ctx.dump) {
    if (scores.empty()) scores.assign(S * n_ctx, -INFINITY);
    ctx.dump->Put(lw.layer, "index_scores", scores.data(), S, n_ctx);
    const int64_t kmax = std::min(ctx.index_topk, n_ctx);
    std::vector<int32_t> topk(S * kmax, -1);  // [S, k_max] −1 padded
    for (int64_t s = 0; s < S; ++s)
      std::copy(sel[s].begin(), sel[s].end(), &topk[s * kmax]);
    ctx.dump->Put(lw.layer, "topk", topk.data(), S, kmax);
  }
  return sel;
}

// q: [S, H, dn + dr] with q_pe rotated; qr: [S, q_lora_rank] (empty without q_lora).
void ProjectQuery(const LayerContext& ctx, const LayerWeights& lw, const Dims& d, const float* x,
                  int64_t S, int64_t start, std::vector<float>& qr, std::vector<float>& q) {
  const ModelConfig& c = ctx.config;
  q.resize(S * d.H * d.dq());
  if (lw.wq_a) {
    qr.resize(S * *c.q_lora_rank);
    Linear(x, S, *lw.wq_a, qr.data());
    RmsNorm(qr.data(), S, *c.q_lora_rank, lw.q_norm.data(), c.rms_norm_eps, qr.data());
    if (ctx.dump) ctx.dump->Put(lw.layer, "q_latent", qr.data(), S, *c.q_lora_rank);
    Linear(qr.data(), S, lw.wq_b, q.data());
  } else {
    Linear(x, S, lw.wq_b, q.data());  // q_proj
  }
  for (int64_t s = 0; s < S; ++s)
    for (int64_t h = 0; h < d.H; ++h)
      ctx.rope.ApplyInterleaved(&q[(s * d.H + h) * d.dq() + d.dn], start + s);
}

// c = kv_norm(wkv_a x)[:R], k_pe = RoPE(wkv_a x)[R:], written to the cache rows start.. .
void WriteLatents(const LayerContext& ctx, const LayerWeights& lw, const Dims& d,
                  LayerKvCache& cache, const float* x, int64_t S, int64_t start) {
  std::vector<float> kv_a(S * (d.R + d.dr));  // [S, R + dr]
  Linear(x, S, lw.wkv_a, kv_a.data());
  std::vector<float> ckv(S * d.R), k_pe(S * d.dr);  // [S, R], [S, dr]
  for (int64_t s = 0; s < S; ++s) {
    RmsNorm(&kv_a[s * (d.R + d.dr)], 1, d.R, lw.kv_norm.data(), ctx.config.rms_norm_eps,
            &ckv[s * d.R]);
    std::copy_n(&kv_a[s * (d.R + d.dr) + d.R], d.dr, &k_pe[s * d.dr]);
    ctx.rope.ApplyInterleaved(&k_pe[s * d.dr], start + s);
    cache.layout().Encode(&ckv[s * d.R], &k_pe[s * d.dr], cache.latent_row(start + s));
  }
  if (ctx.dump) {
    ctx.dump->Put(lw.layer, "kv_latent", ckv.data(), S, d.R);
    ctx.dump->Put(lw.layer, "k_pe", k_pe.data(), S, d.dr);
  }
}

}  // namespace

void AttentionForward(const LayerContext& ctx, const LayerWeights& lw, LayerKvCache& cache,
                      const float* x, int64_t S, int64_t start, float* out) {
  const Dims d(ctx.config);
  std::vector<float> qr, q;  // [S, q_lora_rank], [S, H, dn + dr]
  ProjectQuery(ctx, lw, d, x, S, start, qr, q);
  WriteLatents(ctx, lw, d, cache, x, S, start);  // before attention reads the cache
  std::vector<float> q_abs(S * d.H * d.R);  // [S, H, R]
  AbsorbQuery(d, lw.wkv_b, q.data(), S, q_abs.data());
  std::vector<float> q_pe(S * d.H * d.dr);  // [S, H, dr] contiguous per token
  for (int64_t sh = 0; sh < S * d.H; ++sh)
    std::copy_n(&q[sh * d.dq() + d.dn], d.dr, &q_pe[sh * d.dr]);
  std::vector<std::vector<int32_t>> sel =
      SelectKeys(ctx, lw, cache, x, qr.empty() ? nullptr : qr.data(), S, start);
  std::vector<float> o_lat(S * d.H * d.R);  // [S, H, R]
  const float scale = static_cast<float>(ctx.config.softmax_scale());
#pragma omp parallel for schedule(dynamic) if (S * (start + S) * d.H * d.R >= kParallelWork)
  for (int64_t s = 0; s < S; ++s) {
    MlaQuery mq{&q_abs[s * d.H * d.R], &q_pe[s * d.H * d.dr], d.H, scale};
    SparseMlaAttention(mq, cache.layout(), cache.latent(), sel[s].data(),
                       static_cast<int64_t>(sel[s].size()), &o_lat[s * d.H * d.R]);
  }
  std::vector<float> o(S * d.H * d.dv);  // [S, H * dv]
  ProjectValues(d, lw.wkv_b, o_lat.data(), S, o.data());
  Linear(o.data(), S, lw.wo, out);
  if (ctx.dump) ctx.dump->Put(lw.layer, "attn_out", out, S, d.hidden);
}

}  // namespace dsinfer
