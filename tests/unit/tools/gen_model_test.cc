// The checkpoint generator: determinism, official layout, init statistics, tokenizer files.
#include "tools/gen_model.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "base/error.h"
#include "format/checkpoint.h"
#include "format/dtype.h"
#include "model/tensor_table.h"
#include "tests/unit/tools/gen_test_util.h"
#include "tools/gen_init.h"

namespace dsinfer {
namespace {

namespace fs = std::filesystem;
using testing_util::ReadFile;
using testing_util::ScratchDir;

// tiny with a small vocabulary: the tests that do not need the real tokenizer stay fast.
GenOptions SmallTiny(const std::string& dir, uint64_t seed = 7) {
  return {.preset = "tiny", .seed = seed, .out_dir = dir, .sets = {"vocab_size=1000"}};
}

std::vector<std::string> FilesOf(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& f : fs::directory_iterator(dir)) names.push_back(f.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

TEST(GenModel, SameSeedSameBytesAnyThreadCount) {
  ScratchDir tmp("gen");
  const int threads = omp_get_max_threads();
  GenerateCheckpoint(SmallTiny(tmp / "a"));
  omp_set_num_threads(1);
  GenerateCheckpoint(SmallTiny(tmp / "b"));
  omp_set_num_threads(threads);
  const auto files = FilesOf(tmp / "a");
  ASSERT_EQ(files, FilesOf(tmp / "b"));
  for (const auto& f : files)
    EXPECT_EQ(ReadFile(tmp / ("a/" + f)), ReadFile(tmp / ("b/" + f))) << f;
}

TEST(GenModel, DifferentSeedDifferentTensors) {
  ScratchDir tmp("gen");
  GenerateCheckpoint(SmallTiny(tmp / "a", 1));
  GenerateCheckpoint(SmallTiny(tmp / "b", 2));
  Checkpoint a = Checkpoint::Open(tmp / "a"), b = Checkpoint::Open(tmp / "b");
  ASSERT_EQ(a.Names(), b.Names());
  int same = 0;
  for (const std::string& n : a.Names()) {
    TensorView x = a.Get(n), y = b.Get(n);
    same += x.nbytes() == y.nbytes() && std::memcmp(x.data, y.data, x.nbytes()) == 0;
  }
  EXPECT_EQ(same, 0);  // every tensor, even a norm weight, depends on the seed
}

TEST(GenModel, FullTinyOpensWithEveryTableTensor) {
  ScratchDir tmp("gen");
  const GenResult r = GenerateCheckpoint({.preset = "tiny", .seed = 0, .out_dir = tmp / "m"});
  Checkpoint ck = Checkpoint::Open(tmp / "m");
  EXPECT_EQ(ck.config(), r.config);
  EXPECT_EQ(ck.config().vocab_size, 129280);
  EXPECT_TRUE(ck.config().rope_scaling.has_value());
  const auto table = TensorTable(ck.config());
  std::set<std::string> expected;
  for (const TensorEntry& e : table) {
    expected.insert(e.name);
    EXPECT_NO_THROW(ck.Get(e.name, e.dtype, e.shape)) << e.name;
  }
  const auto names = ck.Names();
  EXPECT_EQ(std::set<std::string>(names.begin(), names.end()), expected);
  EXPECT_TRUE(ck.Has("model.layers.3.eh_proj.weight"));  // the MTP layer
  EXPECT_TRUE(ck.Has("model.layers.3.self_attn.indexer.wq_b.weight"));
  EXPECT_EQ(r.shards, 1);
  const auto gen = nlohmann::json::parse(ReadFile(tmp / "m/generation_config.json"));
  EXPECT_EQ(gen.at("eos_token_id"), 1);
  EXPECT_EQ(gen.at("bos_token_id"), 0);
}

// Values must be the intended draw: dequantised FP8 within e4m3 rounding of the f32 draw,
// per-block scale = amax/448 of the draw, and the sample std within 3% of the intended one.
TEST(GenModel, Fp8WeightsDequantiseToTheIntendedInit) {
  ScratchDir tmp("gen");
  const GenResult r = GenerateCheckpoint(SmallTiny(tmp / "m", 3));
  Checkpoint ck = Checkpoint::Open(tmp / "m");
  for (const TensorEntry& e : TensorTable(r.config)) {
    if (!e.quantized || e.layer != 1) continue;
    const TensorView w = ck.Get(e.name), s = ck.Get(e.name + "_scale_inv");
    const int64_t rows = e.shape[0], cols = e.shape[1], cb = (cols + 127) / 128;
    const InitSpec spec = InitFor(e, r.config);
    const uint64_t key = TensorKey(3, e.name);
    std::vector<float> amax(s.numel(), 0.0f);
    double sum2 = 0;
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) {
        const float drawn = spec.mean + spec.std * UnitRandom(key, i * cols + j);
        float scale;
        std::memcpy(&scale, s.data + 4 * ((i / 128) * cb + j / 128), 4);
        const float deq = E4M3ToFloat(static_cast<uint8_t>(w.data[i * cols + j])) * scale;
        // e4m3: 3 mantissa bits → relative error ≤ 2^-4; subnormal spacing 2^-9 · scale.
        ASSERT_LE(std::fabs(deq - drawn), std::fabs(drawn) * 0.0625f + scale * 0.00196f)
            << e.name << " [" << i << "," << j << "]";
        float& m = amax[(i / 128) * cb + j / 128];
        m = std::max(m, std::fabs(drawn));
        sum2 += double(deq) * deq;
      }
    for (int64_t b = 0; b < s.numel(); ++b) {
      float scale;
      std::memcpy(&scale, s.data + 4 * b, 4);
      EXPECT_EQ(scale, amax[b] / 448.0f) << e.name << " block " << b;
    }
    const double std = std::sqrt(sum2 / double(rows * cols));
    const double tol = 0.03 + 3.0 / std::sqrt(double(rows * cols));  // sampling error of a std
    EXPECT_NEAR(std / spec.std, 1.0, tol) << e.name;
  }
}

TEST(GenModel, PresetsMatchTheirSpecification) {
  ModelConfig official;
  ModelConfig l = PresetConfig("layer671b");
  EXPECT_EQ(l.num_hidden_layers, 1);
  EXPECT_EQ(l.first_k_dense_replace, 0);
  EXPECT_EQ(l.num_nextn_predict_layers, 0);
  l.num_hidden_layers = official.num_hidden_layers;
  l.first_k_dense_replace = official.first_k_dense_replace;
  l.num_nextn_predict_layers = official.num_nextn_predict_layers;
  EXPECT_EQ(l, official);  // every other field at the real 671B value
  const ModelConfig t = PresetConfig("tiny");
  EXPECT_EQ(
      t.hidden_size % 128 != 0 && t.q_lora_rank.value() % 128 != 0 && t.kv_lora_rank % 128 != 0,
      true);
  EXPECT_EQ(*t.index_head_dim & (*t.index_head_dim - 1), 0);  // power of two (Hadamard)
  EXPECT_EQ(t.vocab_size, 129280);
  EXPECT_EQ(t.rope_scaling->original_max_position_embeddings, 256);
  EXPECT_NO_THROW(t.Validate("tiny"));
  const ModelConfig m = PresetConfig("mini");
  EXPECT_EQ(m.hidden_size, 2048);
  EXPECT_EQ(m.num_attention_heads, 16);
  EXPECT_EQ(m.q_lora_rank, 768);
  EXPECT_EQ(m.n_routed_experts, 64);
  EXPECT_EQ(m.moe_intermediate_size, 1408);
  EXPECT_EQ(m.intermediate_size, 5632);
  EXPECT_EQ(m.index_topk, 2048);
  EXPECT_NO_THROW(m.Validate("mini"));
}

TEST(GenModel, InitScalesByRole) {
  ModelConfig c = PresetConfig("tiny");
  auto by_name = [&](const std::string& n) {
    for (const TensorEntry& e : TensorTable(c))
      if (e.name == n) return InitFor(e, c);
    ADD_FAILURE() << n;
    return InitSpec{};
  };
  EXPECT_FLOAT_EQ(by_name("model.layers.0.self_attn.q_a_proj.weight").std, 1 / std::sqrt(200.f));
  // Residual-writing projections: 1/sqrt(fan_in) / sqrt(2 · (3 + 1 MTP) layers).
  EXPECT_FLOAT_EQ(by_name("model.layers.0.self_attn.o_proj.weight").std,
                  1 / std::sqrt(80.f) / std::sqrt(8.f));
  EXPECT_FLOAT_EQ(by_name("model.layers.1.mlp.experts.3.down_proj.weight").std,
                  1 / std::sqrt(72.f) / std::sqrt(8.f));
  EXPECT_FLOAT_EQ(by_name("model.norm.weight").mean, 1.0f);
  EXPECT_GT(by_name("model.norm.weight").std, 0.0f);
  EXPECT_GT(by_name("model.layers.1.self_attn.indexer.k_norm.bias").std, 0.0f);
  EXPECT_GT(by_name("model.layers.1.mlp.gate.weight").std,
            by_name("model.layers.1.mlp.experts.0.gate_proj.weight").std);
}

// UnitRandom: mean 0, variance 1 (Irwin–Hall(4) rescaled), bounded at ±2·sqrt(3).
TEST(GenModel, UnitRandomMoments) {
  const int n = 1 << 20;
  double s1 = 0, s2 = 0, mx = 0;
  for (int i = 0; i < n; ++i) {
    const double z = UnitRandom(12345, i);
    s1 += z;
    s2 += z * z;
    mx = std::max(mx, std::fabs(z));
  }
  EXPECT_NEAR(s1 / n, 0.0, 5.0 / std::sqrt(double(n)));
  EXPECT_NEAR(s2 / n, 1.0, 0.01);
  EXPECT_LE(mx, 2 * std::sqrt(3.0));
  EXPECT_GT(mx, 3.0);
}

TEST(GenModel, TokenizerFilesAreV32) {
  ScratchDir tmp("gen");
  GenerateCheckpoint(SmallTiny(tmp / "m"));
  const auto tok = nlohmann::json::parse(ReadFile(tmp / "m/tokenizer.json"));
  const auto src = nlohmann::json::parse(ReadFile(DefaultTokenizerSource() + "/tokenizer.json"));
  const std::map<int, std::string> renamed = {{128796, "<｜search▁begin｜>"},
                                              {128797, "<｜search▁end｜>"},
                                              {128798, "<think>"},
                                              {128799, "</think>"}};
  ASSERT_EQ(tok.at("added_tokens").size(), src.at("added_tokens").size());
  for (size_t i = 0; i < tok["added_tokens"].size(); ++i) {
    const auto& t = tok["added_tokens"][i];
    const auto& s = src["added_tokens"][i];
    const int id = t.at("id");
    if (renamed.count(id)) {
      EXPECT_EQ(t.at("content"), renamed.at(id));
      EXPECT_NE(s.at("content"), renamed.at(id));
    } else {
      EXPECT_EQ(t, s) << id;
    }
  }
  EXPECT_EQ(tok.at("model"), src.at("model"));
  const auto cfg = nlohmann::json::parse(ReadFile(tmp / "m/tokenizer_config.json"));
  const auto src_cfg =
      nlohmann::json::parse(ReadFile(DefaultTokenizerSource() + "/tokenizer_config.json"));
  ASSERT_TRUE(src_cfg.contains("chat_template"));
  EXPECT_FALSE(cfg.contains("chat_template"));
  EXPECT_EQ(cfg.at("eos_token"), src_cfg.at("eos_token"));
}

TEST(GenModel, MissingTokenizerSourceIsAClearError) {
  ScratchDir tmp("gen");
  GenOptions o = SmallTiny(tmp / "m");
  o.tokenizer_source = tmp / "nowhere";
  try {
    GenerateCheckpoint(o);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("scripts/setup.sh"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("nowhere"), std::string::npos) << e.what();
  }
}

TEST(GenModel, SetOverridesAndValidates) {
  ScratchDir tmp("gen");
  GenOptions o = SmallTiny(tmp / "m");
  o.sets.push_back("num_hidden_layers=2");
  o.sets.push_back("rope_scaling.factor=8");
  o.sets.push_back("num_nextn_predict_layers=0");
  const GenResult r = GenerateCheckpoint(o);
  Checkpoint ck = Checkpoint::Open(tmp / "m");
  EXPECT_EQ(ck.config().num_hidden_layers, 2);
  EXPECT_EQ(ck.config().vocab_size, 1000);
  EXPECT_DOUBLE_EQ(ck.config().rope_scaling->factor, 8.0);
  EXPECT_FALSE(ck.Has("model.layers.2.input_layernorm.weight"));
  EXPECT_EQ(ck.Names().size(), TensorTable(r.config).size());
  EXPECT_THROW(GenConfig({.preset = "tiny", .sets = {"no_such_field=1"}}), Error);
  EXPECT_THROW(GenConfig({.preset = "tiny", .sets = {"n_routed_experts=7"}}), Error);  // n_group 4
  EXPECT_THROW(GenConfig({.preset = "tiny", .sets = {"vocab_size"}}), Error);
  EXPECT_THROW(GenConfig({.preset = "huge"}), Error);
  EXPECT_EQ(GenConfig({.preset = "layer671b", .sets = {"n_routed_experts=16"}}).n_routed_experts,
            16);
}

TEST(GenModel, ShardsAndIndexAreConsistent) {
  ScratchDir tmp("gen");
  GenOptions o = SmallTiny(tmp / "m");
  o.shards = 3;
  const GenResult r = GenerateCheckpoint(o);
  const auto index = nlohmann::json::parse(ReadFile(tmp / "m/model.safetensors.index.json"));
  std::map<std::string, int> per_shard;
  for (auto& [name, file] : index.at("weight_map").items()) per_shard[file.get<std::string>()]++;
  ASSERT_EQ(per_shard.size(), 3u);
  EXPECT_TRUE(per_shard.count("model-00001-of-00003.safetensors"));
  EXPECT_TRUE(per_shard.count("model-00003-of-00003.safetensors"));
  uint64_t total = 0;
  for (const auto& [file, count] : per_shard) {
    SafetensorsFile f = SafetensorsFile::Open(tmp / ("m/" + file));
    EXPECT_EQ(f.tensors().size(), static_cast<size_t>(count)) << file;
    for (const TensorInfo& t : f.tensors()) {
      EXPECT_EQ(index["weight_map"].at(t.name), file) << t.name;
      total += t.end - t.begin;
    }
  }
  EXPECT_EQ(index.at("metadata").at("total_size").get<uint64_t>(), total);
  EXPECT_EQ(r.total_bytes, total);
  EXPECT_EQ(index["weight_map"].size(), TensorTable(r.config).size());
  // Shards are balanced: none holds more than half of the bytes (3 shards, small tensors).
  Checkpoint ck = Checkpoint::Open(tmp / "m");
  for (const SafetensorsFile& f : ck.shards()) {
    uint64_t bytes = 0;
    for (const TensorInfo& t : f.tensors()) bytes += t.end - t.begin;
    EXPECT_LT(bytes, total / 2) << f.path();
  }
}

TEST(GenModel, RefusesNonEmptyDirectoryUnlessForced) {
  ScratchDir tmp("gen");
  GenOptions o = SmallTiny(tmp / "m");
  o.shards = 2;
  GenerateCheckpoint(o);
  o.shards = 1;
  EXPECT_THROW(GenerateCheckpoint(o), Error);
  o.force = true;
  GenerateCheckpoint(o);
  const auto files = FilesOf(tmp / "m");
  EXPECT_EQ(std::count(files.begin(), files.end(), "model-00001-of-00002.safetensors"), 0);
  EXPECT_EQ(std::count(files.begin(), files.end(), "model-00001-of-00001.safetensors"), 1);
  EXPECT_NO_THROW(Checkpoint::Open(tmp / "m"));
}

}  // namespace
}  // namespace dsinfer
