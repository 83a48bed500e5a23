// The DeepSeek-V3.2 forward pass in f32 reference numerics or bf16 production numerics
// (`LoadOptions::numerics`, docs/numerics.md): embedding →
// N × [RMSNorm → MLA (+ lightning indexer → DSA) → RMSNorm → MLP | MoE] → norm → head, plus
// the MTP module. One code path for prefill, chunked prefill, decode (S = 1) and multi-token
// verification: `Forward(seq, tokens, start_pos)` processes S ≥ 1 tokens at absolute positions
// start_pos.. against everything already cached for `seq` (docs/model.md §3.7).
// `ForwardBatch` runs several sequences as one batch (continuous batching): every kernel
// computes each row independently of the other rows, so each sequence's logits are bitwise
// those of running it alone.
// `Model` is immutable after Load except for its RoPE table, which grows on demand, and its
// workspace (every per-layer temporary, sized on first use and reused, so a steady-state decode
// step allocates nothing in the model code): not thread-safe; one forward call at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "format/checkpoint.h"
#include "kernels/kv_layout.h"
#include "kernels/linear.h"
#include "kernels/rope.h"
#include "model/dump.h"
#include "model/expert_parallel.h"
#include "model/kv_cache.h"
#include "model/part_times.h"
#include "model/weights.h"

namespace dsinfer {

enum class AttentionMode : uint8_t { kDsa, kDense };

struct SequenceOptions {
  AttentionMode attention = AttentionMode::kDsa;     // kDsa falls back to dense without indexer
  std::optional<int64_t> index_topk = std::nullopt;  // overrides the config's index_topk
  KvCacheType kv_cache = KvCacheType::kF32;
  bool mtp = false;  // also run the MTP module
  // Speculative decoding: the MTP layer runs only in `Model::Draft` (not inside the forward),
  // which the caller gives the token following each row once it is known.
  bool mtp_draft = false;
};

// Everything cached for one sequence. Move-only (caches can be large).
struct SequenceState {
  SequenceOptions options;
  bool use_indexer = false;          // DSA with an indexer in the checkpoint
  int64_t index_topk = 0;            // effective top-k
  int64_t length = 0;                // tokens cached in the main layers
  std::vector<LayerKvCache> caches;  // [num_hidden_layers]
  std::optional<LayerKvCache> mtp_cache;
  int64_t mtp_length = 0;             // rows cached in the MTP layer
  std::vector<float> pending_hidden;  // [hidden] final-norm hidden of the last main row (MTP)
  // mtp_draft: [length − mtp_length, hidden] final-norm hidden of the main rows the MTP layer
  // has not consumed yet (their next token was not known).
  std::vector<float> mtp_hidden;
};

struct ForwardResult {
  int64_t rows = 0;
  std::vector<float> logits;  // [rows, vocab]: all tokens, or only the last one
  int64_t mtp_rows = 0;
  std::vector<float> mtp_logits;  // [mtp_rows, vocab]: MTP row i predicts token i + 2
};

// One sequence's share of a batched step: `tokens` run at positions seq->length.. .
struct BatchEntry {
  SequenceState* seq = nullptr;
  std::span<const int32_t> tokens;  // ≥ 1
  bool all_logits = false;          // logits of every token, else only of the last one
};

// One sequence's share of a batched draft step (`Model::DraftBatch`).
struct DraftEntry {
  SequenceState* seq = nullptr;   // options.mtp_draft
  std::span<const int32_t> next;  // [seq->length − seq->mtp_length] the token after each row
  int64_t n_draft = 0;            // drafts wanted (0: the rows are only consumed)
  // Turns a row of MTP logits [vocab] into the draft token (called n_draft times, in order).
  std::function<int32_t(const float* logits)> pick;
};

struct Workspace;  // model/layers.h

struct LoadOptions {
  // Expert parallelism (model/expert_parallel.h, docs/mpi.md): this process is rank
  // `exchange->rank()` of `exchange->ranks()`, holds the routed experts
  // `ExpertRangeOf(n_routed_experts, rank, ranks)` only, and every forward call is a collective
  // of the job (every rank must make the same calls with the same batches). Not owned; must
  // outlive the model. Null: a single process holding every expert.
  ExpertExchange* exchange = nullptr;
  // The arithmetic of the activation-side matrix products (docs/numerics.md): kF32, the reference
  // numerics the tests compare against (the default), or kBf16, DeepSeek's production numerics
  // (activations rounded to bf16 at the GEMM inputs listed there, `vdpbf16ps` where available).
  Numerics numerics = Numerics::kF32;
  // Block-quantised weights (GGUF's Q8_0, Q2_K-Q6_K, IQ4_*) multiply activations quantised to
  // int8 per 32 elements (VNNI / AVX2 integer products, as llama.cpp does; docs/numerics.md
  // "int8 activations"): 1.1-2× faster than f32 activations at no measurable cost in accuracy.
  // false: exact f32 activations, the reference contract the tests compare GGUF models against
  // (`--block-acts f32`).
  bool int8_block_activations = true;
  // --block-acts bf16 (and the CLI's default, `auto`, in bf16 numerics on AVX512-BF16): the Q8_0,
  // Q4_K, Q5_K, Q6_K, IQ4_NL and IQ4_XS weights at the bf16 GEMM sites (docs/numerics.md "Where activations are
  // rounded") are repacked at load and multiply bf16 activations on `vdpbf16ps`
  // (kernels/linear.h; whole-model prefill 1.4-1.9× int8's); every other block product stays as
  // int8_block_activations says.
  bool bf16_block_activations = false;
};

class Model {
 public:
  // Opens the checkpoint directory and checks every tensor (Error names tensor + shape).
  static std::unique_ptr<Model> Load(const std::string& dir, const LoadOptions& options = {});
  ~Model();

