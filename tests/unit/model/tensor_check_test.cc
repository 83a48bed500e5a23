// CheckTensors on tensors held in memory (the way a loader of another container, e.g. GGUF, would
// call it): the presence groups, the dtype rule and the block-scale rule of docs/checkpoint.md,
// each case built from the table of the `tiny` preset and then edited.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "model/tensor_table.h"
#include "tools/gen_model.h"

namespace dsinfer {
namespace {

// Stored tensors: name → info and zeroed bytes (block scales 1.0). `Stored()` views them.
class Store {
 public:
  explicit Store(const ModelConfig& c) {
    for (const TensorEntry& e : TensorTable(c)) Put(e.name, e.dtype, e.shape);
  }
  void Put(const std::string& name, DType dtype, std::vector<int64_t> shape) {
    auto t = std::make_unique<Tensor>();
    t->info = {name, dtype, std::move(shape)};
    const int64_t n = t->info.numel();
    t->info.end = static_cast<uint64_t>(n) * DTypeSize(dtype);
    t->bytes.assign(n * DTypeSize(dtype) / sizeof(float) + 1, 0.0f);  // float-aligned storage
    if (name.ends_with("_scale_inv")) std::fill(t->bytes.begin(), t->bytes.end(), 1.0f);
    tensors_[name] = std::move(t);
  }
  void Drop(const std::string& name) { ASSERT_EQ(tensors_.erase(name), 1u) << name; }
  void DropPrefix(const std::string& prefix) {
    std::erase_if(tensors_, [&](const auto& kv) { return kv.first.starts_with(prefix); });
  }
  float* Floats(const std::string& name) { return tensors_.at(name)->bytes.data(); }

  TensorCheck Check(const ModelConfig& c) const {
    StoredTensors s;
    for (const auto& [name, t] : tensors_) s.names.push_back(name);
    s.find = [this](std::string_view name) -> std::optional<TensorView> {
      auto it = tensors_.find(std::string(name));
      if (it == tensors_.end()) return std::nullopt;
      return TensorView{&it->second->info,
                        reinterpret_cast<const std::byte*>(it->second->bytes.data())};
    };
    return CheckTensors(c, s);
  }

