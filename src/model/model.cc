#include "model/model.h"

#include <algorithm>
#include <cmath>

#include "base/error.h"
#include "kernels/linear.h"
#include "kernels/norm.h"
#include "model/layers.h"

namespace dsinfer {

namespace {

std::optional<YarnParams> Yarn(const ModelConfig& c) {
  if (!c.rope_scaling || c.rope_scaling->type != "yarn") return std::nullopt;
  const RopeScaling& r = *c.rope_scaling;
  return YarnParams{.factor = r.factor,
                    .original_max_position_embeddings = r.original_max_position_embeddings,
                    .beta_fast = r.beta_fast,
                    .beta_slow = r.beta_slow};
}

// One decoder layer in place on the residual stream h: [N, hidden].
void LayerForward(const LayerContext& ctx, const LayerWeights& lw, float* h) {
  const ModelConfig& c = ctx.config;
  const int64_t N = ctx.N, H = c.hidden_size;
  float* x = Take(ctx.ws.x, N * H);  // [N, hidden] normed input
  float* y = Take(ctx.ws.y, N * H);  // [N, hidden] block output
  PartLap lap(ctx.ws);
  RmsNorm(h, N, H, lw.attn_norm.data(), c.rms_norm_eps, x);
  if (ctx.dump) ctx.dump->Put(lw.layer, "attn_in", x, N, H);
  lap(LayerPartTimes::kOther);
  AttentionForward(ctx, lw, x, y);  // times its own parts
  lap.Restart();
  for (int64_t i = 0; i < N * H; ++i) h[i] += y[i];
  RmsNorm(h, N, H, lw.ffn_norm.data(), c.rms_norm_eps, x);
  lap(LayerPartTimes::kOther);
  FfnForward(ctx, lw, x, y);  // times its own parts
  lap.Restart();
  for (int64_t i = 0; i < N * H; ++i) h[i] += y[i];
  lap(LayerPartTimes::kOther);
  if (ctx.dump) ctx.dump->Put(lw.layer, "hidden", h, N, H);
}

// Fills ws.pos / ws.row_seg from ws.segs; returns the number of rows.
int64_t LayOutRows(Workspace& ws) {
  int64_t n = 0;
  for (const Segment& seg : ws.segs) n += seg.rows;
  int64_t* pos = Take(ws.pos, n);
  int32_t* row_seg = Take(ws.row_seg, n);
  for (size_t i = 0; i < ws.segs.size(); ++i)
    for (int64_t j = 0; j < ws.segs[i].rows; ++j) {
      pos[ws.segs[i].row + j] = ws.segs[i].start + j;
      row_seg[ws.segs[i].row + j] = static_cast<int32_t>(i);
    }
  return n;
}

// Points every segment at its sequence's cache of main layer l.
void BindLayer(Workspace& ws, std::span<const BatchEntry> batch, size_t l) {
  for (size_t i = 0; i < batch.size(); ++i) ws.segs[i].cache = &batch[i].seq->caches[l];
}

LayerKvCache NewCache(const ModelConfig& c, const SequenceState& seq, bool has_indexer) {
  LatentLayout layout{
      .type = seq.options.kv_cache, .kv_lora_rank = c.kv_lora_rank, .rope_dim = c.qk_rope_head_dim};
  return LayerKvCache(layout, seq.use_indexer && has_indexer ? *c.index_head_dim : 0);
}

}  // namespace

Model::Model(Checkpoint ckpt) : ckpt_(std::move(ckpt)), ws_(std::make_unique<Workspace>()) {}

Model::~Model() = default;

std::unique_ptr<Model> Model::Load(const std::string& dir, const LoadOptions& options) {
  std::unique_ptr<Model> m(new Model(Checkpoint::Open(dir)));
  const ModelConfig& c = m->config();
  m->experts_ = ExpertRange{.first = 0, .end = c.n_routed_experts};
  if (options.exchange) {
    m->experts_ =
        ExpertRangeOf(c.n_routed_experts, options.exchange->rank(), options.exchange->ranks());
    m->ep_ = ExpertParallel{
        .exchange = options.exchange, .experts = c.n_routed_experts, .mine = m->experts_};
    m->weights_ = LoadWeights(m->ckpt_, m->experts_);
  } else {
    m->weights_ = LoadWeights(m->ckpt_);
  }
  m->rope_ = RopeTable(c.qk_rope_head_dim, c.rope_theta, Yarn(c));
  if (c.index_head_dim && (*c.index_head_dim & (*c.index_head_dim - 1)) != 0)
    throw Error(dir + "/config.json: index_head_dim (" + std::to_string(*c.index_head_dim) +
                ") must be a power of two (Hadamard)");
  return m;
}

SequenceState Model::NewSequence(const SequenceOptions& options) const {
  const ModelConfig& c = config();
  SequenceState seq;
  seq.options = options;
  seq.use_indexer = options.attention == AttentionMode::kDsa && c.has_indexer();
  seq.index_topk = options.index_topk.value_or(c.index_topk.value_or(0));
  if (seq.use_indexer && seq.index_topk < 1)
    throw Error("index_topk must be at least 1 (got " + std::to_string(seq.index_topk) + ")");
  for (const LayerWeights& lw : weights_.layers)
    seq.caches.push_back(NewCache(c, seq, lw.indexer.has_value()));
  if (options.mtp && options.mtp_draft)
    throw Error("a sequence runs the MTP layer inline or for drafts, not both");
  if (options.mtp || options.mtp_draft) {
    if (!weights_.mtp) throw Error(ckpt_.dir() + ": the checkpoint has no MTP layer");
    seq.mtp_cache = NewCache(c, seq, weights_.mtp->indexer.has_value());
  }
  return seq;
}

int64_t Model::PrepareBatch(std::span<const BatchEntry> batch, int64_t layer, Dumper* dump) {
  const ModelConfig& c = config();
  if (batch.empty()) throw Error("forward: empty batch");
  if (dump && batch.size() > 1)
    throw Error("--dump-dir needs a batch of one sequence (got " + std::to_string(batch.size()) +
                ")");
  auto fail = [](size_t i, const std::string& what) {
    throw Error("forward: batch entry " + std::to_string(i) + " " + what);
  };
  int64_t end_max = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    const BatchEntry& e = batch[i];
    if (!e.seq) fail(i, "has no sequence");
    if (e.seq->caches.size() != weights_.layers.size()) fail(i, "is not a sequence of this model");
    if (e.tokens.empty()) fail(i, "has no tokens");
    for (size_t j = 0; j < i; ++j)
      if (batch[j].seq == e.seq) fail(i, "repeats the sequence of entry " + std::to_string(j));
    const int64_t end = e.seq->length + static_cast<int64_t>(e.tokens.size());
    if (end > c.max_position_embeddings)
      throw Error("sequence of " + std::to_string(end) +
                  " tokens exceeds max_position_embeddings (" +
                  std::to_string(c.max_position_embeddings) + ")");
    for (int32_t t : e.tokens)
      if (t < 0 || t >= c.vocab_size)
        throw Error("token id " + std::to_string(t) + " is out of range [0, " +
                    std::to_string(c.vocab_size) + ")");
    end_max = std::max(end_max, end);
  }
  // RoPE rows grow a cache page at a time, so steady-state steps do not reallocate the table.
  rope_.Reserve(
      std::min((end_max + kKvPageRows - 1) / kKvPageRows * kKvPageRows, c.max_position_embeddings));
  Workspace& ws = *ws_;
  ws.segs.resize(batch.size());
  int64_t row = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    SequenceState& seq = *batch[i].seq;
    const int64_t S = static_cast<int64_t>(batch[i].tokens.size());
    if (layer < 0)
      for (LayerKvCache& cache : seq.caches) cache.Reserve(seq.length + S);
    else
      seq.caches[layer].Reserve(seq.length + S);
    ws.segs[i] = Segment{.cache = nullptr,
                         .start = seq.length,
                         .row = row,
                         .rows = S,
                         .use_indexer = seq.use_indexer,
                         .index_topk = seq.index_topk};
    row += S;
  }
  return LayOutRows(ws);
}

