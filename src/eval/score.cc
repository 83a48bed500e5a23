#include "eval/score.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>

#include "base/error.h"
#include "runtime/sampler.h"

namespace dsinfer::eval {
namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// One scoring window: tokens [begin, end) of a document, scored as its own sequence.
struct Window {
  const std::vector<int32_t>* doc;
  int64_t begin, end;
  int64_t size() const { return end - begin; }
  int32_t at(int64_t i) const { return (*doc)[begin + i]; }
};

std::vector<Window> SplitWindows(std::span<const std::vector<int32_t>> docs, int64_t window) {
  std::vector<Window> out;
  for (size_t d = 0; d < docs.size(); ++d) {
    const int64_t n = static_cast<int64_t>(docs[d].size());
    if (n < 2) throw Error("document " + std::to_string(d) + " has " + std::to_string(n) +
                           " tokens; scoring needs at least 2");
    for (int64_t s = 0; s + 1 < n; s += window - 1)
      out.push_back({&docs[d], s, std::min(s + window, n)});
  }
  return out;
}

// Accumulates one window's rows as they arrive (possibly over several chunked calls).
class WindowScorer {
 public:
  WindowScorer(const Window& w, int64_t vocab, TextScore& score)
      : w_(w), vocab_(vocab), score_(score), main_argmax_(w.size(), -1) {}

  // logits: [rows, vocab] of window rows first.. .
  void AddMain(int64_t first, int64_t rows, const float* logits) {
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t i = first + r;
      const float* row = logits + r * vocab_;
      main_argmax_[i] = Argmax(row, vocab_);
      if (i + 1 >= w_.size()) continue;  // the last token predicts nothing in this window
      const int32_t target = w_.at(i + 1);
      score_.nll_sum += TokenNll(row, vocab_, target);
      score_.top1_correct += main_argmax_[i] == target;
      ++score_.predicted;
    }
  }

  // mtp_logits: [rows, vocab]: MTP rows first.. (row i predicts token i + 2). Main rows up to
  // first + rows must have been added (they have: a call's MTP rows end one before its main rows).
  void AddMtp(int64_t first, int64_t rows, const float* mtp_logits) {
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t i = first + r;
      if (i + 2 >= w_.size()) continue;
      DSINFER_CHECK(main_argmax_[i + 1] >= 0, "MTP row ahead of the main rows");
      const int32_t draft = Argmax(mtp_logits + r * vocab_, vocab_);
      score_.mtp_correct += draft == w_.at(i + 2);
      score_.mtp_agree += draft == main_argmax_[i + 1];
      ++score_.mtp_predicted;
    }
  }

 private:
  const Window& w_;
  int64_t vocab_;
  TextScore& score_;
  std::vector<int32_t> main_argmax_;  // [window] argmax of each main row seen so far
};

// Runs `group` (windows of ≤ max_rows tokens in total, or one longer window) and scores it.
void ScoreGroup(Model& model, const SequenceOptions& options, std::span<const Window> group,
                int64_t max_rows, TextScore& score) {
  const int64_t V = model.config().vocab_size;
  std::vector<SequenceState> seqs;
  std::vector<WindowScorer> scorers;
  seqs.reserve(group.size());
  for (const Window& w : group) {
    seqs.push_back(model.NewSequence(options));
    scorers.emplace_back(w, V, score);
  }
  if (group.size() == 1 && group[0].size() > max_rows) {  // chunked prefill of one window
    const Window& w = group[0];
    for (int64_t s = 0; s < w.size(); s += max_rows) {
      const int64_t n = std::min(max_rows, w.size() - s);
      const int64_t mtp_first = seqs[0].mtp_length;
      ForwardResult r = model.Forward(
          seqs[0], std::span<const int32_t>(w.doc->data() + w.begin + s, n), s);
      scorers[0].AddMain(s, r.rows, r.logits.data());
      scorers[0].AddMtp(mtp_first, r.mtp_rows, r.mtp_logits.data());
    }
    return;
  }
  std::vector<BatchEntry> batch;
  for (size_t i = 0; i < group.size(); ++i)
    batch.push_back({.seq = &seqs[i],
                     .tokens = std::span<const int32_t>(group[i].doc->data() + group[i].begin,
                                                        group[i].size()),
                     .all_logits = true});
  std::vector<ForwardResult> results = model.ForwardBatch(batch);
  for (size_t i = 0; i < group.size(); ++i) {
    scorers[i].AddMain(0, results[i].rows, results[i].logits.data());
    scorers[i].AddMtp(0, results[i].mtp_rows, results[i].mtp_logits.data());
  }
}

}  // namespace

double TextScore::Perplexity() const { return std::exp(MeanNll()); }

