#include "format/config.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/error.h"

namespace dsinfer {
namespace {

using Json = nlohmann::json;

// The official-style DeepSeek-V3.2 config.json (docs/model.md §1.2), written out by hand.
constexpr const char* kV32Config = R"({
  "architectures": ["DeepseekV32ForCausalLM"],
  "model_type": "deepseek_v32",
  "hidden_size": 7168,
  "intermediate_size": 18432,
  "moe_intermediate_size": 2048,
  "num_hidden_layers": 61,
  "num_nextn_predict_layers": 1,
  "num_attention_heads": 128,
  "num_key_value_heads": 128,
  "q_lora_rank": 1536,
  "kv_lora_rank": 512,
  "qk_nope_head_dim": 128,
  "qk_rope_head_dim": 64,
  "v_head_dim": 128,
  "n_routed_experts": 256,
  "n_shared_experts": 1,
  "num_experts_per_tok": 8,
  "first_k_dense_replace": 3,
  "moe_layer_freq": 1,
  "n_group": 8,
  "topk_group": 4,
  "topk_method": "noaux_tc",
  "scoring_func": "sigmoid",
  "norm_topk_prob": true,
  "routed_scaling_factor": 2.5,
  "rms_norm_eps": 1e-06,
  "rope_theta": 10000,
  "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096,
                   "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0},
  "max_position_embeddings": 163840,
  "vocab_size": 129280,
  "bos_token_id": 0,
  "eos_token_id": 1,
  "tie_word_embeddings": false,
  "hidden_act": "silu",
  "torch_dtype": "bfloat16",
  "index_n_heads": 64,
  "index_head_dim": 128,
  "index_topk": 2048,
  "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                          "weight_block_size": [128, 128], "scale_fmt": "ue8m0"},
  "transformers_version": "4.44.2",
  "use_cache": true
})";

ModelConfig Official() { return ModelConfig::FromJson(Json::parse(kV32Config), "v32/config.json"); }

// Runs `f`, expecting an Error whose message contains every string of `parts`.
template <class F>
void ExpectError(F&& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "expected dsinfer::Error containing " << parts[0];
  } catch (const Error& e) {
    for (const std::string& p : parts) {
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos)
          << "message \"" << e.what() << "\" lacks \"" << p << "\"";
    }
  }
}

