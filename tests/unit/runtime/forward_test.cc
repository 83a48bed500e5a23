// Identities of the forward pass on generated tiny checkpoints (tools/gen_model.h): every
// schedule — one prefill, chunked prefill, token-by-token decode, decode after a prefix — must
// give the same logits (they run the same f32 operations per token, so the stated tolerance
// 1e-5 · max|logit| is generous); DSA with index_topk ≥ length equals dense attention; the
// bf16/fp8 caches perturb logits by a small, bounded amount. The agreement with the NumPy
// reference is tested in tests/forward/.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>

#include "base/error.h"
#include "model/model.h"
#include "runtime/schedule.h"
#include "../model/tiny_checkpoint.h"

namespace dsinfer {
namespace {

namespace fs = std::filesystem;

// max over rows of max|a - b| / max|b| (the acceptance metric of the reference comparison).
double MaxRowRelDiff(const std::vector<float>& a, const std::vector<float>& b, int64_t vocab) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0;
  for (size_t r = 0; r * vocab < b.size(); ++r) {
    double d = 0, m = 0;
    for (int64_t j = 0; j < vocab; ++j) {
      d = std::max(d, double(std::fabs(a[r * vocab + j] - b[r * vocab + j])));
      m = std::max(m, double(std::fabs(b[r * vocab + j])));
    }
    worst = std::max(worst, d / m);
  }
  return worst;
}

class ForwardTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(MakeCheckpoint("forward_tiny", 1));
    model_ = Model::Load(*dir_).release();
  }
  static void TearDownTestSuite() {
    delete model_;
    delete dir_;
  }
  SequenceLogits Run(const std::vector<int32_t>& ids, Schedule s, SequenceOptions o = {}) {
    return RunSequence(*model_, o, ids, s);
  }
  static std::string* dir_;
  static Model* model_;
};
std::string* ForwardTest::dir_ = nullptr;
Model* ForwardTest::model_ = nullptr;

constexpr double kScheduleTol = 1e-5;

TEST_F(ForwardTest, LogitsAreFiniteAndDistinct) {
  const int64_t V = model_->config().vocab_size;
  SequenceLogits r = Run(Ids(20, V, 1), {});
  ASSERT_EQ(r.rows, 20);
  for (float v : r.logits) ASSERT_TRUE(std::isfinite(v));
  EXPECT_GT(MaxRowRelDiff(std::vector<float>(r.logits.begin(), r.logits.begin() + V),
                          std::vector<float>(r.logits.begin() + V, r.logits.begin() + 2 * V), V),
            1e-3);
}

TEST_F(ForwardTest, DecodeStepByStepEqualsPrefill) {
  const int64_t V = model_->config().vocab_size;
  const auto ids = Ids(40, V, 2);  // 40 > index_topk 16: sparse rows included
  SequenceLogits pre = Run(ids, {});
  SequenceLogits dec = Run(ids, {.decode = true});
  EXPECT_LE(MaxRowRelDiff(dec.logits, pre.logits, V), kScheduleTol);
}

TEST_F(ForwardTest, ChunkedPrefillEqualsPrefill) {
  const int64_t V = model_->config().vocab_size;
  const auto ids = Ids(70, V, 3);
  SequenceLogits pre = Run(ids, {});
  for (int64_t chunk : {1, 3, 7, 64}) {
    SequenceLogits ch = Run(ids, {.chunk = chunk});
    EXPECT_LE(MaxRowRelDiff(ch.logits, pre.logits, V), kScheduleTol) << "chunk " << chunk;
  }
}

TEST_F(ForwardTest, DecodeAfterPrefixEqualsPrefill) {
  const int64_t V = model_->config().vocab_size;
  const auto ids = Ids(30, V, 4);
  SequenceLogits pre = Run(ids, {});
  for (int64_t p : {1, 10, 29}) {
    SequenceLogits dec = Run(ids, {.decode = true, .prefill_len = p, .chunk = 4});
    EXPECT_LE(MaxRowRelDiff(dec.logits, pre.logits, V), kScheduleTol) << "prefix " << p;
  }
}

TEST_F(ForwardTest, DsaWithLargeTopkEqualsDense) {
  const int64_t V = model_->config().vocab_size;
  const auto ids = Ids(40, V, 5);
  SequenceLogits dense = Run(ids, {}, {.attention = AttentionMode::kDense});
  SequenceLogits big = Run(ids, {}, {.index_topk = 40});
  EXPECT_LE(MaxRowRelDiff(big.logits, dense.logits, V), 1e-5);
  // With the configured top-16 the rows p < 16 are still dense, the later ones are not.
  SequenceLogits sparse = Run(ids, {});
  const std::vector<float> head_s(sparse.logits.begin(), sparse.logits.begin() + 16 * V);
  const std::vector<float> head_d(dense.logits.begin(), dense.logits.begin() + 16 * V);
  EXPECT_LE(MaxRowRelDiff(head_s, head_d, V), 1e-5);
  EXPECT_GT(MaxRowRelDiff(sparse.logits, dense.logits, V), 1e-4);
}