ForwardResult Model::Forward(SequenceState& seq, std::span<const int32_t> tokens, int64_t start_pos,
                             bool all_logits, Dumper* dump) {
  if (start_pos != seq.length)
    throw Error("Forward: start_pos " + std::to_string(start_pos) + " != cached length " +
                std::to_string(seq.length));
  const BatchEntry entry{.seq = &seq, .tokens = tokens, .all_logits = all_logits};
  return std::move(ForwardBatch({&entry, 1}, dump)[0]);
}

std::vector<ForwardResult> Model::ForwardBatch(std::span<const BatchEntry> batch, Dumper* dump) {
  const ModelConfig& c = config();
  const int64_t N = PrepareBatch(batch, /*layer=*/-1, dump), H = c.hidden_size;
  const int64_t V = c.vocab_size;
  Workspace& ws = *ws_;
  float* h = Take(ws.h, N * H);  // [N, hidden] residual stream
  for (size_t i = 0; i < batch.size(); ++i)
    for (int64_t j = 0; j < ws.segs[i].rows; ++j)
      DecodeRow(weights_.embed, batch[i].tokens[j], h + (ws.segs[i].row + j) * H);
  const LayerContext ctx{c, rope_, ws, N, dump, ep_ ? &*ep_ : nullptr};
  for (size_t l = 0; l < weights_.layers.size(); ++l) {
    BindLayer(ws, batch, l);
    LayerForward(ctx, weights_.layers[l], h);
  }
  float* g = Take(ws.g, N * H);  // [N, hidden] final-normed hidden
  RmsNorm(h, N, H, weights_.norm.data(), c.rms_norm_eps, g);
  if (dump) dump->Put(-1, "final_norm", g, N, H);
  // The head over every row that needs logits (each sequence's last row, or all of them).
  std::vector<ForwardResult> out(batch.size());
  int64_t M = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    out[i].rows = batch[i].all_logits ? ws.segs[i].rows : 1;
    M += out[i].rows;
  }
  if (batch.size() == 1) {  // rows are contiguous: straight into the result
    out[0].logits.resize(M * V);
    Linear(g + (N - M) * H, M, weights_.head, out[0].logits.data());
  } else {
    float* head_in = Take(ws.head_in, M * H);  // [M, hidden]
    float* logits = Take(ws.logits, M * V);    // [M, vocab]
    for (size_t i = 0, m = 0; i < batch.size(); m += out[i].rows, ++i) {
      const int64_t first = ws.segs[i].row + ws.segs[i].rows - out[i].rows;
      std::copy_n(g + first * H, out[i].rows * H, head_in + m * H);
    }
    Linear(head_in, M, weights_.head, logits);
    for (size_t i = 0, m = 0; i < batch.size(); m += out[i].rows, ++i)
      out[i].logits.assign(logits + m * V, logits + (m + out[i].rows) * V);
  }
  if (dump) dump->Put(-1, "logits", out[0].logits.data(), out[0].rows, V);
  for (size_t i = 0; i < batch.size(); ++i) {
    SequenceState& seq = *batch[i].seq;
    seq.length += ws.segs[i].rows;
    if (seq.options.mtp_draft) {  // kept for Draft
      const float* first = g + ws.segs[i].row * H;
      seq.mtp_hidden.insert(seq.mtp_hidden.end(), first, first + ws.segs[i].rows * H);
    }
  }
  // MTP per sequence, after the main layers (ForwardMtp re-lays the workspace's segments).
  for (size_t i = 0, row = 0; i < batch.size(); row += batch[i].tokens.size(), ++i) {
    SequenceState& seq = *batch[i].seq;
    if (!seq.options.mtp) continue;
    const int64_t S = static_cast<int64_t>(batch[i].tokens.size());
    ForwardMtp(seq, batch[i].tokens, seq.length - S, g + row * H, out[i], dump);
  }
  return out;
}