 private:
  struct Tensor {
    TensorInfo info;
    std::vector<float> bytes;
  };
  std::map<std::string, std::unique_ptr<Tensor>> tensors_;
};

bool Names(const std::vector<std::string>& lines, const std::string& tensor) {
  return std::any_of(lines.begin(), lines.end(),
                     [&](const std::string& l) { return l.find(tensor) != std::string::npos; });
}

class TensorCheckTest : public ::testing::Test {
 protected:
  ModelConfig c_ = Small();
  static ModelConfig Small() {  // the tiny preset with a small vocabulary (fast)
    ModelConfig c = PresetConfig("tiny");
    c.vocab_size = 1000;
    return c;
  }
  std::string mtp_ = "model.layers." + std::to_string(c_.num_hidden_layers) + ".";
};

TEST_F(TensorCheckTest, TheTableItselfPasses) {
  const TensorCheck r = Store(c_).Check(c_);
  EXPECT_TRUE(r.ok()) << r.problems[0];
  EXPECT_TRUE(r.has_mtp);
  EXPECT_TRUE(r.unexpected.empty() && r.missing_optional.empty());
}

TEST_F(TensorCheckTest, MtpLayerIsOneOptionalGroup) {
  Store s(c_);
  s.DropPrefix(mtp_);  // no MTP layer at all: fine
  TensorCheck r = s.Check(c_);
  EXPECT_TRUE(r.ok()) << r.problems[0];
  EXPECT_FALSE(r.has_mtp);
  EXPECT_FALSE(r.missing_optional.empty());

  Store partial(c_);  // eh_proj stored, one projection of the layer gone: refused
  partial.Drop(mtp_ + "self_attn.o_proj.weight");
  r = partial.Check(c_);
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_TRUE(Names(r.missing, mtp_ + "self_attn.o_proj.weight"));
  EXPECT_EQ(r.unexpected, std::vector<std::string>{mtp_ + "self_attn.o_proj.weight_scale_inv"});

  Store copies(c_);  // the embedding / head copies fall back to the main model's
  copies.Drop(mtp_ + "embed_tokens.weight");
  copies.Drop(mtp_ + "shared_head.head.weight");
  r = copies.Check(c_);
  EXPECT_TRUE(r.ok()) << r.problems[0];
  EXPECT_FALSE(r.has_mtp);  // not every MTP tensor is stored
}

TEST_F(TensorCheckTest, MtpIndexerIsAGroupKeyedByWqB) {
  Store s(c_);
  s.Drop(mtp_ + "self_attn.indexer.wk.weight");
  TensorCheck r = s.Check(c_);
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(Names(r.missing, mtp_ + "self_attn.indexer.wk.weight"));
  s.DropPrefix(mtp_ + "self_attn.indexer.");  // the whole indexer gone: a dense MTP layer
  r = s.Check(c_);
  EXPECT_TRUE(r.ok()) << r.problems[0];
  // A main layer's indexer is required.
  Store main(c_);
  main.DropPrefix("model.layers.0.self_attn.indexer.");
  EXPECT_TRUE(Names(main.Check(c_).missing, "model.layers.0.self_attn.indexer.wq_b.weight"));
}

TEST_F(TensorCheckTest, StoredDtypeDecidesNotTheTable) {
  const std::string w = "model.layers.0.self_attn.kv_b_proj.weight";  // FP8 in the table
  const std::string eh = mtp_ + "eh_proj.weight";                     // BF16 in the table
  const int64_t h = c_.hidden_size;
  Store s(c_);
  for (const TensorEntry& e : TensorTable(c_))
    if (e.name == w) s.Put(w, DType::kBF16, e.shape);
  s.Put(eh, DType::kF8E4M3, {h, 2 * h});
  s.Put(eh + "_scale_inv", DType::kF32, BlockScaleShape(h, 2 * h));
  TensorCheck r = s.Check(c_);
  EXPECT_TRUE(r.ok()) << r.problems[0];
  // The FP8 table scale of the now-BF16 weight is unused, hence unexpected (not an error).
  EXPECT_EQ(r.unexpected, std::vector<std::string>{w + "_scale_inv"});
  s.Drop(eh + "_scale_inv");  // an FP8 matrix without its scale
  r = s.Check(c_);
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_EQ(r.missing, std::vector<std::string>{eh + "_scale_inv"});
}

TEST_F(TensorCheckTest, BlockScalesMustBeFinitePositiveF32) {
  const std::string s_name = "model.layers.1.self_attn.q_a_proj.weight_scale_inv";
  for (float bad : {0.0f, -1.0f, NAN, INFINITY}) {
    Store s(c_);
    s.Floats(s_name)[0] = bad;
    const TensorCheck r = s.Check(c_);
    ASSERT_EQ(r.problems.size(), 1u) << bad;
    EXPECT_EQ(r.problems[0], s_name + ": 1 block scales are not finite and positive");
  }
  Store s(c_);
  for (const TensorEntry& e : TensorTable(c_))
    if (e.name == s_name) s.Put(s_name, DType::kBF16, e.shape);
  const TensorCheck r = s.Check(c_);
  ASSERT_EQ(r.bad.size(), 1u);
  EXPECT_NE(r.bad[0].find(s_name + ": expected F32"), std::string::npos) << r.bad[0];
}

TEST_F(TensorCheckTest, VectorsAreNotFp8) {
  Store s(c_);
  s.Put("model.norm.weight", DType::kF8E4M3, {c_.hidden_size});
  const TensorCheck r = s.Check(c_);
  ASSERT_EQ(r.bad.size(), 1u);
  EXPECT_EQ(r.bad[0], "model.norm.weight: expected BF16, F16 or F32 [" +
                          std::to_string(c_.hidden_size) + "], found F8_E4M3 [" +
                          std::to_string(c_.hidden_size) + "]");
}

}  // namespace
}  // namespace dsinfer
