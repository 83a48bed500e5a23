// Batch invariance of `Model::ForwardBatch` / `LayerStep`: every kernel computes each output row
// independently of the other rows, so a sequence's logits in a batch must be BITWISE those of
// running it alone (the server's load test compares greedy outputs with one-at-a-time runs).
// The batches mix prefill chunks and decode steps of sequences at different lengths, DSA with
// the indexer active (context > index_topk = 16), another top-k, dense attention, bf16/fp8
// caches and MTP; batched prefill rows exceed the MoE's per-expert-thread threshold while the
// solo runs do not, so both expert schedules are compared. This test also guards the fast
// kernels: a GEMM whose result for a row depends on the batch size fails here. The batched MTP
// drafting (`DraftBatch`) is held to the same rule against `Draft` of each sequence alone.
// The same rules hold in bf16 numerics (`Bf16BatchTest`).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "base/error.h"
#include "model/model.h"
#include "tiny_checkpoint.h"

namespace dsinfer {
namespace {

class BatchTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { model_ = Model::Load(MakeCheckpoint("batch_tiny", 1)).release(); }
  static void TearDownTestSuite() { delete model_; }
  static Model* model_;
};
Model* BatchTest::model_ = nullptr;

bool BitwiseEqual(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

struct Step {
  int seq;         // which sequence
  int64_t tokens;  // how many of its next tokens
  bool all_logits;
};

// Runs `steps` (each a batch) over `options.size()` sequences, batched and one sequence at a
// time, and expects bitwise equal logits (and MTP logits) for every entry.
void ExpectBatchedEqualsSolo(Model& model, const std::vector<SequenceOptions>& options,
                             const std::vector<std::vector<Step>>& steps) {
  const int64_t V = model.config().vocab_size;
  const size_t n = options.size();
  std::vector<SequenceState> batched, solo;
  std::vector<std::vector<int32_t>> ids;
  for (size_t i = 0; i < n; ++i) {
    batched.push_back(model.NewSequence(options[i]));
    solo.push_back(model.NewSequence(options[i]));
    ids.push_back(Ids(200, V, static_cast<uint32_t>(10 + i)));
  }
  std::vector<int64_t> used(n, 0);
  for (size_t k = 0; k < steps.size(); ++k) {
    std::vector<BatchEntry> batch;
    for (const Step& s : steps[k]) {
      batch.push_back({.seq = &batched[s.seq],
                       .tokens = std::span<const int32_t>(&ids[s.seq][used[s.seq]], s.tokens),
                       .all_logits = s.all_logits});
      used[s.seq] += s.tokens;
    }
    std::vector<ForwardResult> got = model.ForwardBatch(batch);
    ASSERT_EQ(got.size(), batch.size());
    for (size_t e = 0; e < batch.size(); ++e) {
      const Step& s = steps[k][e];
      SequenceState& seq = solo[s.seq];
      ForwardResult want = model.Forward(seq, batch[e].tokens, seq.length, s.all_logits);
      const std::string where = "step " + std::to_string(k) + " entry " + std::to_string(e) +
                                " (sequence " + std::to_string(s.seq) + " at " +
                                std::to_string(seq.length) + ")";
      EXPECT_EQ(batched[s.seq].length, seq.length) << where;
      EXPECT_EQ(got[e].rows, s.all_logits ? s.tokens : 1) << where;
      EXPECT_EQ(got[e].rows, want.rows) << where;
      EXPECT_TRUE(BitwiseEqual(got[e].logits, want.logits)) << where;
      EXPECT_EQ(got[e].mtp_rows, want.mtp_rows) << where;
      EXPECT_TRUE(BitwiseEqual(got[e].mtp_logits, want.mtp_logits)) << where;
    }
  }
}

// Prefill chunks and decode steps mixed; every sequence passes index_topk = 16.
const std::vector<std::vector<Step>> kMixedSchedule = {
    {{0, 20, true}, {1, 7, false}, {2, 30, false}, {3, 1, true}},
    {{1, 15, true}, {0, 1, false}, {3, 24, false}, {2, 1, true}},
    {{2, 1, false}, {3, 1, false}, {0, 1, false}, {1, 1, false}},
    {{0, 1, false}, {1, 3, true}, {3, 1, false}},
    {{3, 1, false}, {2, 1, false}, {1, 1, false}, {0, 1, false}},
    {{0, 45, false}, {2, 5, true}},  // sequence 0 grows into a new 64-token page
    {{0, 1, false}, {1, 1, false}, {2, 1, false}, {3, 1, false}},
};

TEST_F(BatchTest, DsaSequencesEqualSoloRunsBitwise) {
  ExpectBatchedEqualsSolo(*model_, {{}, {}, {}, {}}, kMixedSchedule);
}

TEST_F(BatchTest, MixedModesAndCachesEqualSoloRunsBitwise) {
  ExpectBatchedEqualsSolo(*model_,
                          {{.index_topk = 5},
                           {.attention = AttentionMode::kDense},
                           {.kv_cache = KvCacheType::kFP8},
                           {.attention = AttentionMode::kDense, .kv_cache = KvCacheType::kBF16}},
                          kMixedSchedule);
}

TEST_F(BatchTest, DenseSequencesEqualSoloRunsBitwise) {
  const SequenceOptions dense{.attention = AttentionMode::kDense};
  ExpectBatchedEqualsSolo(*model_, {dense, dense, dense, dense}, kMixedSchedule);
}

TEST_F(BatchTest, MtpSequencesEqualSoloRunsBitwise) {
  ASSERT_TRUE(model_->has_mtp());
  ExpectBatchedEqualsSolo(*model_, {{.mtp = true}, {}, {.mtp = true}, {.mtp = true}},
                          kMixedSchedule);
}

TEST_F(BatchTest, ModelWithoutIndexerEqualsSoloRunsBitwise) {
  auto model = Model::Load(MakeCheckpoint(
      "batch_no_indexer", 2,
      {"q_lora_rank=null", "index_topk=null", "index_n_heads=null", "index_head_dim=null"}));
  ExpectBatchedEqualsSolo(*model, {{}, {}, {}, {}}, kMixedSchedule);
}

// Head dims on the 128 grid: the query absorption runs through the transposed W_UK copy.
TEST_F(BatchTest, TransposedAbsorptionEqualsSoloRunsBitwise) {
  auto model = Model::Load(MakeCheckpoint(
      "batch_heads128", 3, {"qk_nope_head_dim=128", "v_head_dim=128", "kv_lora_rank=128"}));
  ExpectBatchedEqualsSolo(*model, {{}, {.kv_cache = KvCacheType::kFP8}, {}, {}}, kMixedSchedule);
}

// LayerStep of one layer for a batch equals LayerStep of each sequence alone (residual rows and
// the cache rows it writes), and advances nothing.
TEST_F(BatchTest, LayerStepEqualsSoloBitwise) {
  const int64_t H = model_->config().hidden_size, V = model_->config().vocab_size;
  const std::vector<int64_t> cached = {30, 17, 0}, chunk = {1, 4, 6};
  std::vector<SequenceState> batched, solo;
  std::vector<std::vector<int32_t>> prefix, ids;
  for (size_t i = 0; i < cached.size(); ++i) {
    batched.push_back(model_->NewSequence({}));
    solo.push_back(model_->NewSequence({}));
    prefix.push_back(Ids(cached[i], V, 40 + i));
    ids.push_back(Ids(chunk[i], V, 50 + i));
    if (cached[i] > 0) {
      model_->Forward(batched[i], prefix[i], 0, false);
      model_->Forward(solo[i], prefix[i], 0, false);
    }
  }
  int64_t N = 0;
  for (int64_t c : chunk) N += c;
  std::vector<float> h(N * H);  // [N, hidden] an arbitrary residual stream
  for (int64_t i = 0; i < N * H; ++i) h[i] = static_cast<float>((i * 37) % 101) / 50.0f - 1.0f;
  const std::vector<float> h_in = h;
  for (int64_t layer = 0; layer < model_->config().num_hidden_layers; ++layer) {
    std::vector<BatchEntry> batch;
    for (size_t i = 0; i < cached.size(); ++i) batch.push_back({&batched[i], ids[i], false});
    std::vector<float> hb = h_in;
    model_->LayerStep(layer, batch, hb.data());
    int64_t row = 0;
    for (size_t i = 0; i < cached.size(); ++i) {
      EXPECT_EQ(batched[i].length, cached[i]);
      std::vector<float> hs(h_in.begin() + row * H, h_in.begin() + (row + chunk[i]) * H);
      const BatchEntry one{&solo[i], ids[i], false};
      model_->LayerStep(layer, {&one, 1}, hs.data());
      EXPECT_EQ(std::memcmp(hs.data(), hb.data() + row * H, hs.size() * sizeof(float)), 0)
          << "layer " << layer << " sequence " << i;
      const LatentLayout& layout = batched[i].caches[layer].layout();
      for (int64_t t = 0; t < cached[i] + chunk[i]; ++t)
        EXPECT_EQ(std::memcmp(batched[i].caches[layer].latent_row(t),
                              solo[i].caches[layer].latent_row(t), layout.RowBytes()),
                  0)
            << "layer " << layer << " sequence " << i << " row " << t;
      row += chunk[i];
    }
  }
}

// Chunk invariance (the server's prefix cache resumes a prefill at a 64-token page boundary):
// a 200-token prompt prefilled in one chunk, as 64 + 64 + 72, as 128 + 72 or as 5 + 59 + 136
// gives bitwise-identical last-token logits, cache rows (latent and indexer key) and the same
// logits for a following decode step, in each of the sequence `modes`.
void ExpectChunkingInvariant(Model& model, const std::vector<SequenceOptions>& modes) {
  const int64_t V = model.config().vocab_size, L = model.config().num_hidden_layers;
  const std::vector<int32_t> ids = Ids(201, V, 77);
  const std::vector<std::vector<int64_t>> splits = {{200}, {64, 64, 72}, {128, 72}, {5, 59, 136}};
  for (size_t m = 0; m < modes.size(); ++m) {
    std::vector<SequenceState> seqs;
    std::vector<std::vector<float>> last, next;
    for (const std::vector<int64_t>& split : splits) {
      seqs.push_back(model.NewSequence(modes[m]));
      SequenceState& seq = seqs.back();
      ForwardResult r;
      for (int64_t n : split)
        r = model.Forward(seq, std::span<const int32_t>(&ids[seq.length], n), seq.length, false);
      ASSERT_EQ(seq.length, 200);
      last.push_back(r.logits);
      next.push_back(model.Forward(seq, {&ids[200], 1}, 200, false).logits);
    }
    for (size_t i = 1; i < splits.size(); ++i) {
      const std::string where = "mode " + std::to_string(m) + " split " + std::to_string(i);
      EXPECT_TRUE(BitwiseEqual(last[i], last[0])) << where;
      EXPECT_TRUE(BitwiseEqual(next[i], next[0])) << where << " (decode after)";
      for (int64_t l = 0; l < L; ++l) {
        LayerKvCache &a = seqs[0].caches[l], &b = seqs[i].caches[l];
        for (int64_t t = 0; t <= 200; ++t) {
          EXPECT_EQ(std::memcmp(a.latent_row(t), b.latent_row(t), a.layout().RowBytes()), 0)
              << where << " layer " << l << " latent row " << t;
          if (a.has_index()) {
            EXPECT_EQ(std::memcmp(a.index_row(t), b.index_row(t), a.index_layout().RowBytes()), 0)
                << where << " layer " << l << " index row " << t;
          }
        }
      }
    }
  }
}

// DSA with context > index_topk = 16 (and a top-k above the first chunk, 100), dense, and an fp8
// cache.
TEST_F(BatchTest, PrefillChunkingIsBitwiseInvariant) {
  ExpectChunkingInvariant(*model_, {{},
                                    {.index_topk = 100},
                                    {.attention = AttentionMode::kDense},
                                    {.kv_cache = KvCacheType::kFP8}});
}

// bf16 numerics (docs/numerics.md "bf16 numerics"): every activation-side GEMM rounds each
// activation row to bf16 by itself and runs the same kernel for 1 row (decode) as for many
// (prefill), so batch and chunk invariance hold as in f32 numerics. The same checkpoint,
// loaded in bf16 numerics; batches mixing DSA, another top-k, dense attention, fp8 and bf16
// caches and MTP, and the chunk splits above. (Timing: as the f32 tests of the same shapes.)
class Bf16BatchTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = Model::Load(MakeCheckpoint("batch_tiny", 1), {.numerics = Numerics::kBf16}).release();
  }
  static void TearDownTestSuite() { delete model_; }
  static Model* model_;
};
Model* Bf16BatchTest::model_ = nullptr;

