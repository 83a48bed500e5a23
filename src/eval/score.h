// Token-level evaluation on a `Model`: batched greedy generation and teacher-forced scoring of
// documents (negative log-likelihood, top-1 accuracy, and the MTP module's next-next-token
// accuracy and its agreement with the main model). Text handling lives in task_eval.h.
//
// Both run several sequences per `Model::ForwardBatch`; the batched forward computes every
// row as if alone (model.h), so results do not depend on the batch size. Not thread-safe (one
// call at a time per model, like the model itself).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "model/model.h"

namespace dsinfer::eval {

// Called after each finished item with (items done, items total).
using ProgressFn = std::function<void(int64_t done, int64_t total)>;

struct GreedyOptions {
  int64_t max_new = 64;  // ≥ 1 generated tokens per prompt at most
  int32_t eos = 1;       // generation stops after emitting it
  int batch = 8;         // sequences per ForwardBatch
};

struct DecodeStats {
  int64_t prompt_tokens = 0;  // prefilled
  double prefill_s = 0;
  int64_t decode_tokens = 0;  // tokens produced by decode steps (not the first of each prompt)
  double decode_s = 0;
};

// Greedy (argmax, lowest id on ties, as `Sampler` at temperature 0) continuation of every prompt:
// each result holds up to `max_new` ids and ends with `eos` if the model emitted it. Prompts
// (non-empty) are prefilled as one batch of `batch` sequences, then decoded together, so each
// result equals `dsinfer run --ids` greedy on that prompt. Adds timings to `stats` if given.
std::vector<std::vector<int32_t>> GreedyGenerate(Model& model, const SequenceOptions& options,
                                                 std::span<const std::vector<int32_t>> prompts,
                                                 const GreedyOptions& greedy,
                                                 DecodeStats* stats = nullptr,
                                                 const ProgressFn& progress = {});

struct ScoreOptions {
  // Tokens per scoring window; 0: the model's context (max_position_embeddings). A longer
  // document is split into windows [0, W), [W-1, 2W-1), ...: consecutive windows share one
  // token, so every token after the first is predicted exactly once, with the context of its
  // own window only.
  int64_t window = 0;
  // Logit rows computed per forward call at most (memory: rows × vocab × 4 bytes). Windows are
  // packed into one ForwardBatch up to this many tokens; a longer window runs as a chunked
  // prefill of this many tokens per call.
  int64_t max_rows = 0;  // 0: as many as fit 128 MiB of logits, MTP's included (at least 1)
  bool mtp = false;      // also score the MTP module (the checkpoint must have one)
};

struct TextScore {
  int64_t documents = 0;
  int64_t windows = 0;
  int64_t predicted = 0;     // tokens predicted by the main model (Σ over windows of len − 1)
  double nll_sum = 0;        // Σ −log p(t_{i+1} | t_0..t_i), natural log, f64 log-softmax
  int64_t top1_correct = 0;  // argmax of row i == t_{i+1}
  // MTP row i (given the main model's hidden state at i and the true t_{i+1}) predicts t_{i+2};
  // counted for every i with i + 2 inside the window.
  int64_t mtp_predicted = 0;
  int64_t mtp_correct = 0;   // argmax of MTP row i == t_{i+2}
  int64_t mtp_agree = 0;     // argmax of MTP row i == argmax of main row i + 1 (the main model's
                             // own greedy next-next token: what a speculative draft needs)
  double seconds = 0;

  double MeanNll() const { return predicted ? nll_sum / predicted : 0; }
  double Perplexity() const;  // exp(mean NLL)
};

// Scores every document (each ≥ 2 token ids, usually BOS + text + EOS) by teacher forcing.
TextScore ScoreDocuments(Model& model, const SequenceOptions& options,
                         std::span<const std::vector<int32_t>> documents,
                         const ScoreOptions& score, const ProgressFn& progress = {});

// −log softmax(logits)[target], in f64 (max-subtracted).
double TokenNll(const float* logits, int64_t vocab, int32_t target);

}  // namespace dsinfer::eval
