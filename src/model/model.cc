#include "model/model.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>
#include <string>

#include "base/error.h"
#include "base/meminfo.h"
#include "kernels/linear.h"
#include "kernels/norm.h"
#include "kernels/qblocks.h"
#include "model/layers.h"
#include "model/routed_expert.h"

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

// Fails before anything is read when the weights would not fit in the memory available.
// `bf16_blocks` / `int8_tiles`: the block weights get their 16-row tile copy, for bf16 or int8
// activations (WeightMemory::tile_repack).
void CheckWeightsFit(const Checkpoint& ckpt, std::optional<ExpertRange> experts, bool bf16_blocks,
                     bool int8_tiles) {
  const WeightMemory need = EstimateWeightMemory(ckpt, experts);
  const uint64_t avail = MemoryAvailable();
  const int64_t total = need.total(bf16_blocks || int8_tiles);
  if (avail == 0 || static_cast<uint64_t>(total) <= avail) return;
  const auto size = [](double b) {
    char s[32];
    if (b >= double(int64_t{1} << 30))
      std::snprintf(s, sizeof s, "%.2f GiB", b / double(int64_t{1} << 30));
    else
      std::snprintf(s, sizeof s, "%.1f MiB", b / double(1 << 20));
    return std::string(s);
  };
  const std::string repack =
      (bf16_blocks || int8_tiles) && need.tile_repack > 0
          ? " + " + std::to_string(need.tile_repack) + " bytes more for the block weights' " +
                (bf16_blocks ? "bf16 and int8 " : "int8 ") +
                "16-row tile copy (--block-acts f32 does without)"
          : std::string();
  char buf[800];
  std::snprintf(buf, sizeof buf,
                ": the weights need %s resident (%lld bytes of tensors%s mapped from the files "
                "+ %lld bytes of copies made at load%s) but only %s of memory is available "
                "(MemAvailable, or DSINFER_MEMORY_AVAILABLE); `dsinfer inspect` shows the "
                "figures, and expert parallelism over MPI splits the routed experts across "
                "machines (docs/mpi.md)",
                size(double(total)).c_str(), static_cast<long long>(need.tensors),
                experts ? " (this rank's experts)" : "", static_cast<long long>(need.copies),
                repack.c_str(), size(double(avail)).c_str());
  throw Error(ckpt.dir() + buf);
}

}  // namespace

Model::Model(Checkpoint ckpt) : ckpt_(std::move(ckpt)), ws_(std::make_unique<Workspace>()) {}

Model::~Model() = default;