TEST_F(Bf16BatchTest, MixedSequencesEqualSoloRunsBitwise) {
  ASSERT_EQ(model_->numerics(), Numerics::kBf16);
  ExpectBatchedEqualsSolo(*model_,
                          {{.mtp = true},
                           {.index_topk = 5},
                           {.attention = AttentionMode::kDense, .kv_cache = KvCacheType::kBF16},
                           {.kv_cache = KvCacheType::kFP8}},
                          kMixedSchedule);
}

TEST_F(Bf16BatchTest, PrefillChunkingIsBitwiseInvariant) {
  ExpectChunkingInvariant(*model_, {{}, {.kv_cache = KvCacheType::kFP8}});
}

// The mode is in effect and its distance from f32 numerics is of the size the rounding explains:
// the same 40 tokens' logits differ from f32 numerics' (each GEMM input moves by up to 2⁻⁸
// relative), but on the median row by less than 2⁻⁴ of the row's largest logit (a few rows may
// move further: a near-tied router or indexer choice can flip), and the top-1 token agrees on at
// least 90% of the rows.
TEST_F(Bf16BatchTest, DiffersFromF32NumericsByTheRoundingOnly) {
  std::unique_ptr<Model> f32 = Model::Load(MakeCheckpoint("batch_tiny", 1));
  const int64_t V = f32->config().vocab_size;
  const std::vector<int32_t> ids = Ids(40, V, 91);
  SequenceState a = f32->NewSequence({}), b = model_->NewSequence({});
  const std::vector<float> la = f32->Forward(a, ids, 0, /*all_logits=*/true).logits;
  const std::vector<float> lb = model_->Forward(b, ids, 0, /*all_logits=*/true).logits;
  ASSERT_EQ(la.size(), lb.size());
  EXPECT_FALSE(BitwiseEqual(la, lb)) << "bf16 numerics gave the f32 logits";
  std::vector<float> rel(40);  // [rows] max |Δ logit| / max |logit|
  int64_t same_top1 = 0;
  for (int64_t r = 0; r < 40; ++r) {
    const float* x = &la[r * V];
    const float* y = &lb[r * V];
    float diff = 0, peak = 0;
    for (int64_t j = 0; j < V; ++j) {
      diff = std::max(diff, std::fabs(x[j] - y[j]));
      peak = std::max(peak, std::fabs(x[j]));
    }
    rel[r] = diff / peak;
    same_top1 += std::max_element(x, x + V) - x == std::max_element(y, y + V) - y;
  }
  std::nth_element(rel.begin(), rel.begin() + 20, rel.end());
  EXPECT_LT(rel[20], 1.0f / 16) << "median row: max |Δ logit| / max |logit| = " << rel[20];
  EXPECT_GE(same_top1, 36);
}

