// Multi-head latent attention with DeepSeek Sparse Attention (docs/numerics.md §4–§5,
// docs/model.md §3),
// over a batch of segments: projections over all rows at once, cache writes, then key selection
// (fused indexer + streaming top-k) and attention per block of a segment's rows (each row at its
// own position, against its own sequence's cache).
// Invariance: every kernel used here computes a row's result independently of the other rows of
// its call (the GEMMs are batch-invariant; the indexer and attention kernels tile keys at
// absolute positions and keep per-query state), so a token's logits and cache rows do not depend
// on the batch, on where its prefill chunk started, or on how rows are split into blocks and
// threads (tests/unit/model/batch_test.cc).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include "base/error.h"
#include "base/threads.h"
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

// q_abs[s,h,:] = W_UK_hᵀ q_nope[s,h,:].  q: [N, H, dn + dr], q_abs: [N, H, R]
// Through the transposed copy when the model has one (rows h·R .. (h+1)·R of wuk_t), else
// transposed over wkv_b's key rows. Either way one path per model, so results stay batch and
// chunk invariant.
void AbsorbQuery(const Dims& d, const LayerWeights& lw, const float* q, int64_t N, float* q_abs) {
  // One head per iteration; inside a region the GEMM runs on its calling thread. Contiguous
  // head ranges per thread (static): each thread streams one contiguous range of weights.
  // Threads when the work or the weights are large. Without them in decode, each head's GEMV
  // opens its own region once its weights pass kParallelGemvBytes (the f32 kv_b copies of a GGUF
  // file do): a fork and join per head, which cost 6.5 ms per layer on `mini` (0.16 ms FP8).
  const int64_t bytes = lw.wuk_t ? d.H * d.R * lw.wuk_t->view.row_bytes() : d.H * d.dn * lw.wkv_b.row_bytes();
#pragma omp parallel for schedule(static) if (N * d.H * d.dn * d.R >= kParallelWork || bytes >= kParallelGemvBytes)
  for (int64_t h = 0; h < d.H; ++h) {
    DSINFER_NOTE_THREAD("mla.absorb_q");
    if (lw.wuk_t)
      LinearRows(q + h * d.dq(), d.H * d.dq(), N, lw.wuk_t->view, h * d.R, (h + 1) * d.R,
                 q_abs + h * d.R, d.H * d.R);
    else
      LinearTransposed(q + h * d.dq(), d.H * d.dq(), N, lw.wkv_b, h * (d.dn + d.dv),
                       h * (d.dn + d.dv) + d.dn, q_abs + h * d.R, d.H * d.R);
  }
}

