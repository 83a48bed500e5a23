// config.json → ModelConfig (HF field names, docs/model.md §1.2), with validation.
//
// Every field, its default and its meaning is listed once, in `ForEachField` in config.cc,
// which drives parsing, printing (ToJson) and equality. Defaults are those of the official
// DeepSeek-V3.2 config; an absent `rope_scaling` means plain RoPE; `q_lora_rank: null` means
// MLA without the q low-rank path (V2-Lite style); absent `index_*` fields mean the checkpoint
// has no lightning indexer (V3/V3.1/R1) and attention is dense.
#pragma once

#include <array>
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

namespace dsinfer {

struct RopeScaling {  // YaRN (docs/model.md §4)
  std::string type = "yarn";
  double factor = 40.0;
  int64_t original_max_position_embeddings = 4096;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double mscale = 1.0;
  double mscale_all_dim = 1.0;
  bool operator==(const RopeScaling&) const = default;
};

struct QuantizationConfig {  // block-scaled FP8 weights (docs/model.md §6)
  std::string quant_method = "fp8";
  std::string fmt = "e4m3";
  std::string activation_scheme = "dynamic";
  std::array<int64_t, 2> weight_block_size = {128, 128};
  std::optional<std::string> scale_fmt = "ue8m0";  // activation scales
  bool operator==(const QuantizationConfig&) const = default;
};

struct ModelConfig {
  std::vector<std::string> architectures = {"DeepseekV32ForCausalLM"};
  std::string model_type = "deepseek_v32";
  int64_t vocab_size = 129280;
  int64_t hidden_size = 7168;
  int64_t intermediate_size = 18432;
  int64_t moe_intermediate_size = 2048;
  int64_t num_hidden_layers = 61;
  int64_t num_nextn_predict_layers = 1;
  int64_t num_attention_heads = 128;
  int64_t num_key_value_heads = 128;  // unused by MLA
  std::optional<int64_t> q_lora_rank = 1536;
  int64_t kv_lora_rank = 512;
  int64_t qk_nope_head_dim = 128;
  int64_t qk_rope_head_dim = 64;
  int64_t v_head_dim = 128;
  int64_t n_routed_experts = 256;
  int64_t n_shared_experts = 1;
  int64_t num_experts_per_tok = 8;
  int64_t first_k_dense_replace = 3;
  int64_t moe_layer_freq = 1;
  int64_t n_group = 8;
  int64_t topk_group = 4;
  std::string topk_method = "noaux_tc";
  std::string scoring_func = "sigmoid";
  bool norm_topk_prob = true;
  double routed_scaling_factor = 2.5;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  std::optional<RopeScaling> rope_scaling = RopeScaling{};
  int64_t max_position_embeddings = 163840;
  int64_t bos_token_id = 0;
  int64_t eos_token_id = 1;
  bool tie_word_embeddings = false;
  std::string hidden_act = "silu";
  std::string torch_dtype = "bfloat16";
  // Lightning indexer; all three absent → no indexer (dense attention).
  std::optional<int64_t> index_n_heads = 64;
  std::optional<int64_t> index_head_dim = 128;
  std::optional<int64_t> index_topk = 2048;
  std::optional<QuantizationConfig> quantization_config = QuantizationConfig{};
  // Not from config.json: set by the GGUF reader when the file stores MLA's kv_b split, as
  // llama.cpp's current converter does (attn_k_b, attn_v_b). The checkpoint then holds
  // self_attn.k_b_proj.weight [heads·kv_lora_rank, qk_nope_head_dim] (W_UK_hᵀ per head: the rows
  // the query absorption multiplies) and self_attn.v_b_proj.weight [heads·v_head_dim,
  // kv_lora_rank] (W_UV_h per head) instead of kv_b_proj, both as the file stores them.
  bool kv_b_split = false;

  bool operator==(const ModelConfig&) const = default;

  // Derived values.
  int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  bool has_indexer() const { return index_topk.has_value(); }
  bool is_moe_layer(int64_t layer) const {
    return n_routed_experts > 0 && layer >= first_k_dense_replace && layer % moe_layer_freq == 0;
  }
  // MLA softmax scale: qk_head_dim^-0.5 · m², m = 0.1·mscale_all_dim·ln(factor) + 1 with YaRN
  // and factor > 1, else m = 1 (docs/model.md §3.2).
  double softmax_scale() const;

  // Parses an HF config.json object. Unknown fields are ignored; an absent plain field keeps
  // its default, an absent optional field is the same as null (not present); integers are
  // accepted for floating-point fields, not the reverse. A wrongly typed field or a value that
  // fails `Validate` throws `Error` naming `source` and the field.
  static ModelConfig FromJson(const nlohmann::json& j, const std::string& source);
  // Reads and parses `path`; errors name the path (and line/column for invalid JSON).
  static ModelConfig FromFile(const std::string& path);
  // Every field; an absent optional is written as null, except `quantization_config` and
  // `quantization_config.scale_fmt`, which are omitted as in HF configs.
  nlohmann::json ToJson() const;
  // Throws `Error` naming the field, e.g. "n_routed_experts (60) is not divisible by n_group (8)".
  void Validate(const std::string& source) const;
  // Sets one field from text, as `gen-model --set key=value` does ("null" clears an optional;
  // nested fields as rope_scaling.factor, which first fills an absent block with defaults;
  // string fields take the text verbatim, others parse it as JSON). Does not validate (call
  // `Validate` after the last `Set`). Throws `Error` for an unknown key or a bad value.
  void Set(const std::string& key, const std::string& value);
};

}  // namespace dsinfer
