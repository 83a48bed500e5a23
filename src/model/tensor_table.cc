// TensorTable: the HF tensor list of docs/model.md §8.1 (main layers) and §7 (MTP layers), and
// CheckTensors: the rules of docs/checkpoint.md applied to a checkpoint's stored tensors.
//
// Table dtypes (what the generator writes) follow the official FP8 checkpoint: every projection
// that DeepSeek's reference `Linear` quantises is F8_E4M3 + an F32 `.weight_scale_inv` block grid;
// embeddings, heads, norms (including the indexer's LayerNorm `k_norm.weight/.bias`, whose real
// dtype is unverified, docs/model.md §12.2), the router weight, `indexer.weights_proj` and the MTP
// `eh_proj` are BF16 (vLLM/SGLang load `eh_proj` as a plain, unquantised linear); the router's
// `e_score_correction_bias` is F32. Without a `quantization_config` the FP8 projections are
// BF16 and have no block scale.
#include "model/tensor_table.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <utility>

#include "base/error.h"
#include "model/expert_parallel.h"
#include "model/routed_expert.h"

namespace dsinfer {
namespace {

constexpr int64_t kBlock = 128;  // FP8 weight block edge (docs/model.md §6.1)

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

class Builder {
 public:
  // `limit`: called with (required entries, all entries) after each Add; throws when too many.
  // `fp8`: projections are written as F8_E4M3 + block scale (else BF16).
  Builder(std::vector<TensorEntry>* out, bool fp8, std::function<void(size_t, size_t)> limit)
      : out_(out), fp8_(fp8), limit_(std::move(limit)) {}

  // Entries added next belong to `layer`; `required` or else required once `with` is stored.
  void Set(int64_t layer, bool required, std::string with = {}) {
    layer_ = layer;
    required_ = required;
    with_ = std::move(with);
  }
  const std::string& with() const { return with_; }
  void SetWith(std::string with) { with_ = std::move(with); }

  void Add(std::string name, DType dtype, std::vector<int64_t> shape, TensorRole role,
           bool optional = false) {
    const bool required = required_ && !optional;
    // The key tensor of a group is itself optional; so is an optional tensor in a group.
    std::string with = required || optional || name == with_ ? std::string() : with_;
    out_->push_back(
        {std::move(name), dtype, std::move(shape), role, layer_, false, required, std::move(with)});
    required_count_ += required && role != TensorRole::kBlockScale;  // absent beside BF16
    if (limit_) limit_(required_count_, out_->size());
  }
  void Norm(const std::string& prefix, int64_t dim) {
    Add(prefix + ".weight", DType::kBF16, {dim}, TensorRole::kNormWeight);
  }
  // An FP8 projection `[out, in]` followed by its F32 block scale (BF16 in an unquantized model).
  void Fp8Linear(const std::string& prefix, int64_t out, int64_t in) {
    if (!fp8_) return Bf16Linear(prefix, out, in);
    Add(prefix + ".weight", DType::kF8E4M3, {out, in}, TensorRole::kLinear);
    out_->back().quantized = true;
    Add(prefix + ".weight_scale_inv", DType::kF32, BlockScaleShape(out, in),
        TensorRole::kBlockScale);
  }
  void Bf16Linear(const std::string& prefix, int64_t out, int64_t in) {
    Add(prefix + ".weight", DType::kBF16, {out, in}, TensorRole::kLinear);
  }

