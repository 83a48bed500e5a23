// inspect: usability verdicts, counts and the JSON interface on generated checkpoints.
#include "tools/inspect.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "format/checkpoint.h"
#include "format/safetensors.h"
#include "model/weights.h"
#include "tests/unit/tools/gen_test_util.h"
#include "tools/gen_model.h"

namespace dsinfer {
namespace {

using testing_util::ReadFile;
using testing_util::ScratchDir;

std::string MakeTiny(const ScratchDir& tmp, const std::vector<std::string>& extra_sets = {}) {
  GenOptions o{.preset = "tiny", .seed = 5, .out_dir = tmp / "m", .sets = {"vocab_size=1000"}};
  o.sets.insert(o.sets.end(), extra_sets.begin(), extra_sets.end());
  GenerateCheckpoint(o);
  return o.out_dir;
}

// Rewrites the single shard of `dir` through `edit` (which may drop or replace specs), keeping
// the bytes of unchanged tensors, and rewrites the index to match.
void RewriteShard(const std::string& dir, const std::function<bool(TensorSpec&)>& edit) {
  const std::string shard = dir + "/model-00001-of-00001.safetensors";
  std::vector<TensorSpec> specs;
  std::map<std::string, std::string> bytes;  // new name → bytes of the original tensor
  {
    SafetensorsFile f = SafetensorsFile::Open(shard);
    for (const TensorInfo& t : f.tensors()) {
      TensorSpec s{t.name, t.dtype, t.shape};
      const TensorView v = f.View(t);
      if (!edit(s)) continue;
      bytes[s.name] = std::string(reinterpret_cast<const char*>(v.data), v.nbytes());
      specs.push_back(s);
    }
  }
  WriteSafetensors(shard, specs, [&](const TensorSpec& s, std::span<std::byte> out) {
    const std::string& b = bytes.at(s.name);
    std::memcpy(out.data(), b.data(), std::min(b.size(), out.size()));
  });
  nlohmann::json index = nlohmann::json::parse(ReadFile(dir + "/model.safetensors.index.json"));
  index["weight_map"] = nlohmann::json::object();
  for (const TensorSpec& s : specs)
    index["weight_map"][s.name] = "model-00001-of-00001.safetensors";
  std::ofstream(dir + "/model.safetensors.index.json") << index.dump();
}

TEST(Inspect, GeneratedTinyIsUsable) {
  ScratchDir tmp("inspect");
  const std::string dir = MakeTiny(tmp);
  const InspectReport r = Inspect({.dir = dir, .checksums = true});
  EXPECT_TRUE(r.usable()) << FormatInspectProblems(r);
  EXPECT_TRUE(r.missing.empty() && r.unexpected.empty() && r.bad.empty() && r.errors.empty());
  EXPECT_TRUE(r.has_mtp);
  const auto table = TensorTable(*r.config);
  const ParameterCounts p = CountParameters(*r.config, table);
  EXPECT_EQ(r.params.total, p.total);
  EXPECT_EQ(r.params.active, p.active);
  EXPECT_EQ(r.params.mtp, p.mtp);
  ASSERT_EQ(r.tensors.size(), table.size());
  uint64_t sum = 0, by_dtype = 0;
  int64_t scales = 0;
  Checkpoint ck = Checkpoint::Open(dir);
  for (const InspectedTensor& t : r.tensors) {
    sum += t.nbytes;
    const TensorView v = ck.Get(t.name);
    ASSERT_TRUE(t.fnv1a64.has_value());
    EXPECT_EQ(*t.fnv1a64, Fnv1a64(v.data, v.nbytes())) << t.name;
    if (t.name.ends_with("_scale_inv")) scales += v.numel();
  }
  for (const auto& [d, n] : r.bytes_by_dtype) by_dtype += n;
  EXPECT_EQ(sum, r.total_bytes);
  EXPECT_EQ(by_dtype, r.total_bytes);
  EXPECT_EQ(r.fp8_scales.count, scales);
  EXPECT_GT(r.fp8_scales.min, 0.0);
  EXPECT_LE(r.fp8_scales.min, r.fp8_scales.geomean);
  EXPECT_LE(r.fp8_scales.geomean, r.fp8_scales.max);
  EXPECT_LT(r.fp8_scales.pow2_fraction, 0.05);  // amax/448 of random draws: rarely a power of 2
  const std::string summary = FormatInspectSummary(r);
  EXPECT_NE(summary.find("indexer (DSA): on, 4 heads x 64 dims, top-16"), std::string::npos)
      << summary;
  EXPECT_NE(summary.find("usable: yes"), std::string::npos);
}

TEST(Inspect, Fnv1a64TestVectors) {  // the published FNV-1a 64 vectors
  EXPECT_EQ(Fnv1a64("", 0), 0xcbf29ce484222325ull);
  EXPECT_EQ(Fnv1a64("a", 1), 0xaf63dc4c8601ec8cull);
  EXPECT_EQ(Fnv1a64("foobar", 6), 0x85944171f73967e8ull);
}

TEST(Inspect, JsonInterface) {
  ScratchDir tmp("inspect");
  const std::string dir = MakeTiny(tmp);
  const nlohmann::json j = InspectJson(Inspect({.dir = dir, .checksums = true}));
  EXPECT_EQ(j.at("usable"), true);
  const auto& t = j.at("tensors");
  ASSERT_FALSE(t.empty());
  EXPECT_EQ(t[0].at("name"), "lm_head.weight");  // sorted by name
  EXPECT_EQ(t[0].at("dtype"), "BF16");
  EXPECT_EQ(t[0].at("shape"), nlohmann::json::array({1000, 200}));
  EXPECT_EQ(t[0].at("nbytes"), 1000 * 200 * 2);
  EXPECT_EQ(t[0].at("fnv1a64").get<std::string>().size(), 16u);
  EXPECT_EQ(j.at("layers").at("moe"), 2);
  EXPECT_EQ(j.at("cache_bytes_per_token").at("per_layer").at("indexer"), 64 + 4);
  const nlohmann::json plain = InspectJson(Inspect({.dir = dir}));
  EXPECT_FALSE(plain.at("tensors")[0].contains("fnv1a64"));
}

TEST(Inspect, CacheBytesOfTheOfficialConfig) {
  const CacheBytes c = CacheBytesPerToken(ModelConfig{});
  EXPECT_EQ(c.mla_fp8, 656);  // FlashMLA's layout (docs/model.md §3.8)
  EXPECT_EQ(c.indexer, 132);  // docs/model.md §3.5
  EXPECT_EQ(c.mla_bf16, 1152);
  EXPECT_EQ(c.mla_f32, 2304);
}

TEST(Inspect, MissingTensorMakesItUnusable) {
  ScratchDir tmp("inspect");
  const std::string dir = MakeTiny(tmp);
  const std::string gone = "model.layers.1.mlp.experts.5.up_proj.weight";
  RewriteShard(dir, [&](TensorSpec& s) { return s.name != gone; });
  const InspectReport r = Inspect({.dir = dir});
  EXPECT_FALSE(r.usable());
  EXPECT_EQ(r.missing, std::vector<std::string>{gone});
  EXPECT_NE(FormatInspectProblems(r).find(gone), std::string::npos);
}

TEST(Inspect, WrongShapeNamesTensorAndExpectedShape) {
  ScratchDir tmp("inspect");
  const std::string dir = MakeTiny(tmp);
  RewriteShard(dir, [](TensorSpec& s) {
    if (s.name == "model.layers.0.self_attn.kv_a_layernorm.weight") s.shape = {79};
    return true;
  });
  const InspectReport r = Inspect({.dir = dir});
  EXPECT_FALSE(r.usable());
  ASSERT_EQ(r.bad.size(), 1u);
  EXPECT_EQ(r.bad[0],
            "model.layers.0.self_attn.kv_a_layernorm.weight: expected BF16, F16 or F32 [80], found "
            "BF16 [79]");
}

TEST(Inspect, OmittedMtpLayerIsStillUsableUnexpectedIsReported) {
  ScratchDir tmp("inspect");
  const std::string dir = MakeTiny(tmp);
  RewriteShard(dir, [](TensorSpec& s) {
    if (s.name == "model.norm.weight") s.name = "model.extra.weight";
    return s.name.rfind("model.layers.3.", 0) != 0;
  });
  // model.norm.weight is now missing, model.extra.weight unexpected: unusable.
  InspectReport r = Inspect({.dir = dir});
  EXPECT_FALSE(r.usable());
  EXPECT_FALSE(r.has_mtp);
  EXPECT_EQ(r.unexpected, std::vector<std::string>{"model.extra.weight"});
  EXPECT_EQ(r.missing, std::vector<std::string>{"model.norm.weight"});
  EXPECT_FALSE(r.missing_optional.empty());
  EXPECT_EQ(r.params.mtp, 0);
  RewriteShard(dir, [](TensorSpec& s) {
    if (s.name == "model.extra.weight") s.name = "model.norm.weight";
    return true;
  });
  r = Inspect({.dir = dir});
  EXPECT_TRUE(r.usable()) << FormatInspectProblems(r);
  EXPECT_FALSE(r.has_mtp);
}

// Plausible but wrong counts (1000 layers in a 2-layer checkpoint) are checked against the
// checkpoint's tensor count while the expected-tensor table grows: one error naming the counts,
// not a table of every missing tensor of 1000 layers (or, for larger counts, an allocation
// sized by them).
TEST(Inspect, CountsBeyondTheCheckpointAreRefusedEarly) {
  ScratchDir tmp("inspect");
  const std::string dir = MakeTiny(tmp);
  auto cfg = nlohmann::json::parse(ReadFile(dir + "/config.json"));
  cfg["num_hidden_layers"] = 1000;
  std::ofstream(dir + "/config.json") << cfg.dump();
  const InspectReport r = Inspect({.dir = dir});
  EXPECT_FALSE(r.usable());
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_NE(r.errors[0].find("num_hidden_layers (1000)"), std::string::npos) << r.errors[0];
  EXPECT_NE(r.errors[0].find("describe more tensors than the checkpoint's"), std::string::npos)
      << r.errors[0];
}

TEST(Inspect, InvalidConfigIsUnusableWithReason) {
  ScratchDir tmp("inspect");
  const std::string dir = MakeTiny(tmp);
  auto cfg = nlohmann::json::parse(ReadFile(dir + "/config.json"));
  cfg["n_routed_experts"] = 7;
  std::ofstream(dir + "/config.json") << cfg.dump();
  const InspectReport r = Inspect({.dir = dir});
  EXPECT_FALSE(r.usable());
  ASSERT_FALSE(r.errors.empty());
  EXPECT_NE(r.errors[0].find("n_routed_experts"), std::string::npos) << r.errors[0];
}

}  // namespace
}  // namespace dsinfer

