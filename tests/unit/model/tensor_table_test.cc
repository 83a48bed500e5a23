// TensorTable against docs/model.md §8.1 / §7 for the official V3.2 config, and parameter counts
// against DeepSeek's published figures.
#include "model/tensor_table.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>

#include "base/error.h"

namespace dsinfer {
namespace {

std::map<std::string, TensorEntry> ByName(const std::vector<TensorEntry>& t) {
  std::map<std::string, TensorEntry> m;
  for (const auto& e : t) EXPECT_TRUE(m.emplace(e.name, e).second) << "duplicate " << e.name;
  return m;
}

void ExpectTensor(const std::map<std::string, TensorEntry>& m, const std::string& name, DType dtype,
                  std::vector<int64_t> shape) {
  auto it = m.find(name);
  ASSERT_NE(it, m.end()) << name;
  EXPECT_EQ(it->second.dtype, dtype) << name;
  EXPECT_EQ(it->second.shape, shape) << name;
}

void ExpectFp8(const std::map<std::string, TensorEntry>& m, const std::string& prefix,
               std::vector<int64_t> shape, std::vector<int64_t> scale) {
  ExpectTensor(m, prefix + ".weight", DType::kF8E4M3, shape);
  ExpectTensor(m, prefix + ".weight_scale_inv", DType::kF32, scale);
  EXPECT_TRUE(m.at(prefix + ".weight").quantized);
}

TEST(TensorTable, OfficialConfigNamesAndShapes) {
  ModelConfig c;  // defaults are the official DeepSeek-V3.2 config
  auto m = ByName(TensorTable(c));
  ExpectTensor(m, "model.embed_tokens.weight", DType::kBF16, {129280, 7168});
  ExpectTensor(m, "model.layers.0.input_layernorm.weight", DType::kBF16, {7168});
  ExpectTensor(m, "model.layers.0.post_attention_layernorm.weight", DType::kBF16, {7168});
  ExpectFp8(m, "model.layers.0.self_attn.q_a_proj", {1536, 7168}, {12, 56});
  ExpectTensor(m, "model.layers.0.self_attn.q_a_layernorm.weight", DType::kBF16, {1536});
  ExpectFp8(m, "model.layers.0.self_attn.q_b_proj", {24576, 1536}, {192, 12});
  ExpectFp8(m, "model.layers.0.self_attn.kv_a_proj_with_mqa", {576, 7168}, {5, 56});
  ExpectTensor(m, "model.layers.0.self_attn.kv_a_layernorm.weight", DType::kBF16, {512});
  ExpectFp8(m, "model.layers.0.self_attn.kv_b_proj", {32768, 512}, {256, 4});
  ExpectFp8(m, "model.layers.0.self_attn.o_proj", {7168, 16384}, {56, 128});
  ExpectFp8(m, "model.layers.0.self_attn.indexer.wq_b", {8192, 1536}, {64, 12});
  ExpectFp8(m, "model.layers.60.self_attn.indexer.wk", {128, 7168}, {1, 56});
  ExpectTensor(m, "model.layers.5.self_attn.indexer.k_norm.weight", DType::kBF16, {128});
  ExpectTensor(m, "model.layers.5.self_attn.indexer.k_norm.bias", DType::kBF16, {128});
  ExpectTensor(m, "model.layers.5.self_attn.indexer.weights_proj.weight", DType::kBF16, {64, 7168});
  ExpectFp8(m, "model.layers.2.mlp.gate_proj", {18432, 7168}, {144, 56});
  ExpectFp8(m, "model.layers.2.mlp.up_proj", {18432, 7168}, {144, 56});
  ExpectFp8(m, "model.layers.2.mlp.down_proj", {7168, 18432}, {56, 144});
  EXPECT_FALSE(m.count("model.layers.2.mlp.gate.weight"));
  EXPECT_FALSE(m.count("model.layers.3.mlp.gate_proj.weight"));
  ExpectTensor(m, "model.layers.3.mlp.gate.weight", DType::kBF16, {256, 7168});
  ExpectTensor(m, "model.layers.3.mlp.gate.e_score_correction_bias", DType::kF32, {256});
  ExpectFp8(m, "model.layers.3.mlp.experts.0.gate_proj", {2048, 7168}, {16, 56});
  ExpectFp8(m, "model.layers.60.mlp.experts.255.up_proj", {2048, 7168}, {16, 56});
  ExpectFp8(m, "model.layers.60.mlp.experts.255.down_proj", {7168, 2048}, {56, 16});
  EXPECT_FALSE(m.count("model.layers.60.mlp.experts.256.down_proj.weight"));
  ExpectFp8(m, "model.layers.3.mlp.shared_experts.down_proj", {7168, 2048}, {56, 16});
  ExpectTensor(m, "model.norm.weight", DType::kBF16, {7168});
  ExpectTensor(m, "lm_head.weight", DType::kBF16, {129280, 7168});
  EXPECT_FALSE(m.count("model.layers.62.input_layernorm.weight"));
}

// Bounded by the checkpoint's tensor count: the official table (required entries: all but the
// MTP layer's and the block scales, which a BF16 checkpoint lacks) passes with exactly its
// required count, fails with one fewer, and a config with
// 1000x the layers fails while the table is still small (the error is raised as it grows).
TEST(TensorTable, BoundedByTheCheckpointTensorCount) {
  ModelConfig c;
  const std::vector<TensorEntry> full = TensorTable(c);
  size_t required = 0;
  for (const TensorEntry& e : full) required += e.required && e.role != TensorRole::kBlockScale;
  EXPECT_EQ(TensorTable(c, required).size(), full.size());
  EXPECT_THROW(TensorTable(c, required - 1), Error);
  c.num_hidden_layers = 61000;
  try {
    TensorTable(c, required);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("num_hidden_layers (61000), n_routed_experts (256)"),
              std::string::npos)
        << e.what();
  }
}

TEST(TensorTable, OfficialConfigMtpLayer) {
  ModelConfig c;
  auto table = TensorTable(c);
  auto m = ByName(table);
  ExpectTensor(m, "model.layers.61.embed_tokens.weight", DType::kBF16, {129280, 7168});
  ExpectTensor(m, "model.layers.61.enorm.weight", DType::kBF16, {7168});
  ExpectTensor(m, "model.layers.61.hnorm.weight", DType::kBF16, {7168});
  ExpectTensor(m, "model.layers.61.eh_proj.weight", DType::kBF16, {7168, 14336});
  ExpectTensor(m, "model.layers.61.shared_head.norm.weight", DType::kBF16, {7168});
  ExpectTensor(m, "model.layers.61.shared_head.head.weight", DType::kBF16, {129280, 7168});
  ExpectFp8(m, "model.layers.61.self_attn.indexer.wq_b", {8192, 1536}, {64, 12});
  ExpectFp8(m, "model.layers.61.mlp.experts.255.gate_proj", {2048, 7168}, {16, 56});
  const std::string p = "model.layers.61.";
  for (const auto& e : table) {
    const bool mtp = e.name.rfind(p, 0) == 0;
    EXPECT_EQ(e.required, !mtp && e.role != TensorRole::kGateBias) << e.name;
    EXPECT_EQ(e.layer >= 61, mtp) << e.name;
    // The MTP layer is one group keyed by eh_proj; its indexer a group keyed by wq_b; the
    // embedding/head copies (with fallbacks) and the router bias stay optional.
    std::string with;
    if (mtp && e.role != TensorRole::kGateBias && e.name != p + "eh_proj.weight" &&
        e.name != p + "embed_tokens.weight" && e.name != p + "shared_head.head.weight" &&
        e.name != p + "self_attn.indexer.wq_b.weight")
      with = e.name.find(".indexer.") == std::string::npos ? p + "eh_proj.weight"
                                                           : p + "self_attn.indexer.wq_b.weight";
    EXPECT_EQ(e.required_with, with) << e.name;
  }
  // Order: embedding first, head last, each quantised linear followed by its scale.
  EXPECT_EQ(table.front().name, "model.embed_tokens.weight");
  EXPECT_EQ(table.back().name, "lm_head.weight");
  for (size_t i = 0; i < table.size(); ++i)
    if (table[i].quantized) {
      ASSERT_LT(i + 1, table.size());
      EXPECT_EQ(table[i + 1].role, TensorRole::kBlockScale);
      EXPECT_EQ(table[i + 1].name, table[i].name + "_scale_inv");
    }
}

// DeepSeek-V3: 671B total, 37B activated per token; the MTP module adds 11.5B unique
// parameters (V3 README_WEIGHTS.md); V3.2 adds the lightning indexer (≈0.9B over 61 layers).
// Counted: every weight element, FP8 block scales excluded; `active` includes embedding and
// lm_head and the shared expert and counts 8/256 of the routed experts.
// Without a quantization_config (a BF16 conversion) the projections are BF16 without scales;
// names and shapes are unchanged.
TEST(TensorTable, UnquantizedConfigIsBf16) {
  ModelConfig c;
  c.quantization_config.reset();
  const std::vector<TensorEntry> fp8 = TensorTable(ModelConfig{}), bf16 = TensorTable(c);
  size_t scales = 0;
  for (const TensorEntry& e : fp8) scales += e.role == TensorRole::kBlockScale;
  ASSERT_EQ(bf16.size() + scales, fp8.size());
  auto m = ByName(bf16);
  ExpectTensor(m, "model.layers.3.mlp.experts.7.up_proj.weight", DType::kBF16, {2048, 7168});
  for (const TensorEntry& e : bf16) {
    EXPECT_FALSE(e.quantized) << e.name;
    EXPECT_NE(e.dtype, DType::kF8E4M3) << e.name;
  }
}

TEST(TensorTable, AcceptedDTypes) {
  EXPECT_EQ(AcceptedDTypesText(TensorRole::kLinear), "F8_E4M3 + F32 block scale, BF16, F16 or F32");
  EXPECT_EQ(AcceptedDTypesText(TensorRole::kGate), AcceptedDTypesText(TensorRole::kEmbedding));
  EXPECT_EQ(AcceptedDTypesText(TensorRole::kNormBias), "BF16, F16 or F32");
  EXPECT_EQ(AcceptedDTypesText(TensorRole::kBlockScale), "F32");
  EXPECT_EQ(BlockScaleName("a.weight"), "a.weight_scale_inv");
  EXPECT_EQ(BlockScaleShape(129, 128), (std::vector<int64_t>{2, 1}));
}

TEST(TensorTable, OfficialParameterCounts) {
  ModelConfig c;
  c.index_n_heads.reset();
  c.index_head_dim.reset();
  c.index_topk.reset();
  ParameterCounts v3 = CountParameters(c, TensorTable(c));
  EXPECT_NEAR(v3.total / 1e9, 671.0, 671.0 * 0.005);    // exact: 671.03B
  EXPECT_NEAR(v3.active / 1e9, 37.0, 37.0 * 0.02);      // 37.55B (36.6B without the embedding)
  EXPECT_NEAR(v3.mtp_unique / 1e9, 11.5, 11.5 * 0.02);  // 11.61B
  EXPECT_EQ(v3.mtp - v3.mtp_unique, 2 * 129280LL * 7168);
  EXPECT_EQ(v3.indexer, 0);

  ParameterCounts v32 = CountParameters(ModelConfig{}, TensorTable(ModelConfig{}));
  // Per layer: wq_b 8192·1536 + wk 128·7168 + weights_proj 64·7168 + k_norm 2·128.
  const int64_t per_layer = 8192LL * 1536 + 128LL * 7168 + 64LL * 7168 + 256;
  EXPECT_EQ(v32.indexer, 61 * per_layer);
  EXPECT_NEAR(v32.indexer / 1e9, 0.9, 0.9 * 0.1);  // 0.85B
  EXPECT_EQ(v32.total - v3.total, 61 * per_layer);
  EXPECT_EQ(v32.active - v3.active, 61 * per_layer);
  EXPECT_EQ(v32.mtp - v3.mtp, per_layer);
}

TEST(TensorTable, WithoutQLora) {
  ModelConfig c;
  c.q_lora_rank.reset();
  c.index_n_heads.reset();
  c.index_head_dim.reset();
  c.index_topk.reset();
  c.num_hidden_layers = 2;
  c.first_k_dense_replace = 1;
  auto m = ByName(TensorTable(c));
  ExpectFp8(m, "model.layers.0.self_attn.q_proj", {128 * 192, 7168}, {192, 56});
  for (const auto& [name, e] : m) {
    EXPECT_EQ(name.find("q_a_proj"), std::string::npos) << name;
    EXPECT_EQ(name.find("q_b_proj"), std::string::npos) << name;
    EXPECT_EQ(name.find("q_a_layernorm"), std::string::npos) << name;
    EXPECT_EQ(name.find("indexer"), std::string::npos) << name;
  }
}

TEST(TensorTable, IndexerNeedsQLora) {
  ModelConfig c;
  c.q_lora_rank.reset();
  c.num_hidden_layers = 1;
  EXPECT_THROW(TensorTable(c), Error);
}

TEST(TensorTable, NoSharedExpertsNoBiasOddDims) {
  ModelConfig c;
  c.num_hidden_layers = 2;
  c.first_k_dense_replace = 1;
  c.num_nextn_predict_layers = 0;
  c.n_shared_experts = 0;
  c.topk_method = "greedy";
  c.hidden_size = 200;
  c.kv_lora_rank = 80;
  auto m = ByName(TensorTable(c));
  for (const auto& [name, e] : m) {
    EXPECT_EQ(name.find("shared_experts"), std::string::npos) << name;
    EXPECT_EQ(name.find("e_score_correction_bias"), std::string::npos) << name;
    EXPECT_EQ(name.find("model.layers.2."), std::string::npos) << name;
  }
  ExpectFp8(m, "model.layers.1.self_attn.kv_a_proj_with_mqa", {80 + 64, 200}, {2, 2});
  ExpectFp8(m, "model.layers.1.self_attn.indexer.wk", {128, 200}, {1, 2});
  ExpectTensor(m, "model.layers.1.mlp.gate.weight", DType::kBF16, {256, 200});
}

TEST(TensorTable, MoeLayerFreq) {
  ModelConfig c;
  c.num_hidden_layers = 6;
  c.first_k_dense_replace = 1;
  c.moe_layer_freq = 2;
  c.num_nextn_predict_layers = 0;
  auto m = ByName(TensorTable(c));
  for (int layer = 0; layer < 6; ++layer) {
    const std::string p = "model.layers." + std::to_string(layer) + ".mlp.";
    const bool moe = layer >= 1 && layer % 2 == 0;
    EXPECT_EQ(m.count(p + "gate.weight"), moe ? 1u : 0u) << layer;
    EXPECT_EQ(m.count(p + "gate_proj.weight"), moe ? 0u : 1u) << layer;
  }
}

}  // namespace
}  // namespace dsinfer
