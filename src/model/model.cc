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

// One decoder layer in place on the residual stream h: [S, hidden].
void LayerForward(const LayerContext& ctx, const LayerWeights& lw, LayerKvCache& cache,
                  float* h, int64_t S, int64_t start) {
  const ModelConfig& c = ctx.config;
  const int64_t H = c.hidden_size;
  std::vector<float> x(S * H), y(S * H);  // [S, hidden] normed input / block output
  RmsNorm(h, S, H, lw.attn_norm.data(), c.rms_norm_eps, x.data());
  if (ctx.dump) ctx.dump->Put(lw.layer, "attn_in", x.data(), S, H);
  AttentionForward(ctx, lw, cache, x.data(), S, start, y.data());
  for (int64_t i = 0; i < S * H; ++i) h[i] += y[i];
  RmsNorm(h, S, H, lw.ffn_norm.data(), c.rms_norm_eps, x.data());
  FfnForward(ctx, lw, x.data(), S, y.data());
  for (int64_t i = 0; i < S * H; ++i) h[i] += y[i];
  if (ctx.dump) ctx.dump->Put(lw.layer, "hidden", h, S, H);
}

LayerKvCache NewCache(const ModelConfig& c, const SequenceState& seq, bool has_indexer) {
  LatentLayout layout{.type = seq.options.kv_cache,
                      .kv_lora_rank = c.kv_lora_rank,
                      .rope_dim = c.qk_rope_head_dim};
  return LayerKvCache(layout, seq.use_indexer && has_indexer ? *c.index_head_dim : 0);
}

}  // namespace

Model::Model(Checkpoint ckpt) : ckpt_(std::move(ckpt)) {}

std::unique_ptr<Model> Model::Load(const std::string& dir) {
  std::unique_ptr<Model> m(new Model(Checkpoint::Open(dir)));
  m->weights_ = LoadWeights(m->ckpt_);
  const ModelConfig& c = m->config();
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
  if (options.mtp) {
    if (!weights_.mtp) throw Error(ckpt_.dir() + ": the checkpoint has no MTP layer");
    seq.mtp_cache = NewCache(c, seq, weights_.mtp->indexer.has_value());
  }
  return seq;
}

namespace {

// Logits of `n` rows of final-normed hidden states g: [n, hidden] → [n, vocab].
std::vector<float> Head(const WeightView& head, const float* g, int64_t n) {
  std::vector<float> logits(n * head.rows);  // [n, vocab]
  Linear(g, n, head, logits.data());
  return logits;
}

}  // namespace

ForwardResult Model::Forward(SequenceState& seq, std::span<const int32_t> tokens,
                             int64_t start_pos, bool all_logits, Dumper* dump) {
  const ModelConfig& c = config();
  const int64_t S = static_cast<int64_t>(tokens.size()), H = c.hidden_size;
  DSINFER_CHECK(S >= 1, "Forward needs at least one token");
  if (start_pos != seq.length)
    throw Error("Forward: start_pos " + std::to_string(start_pos) + " != cached length " +
                std::to_string(seq.length));
  if (start_pos + S > c.max_position_embeddings)
    throw Error("sequence of " + std::to_string(start_pos + S) +
                " tokens exceeds max_position_embeddings (" +
                std::to_string(c.max_position_embeddings) + ")");
  for (int32_t t : tokens)
    if (t < 0 || t >= c.vocab_size)
      throw Error("token id " + std::to_string(t) + " is out of range [0, " +
                  std::to_string(c.vocab_size) + ")");
  rope_.Reserve(start_pos + S);
  for (auto& cache : seq.caches) cache.Reserve(start_pos + S);
  std::vector<float> h(S * H);  // [S, hidden] residual stream
  for (int64_t s = 0; s < S; ++s) DecodeRow(weights_.embed, tokens[s], &h[s * H]);
  const LayerContext ctx{c, rope_, seq.use_indexer, seq.index_topk, dump};
  for (size_t l = 0; l < weights_.layers.size(); ++l)
    LayerForward(ctx, weights_.layers[l], seq.caches[l], h.data(), S, start_pos);
  std::vector<float> g(S * H);  // [S, hidden] final-normed hidden
  RmsNorm(h.data(), S, H, weights_.norm.data(), c.rms_norm_eps, g.data());
  if (dump) dump->Put(-1, "final_norm", g.data(), S, H);
  ForwardResult r;
  const int64_t first = all_logits ? 0 : S - 1;
  r.rows = S - first;
  r.logits = Head(weights_.head, &g[first * H], r.rows);
  if (dump) dump->Put(-1, "logits", r.logits.data(), r.rows, c.vocab_size);
  seq.length += S;
  if (seq.options.mtp) ForwardMtp(seq, tokens, start_pos, g, r, dump);
  return r;
}

// MTP rows i (predicting token i + 2) whose next token t_{i+1} is now known: the row left
// pending by the previous call (i = start - 1) and rows start .. start + S - 2 of this call.
void Model::ForwardMtp(SequenceState& seq, std::span<const int32_t> tokens, int64_t start,
                       const std::vector<float>& g, ForwardResult& r, Dumper* dump) {
  const ModelConfig& c = config();
  const LayerWeights& lw = *weights_.mtp;
  const MtpWeights& m = *lw.mtp;
  const int64_t S = static_cast<int64_t>(tokens.size()), H = c.hidden_size;
  const int64_t i0 = seq.mtp_length, n = start + S - 1 - i0;
  DSINFER_CHECK(i0 == start - (start > 0 ? 1 : 0), "MTP rows out of step");
  if (n > 0) {
    std::vector<float> cat(n * 2 * H);  // [n, 2*hidden]  [enorm(Emb(t_{i+1})) ; hnorm(g_i)]
    for (int64_t j = 0; j < n; ++j) {
      const int64_t i = i0 + j;
      float* e = &cat[j * 2 * H];
      DecodeRow(m.embed, tokens[i + 1 - start], e);
      RmsNorm(e, 1, H, m.enorm.data(), c.rms_norm_eps, e);
      const float* gi = i < start ? seq.pending_hidden.data() : &g[(i - start) * H];
      RmsNorm(gi, 1, H, m.hnorm.data(), c.rms_norm_eps, e + H);
    }
    std::vector<float> h(n * H);  // [n, hidden] MTP residual stream
    Linear(cat.data(), n, m.eh_proj, h.data());
    seq.mtp_cache->Reserve(i0 + n);
    const LayerContext ctx{c, rope_, seq.use_indexer, seq.index_topk, dump};
    LayerForward(ctx, lw, *seq.mtp_cache, h.data(), n, i0);
    RmsNorm(h.data(), n, H, m.head_norm.data(), c.rms_norm_eps, h.data());
    r.mtp_rows = n;
    r.mtp_logits = Head(m.head, h.data(), n);
    seq.mtp_length += n;
  }
  seq.pending_hidden.assign(g.end() - H, g.end());
}

}  // namespace dsinfer