TEST(ModelConfig, ParsesEveryFieldOfTheOfficialV32Config) {
  const ModelConfig c = Official();
  EXPECT_EQ(c.architectures, std::vector<std::string>{"DeepseekV32ForCausalLM"});
  EXPECT_EQ(c.model_type, "deepseek_v32");
  EXPECT_EQ(c.vocab_size, 129280);
  EXPECT_EQ(c.hidden_size, 7168);
  EXPECT_EQ(c.intermediate_size, 18432);
  EXPECT_EQ(c.moe_intermediate_size, 2048);
  EXPECT_EQ(c.num_hidden_layers, 61);
  EXPECT_EQ(c.num_nextn_predict_layers, 1);
  EXPECT_EQ(c.num_attention_heads, 128);
  EXPECT_EQ(c.num_key_value_heads, 128);
  EXPECT_EQ(c.q_lora_rank, 1536);
  EXPECT_EQ(c.kv_lora_rank, 512);
  EXPECT_EQ(c.qk_nope_head_dim, 128);
  EXPECT_EQ(c.qk_rope_head_dim, 64);
  EXPECT_EQ(c.v_head_dim, 128);
  EXPECT_EQ(c.n_routed_experts, 256);
  EXPECT_EQ(c.n_shared_experts, 1);
  EXPECT_EQ(c.num_experts_per_tok, 8);
  EXPECT_EQ(c.first_k_dense_replace, 3);
  EXPECT_EQ(c.moe_layer_freq, 1);
  EXPECT_EQ(c.n_group, 8);
  EXPECT_EQ(c.topk_group, 4);
  EXPECT_EQ(c.topk_method, "noaux_tc");
  EXPECT_EQ(c.scoring_func, "sigmoid");
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_EQ(c.routed_scaling_factor, 2.5);
  EXPECT_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_EQ(c.rope_theta, 10000.0);
  ASSERT_TRUE(c.rope_scaling.has_value());
  EXPECT_EQ(c.rope_scaling->type, "yarn");
  EXPECT_EQ(c.rope_scaling->factor, 40.0);
  EXPECT_EQ(c.rope_scaling->original_max_position_embeddings, 4096);
  EXPECT_EQ(c.rope_scaling->beta_fast, 32.0);
  EXPECT_EQ(c.rope_scaling->beta_slow, 1.0);
  EXPECT_EQ(c.rope_scaling->mscale, 1.0);
  EXPECT_EQ(c.rope_scaling->mscale_all_dim, 1.0);
  EXPECT_EQ(c.max_position_embeddings, 163840);
  EXPECT_EQ(c.bos_token_id, 0);
  EXPECT_EQ(c.eos_token_id, 1);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.hidden_act, "silu");
  EXPECT_EQ(c.torch_dtype, "bfloat16");
  EXPECT_EQ(c.index_n_heads, 64);
  EXPECT_EQ(c.index_head_dim, 128);
  EXPECT_EQ(c.index_topk, 2048);
  ASSERT_TRUE(c.quantization_config.has_value());
  EXPECT_EQ(c.quantization_config->quant_method, "fp8");
  EXPECT_EQ(c.quantization_config->fmt, "e4m3");
  EXPECT_EQ(c.quantization_config->activation_scheme, "dynamic");
  EXPECT_EQ(c.quantization_config->weight_block_size, (std::array<int64_t, 2>{128, 128}));
  EXPECT_EQ(c.quantization_config->scale_fmt, "ue8m0");

  EXPECT_EQ(c, ModelConfig{});  // the defaults are the official config
  EXPECT_EQ(c.qk_head_dim(), 192);
  EXPECT_TRUE(c.has_indexer());
  EXPECT_FALSE(c.is_moe_layer(2));
  EXPECT_TRUE(c.is_moe_layer(3));
  EXPECT_TRUE(c.is_moe_layer(60));
}

TEST(ModelConfig, SoftmaxScaleMatchesModelMd) {
  EXPECT_NEAR(Official().softmax_scale(), 0.135233779, 1e-9);  // docs/model.md §3.2
  ModelConfig plain = Official();
  plain.Set("rope_scaling", "null");
  EXPECT_DOUBLE_EQ(plain.softmax_scale(), 1.0 / std::sqrt(192.0));
  ModelConfig no_extension = Official();
  no_extension.Set("rope_scaling.factor", "1");
  EXPECT_DOUBLE_EQ(no_extension.softmax_scale(), 1.0 / std::sqrt(192.0));
  ModelConfig other = Official();
  other.Set("rope_scaling.factor", "4");
  other.Set("rope_scaling.mscale_all_dim", "0.707");
  other.Set("qk_nope_head_dim", "64");
  const double m = 0.1 * 0.707 * std::log(4.0) + 1.0;
  EXPECT_NEAR(other.softmax_scale(), m * m / std::sqrt(128.0), 1e-15);
}

TEST(ModelConfig, ToJsonFromJsonRoundTrips) {
  const ModelConfig c = Official();
  EXPECT_EQ(ModelConfig::FromJson(c.ToJson(), "x"), c);
  EXPECT_EQ(ModelConfig::FromJson(Json::parse(c.ToJson().dump(2)), "x"), c);

  // A V2-Lite-like variant: every optional absent, and a few values changed.
  ModelConfig lite = c;
  for (const char* key : {"q_lora_rank", "rope_scaling", "index_n_heads", "index_head_dim",
                          "index_topk", "quantization_config"}) {
    lite.Set(key, "null");
  }
  lite.Set("hidden_size", "256");
  lite.Set("routed_scaling_factor", "1.5");
  lite.Set("architectures", R"(["DeepseekV3ForCausalLM"])");
  lite.Validate("lite");
  const Json j = lite.ToJson();
  EXPECT_TRUE(j.at("q_lora_rank").is_null());       // HF writes null for an absent q_lora_rank
  EXPECT_FALSE(j.contains("quantization_config"));  // … but omits quantization_config
  ModelConfig back = ModelConfig::FromJson(j, "lite");
  EXPECT_EQ(back, lite);
  EXPECT_NE(back, c);
}