double TokenNll(const float* logits, int64_t vocab, int32_t target) {
  DSINFER_CHECK(target >= 0 && target < vocab, "target out of the vocabulary");
  const float mx = *std::max_element(logits, logits + vocab);
  double sum = 0;
  for (int64_t j = 0; j < vocab; ++j) sum += std::exp(static_cast<double>(logits[j]) - mx);
  return std::log(sum) - (static_cast<double>(logits[target]) - mx);
}

std::vector<std::vector<int32_t>> GreedyGenerate(Model& model, const SequenceOptions& options,
                                                 std::span<const std::vector<int32_t>> prompts,
                                                 const GreedyOptions& greedy, DecodeStats* stats,
                                                 const ProgressFn& progress) {
  if (greedy.max_new < 1) throw Error("max_new must be at least 1");
  if (greedy.batch < 1) throw Error("batch must be at least 1");
  const int64_t V = model.config().vocab_size;
  const int64_t total = static_cast<int64_t>(prompts.size());
  std::vector<std::vector<int32_t>> out(prompts.size());
  DecodeStats local;
  int64_t done = 0;
  for (size_t b0 = 0; b0 < prompts.size(); b0 += greedy.batch) {
    const size_t b1 = std::min(prompts.size(), b0 + greedy.batch);
    std::vector<SequenceState> seqs;
    std::vector<size_t> active;  // prompt indices still generating
    std::vector<BatchEntry> batch;
    seqs.reserve(b1 - b0);
    for (size_t p = b0; p < b1; ++p) {
      if (prompts[p].empty()) throw Error("prompt " + std::to_string(p) + " is empty");
      seqs.push_back(model.NewSequence(options));
      batch.push_back({.seq = &seqs.back(), .tokens = prompts[p], .all_logits = false});
      active.push_back(p);
      local.prompt_tokens += static_cast<int64_t>(prompts[p].size());
    }
    bool prefill = true;
    while (!batch.empty()) {
      const auto t0 = Clock::now();
      std::vector<ForwardResult> r = model.ForwardBatch(batch);
      (prefill ? local.prefill_s : local.decode_s) += Since(t0);
      if (!prefill) local.decode_tokens += static_cast<int64_t>(batch.size());
      prefill = false;
      std::vector<BatchEntry> next;
      std::vector<size_t> still;
      for (size_t k = 0; k < active.size(); ++k) {
        std::vector<int32_t>& gen = out[active[k]];
        gen.push_back(Argmax(r[k].logits.data(), V));
        if (gen.back() == greedy.eos || static_cast<int64_t>(gen.size()) == greedy.max_new) {
          if (progress) progress(++done, total);
          continue;
        }
        next.push_back({.seq = batch[k].seq,
                        .tokens = std::span<const int32_t>(&gen.back(), 1),
                        .all_logits = false});
        still.push_back(active[k]);
      }
      batch = std::move(next);
      active = std::move(still);
    }
  }
  if (stats) {
    stats->prompt_tokens += local.prompt_tokens;
    stats->prefill_s += local.prefill_s;
    stats->decode_tokens += local.decode_tokens;
    stats->decode_s += local.decode_s;
  }
  return out;
}

TextScore ScoreDocuments(Model& model, const SequenceOptions& options,
                         std::span<const std::vector<int32_t>> documents,
                         const ScoreOptions& score, const ProgressFn& progress) {
  const ModelConfig& c = model.config();
  const int64_t window = score.window > 0 ? score.window : c.max_position_embeddings;
  if (window < 2 || window > c.max_position_embeddings)
    throw Error("scoring window " + std::to_string(window) + " must be in [2, " +
                std::to_string(c.max_position_embeddings) + "] (max_position_embeddings)");
  if (score.mtp && !model.has_mtp()) throw Error("the checkpoint has no MTP layer");
  const int64_t row_bytes = 4 * c.vocab_size * (score.mtp ? 2 : 1);  // main (+ MTP) logits
  const int64_t max_rows = score.max_rows > 0
                               ? score.max_rows
                               : std::max<int64_t>(1, (int64_t{128} << 20) / row_bytes);
  SequenceOptions so = options;
  so.mtp = score.mtp;
  TextScore out;
  out.documents = static_cast<int64_t>(documents.size());
  const std::vector<Window> windows = SplitWindows(documents, window);
  out.windows = static_cast<int64_t>(windows.size());
  const auto t0 = Clock::now();
  for (size_t g0 = 0; g0 < windows.size();) {
    size_t g1 = g0 + 1;
    int64_t rows = windows[g0].size();
    while (g1 < windows.size() && rows + windows[g1].size() <= max_rows)
      rows += windows[g1++].size();
    ScoreGroup(model, so, std::span<const Window>(windows.data() + g0, g1 - g0), max_rows, out);
    g0 = g1;
    if (progress) progress(static_cast<int64_t>(g0), out.windows);
  }
  out.seconds = Since(t0);
  return out;
}

}  // namespace dsinfer::eval
