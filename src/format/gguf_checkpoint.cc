#include "format/gguf_checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>

#include "base/error.h"
#include "base/meminfo.h"

namespace dsinfer {
namespace {

namespace fs = std::filesystem;

std::string DimsText(const std::vector<int64_t>& d) {
  std::string s = "[";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + "]";
}

// Typed metadata lookups; errors name the file and the key.
class Meta {
 public:
  Meta(const GgufFile& f, std::string arch) : f_(f), arch_(std::move(arch)) {}
  const std::string& arch() const { return arch_; }
  std::string Key(const std::string& k) const { return arch_ + "." + k; }

  const GgufValue* Find(const std::string& key) const { return f_.FindKey(key); }
  bool Has(const std::string& key) const { return Find(key) != nullptr; }

  int64_t Int(const std::string& key) const {
    const GgufValue* v = Need(key);
    switch (v->type) {
      case GgufType::kU8:
      case GgufType::kU16:
      case GgufType::kU32:
      case GgufType::kU64:
        if (v->u > (1ull << 40)) Bad(key, "= " + std::to_string(v->u) + " is out of range");
        return static_cast<int64_t>(v->u);
      case GgufType::kI8:
      case GgufType::kI16:
      case GgufType::kI32:
      case GgufType::kI64:
        if (v->i < 0 || v->i > (1ll << 40))
          Bad(key, "= " + std::to_string(v->i) + " is out of range");
        return v->i;
      default:
        Bad(key, "has type " + std::string(GgufTypeName(v->type)) + ", expected an integer");
    }
  }
  int64_t Int(const std::string& key, int64_t def) const { return Has(key) ? Int(key) : def; }
  double Float(const std::string& key) const {
    const GgufValue* v = Need(key);
    if (v->type == GgufType::kF32 || v->type == GgufType::kF64) return v->f;
    Bad(key, "has type " + std::string(GgufTypeName(v->type)) + ", expected FLOAT32");
  }
  double Float(const std::string& key, double def) const { return Has(key) ? Float(key) : def; }
  bool Bool(const std::string& key, bool def) const {
    const GgufValue* v = Find(key);
    if (!v) return def;
    if (v->type != GgufType::kBool)
      Bad(key, "has type " + std::string(GgufTypeName(v->type)) + ", expected BOOL");
    return v->u != 0;
  }
  std::string Str(const std::string& key) const {
    const GgufValue* v = Need(key);
    if (v->type != GgufType::kString)
      Bad(key, "has type " + std::string(GgufTypeName(v->type)) + ", expected STRING");
    return v->str;
  }
  [[noreturn]] void Bad(const std::string& key, const std::string& what) const {
    throw Error(f_.path() + ": key '" + key + "' " + what);
  }

 private:
  const GgufValue* Need(const std::string& key) const {
    const GgufValue* v = Find(key);
    if (!v)
      throw Error(f_.path() + ": key '" + key + "' is missing (needed for a " + arch_ + " model)");
    return v;
  }
  const GgufFile& f_;
  std::string arch_;
};

bool IsPlain(GgmlType t) {
  return t == GgmlType::kF32 || t == GgmlType::kF16 || t == GgmlType::kBF16;
}

// Storage behind the views: the mapped files, the TensorInfos the views point at, decoded data.
struct Backing {
  std::vector<GgufFile> files;
  std::deque<TensorInfo> infos;
  std::deque<std::vector<float>> owned;
};

class Builder {
 public:
  Builder(std::string path, std::shared_ptr<Backing> b) : path_(std::move(path)), b_(std::move(b)) {
    for (size_t f = 0; f < b_->files.size(); ++f)
      for (const GgufTensorInfo& t : b_->files[f].tensors()) {
        if (!index_.try_emplace(t.name, f, &t).second)
          throw Error(b_->files[f].path() + ": tensor '" + t.name +
                      "' is also in another part of the split set");
      }
  }

  bool Has(const std::string& g) const { return index_.count(g) != 0; }