 private:
  std::vector<TensorEntry>* out_;
  bool fp8_;
  std::function<void(size_t, size_t)> limit_;
  int64_t layer_ = -1;
  bool required_ = true;
  std::string with_;
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
  if (c.kv_b_split) {  // a GGUF's attn_k_b / attn_v_b (ModelConfig::kv_b_split)
    b.Fp8Linear(p + "k_b_proj", heads * c.kv_lora_rank, c.qk_nope_head_dim);
    b.Fp8Linear(p + "v_b_proj", heads * c.v_head_dim, c.kv_lora_rank);
  } else {
    b.Fp8Linear(p + "kv_b_proj", heads * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank);
  }
  b.Fp8Linear(p + "o_proj", c.hidden_size, heads * c.v_head_dim);
  if (!c.has_indexer()) return;
  if (!c.q_lora_rank || !c.index_n_heads || !c.index_head_dim)
    throw Error(
        "config: the lightning indexer (index_topk) needs q_lora_rank, index_n_heads "
        "and index_head_dim");
  const int64_t n_i = *c.index_n_heads, d_i = *c.index_head_dim;
  // In an optional layer (MTP) the indexer is an optional group of its own, keyed by `wq_b`:
  // the loader uses it when `wq_b` is stored, else the layer attends densely.
  const std::string outer = b.with();
  if (!outer.empty()) b.SetWith(p + "indexer.wq_b.weight");
  b.Fp8Linear(p + "indexer.wq_b", n_i * d_i, *c.q_lora_rank);
  b.Fp8Linear(p + "indexer.wk", d_i, c.hidden_size);
  b.Norm(p + "indexer.k_norm", d_i);
  b.Add(p + "indexer.k_norm.bias", DType::kBF16, {d_i}, TensorRole::kNormBias);
  b.Add(p + "indexer.weights_proj.weight", DType::kBF16, {n_i, c.hidden_size}, TensorRole::kLinear);
  b.SetWith(outer);
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
// shared head. Checkpoints may ship without the MTP module: the layer is optional as a whole,
// keyed by `eh_proj` (stored: the rest must be too). Its embedding and head copies stay
// optional (the loader falls back to the main model's), and so does its indexer (keyed by
// `wq_b`, see AddAttention).
void AddMtpLayer(Builder& b, const ModelConfig& c, int64_t layer) {
  const std::string p = "model.layers." + std::to_string(layer) + ".";
  b.Set(layer, /*required=*/false);
  b.Add(p + "embed_tokens.weight", DType::kBF16, {c.vocab_size, c.hidden_size},
        TensorRole::kEmbedding);
  b.SetWith(p + "eh_proj.weight");
  b.Norm(p + "enorm", c.hidden_size);
  b.Norm(p + "hnorm", c.hidden_size);
  b.Bf16Linear(p + "eh_proj", c.hidden_size, 2 * c.hidden_size);
  AddDecoderLayer(b, c, layer, p);
  b.Norm(p + "shared_head.norm", c.hidden_size);
  b.SetWith({});
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
  Builder b(&out, /*fp8=*/c.quantization_config.has_value(), std::move(limit));
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

std::span<const DType> AcceptedDTypes(TensorRole role) {
  static constexpr DType kMatrix[] = {DType::kF8E4M3, DType::kBF16, DType::kF16, DType::kF32};
  static constexpr DType kVector[] = {DType::kBF16, DType::kF16, DType::kF32};
  static constexpr DType kScale[] = {DType::kF32};
  switch (role) {
    case TensorRole::kEmbedding:
    case TensorRole::kHead:
    case TensorRole::kLinear:
    case TensorRole::kGate:
      return kMatrix;
    case TensorRole::kNormWeight:
    case TensorRole::kNormBias:
    case TensorRole::kGateBias:
      return kVector;
    case TensorRole::kBlockScale:
      break;
  }
  return kScale;
}

std::string AcceptedDTypesText(TensorRole role) {
  const std::span<const DType> all = AcceptedDTypes(role);
  std::string s;
  for (size_t i = 0; i < all.size(); ++i) {
    s += i == 0 ? "" : i + 1 == all.size() ? " or " : ", ";
    s += DTypeName(all[i]);
    if (all[i] == DType::kF8E4M3) s += " + F32 block scale";
  }
  return s;
}

std::string BlockScaleName(std::string_view weight_name) {
  return std::string(weight_name) + "_scale_inv";
}

std::vector<int64_t> BlockScaleShape(int64_t rows, int64_t cols) {
  return {CeilDiv(rows, kBlock), CeilDiv(cols, kBlock)};
}

namespace {

std::string ShapeText(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string Found(const TensorView& v) {
  return std::string(DTypeName(v.dtype())) + " " + ShapeText(v.shape());
}

bool Accepted(TensorRole role, DType dtype) {
  // ggml block types (only GGUF files hold them; format/gguf_checkpoint.h) serve every matrix.
  if (IsBlockDType(dtype))
    return role == TensorRole::kEmbedding || role == TensorRole::kHead ||
           role == TensorRole::kLinear || role == TensorRole::kGate;
  const std::span<const DType> all = AcceptedDTypes(role);
  return std::find(all.begin(), all.end(), dtype) != all.end();
}

// Records one problem: `missing` (a name) or `bad` (a line), and the line in `problems`.
void Missing(TensorCheck& r, const std::string& name, const std::string& expected) {
  r.missing.push_back(name);
  r.problems.push_back("missing tensor " + name + " (expected " + expected + ")");
}
void Bad(TensorCheck& r, std::string line) {
  r.bad.push_back(line);
  r.problems.push_back(std::move(line));
}

// The block scale of F8_E4M3 `weight` (shape already checked); false after recording a problem.
bool CheckBlockScale(const TensorEntry& weight, const StoredTensors& stored, TensorCheck& r) {
  const std::string name = BlockScaleName(weight.name);
  const std::vector<int64_t> shape = BlockScaleShape(weight.shape[0], weight.shape[1]);
  const std::optional<TensorView> s = stored.find(name);
  if (!s) {
    Missing(r, name, "F32 " + ShapeText(shape) + ", the block scales of F8_E4M3 " + weight.name);
    return false;
  }
  if (s->dtype() != DType::kF32 || s->shape() != shape) {
    Bad(r, name + ": expected F32 " + ShapeText(shape) + " (the block scales of " + weight.name +
               "), found " + Found(*s));
    return false;
  }
  if (stored.skip_values && stored.skip_values(weight.name)) return true;
  std::span<const float> values;
  try {
    values = s->as<float>();  // the loader hands the kernels this very span
  } catch (const Error& e) {
    Bad(r, name + ": " + e.what());
    return false;
  }
  const int64_t invalid = std::count_if(values.begin(), values.end(),
                                        [](float v) { return !(std::isfinite(v) && v > 0); });
  if (invalid == 0) return true;
  Bad(r, name + ": " + std::to_string(invalid) + " block scales are not finite and positive");
  return false;
}

}  // namespace

TensorCheck CheckTensors(const ModelConfig& c, const StoredTensors& stored) {
  TensorCheck r;
  std::set<std::string, std::less<>> used;
  bool any_mtp = false, all_mtp = true;
  for (const TensorEntry& e : TensorTable(c, stored.names.size() * stored.share_of)) {
    if (e.role == TensorRole::kBlockScale) continue;  // judged with its weight
    const bool mtp = e.layer >= c.num_hidden_layers;
    any_mtp |= mtp;
    const std::string expected = AcceptedDTypesText(e.role) + " " + ShapeText(e.shape);
    const std::optional<TensorView> v = stored.find(e.name);
    if (!v && stored.may_be_absent && stored.may_be_absent(e.name)) continue;
    if (!v) {
      all_mtp &= !mtp;
      if (e.required || (!e.required_with.empty() && stored.find(e.required_with)))
        Missing(r, e.name, expected);
      else
        r.missing_optional.push_back(e.name);
      continue;
    }
    used.insert(e.name);
    if (v->dtype() == DType::kF8E4M3) used.insert(BlockScaleName(e.name));
    if (!Accepted(e.role, v->dtype()) || v->shape() != e.shape) {
      Bad(r, e.name + ": expected " + expected + ", found " + Found(*v));
      continue;
    }
    if (v->dtype() == DType::kF8E4M3 && !CheckBlockScale(e, stored, r)) continue;
    r.present.push_back(e);
  }
  r.has_mtp = any_mtp && all_mtp;
  for (const std::string& name : stored.names)
    if (!used.count(name)) r.unexpected.push_back(name);
  std::sort(r.unexpected.begin(), r.unexpected.end());
  return r;
}

TensorCheck CheckTensors(const Checkpoint& ckpt,
                         std::function<bool(std::string_view weight_name)> skip_values) {
  StoredTensors stored{.names = ckpt.Names(),
                       .find = [&ckpt](std::string_view name) -> std::optional<TensorView> {
                         if (!ckpt.Has(name)) return std::nullopt;
                         return ckpt.Get(name);
                       },
                       .skip_values = std::move(skip_values)};
  if (const std::optional<ExpertShare>& share = ckpt.expert_share()) {
    const ExpertRange mine = ExpertRangeOf(ckpt.config().n_routed_experts, share->rank,
                                           share->ranks);
    stored.may_be_absent = [mine](std::string_view name) {
      const int64_t e = RoutedExpertOf(name);
      return e >= 0 && !mine.Has(e);
    };
    stored.share_of = static_cast<size_t>(share->ranks);
  }
  return CheckTensors(ckpt.config(), stored);
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