// Every field in the list is a distinct member: changing it through its JSON name changes the
// config (operator==), and ToJson gives the new value back.
TEST(ModelConfig, EveryListedFieldIsReadWrittenAndCompared) {
  const ModelConfig base;
  const Json j = base.ToJson();
  EXPECT_EQ(j.size(), 39u);  // = the members of ModelConfig
  std::vector<std::pair<std::string, Json>> fields;
  for (auto& [k, v] : j.items()) {
    if (v.is_object()) {
      for (auto& [k2, v2] : v.items()) fields.emplace_back(k + "." + k2, v2);
    } else {
      fields.emplace_back(k, v);
    }
  }
  EXPECT_EQ(fields.size(), 39u - 2 + 7 + 5);  // the two nested blocks expanded
  for (const auto& [key, value] : fields) {
    Json changed = value.is_boolean()                         ? Json(!value.get<bool>())
                   : value.is_number_integer()                ? Json(value.get<int64_t>() + 1)
                   : value.is_number()                        ? Json(value.get<double>() * 2 + 1)
                   : value.is_string()                        ? Json(value.get<std::string>() + "x")
                   : value.is_array() && value[0].is_string() ? Json::array({"Other"})
                                                              : Json::array({1, 2});
    ModelConfig c;
    c.Set(key, changed.dump());
    EXPECT_NE(c, base) << key;
    const size_t dot = key.find('.');
    const Json out = dot == std::string::npos ? c.ToJson()[key]
                                              : c.ToJson()[key.substr(0, dot)][key.substr(dot + 1)];
    EXPECT_EQ(out, changed) << key;
  }
}

TEST(ModelConfig, V3ConfigWithoutIndexerIsDense) {
  Json j = Json::parse(kV32Config);
  j.erase("index_n_heads");
  j.erase("index_head_dim");
  j.erase("index_topk");
  j["quantization_config"].erase("scale_fmt");
  j["model_type"] = "deepseek_v3";
  const ModelConfig c = ModelConfig::FromJson(j, "v3");
  EXPECT_FALSE(c.has_indexer());
  EXPECT_FALSE(c.index_n_heads || c.index_head_dim || c.index_topk);
  EXPECT_FALSE(c.quantization_config->scale_fmt.has_value());
  EXPECT_FALSE(c.ToJson()["quantization_config"].contains("scale_fmt"));
  EXPECT_EQ(ModelConfig::FromJson(c.ToJson(), "v3"), c);
}

TEST(ModelConfig, NullQLoraRankAndAbsentOptionals) {
  Json j = Json::parse(kV32Config);
  j["q_lora_rank"] = nullptr;
  j["index_n_heads"] = nullptr;
  j["index_head_dim"] = nullptr;
  j["index_topk"] = nullptr;
  j.erase("rope_scaling");
  j.erase("quantization_config");
  const ModelConfig c = ModelConfig::FromJson(j, "lite");
  EXPECT_FALSE(c.q_lora_rank.has_value());
  EXPECT_FALSE(c.has_indexer());
  EXPECT_FALSE(c.rope_scaling.has_value());
  EXPECT_FALSE(c.quantization_config.has_value());
  // The indexer needs the q latent.
  j = Json::parse(kV32Config);
  j["q_lora_rank"] = nullptr;
  ExpectError([&] { ModelConfig::FromJson(j, "cfg.json"); }, {"cfg.json", "q_lora_rank"});
}

TEST(ModelConfig, RopeTypeSpellingIsAccepted) {
  Json j = Json::parse(kV32Config);
  j["rope_scaling"].erase("type");
  j["rope_scaling"]["rope_type"] = "yarn";
  EXPECT_EQ(ModelConfig::FromJson(j, "x"), Official());
}