  // GGUF tensor `g` with expected ggml dims `dims` (the metadata keys they come from in `keys`).
  const GgufTensorInfo& Need(const std::string& g, const std::vector<int64_t>& dims,
                             const std::string& keys) const {
    auto it = index_.find(g);
    if (it == index_.end())
      throw Error(path_ + ": missing tensor '" + g + "' (expected dims " + DimsText(dims) + ")");
    const GgufTensorInfo& t = *it->second.second;
    if (t.dims != dims)
      throw Error(File(g).path() + ": tensor '" + g + "' has dims " + DimsText(t.dims) +
                  ", but the metadata (" + keys + ") give " + DimsText(dims));
    if (!GgmlTypeOf(t.type).decodable)
      throw Error(File(g).path() + ": tensor '" + g + "' has ggml type " +
                  std::string(GgmlTypeName(t.type)) + ", which dsinfer cannot decode yet");
    return t;
  }
  const GgufFile& File(const std::string& g) const { return b_->files[index_.at(g).first]; }

  // HF tensor `hf` [shape] = rows [row0, row0 + rows) of GGUF tensor `t` (rows of dims[0]).
  // F32/F16/BF16 and the block types (Q8_0, Q2_K-Q6_K, IQ4_NL, IQ4_XS) stay in the mapped file as
  // they are (a block type's rows are whole blocks); `decode` makes an owned f32 copy instead.
  void Add(const std::string& hf, const std::vector<int64_t>& shape, const GgufTensorInfo& t,
           int64_t row0 = 0, bool decode = false) {
    int64_t numel = 1;
    for (int64_t d : shape) numel *= d;
    const int64_t cols = t.dims[0], rows = numel / cols;
    const GgufFile& f = File(t.name);
    const std::span<const std::byte> all = f.Bytes(t);
    const size_t row_bytes = all.size() / static_cast<size_t>(t.numel() / cols);
    const std::span<const std::byte> src = all.subspan(row0 * row_bytes, rows * row_bytes);
    const std::optional<DType> kept = DTypeOfGgml(t.type);
    if (kept && !decode) {
      TensorInfo& info = b_->infos.emplace_back();
      info.name = hf;
      info.shape = shape;
      info.dtype = *kept;
      info.end = src.size();
      views_.emplace_back(hf, TensorView{&info, src.data()});
      return;
    }
    std::vector<float>& out = b_->owned.emplace_back(numel);
    for (int64_t r = 0; r < rows; ++r)
      DequantizeRow(t.type, src.subspan(r * row_bytes, row_bytes),
                    std::span<float>(out.data() + r * cols, cols), t.name);
    AddOwned(hf, shape, out);
  }
  void AddOwned(const std::string& hf, const std::vector<int64_t>& shape,
                const std::vector<float>& data) {
    TensorInfo& info = b_->infos.emplace_back();
    info.name = hf;
    info.shape = shape;
    info.dtype = DType::kF32;
    info.end = data.size() * sizeof(float);
    views_.emplace_back(hf, TensorView{&info, reinterpret_cast<const std::byte*>(data.data())});
  }

  std::vector<std::pair<std::string, TensorView>> TakeViews() { return std::move(views_); }

