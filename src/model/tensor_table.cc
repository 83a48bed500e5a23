// TensorTable: the HF tensor list of docs/model.md §8.1 (main layers) and §7 (MTP layers).
//
// Dtypes follow the official FP8 checkpoint: every projection that DeepSeek's reference
// `Linear` quantises is F8_E4M3 + an F32 `.weight_scale_inv` block grid; embeddings, heads,
// norms (including the indexer's LayerNorm `k_norm.weight/.bias`, whose real dtype is
// unverified, docs/model.md §12.2), the router weight, `indexer.weights_proj` and the MTP
// `eh_proj` are BF16 (vLLM/SGLang load `eh_proj` as a plain, unquantised linear); the router's
// `e_score_correction_bias` is F32.
#include "model/tensor_table.h"

#include "base/error.h"

namespace dsinfer {
namespace {

constexpr int64_t kBlock = 128;  // FP8 weight block edge (docs/model.md §6.1)

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

class Builder {
 public:
  // `limit`: called with (required entries, all entries) after each Add; throws when too many.
  Builder(std::vector<TensorEntry>* out, std::function<void(size_t, size_t)> limit)
      : out_(out), limit_(std::move(limit)) {}

  void Set(int64_t layer, bool required) {
    layer_ = layer;
    required_ = required;
  }
  void Add(std::string name, DType dtype, std::vector<int64_t> shape, TensorRole role,
           bool optional = false) {
    const bool required = required_ && !optional;
    out_->push_back({std::move(name), dtype, std::move(shape), role, layer_, false, required});
    required_count_ += required;
    if (limit_) limit_(required_count_, out_->size());
  }
  void Norm(const std::string& prefix, int64_t dim) {
    Add(prefix + ".weight", DType::kBF16, {dim}, TensorRole::kNormWeight);
  }
  // An FP8 projection `[out, in]` followed by its F32 block scale.
  void Fp8Linear(const std::string& prefix, int64_t out, int64_t in) {
    Add(prefix + ".weight", DType::kF8E4M3, {out, in}, TensorRole::kLinear);
    out_->back().quantized = true;
    Add(prefix + ".weight_scale_inv", DType::kF32, {CeilDiv(out, kBlock), CeilDiv(in, kBlock)},
        TensorRole::kBlockScale);
  }
  void Bf16Linear(const std::string& prefix, int64_t out, int64_t in) {
    Add(prefix + ".weight", DType::kBF16, {out, in}, TensorRole::kLinear);
  }