// `Model::DraftBatch` (the engine drafts for all its sequences in one MTP-layer step, #12)
// equals `Model::Draft` of each sequence alone, bitwise: the drafts, every row of MTP logits
// handed to `pick`, and the MTP layer's latent and indexer cache rows. Two rounds (after a
// prefill, then after one decode token), sequences in different modes (DSA, another top-k,
// dense, fp8 cache), draft counts 0 to 3 (chained), prompts past index_topk = 16 and one of a
// single token.
TEST_F(BatchTest, DraftBatchEqualsSoloDraftsBitwise) {
  ASSERT_TRUE(model_->has_mtp());
  const int64_t V = model_->config().vocab_size;
  const std::vector<SequenceOptions> options = {
      {.mtp_draft = true},
      {.index_topk = 5, .mtp_draft = true},
      {.attention = AttentionMode::kDense, .mtp_draft = true},
      {.kv_cache = KvCacheType::kFP8, .mtp_draft = true}};
  const std::vector<int64_t> prompt = {30, 20, 1, 45};
  const std::vector<std::vector<int64_t>> n_draft = {{3, 1, 2, 0}, {1, 3, 0, 2}};
  const size_t n = options.size();
  std::vector<SequenceState> batched, solo;
  std::vector<std::vector<int32_t>> ids;
  for (size_t i = 0; i < n; ++i) {
    batched.push_back(model_->NewSequence(options[i]));
    solo.push_back(model_->NewSequence(options[i]));
    ids.push_back(Ids(prompt[i] + 2, V, static_cast<uint32_t>(60 + i)));
  }
  // The argmax, keeping a copy of every logits row it is given.
  auto picker = [V](std::vector<std::vector<float>>& seen) {
    return [&seen, V](const float* logits) {
      seen.emplace_back(logits, logits + V);
      return static_cast<int32_t>(std::max_element(logits, logits + V) - logits);
    };
  };
  for (size_t round = 0; round < n_draft.size(); ++round) {
    // Main rows, each sequence alone: its prompt (round 0) or one decode token (round 1).
    std::vector<std::vector<int32_t>> next(n);
    for (size_t i = 0; i < n; ++i) {
      const int64_t from = batched[i].length, to = round == 0 ? prompt[i] : prompt[i] + 1;
      for (SequenceState* s : {&batched[i], &solo[i]})
        model_->Forward(*s, std::span<const int32_t>(&ids[i][from], to - from), from, false);
      next[i].assign(ids[i].begin() + from + 1, ids[i].begin() + to + 1);
    }
    std::vector<std::vector<std::vector<float>>> seen_batched(n), seen_solo(n);
    std::vector<DraftEntry> entries;
    for (size_t i = 0; i < n; ++i)
      entries.push_back({.seq = &batched[i],
                         .next = next[i],
                         .n_draft = n_draft[round][i],
                         .pick = picker(seen_batched[i])});
    const std::vector<std::vector<int32_t>> got = model_->DraftBatch(entries);
    ASSERT_EQ(got.size(), n);
    for (size_t i = 0; i < n; ++i) {
      const std::string where = "round " + std::to_string(round) + " sequence " + std::to_string(i);
      const std::vector<int32_t> want =
          model_->Draft(solo[i], next[i], n_draft[round][i], picker(seen_solo[i]));
      EXPECT_EQ(got[i], want) << where;
      EXPECT_EQ(static_cast<int64_t>(got[i].size()), n_draft[round][i]) << where;
      ASSERT_EQ(seen_batched[i].size(), seen_solo[i].size()) << where;
      for (size_t j = 0; j < seen_solo[i].size(); ++j)
        EXPECT_TRUE(BitwiseEqual(seen_batched[i][j], seen_solo[i][j])) << where << " draft " << j;
      EXPECT_EQ(batched[i].mtp_length, solo[i].mtp_length) << where;
      EXPECT_EQ(batched[i].mtp_length, batched[i].length) << where;
      LayerKvCache &a = *batched[i].mtp_cache, &b = *solo[i].mtp_cache;
      // Rows up to length + n_draft − 2 (the chained drafts' rows) were written.
      const int64_t rows = batched[i].length + std::max<int64_t>(n_draft[round][i] - 1, 0);
      for (int64_t t = 0; t < rows; ++t) {
        EXPECT_EQ(std::memcmp(a.latent_row(t), b.latent_row(t), a.layout().RowBytes()), 0)
            << where << " MTP latent row " << t;
        if (a.has_index()) {
          EXPECT_EQ(std::memcmp(a.index_row(t), b.index_row(t), a.index_layout().RowBytes()), 0)
              << where << " MTP index row " << t;
        }
      }
    }
  }
  // Bad batches are refused, naming the entry, before any sequence is touched.
  auto expect_error = [&](std::vector<DraftEntry> batch, const std::string& needle) {
    const int64_t before = batched[1].mtp_length;
    try {
      model_->DraftBatch(batch);
      ADD_FAILURE() << "expected an Error mentioning '" << needle << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
    EXPECT_EQ(batched[1].mtp_length, before);
  };
  const std::vector<int32_t> one = {1}, none;
  const int32_t t = ids[1][prompt[1] + 1];
  model_->Forward(batched[1], {&t, 1}, batched[1].length, false);  // one unconsumed row
  SequenceState plain = model_->NewSequence({});
  // Entries without a pick function (every error comes before any draft is picked).
  auto entry = [](SequenceState* s, std::span<const int32_t> next, int64_t n_draft = 0) {
    return DraftEntry{.seq = s, .next = next, .n_draft = n_draft, .pick = nullptr};
  };
  SequenceState* s1 = &batched[1];
  expect_error({entry(s1, one), entry(s1, one)}, "entry 1 repeats the sequence of entry 0");
  expect_error({entry(s1, none)}, "entry 0 has 0 next tokens for 1");
  expect_error({entry(s1, one), entry(&batched[0], none, 1)}, "entry 1 asks for 1 drafts");
  expect_error({entry(s1, one, 1)}, "entry 0 has no pick");
  expect_error({entry(s1, one), entry(&plain, none)}, "entry 1 is not a sequence");
  const std::vector<int32_t> bad = {static_cast<int32_t>(V)};
  expect_error({entry(s1, bad)}, "out of range");
}

TEST_F(BatchTest, RejectsBadBatchesWithoutTouchingAnySequence) {
  SequenceState a = model_->NewSequence({}), b = model_->NewSequence({});
  const std::vector<int32_t> ok = {1, 2, 3}, empty;
  const std::vector<int32_t> bad = {static_cast<int32_t>(model_->config().vocab_size)};
  auto expect_error = [&](std::vector<BatchEntry> batch, const std::string& needle) {
    try {
      model_->ForwardBatch(batch);
      ADD_FAILURE() << "expected an Error mentioning '" << needle << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
    EXPECT_EQ(a.length, 0);
    EXPECT_EQ(b.length, 0);
  };
  expect_error({}, "empty batch");
  expect_error({{&a, ok}, {&a, ok}}, "repeats the sequence of entry 0");
  expect_error({{&a, ok}, {&b, empty}}, "entry 1 has no tokens");
  expect_error({{&a, ok}, {nullptr, ok}}, "entry 1 has no sequence");
  expect_error({{&a, ok}, {&b, bad}}, "out of range");
  SequenceState foreign;  // no caches: not made by this model
  expect_error({{&foreign, ok}}, "not a sequence of this model");
  Dumper dump(std::string(DSINFER_BINARY_DIR) + "/test_batch_dump");
  try {
    const std::vector<BatchEntry> two = {{&a, ok}, {&b, ok}};
    model_->ForwardBatch(two, &dump);
    ADD_FAILURE() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("batch of one"), std::string::npos) << e.what();
  }
  const BatchEntry one{&a, ok};
  std::vector<float> h(3 * model_->config().hidden_size);
  EXPECT_THROW(model_->LayerStep(model_->config().num_hidden_layers, {&one, 1}, h.data()), Error);
  EXPECT_THROW(model_->LayerStep(-1, {&one, 1}, h.data()), Error);
}

}  // namespace
}  // namespace dsinfer