std::unique_ptr<Model> Model::Load(const std::string& dir, const LoadOptions& options) {
  std::unique_ptr<Model> m(new Model(Checkpoint::Open(dir)));
  const ModelConfig& c = m->config();
  m->experts_ = ExpertRange{.first = 0, .end = c.n_routed_experts};
  m->numerics_ = options.numerics;
  if (const std::optional<ExpertShare>& share = m->ckpt_.expert_share()) {
    const std::string what = dir + " holds only rank " + std::to_string(share->rank) + " of " +
                             std::to_string(share->ranks) +
                             "'s share of the routed experts (dsinfer split-experts)";
    if (!options.exchange)
      throw Error(what + ": run it as that rank of an MPI job of " +
                  std::to_string(share->ranks) + " ranks (docs/mpi.md), or load the whole "
                  "checkpoint");
    if (options.exchange->rank() != share->rank || options.exchange->ranks() != share->ranks)
      throw Error(what + ", but this process is rank " + std::to_string(options.exchange->rank()) +
                  " of " + std::to_string(options.exchange->ranks()) +
                  ": give each rank its own share (docs/mpi.md)");
  }
  if (options.exchange)
    m->experts_ =
        ExpertRangeOf(c.n_routed_experts, options.exchange->rank(), options.exchange->ranks());
  // bf16 numerics on AVX512-BF16: the FP8 weights it multiplies get their repacked copies, so
  // decode's GEMV needs no transposes (kernels/weight.h RepackFp8Pairs; docs/numerics.md).
  const bool repack =
      options.numerics == Numerics::kBf16 && LinearBf16Path() == Bf16Path::kAvx512Bf16;
  // Safetensors; a GGUF file checked its figure when it opened, without the block repack.
  const bool bf16_blocks = repack && options.bf16_block_activations;
  // int8 activations on AVX-512 VNNI or AVX2: block weights of every type get the int8 tile
  // kernels' copy (the bf16 repack's: Q4_K +2.8%, Q5_K +2.3%, Q3_K +3.6%, IQ4_XS +1.5%).
  const bool int8_tiles =
      options.int8_block_activations && qblocks::Int8TilesOn(LinearIsa());
  if (!m->ckpt_.shards().empty() || bf16_blocks || int8_tiles)
    CheckWeightsFit(m->ckpt_, options.exchange ? std::optional(m->experts_) : std::nullopt,
                    bf16_blocks, int8_tiles);
  if (options.exchange) {
    m->ep_ = ExpertParallel{
        .exchange = options.exchange, .experts = c.n_routed_experts, .mine = m->experts_};
    m->weights_ = LoadWeights(m->ckpt_, m->experts_, options.int8_block_activations, repack,
                              options.bf16_block_activations, int8_tiles);
    // The other ranks' experts leave this process's memory for good: with the whole checkpoint
    // mapped, readahead and fault-around would otherwise map their pages next to ours.
    const ExpertRange mine = m->experts_;
    m->ckpt_.Release([mine](std::string_view name) {
      const int64_t e = RoutedExpertOf(name);
      return e >= 0 && !mine.Has(e);
    });
  } else {
    m->weights_ = LoadWeights(m->ckpt_, std::nullopt, options.int8_block_activations, repack,
                              options.bf16_block_activations, int8_tiles);
  }
  if (!m->weights_.repacked_from.empty()) {
    // The repacked copies are what bf16 numerics (and the int8 tile kernels) read: the
    // originals' pages leave memory (one copy resident, not two) but stay mapped for f32
    // numerics (`set_numerics`).
    std::vector<std::string> names = m->weights_.repacked_from;
    std::sort(names.begin(), names.end());
    m->ckpt_.Drop([&names](std::string_view name) {
      return std::binary_search(names.begin(), names.end(), name);
    });
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
  const LayerContext ctx{c, rope_, ws, N, dump, ep_ ? &*ep_ : nullptr, numerics_};
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
  const LayerContext ctx{config(), rope_, *ws_, N, nullptr, ep_ ? &*ep_ : nullptr, numerics_};
  ws_->times = times;
  try {
    LayerForward(ctx, weights_.layers[layer], h);
  } catch (...) {
    ws_->times = nullptr;
    throw;
  }
  ws_->times = nullptr;
}

float* Model::MtpStep(std::span<const MtpSegment> segs, const int32_t* tokens,
                      const float* const* hidden, Dumper* dump) {
  const ModelConfig& c = config();
  const LayerWeights& lw = *weights_.mtp;
  const MtpWeights& m = *lw.mtp;
  Workspace& ws = *ws_;
  const int64_t H = c.hidden_size;
  ws.segs.resize(segs.size());
  int64_t N = 0;
  for (size_t i = 0; i < segs.size(); ++i) {
    SequenceState& seq = *segs[i].seq;
    seq.mtp_cache->Reserve(segs[i].start + segs[i].rows);
    ws.segs[i] = Segment{.cache = &*seq.mtp_cache,
                         .start = segs[i].start,
                         .row = N,
                         .rows = segs[i].rows,
                         .use_indexer = seq.use_indexer,
                         .index_topk = seq.index_topk};
    N += segs[i].rows;
  }
  LayOutRows(ws);
  float* cat = Take(ws.mtp_cat, N * 2 * H);  // [N, 2*hidden] [enorm(Emb(t)) ; hnorm(h)]
  for (int64_t r = 0; r < N; ++r) {
    float* e = cat + r * 2 * H;
    DecodeRow(m.embed, tokens[r], e);
    RmsNorm(e, 1, H, m.enorm.data(), c.rms_norm_eps, e);
    RmsNorm(hidden[r], 1, H, m.hnorm.data(), c.rms_norm_eps, e + H);
  }
  float* h = Take(ws.mtp_h, N * H);  // [N, hidden] MTP residual stream
  Linear(cat, N, m.eh_proj, h);
  const LayerContext ctx{c, rope_, ws, N, dump, ep_ ? &*ep_ : nullptr, numerics_};
  LayerForward(ctx, lw, h);
  return h;
}

// MTP rows i (predicting token i + 2) whose next token t_{i+1} is now known: the row left
// pending by the previous call (i = start - 1) and rows start .. start + S - 2 of this call.
void Model::ForwardMtp(SequenceState& seq, std::span<const int32_t> tokens, int64_t start,
                       const float* g, ForwardResult& r, Dumper* dump) {
  const ModelConfig& c = config();
  const MtpWeights& m = *weights_.mtp->mtp;
  Workspace& ws = *ws_;
  const int64_t S = static_cast<int64_t>(tokens.size()), H = c.hidden_size;
  const int64_t i0 = seq.mtp_length, n = start + S - 1 - i0;
  DSINFER_CHECK(i0 == start - (start > 0 ? 1 : 0), "MTP rows out of step");
  if (n > 0) {
    int32_t* t = Take(ws.mtp_tok, n);         // [n] t_{i+1}
    const float** hid = Take(ws.mtp_hid, n);  // [n] g_i
    for (int64_t j = 0; j < n; ++j) {
      const int64_t i = i0 + j;
      t[j] = tokens[i + 1 - start];
      hid[j] = i < start ? seq.pending_hidden.data() : g + (i - start) * H;
    }
    const MtpSegment seg{&seq, i0, n};
    float* h = MtpStep({&seg, 1}, t, hid, dump);  // [n, hidden]
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
  const DraftEntry entry{.seq = &seq, .next = next, .n_draft = n_draft, .pick = pick};
  return std::move(DraftBatch({&entry, 1})[0]);
}

void Model::CheckDraftBatch(std::span<const DraftEntry> batch) const {
  const ModelConfig& c = config();
  for (size_t i = 0; i < batch.size(); ++i) {
    const DraftEntry& e = batch[i];
    auto fail = [i](const std::string& what) {
      throw Error("Draft: entry " + std::to_string(i) + " " + what);
    };
    if (!e.seq) fail("has no sequence");
    const SequenceState& seq = *e.seq;
    if (seq.caches.size() != weights_.layers.size()) fail("is not a sequence of this model");
    if (!seq.options.mtp_draft || !seq.mtp_cache || !weights_.mtp)
      fail("is not a sequence that drafts with MTP");
    for (size_t j = 0; j < i; ++j)
      if (batch[j].seq == e.seq) fail("repeats the sequence of entry " + std::to_string(j));
    const int64_t n = seq.length - seq.mtp_length;
    if (static_cast<int64_t>(e.next.size()) != n)
      fail("has " + std::to_string(e.next.size()) + " next tokens for " + std::to_string(n) +
           " unconsumed rows");
    if (e.n_draft < 0 || (e.n_draft > 0 && n == 0))
      fail("asks for " + std::to_string(e.n_draft) + " drafts after " + std::to_string(n) +
           " unconsumed rows");
    if (e.n_draft > 0 && !e.pick) fail("has no pick function");
    if (seq.length + e.n_draft - 1 > c.max_position_embeddings)
      fail("drafts beyond max_position_embeddings");
    DSINFER_CHECK(static_cast<int64_t>(seq.mtp_hidden.size()) == n * c.hidden_size,
                  "MTP hidden out of step");
    for (int32_t t : e.next)
      if (t < 0 || t >= c.vocab_size)
        fail("has a token id out of range (" + std::to_string(t) + ")");
  }
}

std::vector<std::vector<int32_t>> Model::DraftBatch(std::span<const DraftEntry> batch) {
  CheckDraftBatch(batch);  // nothing is touched before every entry passed
  const ModelConfig& c = config();
  const int64_t H = c.hidden_size;
  std::vector<std::vector<int32_t>> drafts(batch.size());
  int64_t end_max = 0, max_draft = 0, N = 0;
  std::vector<MtpSegment> segs;
  std::vector<size_t> who;  // [segs] the entry of each segment
  for (size_t i = 0; i < batch.size(); ++i) {
    SequenceState& seq = *batch[i].seq;
    end_max = std::max(end_max, seq.length + batch[i].n_draft);
    max_draft = std::max(max_draft, batch[i].n_draft);
    const int64_t n = seq.length - seq.mtp_length;
    if (n == 0) continue;
    segs.push_back({&seq, seq.mtp_length, n});
    who.push_back(i);
    N += n;
  }
  if (segs.empty()) return drafts;
  rope_.Reserve(
      std::min((end_max + kKvPageRows - 1) / kKvPageRows * kKvPageRows, c.max_position_embeddings));
  const MtpWeights& m = *weights_.mtp->mtp;
  const int64_t V = m.head.rows;
  Workspace& ws = *ws_;
  // The rows the MTP layer has not consumed: each entry's main rows with their next tokens.
  int32_t* t = Take(ws.mtp_tok, N);         // [N]
  const float** hid = Take(ws.mtp_hid, N);  // [N] final-norm main hidden rows
  for (size_t k = 0, r = 0; k < segs.size(); ++k)
    for (int64_t j = 0; j < segs[k].rows; ++j, ++r) {
      t[r] = batch[who[k]].next[j];
      hid[r] = segs[k].seq->mtp_hidden.data() + j * H;
    }
  const float* h = MtpStep(segs, t, hid, nullptr);  // [N, hidden]
  std::vector<float> prev(batch.size() * H);        // [batch, hidden] latest MTP output row
  for (size_t k = 0, r = 0; k < segs.size(); ++k) {
    r += segs[k].rows;
    std::copy_n(h + (r - 1) * H, H, prev.data() + who[k] * H);
    segs[k].seq->mtp_length = segs[k].seq->length;
    segs[k].seq->mtp_hidden.clear();
  }
  // Draft j of every entry that wants it from its latest row, then (chained MTP) one more row
  // for each entry that wants draft j + 1: the embedding of draft j and the hidden of row j.
  std::vector<size_t> act;                      // entries drafting at step j
  std::vector<float> gathered, normed, logits;  // [act, hidden] ×2, [act, vocab]
  for (int64_t j = 0; j < max_draft; ++j) {
    act.clear();
    for (size_t i = 0; i < batch.size(); ++i)
      if (batch[i].n_draft > j) act.push_back(i);
    const auto M = static_cast<int64_t>(act.size());
    gathered.resize(M * H);
    normed.resize(M * H);
    logits.resize(M * V);
    for (int64_t k = 0; k < M; ++k)
      std::copy_n(prev.data() + act[k] * H, H, gathered.data() + k * H);
    RmsNorm(gathered.data(), M, H, m.head_norm.data(), c.rms_norm_eps, normed.data());
    Linear(normed.data(), M, m.head, logits.data());
    for (int64_t k = 0; k < M; ++k)
      drafts[act[k]].push_back(batch[act[k]].pick(logits.data() + k * V));
    segs.clear();
    who.clear();
    for (size_t i : act)
      if (batch[i].n_draft > j + 1) {
        segs.push_back({batch[i].seq, batch[i].seq->length + j, 1});
        who.push_back(i);
      }
    if (segs.empty()) break;
    t = Take(ws.mtp_tok, static_cast<int64_t>(segs.size()));
    hid = Take(ws.mtp_hid, static_cast<int64_t>(segs.size()));
    for (size_t k = 0; k < segs.size(); ++k) {
      t[k] = drafts[who[k]].back();
      hid[k] = prev.data() + who[k] * H;
    }
    h = MtpStep(segs, t, hid, nullptr);  // [segs, hidden]
    for (size_t k = 0; k < segs.size(); ++k) std::copy_n(h + k * H, H, prev.data() + who[k] * H);
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