const char* LayerPartTimes::Name(int part) {
  static constexpr const char* kNames[kCount] = {"attn_proj", "indexer", "attention", "attn_out",
                                                 "router",    "experts", "shared",    "other"};
  return part >= 0 && part < kCount ? kNames[part] : "?";
}

void Model::LayerStep(int64_t layer, std::span<const BatchEntry> batch, float* h,
                      LayerPartTimes* times) {
  if (layer < 0 || layer >= static_cast<int64_t>(weights_.layers.size()))
    throw Error("LayerStep: layer " + std::to_string(layer) + " is out of range [0, " +
                std::to_string(weights_.layers.size()) + ")");
  const int64_t N = PrepareBatch(batch, layer, /*dump=*/nullptr);
  BindLayer(*ws_, batch, layer);
  const LayerContext ctx{config(), rope_, *ws_, N, nullptr, ep_ ? &*ep_ : nullptr};
  ws_->times = times;
  try {
    LayerForward(ctx, weights_.layers[layer], h);
  } catch (...) {
    ws_->times = nullptr;
    throw;
  }
  ws_->times = nullptr;
}

// MTP rows i (predicting token i + 2) whose next token t_{i+1} is now known: the row left
// pending by the previous call (i = start - 1) and rows start .. start + S - 2 of this call.
void Model::ForwardMtp(SequenceState& seq, std::span<const int32_t> tokens, int64_t start,
                       const float* g, ForwardResult& r, Dumper* dump) {
  const ModelConfig& c = config();
  const LayerWeights& lw = *weights_.mtp;
  const MtpWeights& m = *lw.mtp;
  Workspace& ws = *ws_;
  const int64_t S = static_cast<int64_t>(tokens.size()), H = c.hidden_size;
  const int64_t i0 = seq.mtp_length, n = start + S - 1 - i0;
  DSINFER_CHECK(i0 == start - (start > 0 ? 1 : 0), "MTP rows out of step");
  if (n > 0) {
    float* cat = Take(ws.mtp_cat, n * 2 * H);  // [n, 2*hidden] [enorm(Emb(t_{i+1})) ; hnorm(g_i)]
    for (int64_t j = 0; j < n; ++j) {
      const int64_t i = i0 + j;
      float* e = cat + j * 2 * H;
      DecodeRow(m.embed, tokens[i + 1 - start], e);
      RmsNorm(e, 1, H, m.enorm.data(), c.rms_norm_eps, e);
      const float* gi = i < start ? seq.pending_hidden.data() : g + (i - start) * H;
      RmsNorm(gi, 1, H, m.hnorm.data(), c.rms_norm_eps, e + H);
    }
    float* h = Take(ws.mtp_h, n * H);  // [n, hidden] MTP residual stream
    Linear(cat, n, m.eh_proj, h);
    seq.mtp_cache->Reserve(i0 + n);
    ws.segs.resize(1);
    ws.segs[0] = Segment{.cache = &*seq.mtp_cache,
                         .start = i0,
                         .row = 0,
                         .rows = n,
                         .use_indexer = seq.use_indexer,
                         .index_topk = seq.index_topk};
    LayOutRows(ws);
    const LayerContext ctx{c, rope_, ws, n, dump, ep_ ? &*ep_ : nullptr};
    LayerForward(ctx, lw, h);
    RmsNorm(h, n, H, m.head_norm.data(), c.rms_norm_eps, h);
    r.mtp_rows = n;
    r.mtp_logits.resize(n * m.head.rows);
    Linear(h, n, m.head, r.mtp_logits.data());
    seq.mtp_length += n;
  }
  seq.pending_hidden.assign(g + (S - 1) * H, g + S * H);
}