// o[s, h*dv + i] = W_UV_h[i,:] · o_lat[s,h,:].  o_lat: [N, H, R], o: [N, H*dv]
// W_UV_h: rows h·dv .. (h+1)·dv of wv_b when the model stores it apart (a GGUF's attn_v_b),
// else wkv_b's value rows of head h.
void ProjectValues(const Dims& d, const LayerWeights& lw, const float* o_lat, int64_t N,
                   float* o) {
  const bool split = lw.wv_b.data != nullptr;
  const WeightView& w = split ? lw.wv_b : lw.wkv_b;
  const int64_t bytes = d.H * d.dv * w.row_bytes();  // as AbsorbQuery
#pragma omp parallel for schedule(static) if (N * d.H * d.dv * d.R >= kParallelWork || bytes >= kParallelGemvBytes)
  for (int64_t h = 0; h < d.H; ++h) {
    DSINFER_NOTE_THREAD("mla.expand_o");
    const int64_t r0 = split ? h * d.dv : h * (d.dn + d.dv) + d.dn;
    LinearRows(o_lat + h * d.R, d.H * d.R, N, w, r0, r0 + d.dv, o + h * d.dv, d.H * d.dv);
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
  Linear(ctx.numerics, x, N, iw.wk, k);
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
  Linear(ctx.numerics, qr, N, iw.wq_b, q);
  for (int64_t r = 0; r < N; ++r)
    for (int64_t h = 0; h < HI; ++h) {
      float* qh = q + (r * HI + h) * dI;
      ctx.rope.ApplyHalves(qh, ws.pos[r]);
      Hadamard(qh, dI);
      ActQuant(qh, dI, codes + (r * HI + h) * dI, scales + (r * HI + h) * nb);
    }
  Linear(x, N, iw.weights_proj, weights);  // f32 in both numerics (model.md §11)
  const float c1 = 1.0f / std::sqrt(static_cast<float>(HI));
  const float c2 = 1.0f / std::sqrt(static_cast<float>(dI));
  for (int64_t i = 0; i < N * HI; ++i) weights[i] = weights[i] * c1 * c2;
}

// Block rows: about two blocks per thread for a long segment (so dynamic scheduling balances
// the causal imbalance), at most kMaxBlockRows (a block's queries share each decoded key tile).
constexpr int64_t kMaxBlockRows = 64;

// ws.blocks: every segment cut into blocks of consecutive rows; per-thread kernel scratch.
void LayOutBlocks(const LayerContext& ctx) {
  Workspace& ws = ctx.ws;
  const int threads = omp_get_max_threads();
  if (static_cast<int>(ws.mla_ws.size()) < threads) ws.mla_ws.resize(threads);
  if (static_cast<int>(ws.indexer_ws.size()) < threads) ws.indexer_ws.resize(threads);
  int64_t n = 0;
  for (const Segment& seg : ws.segs)
    n += (seg.rows + kMaxBlockRows - 1) / kMaxBlockRows + 2 * threads;
  RowBlock* blocks = Take(ws.blocks, n);
  n = 0;
  for (size_t i = 0; i < ws.segs.size(); ++i) {
    const int64_t rows = ws.segs[i].rows;
    const int64_t per = std::clamp<int64_t>((rows + 2 * threads - 1) / (2 * threads), 1,
                                            kMaxBlockRows);
    for (int64_t first = 0; first < rows; first += per)
      blocks[n++] = RowBlock{static_cast<int32_t>(i), first, std::min(per, rows - first)};
  }
  ws.n_blocks = n;
}

// Selected rows of block b: [b.rows, k] at ws.sel (an indexer segment's rows).
int32_t* SelOf(Workspace& ws, const RowBlock& b) {
  return ws.sel.data() + ws.sel_off[b.seg] + b.first * ws.segs[b.seg].index_topk;
}

// Whether some query of the block needs indexer scores (k < p + 1 for its last row).
bool BlockScored(const Segment& seg, const RowBlock& b) {
  return seg.index_topk < seg.start + b.first + b.rows;
}

// The indexer queries of block b (computed by IndexerQueries).
IndexerChunk IndexerChunkOf(const LayerContext& ctx, const RowBlock& b) {
  const Workspace& ws = ctx.ws;
  const Segment& seg = ws.segs[b.seg];
  const int64_t HI = *ctx.config.index_n_heads, dI = *ctx.config.index_head_dim;
  const int64_t r = seg.row + b.first;
  return IndexerChunk{&ws.iq_codes[r * HI * dI], &ws.iq_scales[r * HI * QuantBlocks(dI)],
                      &ws.iq_weights[r * HI],    b.rows,
                      HI,                        dI,
                      seg.start + b.first};
}

// `--dump-dir` (a single segment): index_scores [S, n_ctx] (the scores the selection ranked, −inf
// where t > p or not computed) and topk [S, min(k, n_ctx)] (−1 padded). Debug path: allocates.
void DumpSelection(const LayerContext& ctx, const LayerWeights& lw, IndexerPath path) {
  Workspace& ws = ctx.ws;
  const Segment& seg = ws.segs[0];
  const int64_t S = ctx.N, n_ctx = seg.start + S, k = seg.index_topk;
  const int64_t HI = *ctx.config.index_n_heads, dI = *ctx.config.index_head_dim;
  std::vector<float> scores(S * n_ctx, -INFINITY);
  const int64_t kmax = std::min(k, n_ctx);
  std::vector<int32_t> topk(S * kmax, -1);
  for (int64_t s = 0; s < S; ++s) {
    const int64_t p = seg.start + s;
    if (k < p + 1) {
      const IndexerQuery q{&ws.iq_codes[s * HI * dI], &ws.iq_scales[s * HI * QuantBlocks(dI)],
                           &ws.iq_weights[s * HI], HI, dI};
      IndexerScores(q, seg.cache->index_keys(), p + 1, &scores[s * n_ctx], path,
                    ws.indexer_ws[0]);
    }
    std::copy_n(&ws.sel[ws.sel_off[0] + s * k], std::min(k, p + 1), &topk[s * kmax]);
  }
  ctx.dump->Put(lw.layer, "index_scores", scores.data(), S, n_ctx);
  ctx.dump->Put(lw.layer, "topk", topk.data(), S, kmax);
}

// Key selection of every indexer segment into ws.sel (per block: IndexerTopK's [rows, k] layout,
// ascending; [0, p] for a query with k ≥ p + 1). Dense segments select nothing.
void SelectKeys(const LayerContext& ctx, const LayerWeights& lw, const float* x,
                const float* qr) {
  Workspace& ws = ctx.ws;
  int64_t* off = Take(ws.sel_off, static_cast<int64_t>(ws.segs.size()));
  int64_t total = 0;
  bool any_scores = false;
  for (size_t i = 0; i < ws.segs.size(); ++i) {
    const Segment& seg = ws.segs[i];
    off[i] = total;
    if (!SegUsesIndexer(seg, lw)) continue;
    total += seg.rows * seg.index_topk;
    any_scores = any_scores || seg.index_topk < seg.start + seg.rows;
  }
  if (total == 0) return;
  Take(ws.sel, total);
  IndexerKeys(ctx, *lw.indexer, x);
  if (any_scores) IndexerQueries(ctx, *lw.indexer, x, qr);
  const int64_t HI = *ctx.config.index_n_heads, dI = *ctx.config.index_head_dim;
  const IndexerPath path = BestIndexerPath(dI);
  int64_t n_scored = 0, work = 0;
  const RowBlock* scored = nullptr;
  for (int64_t i = 0; i < ws.n_blocks; ++i) {
    const RowBlock& b = ws.blocks[i];
    const Segment& seg = ws.segs[b.seg];
    if (!SegUsesIndexer(seg, lw)) continue;
    if (BlockScored(seg, b)) {
      ++n_scored;
      scored = &b;
      work += b.rows * (seg.start + b.first + b.rows) * HI * dI;
      continue;
    }
    int32_t* sel = SelOf(ws, b);  // every query of the block selects [0, p]
    for (int64_t s = 0; s < b.rows; ++s)
      std::iota(sel + s * seg.index_topk, sel + s * seg.index_topk + seg.start + b.first + s + 1,
                0);
  }
  if (n_scored == 1) {  // e.g. one long decode query: every thread scans part of the keys
    IndexerTopKSplitKeys(IndexerChunkOf(ctx, *scored), ws.segs[scored->seg].cache->index_keys(),
                         ws.segs[scored->seg].index_topk, SelOf(ws, *scored), path);
  } else if (n_scored > 1) {
#pragma omp parallel for schedule(dynamic) if (work >= kParallelWork)
    for (int64_t i = 0; i < ws.n_blocks; ++i) {
      DSINFER_NOTE_THREAD("mla.select");
      const RowBlock& b = ws.blocks[i];
      const Segment& seg = ws.segs[b.seg];
      if (!SegUsesIndexer(seg, lw) || !BlockScored(seg, b)) continue;
      IndexerTopK(IndexerChunkOf(ctx, b), seg.cache->index_keys(), seg.index_topk, SelOf(ws, b),
                  ws.indexer_ws[omp_get_thread_num()], path);
    }
  }
  if (ctx.dump) DumpSelection(ctx, lw, path);
}

// q: [N, H, dn + dr] with q_pe rotated; qr: [N, q_lora_rank] (null without q_lora).
void ProjectQuery(const LayerContext& ctx, const LayerWeights& lw, const Dims& d, const float* x,
                  float** qr_out, float* q) {
  const ModelConfig& c = ctx.config;
  const int64_t N = ctx.N;
  *qr_out = nullptr;
  if (lw.wq_a) {
    float* qr = Take(ctx.ws.qr, N * *c.q_lora_rank);
    Linear(ctx.numerics, x, N, *lw.wq_a, qr);
    RmsNorm(qr, N, *c.q_lora_rank, lw.q_norm.data(), c.rms_norm_eps, qr);
    if (ctx.dump) ctx.dump->Put(lw.layer, "q_latent", qr, N, *c.q_lora_rank);
    Linear(ctx.numerics, qr, N, lw.wq_b, q);
    *qr_out = qr;
  } else {
    Linear(ctx.numerics, x, N, lw.wq_b, q);  // q_proj
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
  Linear(ctx.numerics, x, N, lw.wkv_a, kv_a);
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

// Attention of block b over heads [h0, h1) (a head range only for a single-row block):
// sparse over its selected rows for an indexer segment, else dense over all t ≤ p.
void AttendBlock(const LayerContext& ctx, const LayerWeights& lw, const Dims& d,
                 const RowBlock& b, int64_t h0, int64_t h1, const float* q_abs, const float* q_pe,
                 float* o_lat, MlaWorkspace& mw) {
  Workspace& ws = ctx.ws;
  const Segment& seg = ws.segs[b.seg];
  const int64_t r = seg.row + b.first;
  const MlaChunk q{q_abs + (r * d.H + h0) * d.R, q_pe + (r * d.H + h0) * d.dr, b.rows, h1 - h0,
                   static_cast<float>(ctx.config.softmax_scale()), seg.start + b.first};
  float* o = o_lat + (r * d.H + h0) * d.R;
  const LayerKvCache& cache = *seg.cache;
  const Isa isa = DetectCpu().best;
  if (SegUsesIndexer(seg, lw))
    SparseMlaAttentionChunk(q, cache.layout(), cache.latent(), SelOf(ws, b), seg.index_topk, o,
                            mw, isa);
  else
    DenseMlaAttentionChunk(q, cache.layout(), cache.latent(), o, mw, isa);
}

// o_lat: [N, H, R] of every block, in parallel over blocks; a single decode query (batch of one)
// is split over heads instead, at multiples of 4 heads (the kernels' head blocking, so each
// head's arithmetic is that of an unsplit call).
void Attend(const LayerContext& ctx, const LayerWeights& lw, const Dims& d, const float* q_abs,
            const float* q_pe, float* o_lat) {
  Workspace& ws = ctx.ws;
  int64_t work = 0;  // Σ keys read × heads × latent width
  for (int64_t i = 0; i < ws.n_blocks; ++i) {
    const RowBlock& b = ws.blocks[i];
    const Segment& seg = ws.segs[b.seg];
    const int64_t keys = seg.start + b.first + b.rows;
    work += b.rows * (SegUsesIndexer(seg, lw) ? std::min(seg.index_topk, keys) : keys);
  }
  work *= d.H * d.R;
  const int threads = omp_get_max_threads();
  if (ws.n_blocks == 1 && ws.blocks[0].rows == 1 && threads > 1 && d.H >= 8) {
    const int64_t parts = std::min<int64_t>(threads, d.H / 4);
#pragma omp parallel for schedule(static) num_threads(parts) if (work >= kParallelWork)
    for (int64_t i = 0; i < parts; ++i) {
      DSINFER_NOTE_THREAD("mla.attend_heads");
      const int64_t h0 = i * (d.H / 4) / parts * 4;
      const int64_t h1 = i + 1 == parts ? d.H : (i + 1) * (d.H / 4) / parts * 4;
      AttendBlock(ctx, lw, d, ws.blocks[0], h0, h1, q_abs, q_pe, o_lat,
                  ws.mla_ws[omp_get_thread_num()]);
    }
    return;
  }
#pragma omp parallel for schedule(dynamic) if (ws.n_blocks > 1 && work >= kParallelWork)
  for (int64_t i = 0; i < ws.n_blocks; ++i) {
    DSINFER_NOTE_THREAD("mla.attend_blocks");
    AttendBlock(ctx, lw, d, ws.blocks[i], 0, d.H, q_abs, q_pe, o_lat,
                ws.mla_ws[omp_get_thread_num()]);
  }
}

}  // namespace

void AttentionForward(const LayerContext& ctx, const LayerWeights& lw, const float* x,
                      float* out) {
  const Dims d(ctx.config);
  Workspace& ws = ctx.ws;
  const int64_t N = ctx.N;
  PartLap lap(ws);
  float* q = Take(ws.q, N * d.H * d.dq());  // [N, H, dn + dr]
  float* qr = nullptr;                      // [N, q_lora_rank]
  ProjectQuery(ctx, lw, d, x, &qr, q);
  WriteLatents(ctx, lw, d, x);  // before attention reads the caches
  float* q_abs = Take(ws.q_abs, N * d.H * d.R);  // [N, H, R]
  AbsorbQuery(d, lw, q, N, q_abs);
  float* q_pe = Take(ws.q_pe, N * d.H * d.dr);  // [N, H, dr] contiguous per token
  for (int64_t rh = 0; rh < N * d.H; ++rh)
    std::copy_n(&q[rh * d.dq() + d.dn], d.dr, &q_pe[rh * d.dr]);
  LayOutBlocks(ctx);
  lap(LayerPartTimes::kAttnProj);
  SelectKeys(ctx, lw, x, qr);
  lap(LayerPartTimes::kIndexer);
  float* o_lat = Take(ws.o_lat, N * d.H * d.R);  // [N, H, R]
  Attend(ctx, lw, d, q_abs, q_pe, o_lat);
  lap(LayerPartTimes::kAttention);
  float* o = Take(ws.o, N * d.H * d.dv);  // [N, H * dv]
  ProjectValues(d, lw, o_lat, N, o);
  Linear(ctx.numerics, o, N, lw.wo, out);
  lap(LayerPartTimes::kAttnOut);
  if (ctx.dump) ctx.dump->Put(lw.layer, "attn_out", out, N, d.hidden);
}

}  // namespace dsinfer