TEST_F(ForwardTest, ReducedPrecisionCachesStayClose) {
  const int64_t V = model_->config().vocab_size;
  const auto ids = Ids(24, V, 6);
  SequenceLogits f32 = Run(ids, {}, {.attention = AttentionMode::kDense});
  SequenceLogits bf16 = Run(ids, {.decode = true},
                            {.attention = AttentionMode::kDense, .kv_cache = KvCacheType::kBF16});
  SequenceLogits fp8 = Run(ids, {}, {.attention = AttentionMode::kDense, .kv_cache = KvCacheType::kFP8});
  const double d_bf16 = MaxRowRelDiff(bf16.logits, f32.logits, V);
  const double d_fp8 = MaxRowRelDiff(fp8.logits, f32.logits, V);
  // bf16 keeps 8 significant bits (relative rounding ≤ 2^-9), e4m3 4 bits (≤ 2^-4); random
  // tiny models amplify that through 3 layers (and an occasional MoE routing flip), so the
  // bounds are loose, but the logits must move and stay well below their own scale.
  EXPECT_GT(d_bf16, 0.0);
  EXPECT_LT(d_bf16, 2e-2);
  EXPECT_GT(d_fp8, d_bf16);
  EXPECT_LT(d_fp8, 0.5);
  std::printf("max row |Δlogit|/max|logit| vs f32 cache: bf16 %.3g, fp8 %.3g\n", d_bf16, d_fp8);
}

TEST_F(ForwardTest, MtpIsScheduleIndependent) {
  ASSERT_TRUE(model_->has_mtp());
  const int64_t V = model_->config().vocab_size;
  const auto ids = Ids(25, V, 7);
  SequenceLogits pre = Run(ids, {}, {.mtp = true});
  ASSERT_EQ(pre.mtp_rows, 24);
  SequenceLogits dec = Run(ids, {.decode = true, .prefill_len = 5}, {.mtp = true});
  ASSERT_EQ(dec.mtp_rows, 24);
  EXPECT_LE(MaxRowRelDiff(dec.mtp_logits, pre.mtp_logits, V), kScheduleTol);
  EXPECT_LE(MaxRowRelDiff(dec.logits, pre.logits, V), kScheduleTol);
}

TEST_F(ForwardTest, RejectsBadTokensAndPositions) {
  SequenceState seq = model_->NewSequence({});
  const std::vector<int32_t> bad = {static_cast<int32_t>(model_->config().vocab_size)};
  EXPECT_THROW(model_->Forward(seq, bad, 0), Error);
  const std::vector<int32_t> ok = {1, 2};
  EXPECT_THROW(model_->Forward(seq, ok, 3), Error);
}

TEST(ForwardVariantsTest, NoIndexerNoQLoraRunsDense) {
  const std::string dir = MakeCheckpoint(
      "forward_no_indexer", 2,
      {"q_lora_rank=null", "index_topk=null", "index_n_heads=null", "index_head_dim=null"});
  auto model = Model::Load(dir);
  const int64_t V = model->config().vocab_size;
  const auto ids = Ids(20, V, 8);
  SequenceLogits dsa = RunSequence(*model, {}, ids, {});
  SequenceLogits dense = RunSequence(*model, {.attention = AttentionMode::kDense}, ids, {});
  SequenceLogits dec = RunSequence(*model, {}, ids, {.decode = true});
  EXPECT_EQ(dsa.logits, dense.logits);
  EXPECT_LE(MaxRowRelDiff(dec.logits, dsa.logits, V), kScheduleTol);
}

// Odd dimensions give FP8 tensors with odd byte counts (kv_a_proj_with_mqa: (81+16) × 201).
// Offsets in a safetensors file are contiguous, so the generator must order each shard by
// element size (as Hugging Face's writer does) for every F32 scale and BF16 weight to stay
// naturally aligned; the loader's checked views refuse misaligned data, so loading and running
// such a checkpoint proves it.
TEST(ForwardVariantsTest, OddDimensionsStayAlignedAndRun) {
  const std::string dir = MakeCheckpoint("forward_odd_dims", 4,
                                         {"hidden_size=201", "kv_lora_rank=81"});
  Checkpoint ckpt = Checkpoint::Open(dir);
  int odd_fp8 = 0;
  for (const std::string& name : ckpt.Names()) {
    TensorView v = ckpt.Get(name);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(v.data) % DTypeSize(v.dtype()), 0u) << name;
    odd_fp8 += v.dtype() == DType::kF8E4M3 && v.nbytes() % 2 == 1;
  }
  EXPECT_GT(odd_fp8, 0) << "the test needs FP8 tensors with odd byte counts";
  auto model = Model::Load(dir);
  SequenceLogits r = RunSequence(*model, {}, Ids(9, model->config().vocab_size, 3), {});
  for (float x : r.logits) ASSERT_TRUE(std::isfinite(x));
}

TEST_F(ForwardTest, LoadNamesTheBadTensor) {
  const std::string dir = std::string(DSINFER_BINARY_DIR) + "/test_models/forward_bad_shape";
  fs::remove_all(dir);
  fs::copy(*dir_, dir, fs::copy_options::recursive);
  // Pretend a different kv_lora_rank: the loader must name a tensor and the expected shape.
  const std::string cfg = dir + "/config.json";
  std::ifstream in(cfg);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  in.close();
  const size_t at = text.find("\"kv_lora_rank\"");
  ASSERT_NE(at, std::string::npos);
  const size_t colon = text.find(':', at), end = text.find_first_of(",}", colon);
  text.replace(colon + 1, end - colon - 1, " 64");
  std::ofstream(cfg) << text;
  try {
    Model::Load(dir);
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("self_attn"), std::string::npos) << msg;
    EXPECT_NE(msg.find("expected"), std::string::npos) << msg;
  }
}

}  // namespace
}  // namespace dsinfer