  const ModelConfig& config() const { return ckpt_.config(); }
  const Checkpoint& checkpoint() const { return ckpt_; }
  // The routed experts this process holds: all of them unless loaded for expert parallelism.
  ExpertRange experts() const { return experts_; }
  bool has_mtp() const { return weights_.mtp.has_value(); }
  Numerics numerics() const { return numerics_; }
  // Benchmarks (`bench model --numerics f32,bf16`): changes the numerics of every later forward
  // call. Rows already cached keep the values computed under the previous numerics, so a
  // sequence should not span the change (start new sequences).
  void set_numerics(Numerics numerics) { numerics_ = numerics; }

  SequenceState NewSequence(const SequenceOptions& options) const;

  // Runs tokens at positions [start_pos, start_pos + S); start_pos must equal seq.length.
  // `all_logits`: logits of every token, else only of the last one.
  ForwardResult Forward(SequenceState& seq, std::span<const int32_t> tokens, int64_t start_pos,
                        bool all_logits = true, Dumper* dump = nullptr);

  // Runs all entries as one batch: norms, projections, MoE (each expert's weights read once for
  // all of the batch's tokens routed to it) and the head over the concatenated rows; attention
  // (+ indexer) per sequence against its own cache. Result i belongs to batch[i]; each equals
  // (bitwise) what Forward(*batch[i].seq, batch[i].tokens, ...) alone returns. Entries must be
  // distinct sequences of this model (Error otherwise). MTP sequences are supported: their MTP
  // module runs per sequence after the batched main layers. `dump` needs a batch of one.
  // Once the workspace has grown to the batch's shape, the model code allocates only the
  // returned vector and its logits vectors (plus cache pages and RoPE rows when a sequence grows
  // into a new 64-token page), and neither do the kernels (their scratch lives in the workspace
  // or grows once per thread): tests/unit/model/alloc_test.cc.
  std::vector<ForwardResult> ForwardBatch(std::span<const BatchEntry> batch,
                                          Dumper* dump = nullptr);