std::vector<int32_t> Model::Draft(SequenceState& seq, std::span<const int32_t> next,
                                  int64_t n_draft,
                                  const std::function<int32_t(const float* logits)>& pick) {
  const ModelConfig& c = config();
  if (!seq.options.mtp_draft) throw Error("Draft: the sequence does not draft with MTP");
  const int64_t i0 = seq.mtp_length, n = seq.length - i0, H = c.hidden_size;
  if (static_cast<int64_t>(next.size()) != n)
    throw Error("Draft: " + std::to_string(next.size()) + " next tokens for " + std::to_string(n) +
                " unconsumed rows");
  if (n_draft < 0 || (n_draft > 0 && n == 0)) throw Error("Draft: bad draft count");
  if (seq.length + n_draft - 1 > c.max_position_embeddings)
    throw Error("Draft: drafts beyond max_position_embeddings");
  DSINFER_CHECK(static_cast<int64_t>(seq.mtp_hidden.size()) == n * H, "MTP hidden out of step");
  for (int32_t t : next)
    if (t < 0 || t >= c.vocab_size) throw Error("Draft: token id out of range");
  const LayerWeights& lw = *weights_.mtp;
  const MtpWeights& m = *lw.mtp;
  Workspace& ws = *ws_;
  rope_.Reserve(std::min((seq.length + n_draft + kKvPageRows - 1) / kKvPageRows * kKvPageRows,
                         c.max_position_embeddings));
  // Rows [start, start + rows) of the MTP layer from tokens `t` and main/MTP hiddens `hid`.
  auto run = [&](int64_t start, int64_t rows, const int32_t* t, const float* hid) {
    float* cat = Take(ws.mtp_cat, rows * 2 * H);  // [rows, 2*hidden] [enorm(Emb(t)) ; hnorm(h)]
    for (int64_t j = 0; j < rows; ++j) {
      float* e = cat + j * 2 * H;
      DecodeRow(m.embed, t[j], e);
      RmsNorm(e, 1, H, m.enorm.data(), c.rms_norm_eps, e);
      RmsNorm(hid + j * H, 1, H, m.hnorm.data(), c.rms_norm_eps, e + H);
    }
    float* h = Take(ws.mtp_h, rows * H);  // [rows, hidden] MTP residual stream
    Linear(cat, rows, m.eh_proj, h);
    seq.mtp_cache->Reserve(start + rows);
    ws.segs.resize(1);
    ws.segs[0] = Segment{.cache = &*seq.mtp_cache,
                         .start = start,
                         .row = 0,
                         .rows = rows,
                         .use_indexer = seq.use_indexer,
                         .index_topk = seq.index_topk};
    LayOutRows(ws);
    const LayerContext ctx{c, rope_, ws, rows, nullptr, ep_ ? &*ep_ : nullptr};
    LayerForward(ctx, lw, h);
    return h;
  };
  std::vector<int32_t> drafts;
  if (n == 0) return drafts;
  const float* h = run(i0, n, next.data(), seq.mtp_hidden.data());
  seq.mtp_length = seq.length;
  seq.mtp_hidden.clear();
  std::vector<float> prev, normed(H), logits(m.head.rows);  // [hidden], [hidden], [vocab]
  for (int64_t j = 0; j < n_draft; ++j) {
    prev.assign(h + (j == 0 ? n - 1 : 0) * H, h + (j == 0 ? n : 1) * H);
    RmsNorm(prev.data(), 1, H, m.head_norm.data(), c.rms_norm_eps, normed.data());
    Linear(normed.data(), 1, m.head, logits.data());
    drafts.push_back(pick(logits.data()));
    if (j + 1 < n_draft) h = run(seq.length + j, 1, &drafts.back(), prev.data());
  }
  return drafts;
}

int64_t Model::Truncate(SequenceState& seq, int64_t length) {
  if (seq.options.mtp) throw Error("cannot truncate a sequence that runs the MTP module");
  DSINFER_CHECK(length >= 0 && length <= seq.length, "truncate beyond the sequence");
  if (seq.options.mtp_draft) {
    if (seq.mtp_length >= length) {  // row length − 1 saw the old token at `length`
      length = std::max<int64_t>(length - 1, 0);
      seq.mtp_length = length;
      seq.mtp_hidden.clear();
    } else {
      const int64_t hidden = static_cast<int64_t>(seq.mtp_hidden.size()) /
                             std::max<int64_t>(seq.length - seq.mtp_length, 1);
      seq.mtp_hidden.resize((length - seq.mtp_length) * hidden);
    }
  }
  seq.length = length;
  return length;
}

}  // namespace dsinfer