 private:
  std::string path_;
  std::shared_ptr<Backing> b_;
  std::map<std::string, std::pair<size_t, const GgufTensorInfo*>, std::less<>> index_;
  std::vector<std::pair<std::string, TensorView>> views_;
};

// HF [out, in] → ggml dims {in, out}.
std::vector<int64_t> Dims(const std::vector<int64_t>& shape) {
  return {shape.rbegin(), shape.rend()};
}

void MapLayer(Builder& b, const ModelConfig& c, const Meta& m, int64_t layer, bool mtp) {
  const std::string g = "blk." + std::to_string(layer) + ".";
  const std::string h = "model.layers." + std::to_string(layer) + ".";
  const std::string heads_key = m.Key("attention.head_count");
  auto one = [&](const std::string& gname, const std::string& hname,
                 const std::vector<int64_t>& shape, const std::string& keys,
                 bool optional = false) {
    if (optional && !b.Has(gname)) return;
    b.Add(hname, shape, b.Need(gname, Dims(shape), keys));
  };
  const int64_t H = c.hidden_size, heads = c.num_attention_heads;
  const std::string hk = m.Key("embedding_length");
  one(g + "attn_norm.weight", h + "input_layernorm.weight", {H}, hk);
  one(g + "ffn_norm.weight", h + "post_attention_layernorm.weight", {H}, hk);
  const std::string qkeys =
      heads_key + ", " + m.Key("attention.key_length_mla") + ", " + m.Key("attention.q_lora_rank");
  if (c.q_lora_rank) {
    const int64_t q = *c.q_lora_rank;
    one(g + "attn_q_a.weight", h + "self_attn.q_a_proj.weight", {q, H}, qkeys);
    one(g + "attn_q_a_norm.weight", h + "self_attn.q_a_layernorm.weight", {q}, qkeys);
    one(g + "attn_q_b.weight", h + "self_attn.q_b_proj.weight", {heads * c.qk_head_dim(), q},
        qkeys);
  } else {
    one(g + "attn_q.weight", h + "self_attn.q_proj.weight", {heads * c.qk_head_dim(), H}, qkeys);
  }
  const int64_t r = c.kv_lora_rank, nope = c.qk_nope_head_dim, v = c.v_head_dim;
  const std::string kvkeys = m.Key("attention.kv_lora_rank") + ", " + m.Key("rope.dimension_count");
  one(g + "attn_kv_a_mqa.weight", h + "self_attn.kv_a_proj_with_mqa.weight",
      {r + c.qk_rope_head_dim, H}, kvkeys);
  one(g + "attn_kv_a_norm.weight", h + "self_attn.kv_a_layernorm.weight", {r}, kvkeys);
  const std::string kvb = h + "self_attn.kv_b_proj.weight";
  const std::string bkeys = heads_key + ", " + m.Key("attention.kv_lora_rank") +
                            ", key_length_mla − rope.dimension_count, value_length_mla";
  if (!c.kv_b_split) {
    // Decoded when quantised: the model re-lays W_UK out per head (TransposeHeads) and reads
    // kv_b transposed, which block rows do not allow (docs/gguf.md).
    const GgufTensorInfo& t = b.Need(g + "attn_kv_b.weight", Dims({heads * (nope + v), r}), bkeys);
    b.Add(kvb, {heads * (nope + v), r}, t, 0, /*decode=*/!IsPlain(t.type));
  } else {
    // Split form (ModelConfig::kv_b_split): k_b[h] = W_UK_hᵀ [r, nope] is what the query
    // absorption multiplies row by row, v_b[h] = W_UV_h [v, r] what the value projection does:
    // both stay as the file stores them (Q4_0/Q4_1/Q5_0/Q5_1: decoded to f32).
    const GgufTensorInfo& kb = b.Need(g + "attn_k_b.weight", {nope, r, heads}, bkeys);
    const GgufTensorInfo& vb = b.Need(g + "attn_v_b.weight", {r, v, heads}, bkeys);
    b.Add(h + "self_attn.k_b_proj.weight", {heads * r, nope}, kb);
    b.Add(h + "self_attn.v_b_proj.weight", {heads * v, r}, vb);
  }
  one(g + "attn_output.weight", h + "self_attn.o_proj.weight", {H, heads * v},
      heads_key + ", " + m.Key("attention.value_length_mla"));
  if (c.has_indexer()) {
    const int64_t ni = *c.index_n_heads, di = *c.index_head_dim;
    const std::string ik =
        m.Key("attention.indexer.head_count") + ", " + m.Key("attention.indexer.key_length");
    const bool opt = mtp;  // the MTP layer's indexer may be absent
    if (!opt || b.Has(g + "indexer.attn_q_b.weight")) {
      one(g + "indexer.attn_q_b.weight", h + "self_attn.indexer.wq_b.weight",
          {ni * di, *c.q_lora_rank}, ik);
      one(g + "indexer.attn_k.weight", h + "self_attn.indexer.wk.weight", {di, H}, ik);
      one(g + "indexer.k_norm.weight", h + "self_attn.indexer.k_norm.weight", {di}, ik);
      one(g + "indexer.k_norm.bias", h + "self_attn.indexer.k_norm.bias", {di}, ik);
      one(g + "indexer.proj.weight", h + "self_attn.indexer.weights_proj.weight", {ni, H}, ik);
    }
  }
  if (!c.is_moe_layer(layer)) {
    const std::string fk = m.Key("feed_forward_length");
    const int64_t I = c.intermediate_size;
    one(g + "ffn_gate.weight", h + "mlp.gate_proj.weight", {I, H}, fk);
    one(g + "ffn_up.weight", h + "mlp.up_proj.weight", {I, H}, fk);
    one(g + "ffn_down.weight", h + "mlp.down_proj.weight", {H, I}, fk);
    return;
  }
  const int64_t E = c.n_routed_experts, I = c.moe_intermediate_size;
  const std::string ek = m.Key("expert_count") + ", " + m.Key("expert_feed_forward_length");
  one(g + "ffn_gate_inp.weight", h + "mlp.gate.weight", {E, H}, ek);
  one(g + "exp_probs_b.bias", h + "mlp.gate.e_score_correction_bias", {E}, ek, /*optional=*/true);
  for (const char* w : {"gate", "up", "down"}) {
    const bool down = std::string(w) == "down";
    const std::vector<int64_t> shape =
        down ? std::vector<int64_t>{H, I} : std::vector<int64_t>{I, H};
    const GgufTensorInfo& t = b.Need(g + "ffn_" + w + "_exps.weight", {shape[1], shape[0], E}, ek);
    for (int64_t e = 0; e < E; ++e)
      b.Add(h + "mlp.experts." + std::to_string(e) + "." + w + "_proj.weight", shape, t,
            e * shape[0]);
  }
  if (c.n_shared_experts > 0) {
    const int64_t S = c.n_shared_experts * I;
    const std::string sk = ek + ", " + m.Key("expert_shared_count");
    one(g + "ffn_gate_shexp.weight", h + "mlp.shared_experts.gate_proj.weight", {S, H}, sk);
    one(g + "ffn_up_shexp.weight", h + "mlp.shared_experts.up_proj.weight", {S, H}, sk);
    one(g + "ffn_down_shexp.weight", h + "mlp.shared_experts.down_proj.weight", {H, S}, sk);
  }
  if (mtp) {
    const std::string vk = m.Key("vocab_size") + ", " + hk;
    one(g + "nextn.eh_proj.weight", h + "eh_proj.weight", {H, 2 * H}, hk);
    one(g + "nextn.enorm.weight", h + "enorm.weight", {H}, hk);
    one(g + "nextn.hnorm.weight", h + "hnorm.weight", {H}, hk);
    one(g + "nextn.shared_head_norm.weight", h + "shared_head.norm.weight", {H}, hk);
    one(g + "nextn.embed_tokens.weight", h + "embed_tokens.weight", {c.vocab_size, H}, vk, true);
    one(g + "nextn.shared_head_head.weight", h + "shared_head.head.weight", {c.vocab_size, H}, vk,
        true);
  }
}

}  // namespace

uint64_t GgufDecodedBytes(const std::vector<GgufFile>& files, const ModelConfig& c) {
  const uint64_t nope = static_cast<uint64_t>(c.qk_nope_head_dim),
                 v = static_cast<uint64_t>(c.v_head_dim);
  uint64_t n = 0;
  for (const GgufFile& f : files)
    for (const GgufTensorInfo& t : f.tensors()) {
      const uint64_t numel = static_cast<uint64_t>(t.numel());
      if (t.name.ends_with(".attn_kv_b.weight")) {
        // Kept as stored when plain (F32/F16/BF16), else decoded to f32; W_UK transposed in
        // that element type: the qk_nope_head_dim of every nope + v rows.
        const uint64_t elem = t.type == GgmlType::kF32 || !IsPlain(t.type) ? 4 : 2;
        if (!IsPlain(t.type)) n += 4 * numel;
        if (nope + v > 0) n += elem * (numel / (nope + v) * nope);
      } else if (!DTypeOfGgml(t.type).has_value()) {
        // Q4_0, Q4_1, Q5_0, Q5_1 (no kernels; attn_k_b / attn_v_b included): decoded to f32.
        n += 4 * numel;
      }
    }
  return n;
}

uint64_t GgufTensorBytes(const std::vector<GgufFile>& files) {
  uint64_t n = 0;
  for (const GgufFile& f : files)
    for (const GgufTensorInfo& t : f.tensors()) n += t.nbytes;
  return n;
}

bool IsGgufPath(const std::string& path) {
  return path.size() > 5 && path.compare(path.size() - 5, 5, ".gguf") == 0;
}

std::vector<std::string> GgufSplitPaths(const std::string& path) {
  // NAME-kkkkk-of-nnnnn.gguf: a 20-character suffix "-ddddd-of-ddddd.gguf".
  constexpr size_t kSuffix = 20;
  if (path.size() <= kSuffix) return {path};
  const std::string_view tail = std::string_view(path).substr(path.size() - kSuffix);
  auto digits = [&](size_t at) {
    int v = 0;
    for (size_t i = at; i < at + 5; ++i) {
      if (tail[i] < '0' || tail[i] > '9') return -1;
      v = v * 10 + (tail[i] - '0');
    }
    return v;
  };
  const int k = digits(1), n = digits(10);
  if (tail[0] != '-' || tail.substr(6, 4) != "-of-" || tail.substr(15) != ".gguf" || k < 0 || n < 0)
    return {path};
  if (n < 1 || k < 1 || k > n)
    throw Error(path + ": split name says part " + std::to_string(k) + " of " + std::to_string(n));
  const std::string stem = path.substr(0, path.size() - kSuffix);
  std::vector<std::string> parts;
  char buf[32];
  for (int i = 1; i <= n; ++i) {
    std::snprintf(buf, sizeof buf, "-%05d-of-%05d.gguf", i, n);
    parts.push_back(stem + buf);
  }
  return parts;
}

ModelConfig GgufModelConfig(const GgufFile& f) {
  const GgufValue* a = f.FindKey("general.architecture");
  if (!a || a->type != GgufType::kString)
    throw Error(f.path() + ": key 'general.architecture' is missing or not a string");
  const std::string arch = a->str;
  if (arch != "deepseek2" && arch != "deepseek32")
    throw Error(f.path() + ": unknown architecture '" + arch +
                "' (key general.architecture): dsinfer runs deepseek2 and deepseek32");
  const Meta m(f, arch);
  ModelConfig c;
  c.architectures = {arch == "deepseek32" ? "DeepseekV32ForCausalLM" : "DeepseekV3ForCausalLM"};
  c.model_type = arch == "deepseek32" ? "deepseek_v32" : "deepseek_v3";
  c.quantization_config = std::nullopt;
  c.hidden_size = m.Int(m.Key("embedding_length"));
  c.intermediate_size = m.Int(m.Key("feed_forward_length"));
  c.num_attention_heads = m.Int(m.Key("attention.head_count"));
  c.num_key_value_heads = c.num_attention_heads;
  c.max_position_embeddings = m.Int(m.Key("context_length"));
  c.rms_norm_eps = m.Float(m.Key("attention.layer_norm_rms_epsilon"));
  c.rope_theta = m.Float(m.Key("rope.freq_base"), 10000.0);
  c.first_k_dense_replace = m.Int(m.Key("leading_dense_block_count"), 0);
  c.q_lora_rank = m.Has(m.Key("attention.q_lora_rank"))
                      ? std::optional<int64_t>(m.Int(m.Key("attention.q_lora_rank")))
                      : std::nullopt;
  if (c.q_lora_rank && *c.q_lora_rank == 0) c.q_lora_rank = std::nullopt;
  c.kv_lora_rank = m.Int(m.Key("attention.kv_lora_rank"));
  c.qk_rope_head_dim = m.Int(m.Key("rope.dimension_count"));
  // MLA as MQA (current converters): key_length = kv_lora_rank + rope, the per-head sizes in
  // *_mla; older files: key_length / value_length are the per-head sizes themselves.
  const bool mla_keys = m.Has(m.Key("attention.key_length_mla"));
  const int64_t qk = m.Int(m.Key(mla_keys ? "attention.key_length_mla" : "attention.key_length"));
  c.v_head_dim = m.Int(m.Key(mla_keys ? "attention.value_length_mla" : "attention.value_length"));
  if (qk <= c.qk_rope_head_dim)
    m.Bad(m.Key(mla_keys ? "attention.key_length_mla" : "attention.key_length"),
          "= " + std::to_string(qk) + " must exceed rope.dimension_count (" +
              std::to_string(c.qk_rope_head_dim) + ")");
  c.qk_nope_head_dim = qk - c.qk_rope_head_dim;
  c.n_routed_experts = m.Int(m.Key("expert_count"), 0);
  c.num_experts_per_tok = m.Int(m.Key("expert_used_count"), 0);
  c.moe_intermediate_size = m.Int(m.Key("expert_feed_forward_length"), c.intermediate_size);
  c.n_shared_experts = m.Int(m.Key("expert_shared_count"), 0);
  c.routed_scaling_factor = m.Float(m.Key("expert_weights_scale"), 1.0);
  c.norm_topk_prob = m.Bool(m.Key("expert_weights_norm"), false);
  c.n_group = m.Int(m.Key("expert_group_count"), 1);
  c.topk_group = m.Int(m.Key("expert_group_used_count"), 1);
  c.moe_layer_freq = 1;
  // llama.cpp's gating ids: 1 softmax, 2 sigmoid; absent means softmax (as llama.cpp reads it).
  const int64_t gating = m.Int(m.Key("expert_gating_func"), 1);
  if (gating != 1 && gating != 2)
    m.Bad(m.Key("expert_gating_func"),
          "= " + std::to_string(gating) + " is not 1 (softmax) or 2 (sigmoid)");
  c.scoring_func = gating == 2 ? "sigmoid" : "softmax";
  c.topk_method = "noaux_tc";
  const int64_t blocks = m.Int(m.Key("block_count"));
  c.num_nextn_predict_layers = m.Int(m.Key("nextn_predict_layers"), 0);
  // deepseek32 counts the MTP layers in block_count; deepseek2 files leave them out.
  c.num_hidden_layers = arch == "deepseek32" ? blocks - c.num_nextn_predict_layers : blocks;
  if (arch == "deepseek2") c.num_nextn_predict_layers = 0;
  if (c.num_hidden_layers < 1)
    m.Bad(m.Key("block_count"), "= " + std::to_string(blocks) + " leaves no main layer after " +
                                    std::to_string(c.num_nextn_predict_layers) + " MTP layers");
  if (m.Has(m.Key("rope.scaling.type")) && m.Str(m.Key("rope.scaling.type")) != "none") {
    const std::string type = m.Str(m.Key("rope.scaling.type"));
    if (type != "yarn")
      m.Bad(m.Key("rope.scaling.type"), "= '" + type + "' is not supported (only yarn)");
    RopeScaling r;
    r.factor = m.Float(m.Key("rope.scaling.factor"));
    r.original_max_position_embeddings = m.Int(m.Key("rope.scaling.original_context_length"));
    r.beta_fast = m.Float(m.Key("rope.scaling.yarn_beta_fast"), 32.0);
    r.beta_slow = m.Float(m.Key("rope.scaling.yarn_beta_slow"), 1.0);
    // llama.cpp stores 0.1 · mscale_all_dim as the YaRN log multiplier for deepseek2.
    r.mscale_all_dim = m.Float(m.Key("rope.scaling.yarn_log_multiplier"), 0.0) / 0.1;
    r.mscale = 1.0;
    c.rope_scaling = r;
  } else {
    c.rope_scaling = std::nullopt;
  }
  if (arch == "deepseek32") {
    c.index_n_heads = m.Int(m.Key("attention.indexer.head_count"));
    c.index_head_dim = m.Int(m.Key("attention.indexer.key_length"));
    c.index_topk = m.Int(m.Key("attention.indexer.top_k"));
  } else {
    c.index_n_heads = c.index_head_dim = c.index_topk = std::nullopt;
  }
  // Vocabulary: the key, else the token list, else the embedding's rows.
  if (m.Has(m.Key("vocab_size"))) {
    c.vocab_size = m.Int(m.Key("vocab_size"));
  } else if (const GgufValue* t = f.FindKey("tokenizer.ggml.tokens");
             t && t->type == GgufType::kArray) {
    c.vocab_size = static_cast<int64_t>(t->count);
  } else if (const GgufTensorInfo* e = f.FindTensor("token_embd.weight");
             e && e->dims.size() == 2) {
    c.vocab_size = e->dims[1];
  } else {
    m.Bad(m.Key("vocab_size"),
          "is missing, and so are tokenizer.ggml.tokens and token_embd.weight");
  }
  c.bos_token_id = m.Int("tokenizer.ggml.bos_token_id", 0);
  c.eos_token_id = m.Int("tokenizer.ggml.eos_token_id", 1);
  c.tie_word_embeddings = false;  // a file without output.weight reuses token_embd (below)
  c.torch_dtype = "bfloat16";
  c.Validate(f.path() + " (metadata)");
  return c;
}

Checkpoint OpenGgufCheckpoint(const std::string& path) {
  auto backing = std::make_shared<Backing>();
  const std::vector<std::string> parts = GgufSplitPaths(path);
  for (const std::string& p : parts) {
    std::error_code ec;
    if (!fs::is_regular_file(p, ec))
      throw Error(p + ": part of the split set " + path + " does not exist");
    backing->files.push_back(GgufFile::Open(p));
  }
  const GgufFile& first = backing->files.front();
  if (parts.size() > 1) {
    for (size_t i = 0; i < parts.size(); ++i) {
      const GgufValue* n = backing->files[i].FindKey("split.count");
      if (n && (n->type == GgufType::kU16 || n->type == GgufType::kU32) && n->u != parts.size())
        throw Error(parts[i] + ": key 'split.count' = " + std::to_string(n->u) +
                    " but the name says " + std::to_string(parts.size()) + " parts");
    }
  }
  ModelConfig c = GgufModelConfig(first);
  // kv_b split (attn_k_b / attn_v_b, llama.cpp's current converter) unless layer 0 stores it
  // whole (attn_kv_b, older files); every layer is then read in that form.
  c.kv_b_split = std::none_of(backing->files.begin(), backing->files.end(), [](const GgufFile& f) {
    return std::any_of(f.tensors().begin(), f.tensors().end(),
                       [](const GgufTensorInfo& t) { return t.name == "blk.0.attn_kv_b.weight"; });
  });
  // Resident memory once every weight has been read: the tensor bytes of the mapped file(s)
  // (quantised blocks stay as stored) + the copies loading makes (a whole kv_b's, W_UK). Page cache
  // counts as available, so a file that is already cached passes.
  const uint64_t decoded = GgufDecodedBytes(backing->files, c);
  const uint64_t mapped = GgufTensorBytes(backing->files), avail = MemoryAvailable();
  if (avail > 0 && decoded + mapped > avail) {
    char buf[320];
    std::snprintf(buf, sizeof buf,
                  ": the weights need %.2f GiB resident (%.2f GiB of tensors mapped from the "
                  "file + %.2f GiB of copies: a whole kv_b, W_UK, Q4_0/Q4_1/Q5_0/Q5_1 tensors) but only "
                  "%.2f GiB of memory is available",
                  (decoded + mapped) / double(1ull << 30), mapped / double(1ull << 30),
                  decoded / double(1ull << 30), avail / double(1ull << 30));
    throw Error(path + buf);
  }
  const Meta m(first, first.FindKey("general.architecture")->str);
  Builder b(path, backing);
  const int64_t H = c.hidden_size, V = c.vocab_size;
  const std::string vk = m.Key("vocab_size") + ", " + m.Key("embedding_length");
  b.Add("model.embed_tokens.weight", {V, H}, b.Need("token_embd.weight", {H, V}, vk));
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) MapLayer(b, c, m, l, /*mtp=*/false);
  for (int64_t l = c.num_hidden_layers; l < c.num_hidden_layers + c.num_nextn_predict_layers; ++l)
    if (b.Has("blk." + std::to_string(l) + ".nextn.eh_proj.weight"))
      MapLayer(b, c, m, l, /*mtp=*/true);
  b.Add("model.norm.weight", {H}, b.Need("output_norm.weight", {H}, m.Key("embedding_length")));
  b.Add("lm_head.weight", {V, H},
        b.Need(b.Has("output.weight") ? "output.weight" : "token_embd.weight", {H, V}, vk));
  std::vector<std::span<const std::byte>> mappings;
  for (const GgufFile& f : backing->files) mappings.push_back(f.mapping());
  return Checkpoint::FromViews(path, c, b.TakeViews(), backing, std::move(mappings));
}

}  // namespace dsinfer