namespace dsinfer {
namespace {

// The rules of docs/checkpoint.md through both users of CheckTensors: every float storage the
// kernels compute with is accepted by inspect and loads; anything else is refused by both, and
// the loader's error names the tensor inspect lists first.
TEST(Inspect, VerdictEqualsWhetherTheWeightsLoad) {
  struct Case {
    std::string what;
    std::function<bool(TensorSpec&)> edit;
    std::string culprit;  // empty: both accept
  };
  const std::string gate = "model.layers.1.mlp.gate.weight";
  const std::string norm = "model.norm.weight";
  const std::string wk = "model.layers.2.self_attn.indexer.wk.weight";
  const std::vector<Case> cases = {
      {"F32 norm, F16 router",
       [&](TensorSpec& s) {
         if (s.name == norm) s.dtype = DType::kF32;
         if (s.name == gate) s.dtype = DType::kF16;
         return true;
       },
       ""},
      {"I32 router",
       [&](TensorSpec& s) {
         if (s.name == gate) s.dtype = DType::kI32;
         return true;
       },
       gate},
      {"F8_E5M2 norm",
       [&](TensorSpec& s) {
         if (s.name == norm) s.dtype = DType::kF8E5M2;
         return true;
       },
       norm},
      {"scale without weight",  // the weight is then missing; its scale is merely unexpected
       [&](TensorSpec& s) { return s.name != wk; }, wk},
      {"F64 block scale",
       [&](TensorSpec& s) {
         if (s.name == wk + "_scale_inv") s.dtype = DType::kF64;
         return true;
       },
       wk + "_scale_inv"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    ScratchDir tmp("inspect");
    const std::string dir = MakeTiny(tmp);
    RewriteShard(dir, c.edit);
    const InspectReport r = Inspect({.dir = dir});
    std::string load_error;
    try {
      LoadWeights(Checkpoint::Open(dir));
    } catch (const Error& e) {
      load_error = e.what();
    }
    EXPECT_EQ(r.usable_token_ids(), load_error.empty()) << load_error;
    if (c.culprit.empty()) {
      EXPECT_TRUE(r.usable_token_ids()) << FormatInspectProblems(r);
      continue;
    }
    ASSERT_FALSE(r.problems.empty());
    EXPECT_NE(r.problems[0].find(c.culprit), std::string::npos) << r.problems[0];
    EXPECT_NE(load_error.find(r.problems[0]), std::string::npos) << load_error;
  }
}

}  // namespace
}  // namespace dsinfer
