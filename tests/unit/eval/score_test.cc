// eval/score.h on a generated tiny checkpoint, against direct calls of the forward pass:
// batched greedy generation equals a per-prompt Forward + argmax loop (bitwise: the batched
// forward computes every row as alone) and stops at EOS; document scores equal an NLL / top-1 /
// MTP tally computed here from Forward's logits per window (tolerance 1e-12 relative: both sum
// the same f32 logits in f64, in different orders), and a chunked prefill (max_rows) agrees
// within the schedule tolerance of forward_test.cc (1e-5 of the logits' scale).
#include <gtest/gtest.h>

#include <cmath>

#include "base/error.h"
#include "eval/score.h"
#include "runtime/sampler.h"
#include "../model/tiny_checkpoint.h"

namespace dsinfer::eval {
namespace {

TEST(TokenNllTest, ClosedForm) {
  const float logits[3] = {0.0f, std::log(2.0f), std::log(3.0f)};  // p = 1/6, 2/6, 3/6
  EXPECT_NEAR(TokenNll(logits, 3, 2), std::log(2.0), 1e-7);
  EXPECT_NEAR(TokenNll(logits, 3, 0), std::log(6.0), 1e-7);
  const float big[2] = {1000.0f, 1000.0f};  // max-subtracted: no overflow
  EXPECT_NEAR(TokenNll(big, 2, 1), std::log(2.0), 1e-12);
}

class ScoreTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { model_ = Model::Load(MakeCheckpoint("eval_tiny", 11)).release(); }
  static void TearDownTestSuite() { delete model_; }
  static Model* model_;
  int64_t vocab() const { return model_->config().vocab_size; }
};
Model* ScoreTest::model_ = nullptr;

// Reference greedy loop: Forward the prompt, then one token at a time.
std::vector<int32_t> GreedyAlone(Model& m, const std::vector<int32_t>& prompt, int64_t max_new,
                                 int32_t eos) {
  SequenceState seq = m.NewSequence({});
  ForwardResult r = m.Forward(seq, prompt, 0, /*all_logits=*/false);
  std::vector<int32_t> out;
  for (;;) {
    out.push_back(Argmax(r.logits.data(), m.config().vocab_size));
    if (out.back() == eos || static_cast<int64_t>(out.size()) == max_new) return out;
    r = m.Forward(seq, std::span<const int32_t>(&out.back(), 1), seq.length, false);
  }
}

TEST_F(ScoreTest, GreedyBatchedEqualsAloneAndStopsAtEos) {
  const std::vector<std::vector<int32_t>> prompts = {Ids(3, vocab(), 1), Ids(9, vocab(), 2),
                                                     Ids(1, vocab(), 3), Ids(14, vocab(), 4)};
  std::vector<std::vector<int32_t>> want;
  for (const auto& p : prompts) want.push_back(GreedyAlone(*model_, p, 6, /*eos=*/-1));
  for (int batch : {1, 3, 8}) {
    DecodeStats stats;
    EXPECT_EQ(GreedyGenerate(*model_, {}, prompts, {.max_new = 6, .eos = -1, .batch = batch},
                             &stats),
              want)
        << "batch " << batch;
    EXPECT_EQ(stats.prompt_tokens, 27);
    EXPECT_EQ(stats.decode_tokens, 4 * 5);
  }
  // With EOS = the third token of prompt 1's continuation, every continuation ends at its
  // first occurrence of that token.
  const int32_t eos = want[1][2];
  std::vector<std::vector<int32_t>> cut = want;
  for (auto& w : cut)
    for (size_t i = 0; i < w.size(); ++i)
      if (w[i] == eos) w.resize(i + 1);
  EXPECT_EQ(cut[1].size(), 3u);
  EXPECT_EQ(GreedyGenerate(*model_, {}, prompts, {.max_new = 6, .eos = eos, .batch = 3}), cut);
}

// The tally ScoreDocuments must produce, from Forward(all logits) of each window alone.
TextScore ScoreAlone(Model& m, const std::vector<std::vector<int32_t>>& docs, int64_t window) {
  const int64_t V = m.config().vocab_size;
  TextScore s;
  for (const auto& d : docs) {
    const int64_t n = static_cast<int64_t>(d.size());
    for (int64_t b = 0; b + 1 < n; b += window - 1) {
      std::vector<int32_t> w(d.begin() + b, d.begin() + std::min(b + window, n));
      const int64_t k = static_cast<int64_t>(w.size());
      SequenceState seq = m.NewSequence({.mtp = true});
      ForwardResult r = m.Forward(seq, w, 0);
      for (int64_t i = 0; i + 1 < k; ++i) {
        const float* row = r.logits.data() + i * V;
        long double z = 0;
        for (int64_t j = 0; j < V; ++j) z += std::exp(static_cast<long double>(row[j]));
        s.nll_sum += static_cast<double>(std::log(z) - row[w[i + 1]]);
        s.top1_correct += Argmax(row, V) == w[i + 1];
        ++s.predicted;
      }
      for (int64_t i = 0; i + 2 < k; ++i) {
        const int32_t draft = Argmax(r.mtp_logits.data() + i * V, V);
        s.mtp_correct += draft == w[i + 2];
        s.mtp_agree += draft == Argmax(r.logits.data() + (i + 1) * V, V);
        ++s.mtp_predicted;
      }
      ++s.windows;
    }
  }
  return s;
}

void ExpectSameScore(const TextScore& got, const TextScore& want, double nll_rtol) {
  EXPECT_EQ(got.windows, want.windows);
  EXPECT_EQ(got.predicted, want.predicted);
  EXPECT_NEAR(got.nll_sum, want.nll_sum, nll_rtol * want.nll_sum);
  EXPECT_EQ(got.top1_correct, want.top1_correct);
  EXPECT_EQ(got.mtp_predicted, want.mtp_predicted);
  EXPECT_EQ(got.mtp_correct, want.mtp_correct);
  EXPECT_EQ(got.mtp_agree, want.mtp_agree);
}

TEST_F(ScoreTest, DocumentsEqualPerWindowForward) {
  // Repeated tokens give the random model's argmax something to hit now and then.
  std::vector<int32_t> rep;
  for (int i = 0; i < 5; ++i)
    for (int32_t t : Ids(4, vocab(), 9)) rep.push_back(t);
  const std::vector<std::vector<int32_t>> docs = {Ids(23, vocab(), 5), Ids(2, vocab(), 6),
                                                  Ids(7, vocab(), 7), rep};
  for (int64_t window : {int64_t{0}, int64_t{6}, int64_t{2}}) {
    const TextScore want = ScoreAlone(*model_, docs, window ? window : 4096);
    const TextScore got = ScoreDocuments(*model_, {}, docs, {.window = window, .mtp = true});
    SCOPED_TRACE("window " + std::to_string(window));
    EXPECT_EQ(got.documents, 4);
    ExpectSameScore(got, want, 1e-12);
    EXPECT_NEAR(got.Perplexity(), std::exp(want.nll_sum / want.predicted),
                1e-10 * got.Perplexity());
  }
  // Windows packed 10 rows per batch, and one window chunked 4 rows per call.
  const TextScore want = ScoreAlone(*model_, docs, 4096);
  EXPECT_GT(want.top1_correct + want.mtp_correct + want.mtp_agree, 0)
      << "the counts compared are all 0: a weak test";
  ExpectSameScore(ScoreDocuments(*model_, {}, docs, {.max_rows = 10, .mtp = true}), want, 1e-12);
  ExpectSameScore(ScoreDocuments(*model_, {}, docs, {.max_rows = 4, .mtp = true}), want, 1e-5);
}

TEST_F(ScoreTest, BadInput) {
  const std::vector<std::vector<int32_t>> one = {{5}};
  EXPECT_THROW(ScoreDocuments(*model_, {}, one, {}), Error);
  const std::vector<std::vector<int32_t>> ok = {{5, 6}};
  EXPECT_THROW(ScoreDocuments(*model_, {}, ok, {.window = 1}), Error);
  EXPECT_THROW(ScoreDocuments(*model_, {}, ok, {.window = 5000}), Error);
  const std::vector<std::vector<int32_t>> empty = {{}};
  EXPECT_THROW(GreedyGenerate(*model_, {}, empty, {}), Error);
  std::unique_ptr<Model> no_mtp =
      Model::Load(MakeCheckpoint("eval_tiny_nomtp", 11, {"num_nextn_predict_layers=0"}));
  EXPECT_THROW(ScoreDocuments(*no_mtp, {}, ok, {.mtp = true}), Error);
}

}  // namespace
}  // namespace dsinfer::eval