 private:
  std::vector<TensorEntry>* out_;
  std::function<void(size_t, size_t)> limit_;
  int64_t layer_ = -1;
  bool required_ = true;
  size_t required_count_ = 0;
};

void AddAttention(Builder& b, const ModelConfig& c, const std::string& p) {
  const int64_t heads = c.num_attention_heads;
  if (c.q_lora_rank) {
    b.Fp8Linear(p + "q_a_proj", *c.q_lora_rank, c.hidden_size);
    b.Norm(p + "q_a_layernorm", *c.q_lora_rank);
    b.Fp8Linear(p + "q_b_proj", heads * c.qk_head_dim(), *c.q_lora_rank);
  } else {
    b.Fp8Linear(p + "q_proj", heads * c.qk_head_dim(), c.hidden_size);
  }
  b.Fp8Linear(p + "kv_a_proj_with_mqa", c.kv_lora_rank + c.qk_rope_head_dim, c.hidden_size);
  b.Norm(p + "kv_a_layernorm", c.kv_lora_rank);
  b.Fp8Linear(p + "kv_b_proj", heads * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank);
  b.Fp8Linear(p + "o_proj", c.hidden_size, heads * c.v_head_dim);
  if (!c.has_indexer()) return;
  if (!c.q_lora_rank || !c.index_n_heads || !c.index_head_dim)
    throw Error(
        "config: the lightning indexer (index_topk) needs q_lora_rank, index_n_heads "
        "and index_head_dim");
  const int64_t n_i = *c.index_n_heads, d_i = *c.index_head_dim;
  b.Fp8Linear(p + "indexer.wq_b", n_i * d_i, *c.q_lora_rank);
  b.Fp8Linear(p + "indexer.wk", d_i, c.hidden_size);
  b.Norm(p + "indexer.k_norm", d_i);
  b.Add(p + "indexer.k_norm.bias", DType::kBF16, {d_i}, TensorRole::kNormBias);
  b.Add(p + "indexer.weights_proj.weight", DType::kBF16, {n_i, c.hidden_size}, TensorRole::kLinear);
}

void AddMlp(Builder& b, const std::string& p, int64_t hidden, int64_t inter) {
  b.Fp8Linear(p + "gate_proj", inter, hidden);
  b.Fp8Linear(p + "up_proj", inter, hidden);
  b.Fp8Linear(p + "down_proj", hidden, inter);
}

void AddFfn(Builder& b, const ModelConfig& c, int64_t layer, const std::string& p) {
  if (!c.is_moe_layer(layer)) {
    AddMlp(b, p, c.hidden_size, c.intermediate_size);
    return;
  }
  b.Add(p + "gate.weight", DType::kBF16, {c.n_routed_experts, c.hidden_size}, TensorRole::kGate);
  if (c.topk_method == "noaux_tc") {
    // Optional: without it the router ranks groups by their best score (docs/model.md §5.2).
    b.Add(p + "gate.e_score_correction_bias", DType::kF32, {c.n_routed_experts},
          TensorRole::kGateBias, /*optional=*/true);
  }
  for (int64_t e = 0; e < c.n_routed_experts; ++e)
    AddMlp(b, p + "experts." + std::to_string(e) + ".", c.hidden_size, c.moe_intermediate_size);
  if (c.n_shared_experts > 0)
    AddMlp(b, p + "shared_experts.", c.hidden_size, c.n_shared_experts * c.moe_intermediate_size);
}

void AddDecoderLayer(Builder& b, const ModelConfig& c, int64_t layer, const std::string& p) {
  b.Norm(p + "input_layernorm", c.hidden_size);
  AddAttention(b, c, p + "self_attn.");
  b.Norm(p + "post_attention_layernorm", c.hidden_size);
  AddFfn(b, c, layer, p + "mlp.");
}

// MTP layer `layer` (docs/model.md §7): its own embedding copy, the two input norms, `eh_proj`,
// a full decoder layer (MoE by the same `is_moe_layer` rule as the main layers) and the
// shared head. Every tensor is optional: checkpoints may ship without the MTP module.
void AddMtpLayer(Builder& b, const ModelConfig& c, int64_t layer) {
  const std::string p = "model.layers." + std::to_string(layer) + ".";
  b.Set(layer, /*required=*/false);
  b.Add(p + "embed_tokens.weight", DType::kBF16, {c.vocab_size, c.hidden_size},
        TensorRole::kEmbedding);
  b.Norm(p + "enorm", c.hidden_size);
  b.Norm(p + "hnorm", c.hidden_size);
  b.Bf16Linear(p + "eh_proj", c.hidden_size, 2 * c.hidden_size);
  AddDecoderLayer(b, c, layer, p);
  b.Norm(p + "shared_head.norm", c.hidden_size);
  b.Add(p + "shared_head.head.weight", DType::kBF16, {c.vocab_size, c.hidden_size},
        TensorRole::kHead);
}

}  // namespace

std::vector<TensorEntry> TensorTable(const ModelConfig& c,
                                     std::optional<size_t> checkpoint_tensors) {
  std::vector<TensorEntry> out;
  std::function<void(size_t, size_t)> limit;
  if (checkpoint_tensors) {
    const size_t have = *checkpoint_tensors;
    limit = [&c, have](size_t required, size_t all) {
      if (required > have || all > 4 * have + 4096)
        throw Error("config.json: num_hidden_layers (" + std::to_string(c.num_hidden_layers) +
                    "), n_routed_experts (" + std::to_string(c.n_routed_experts) +
                    ") and num_nextn_predict_layers (" +
                    std::to_string(c.num_nextn_predict_layers) +
                    ") describe more tensors than the checkpoint's " + std::to_string(have) +
                    ": the counts are wrong or the checkpoint is incomplete");
    };
  }
  Builder b(&out, std::move(limit));
  b.Add("model.embed_tokens.weight", DType::kBF16, {c.vocab_size, c.hidden_size},
        TensorRole::kEmbedding);
  for (int64_t layer = 0; layer < c.num_hidden_layers; ++layer) {
    b.Set(layer, /*required=*/true);
    AddDecoderLayer(b, c, layer, "model.layers." + std::to_string(layer) + ".");
  }
  for (int64_t i = 0; i < c.num_nextn_predict_layers; ++i)
    AddMtpLayer(b, c, c.num_hidden_layers + i);
  b.Set(-1, /*required=*/true);
  b.Norm("model.norm", c.hidden_size);
  b.Add("lm_head.weight", DType::kBF16, {c.vocab_size, c.hidden_size}, TensorRole::kHead);
  return out;
}

ParameterCounts CountParameters(const ModelConfig& config,
                                const std::vector<TensorEntry>& entries) {
  ParameterCounts n;
  const std::string expert_marker = ".mlp.experts.";
  const double active_fraction =
      config.n_routed_experts > 0
          ? static_cast<double>(config.num_experts_per_tok) / config.n_routed_experts
          : 0.0;
  for (const TensorEntry& e : entries) {
    if (e.role == TensorRole::kBlockScale) continue;  // storage detail, not a parameter
    int64_t numel = 1;
    for (int64_t d : e.shape) numel *= d;
    const bool mtp = e.layer >= config.num_hidden_layers;
    const bool routed = e.name.find(expert_marker) != std::string::npos;
    if (mtp) {
      n.mtp += numel;
      if (e.role != TensorRole::kEmbedding && e.role != TensorRole::kHead) n.mtp_unique += numel;
      continue;
    }
    n.total += numel;
    if (routed) {
      n.routed_experts += numel;
      n.active += static_cast<int64_t>(static_cast<double>(numel) * active_fraction + 0.5);
    } else {
      n.active += numel;
    }
    if (e.name.find(".self_attn.indexer.") != std::string::npos) n.indexer += numel;
  }
  return n;
}

}  // namespace dsinfer