  // Benchmarks: decoder layer `layer` alone for a batch (no embedding, norm or head): h is
  // [Σ tokens, hidden] residual stream in/out; advances nothing (seq->length unchanged) — the
  // caller positions each sequence (seq->length = cached tokens, cache rows filled) first.
  // Writes the batch's cache rows of that layer (positions seq->length..). With `times`, adds
  // the step's time per part to it.
  void LayerStep(int64_t layer, std::span<const BatchEntry> batch, float* h,
                 LayerPartTimes* times = nullptr);

  // Speculative drafting (seq.options.mtp_draft): runs the MTP layer on the main rows
  // [mtp_length, length) it has not consumed, `next` [length − mtp_length] being the token
  // after each (positions mtp_length + 1 .. length; the last is the token just sampled, not yet
  // cached), then chains `n_draft` − 1 more rows on the MTP layer's own output (vLLM's chained
  // MTP): draft j + 1 is predicted from the hidden of draft row j and the embedding of draft j.
  // `pick` turns a row of MTP logits [vocab] into the draft token. Returns the n_draft drafts
  // (none for n_draft = 0: the rows are only consumed). Writes MTP cache rows up to
  // length + n_draft − 2; rows ≥ length are overwritten once the drafts are verified.
  std::vector<int32_t> Draft(SequenceState& seq, std::span<const int32_t> next, int64_t n_draft,
                             const std::function<int32_t(const float* logits)>& pick);

  // `Draft` for several sequences at once: one batched MTP-layer step over every entry's
  // unconsumed rows, then one step per chained draft over the entries that still want one
  // (the MTP weights, its experts included, are read once per step for the whole batch, as
  // in ForwardBatch). Result i belongs to batch[i] and equals (bitwise: drafts, the logits
  // given to `pick` and the MTP cache rows) what Draft of that entry alone returns. Every
  // entry is checked before any sequence is touched (Error naming the entry).
  std::vector<std::vector<int32_t>> DraftBatch(std::span<const DraftEntry> batch);

  // Forgets every token at position ≥ `length` (0 ≤ length ≤ seq.length): the cache rows are
  // position-indexed and simply overwritten by the next Forward, so a conversation can continue
  // from the longest prefix it shares with the cache, and rejected drafts leave no trace.
  // Returns the length kept: `length`, or for an mtp_draft sequence whose MTP layer consumed
  // row length − 1 (with a token at `length` that may now change) length − 1, so that row is
  // recomputed. Not for inline-MTP sequences (options.mtp: Error).
  static int64_t Truncate(SequenceState& seq, int64_t length);

 private:
  explicit Model(Checkpoint ckpt);
  // Checks the batch (Error naming the entry), reserves cache rows and RoPE positions, and
  // lays out the segments of `ws_` (`layer` < 0: every layer's cache, else that layer's).
  int64_t PrepareBatch(std::span<const BatchEntry> batch, int64_t layer, Dumper* dump);
  // g: [S, hidden] final-normed hidden of the sequence's rows of this call.
  void ForwardMtp(SequenceState& seq, std::span<const int32_t> tokens, int64_t start,
                  const float* g, ForwardResult& r, Dumper* dump);
  // One sequence's rows [start, start + rows) of an MTP-layer step.
  struct MtpSegment {
    SequenceState* seq;
    int64_t start, rows;
  };
  // The MTP layer over the segments' rows (concatenated, Σ rows = N): row r is
  // eh_proj([enorm(Emb(tokens[r])) ; hnorm(hidden[r])]) through the MTP decoder layer, writing
  // each sequence's MTP cache rows. Returns the layer output [N, hidden] (in the workspace,
  // valid until the next step); hidden[r] [hidden] may point anywhere but into that output.
  float* MtpStep(std::span<const MtpSegment> segs, const int32_t* tokens,
                 const float* const* hidden, Dumper* dump);
  void CheckDraftBatch(std::span<const DraftEntry> batch) const;  // Error naming the entry
  Checkpoint ckpt_;
  ExpertRange experts_;
  Numerics numerics_ = Numerics::kF32;
  std::optional<ExpertParallel> ep_;  // set when loaded for expert parallelism
  ModelWeights weights_;
  RopeTable rope_;
  std::unique_ptr<Workspace> ws_;
};

}  // namespace dsinfer