TEST(ModelConfig, SetHandlesNestedNullAndStrings) {
  ModelConfig c;
  c.Set("vocab_size", "1000");
  EXPECT_EQ(c.vocab_size, 1000);
  c.Set("rope_scaling.factor", "4");
  EXPECT_EQ(c.rope_scaling->factor, 4.0);
  c.Set("rope_scaling", "null");
  EXPECT_FALSE(c.rope_scaling.has_value());
  c.Set("rope_scaling.beta_fast", "16");  // a sub-field of an absent block starts from defaults
  ASSERT_TRUE(c.rope_scaling.has_value());
  EXPECT_EQ(c.rope_scaling->beta_fast, 16.0);
  EXPECT_EQ(c.rope_scaling->factor, 40.0);
  c.Set("rope_scaling", R"({"type": "yarn", "factor": 8})");
  EXPECT_EQ(c.rope_scaling->factor, 8.0);
  EXPECT_EQ(c.rope_scaling->beta_fast, 32.0);
  c.Set("q_lora_rank", "null");
  EXPECT_FALSE(c.q_lora_rank.has_value());
  c.Set("q_lora_rank", "64");
  EXPECT_EQ(c.q_lora_rank, 64);
  c.Set("index_topk", "null");
  EXPECT_FALSE(c.index_topk.has_value());
  c.Set("scoring_func", "softmax");  // string fields take the text verbatim
  EXPECT_EQ(c.scoring_func, "softmax");
  c.Set("model_type", "\"quoted\"");
  EXPECT_EQ(c.model_type, "quoted");
  c.Set("quantization_config.scale_fmt", "null");
  EXPECT_FALSE(c.quantization_config->scale_fmt.has_value());
  c.Set("quantization_config.weight_block_size", "[64, 128]");
  EXPECT_EQ(c.quantization_config->weight_block_size, (std::array<int64_t, 2>{64, 128}));
  c.Set("norm_topk_prob", "false");
  EXPECT_FALSE(c.norm_topk_prob);
  c.Set("rms_norm_eps", "1e-5");
  EXPECT_EQ(c.rms_norm_eps, 1e-5);

  ExpectError([&] { c.Set("no_such_field", "1"); }, {"no_such_field", "unknown"});
  ExpectError([&] { c.Set("rope_scaling.nope", "1"); }, {"rope_scaling.nope", "unknown"});
  ExpectError([&] { c.Set("vocab_size.x", "1"); }, {"vocab_size.x", "no sub-fields"});
  ExpectError([&] { c.Set("vocab_size", "abc"); }, {"vocab_size", "not valid JSON"});
  ExpectError([&] { c.Set("vocab_size", "1.5"); }, {"vocab_size", "integer"});
  ExpectError([&] { c.Set("vocab_size", "null"); }, {"vocab_size", "integer"});
  ExpectError([&] { c.Set("norm_topk_prob", "1"); }, {"norm_topk_prob"});
  ExpectError([&] { c.Set("rope_scaling.factor", "\"big\""); }, {"rope_scaling.factor", "number"});
}

struct BadValue {
  std::vector<std::pair<std::string, std::string>> sets;
  std::vector<std::string> message_parts;
};

TEST(ModelConfig, ValidateRejectsBadValuesNamingTheField) {
  const std::vector<BadValue> cases = {
      {{{"n_routed_experts", "60"}}, {"n_routed_experts (60)", "n_group (8)", "divisible"}},
      {{{"topk_group", "9"}}, {"topk_group (9)", "n_group (8)"}},
      {{{"num_experts_per_tok", "129"}}, {"num_experts_per_tok (129)", "128"}},
      {{{"qk_rope_head_dim", "63"}}, {"qk_rope_head_dim (63)", "even"}},
      {{{"index_topk", "null"}}, {"index_n_heads", "index_head_dim", "index_topk"}},
      {{{"index_n_heads", "null"}}, {"index_n_heads", "all present or all absent"}},
      {{{"index_head_dim", "96"}}, {"index_head_dim (96)", "power of two"}},
      {{{"index_head_dim", "32"}}, {"index_head_dim (32)", "qk_rope_head_dim (64)"}},
      {{{"index_topk", "0"}}, {"index_topk (0)"}},
      {{{"index_n_heads", "0"}}, {"index_n_heads (0)"}},
      {{{"q_lora_rank", "null"}}, {"q_lora_rank", "indexer"}},
      {{{"q_lora_rank", "0"}}, {"q_lora_rank (0)"}},
      {{{"scoring_func", "softmax"}}, {"scoring_func", "softmax"}},
      {{{"topk_method", "greedy"}}, {"topk_method", "greedy"}},
      {{{"hidden_act", "gelu"}}, {"hidden_act", "gelu"}},
      {{{"quantization_config.weight_block_size", "[64,128]"}}, {"weight_block_size", "[64, 128]"}},
      {{{"quantization_config.fmt", "e5m2"}}, {"quantization_config.fmt"}},
      {{{"quantization_config.scale_fmt", "fp32"}}, {"quantization_config.scale_fmt"}},
      {{{"rope_scaling.type", "linear"}}, {"rope_scaling.type", "linear", "yarn"}},
      {{{"rope_scaling.factor", "0.5"}}, {"rope_scaling.factor (0.5)"}},
      {{{"rope_scaling.beta_fast", "0.5"}}, {"rope_scaling.beta_fast (0.5)", "beta_slow"}},
      {{{"first_k_dense_replace", "62"}}, {"first_k_dense_replace (62)", "num_hidden_layers (61)"}},
      {{{"first_k_dense_replace", "-1"}}, {"first_k_dense_replace (-1)"}},
      {{{"vocab_size", "1"}}, {"vocab_size (1)"}},
      // Counts and dims that would size tables/allocations: bounded, naming the field.
      {{{"num_hidden_layers", "1000000000000"}},
       {"num_hidden_layers (1000000000000)", "at most 1024"}},
      {{{"n_routed_experts", "1099511627776"}, {"n_group", "1"}, {"topk_group", "1"}},
       {"n_routed_experts (1099511627776)", "implausibly large"}},
      {{{"num_nextn_predict_layers", "4000000000"}}, {"num_nextn_predict_layers (4000000000)"}},
      {{{"max_position_embeddings", "9223372036854775807"}}, {"max_position_embeddings"}},
      {{{"hidden_size", "4294967296"}}, {"hidden_size (4294967296)"}},
      {{{"vocab_size", "100000000"}}, {"vocab_size (100000000)"}},
      {{{"hidden_size", "0"}}, {"hidden_size (0)", "positive"}},
      {{{"intermediate_size", "-5"}}, {"intermediate_size (-5)"}},
      {{{"moe_intermediate_size", "0"}}, {"moe_intermediate_size (0)"}},
      {{{"num_hidden_layers", "0"}}, {"num_hidden_layers (0)"}},
      {{{"num_attention_heads", "0"}}, {"num_attention_heads (0)"}},
      {{{"kv_lora_rank", "0"}}, {"kv_lora_rank (0)"}},
      {{{"qk_nope_head_dim", "-1"}}, {"qk_nope_head_dim (-1)"}},
      {{{"v_head_dim", "0"}}, {"v_head_dim (0)"}},
      {{{"n_group", "0"}}, {"n_group (0)"}},
      {{{"n_routed_experts", "0"}}, {"n_routed_experts (0)"}},
      {{{"n_shared_experts", "-1"}}, {"n_shared_experts (-1)"}},
      {{{"num_nextn_predict_layers", "-1"}}, {"num_nextn_predict_layers (-1)"}},
      {{{"moe_layer_freq", "0"}}, {"moe_layer_freq (0)"}},
      {{{"rms_norm_eps", "0"}}, {"rms_norm_eps (0)"}},
      {{{"rope_theta", "-1"}}, {"rope_theta (-1)"}},
      {{{"eos_token_id", "129280"}}, {"eos_token_id (129280)"}},
      {{{"bos_token_id", "-1"}}, {"bos_token_id (-1)"}},
      {{{"routed_scaling_factor", "0"}}, {"routed_scaling_factor (0)"}},
      {{{"max_position_embeddings", "0"}}, {"max_position_embeddings (0)"}},
  };
  for (const BadValue& bad : cases) {
    ModelConfig c;
    for (const auto& [k, v] : bad.sets) c.Set(k, v);
    std::vector<std::string> parts = bad.message_parts;
    parts.push_back("my/config.json: ");
    ExpectError([&] { c.Validate("my/config.json"); }, parts);
  }
  // Plain RoPE (no rope_scaling) and a dense-only stack are valid.
  ModelConfig ok;
  ok.Set("rope_scaling", "null");
  ok.Set("first_k_dense_replace", "61");
  EXPECT_NO_THROW(ok.Validate("x"));
}

TEST(ModelConfig, FromJsonErrorsNameSourceAndField) {
  Json j = Json::parse(kV32Config);
  j["n_routed_experts"] = 60;
  ExpectError([&] { ModelConfig::FromJson(j, "ckpt/config.json"); },
              {"ckpt/config.json", "n_routed_experts (60)", "n_group (8)"});
  j = Json::parse(kV32Config);
  j["vocab_size"] = "big";
  ExpectError([&] { ModelConfig::FromJson(j, "ckpt/config.json"); },
              {"ckpt/config.json: vocab_size: expected an integer", "\"big\""});
  j = Json::parse(kV32Config);
  j["rope_scaling"]["factor"] = "x";
  ExpectError([&] { ModelConfig::FromJson(j, "c.json"); }, {"c.json", "rope_scaling.factor"});
  j = Json::parse(kV32Config);
  j["quantization_config"]["weight_block_size"] = {128};
  ExpectError([&] { ModelConfig::FromJson(j, "c.json"); },
              {"c.json", "quantization_config.weight_block_size"});
  j = Json::parse(kV32Config);
  j["architectures"] = {1};
  ExpectError([&] { ModelConfig::FromJson(j, "c.json"); }, {"c.json", "architectures[0]"});
  j = Json::parse(kV32Config);
  j["hidden_size"] = 7168.5;
  ExpectError([&] { ModelConfig::FromJson(j, "c.json"); }, {"c.json", "hidden_size"});
  j = Json::parse(kV32Config);
  j["hidden_size"] = 18446744073709551615ull;
  ExpectError([&] { ModelConfig::FromJson(j, "c.json"); }, {"c.json", "hidden_size", "int64"});
  ExpectError([&] { ModelConfig::FromJson(Json::array(), "c.json"); },
              {"c.json", "not a JSON object"});
}

TEST(ModelConfig, FromFileErrorsNamePath) {
  const std::string dir = ::testing::TempDir();
  ExpectError([&] { ModelConfig::FromFile(dir + "missing_config.json"); },
              {dir + "missing_config.json", "cannot open"});
  const std::string bad = dir + "bad_config.json";
  {
    std::ofstream out(bad);
    out << "{\n  \"vocab_size\": 12,\n  \"hidden_size\": ,\n}";
  }
  ExpectError([&] { ModelConfig::FromFile(bad); }, {bad, "invalid JSON", "line 3"});
  {
    std::ofstream out(bad);
    out << "{\"vocab_size\": 12, \"rope_scaling\": {\"factor\": 2, \"factor\": 4}}";
  }
  ExpectError([&] { ModelConfig::FromFile(bad); }, {bad, "duplicate key \"factor\""});
  {
    std::ofstream out(bad);
    out << "{\"vocab_size\": 12, \"vocab_size\": 13}";
  }
  ExpectError([&] { ModelConfig::FromFile(bad); }, {bad, "duplicate key \"vocab_size\""});
  {
    std::ofstream out(bad);
    out << std::string(100, '[') << std::string(100, ']');
  }
  ExpectError([&] { ModelConfig::FromFile(bad); }, {bad, "nested deeper"});
  ExpectError([&] { ModelConfig::FromFile(dir); }, {"not a regular file"});
  const std::string good = dir + "good_config.json";
  {
    std::ofstream out(good);
    out << kV32Config;
  }
  EXPECT_EQ(ModelConfig::FromFile(good), Official());
  std::remove(bad.c_str());
  std::remove(good.c_str());
}

}  // namespace
}  // namespace dsinfer
