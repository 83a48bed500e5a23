#include "tools/quantize.h"

#include <algorithm>
#include <exception>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/error.h"
#include "format/checkpoint.h"
#include "format/ggml_quantize.h"
#include "format/gguf_writer.h"
#include "kernels/weight.h"

namespace dsinfer {
namespace {

using Json = nlohmann::json;

// What a tensor is, for the mixed recipes.
enum class Kind { kVector, kEmbedding, kHead, kRouter, kExpertGateUp, kExpertDown, kOther };

struct Recipe {
  GgmlType embedding, head, expert_gate_up, expert_down, other;
  uint32_t file_type;  // llama.cpp's llama_ftype
};

Recipe RecipeFor(const std::string& t) {
  using G = GgmlType;
  if (t == "F32") return {G::kF32, G::kF32, G::kF32, G::kF32, G::kF32, 0};
  if (t == "BF16") return {G::kBF16, G::kBF16, G::kBF16, G::kBF16, G::kBF16, 32};
  if (t == "Q8_0") return {G::kQ8_0, G::kQ8_0, G::kQ8_0, G::kQ8_0, G::kQ8_0, 7};
  if (t == "Q6_K") return {G::kQ6_K, G::kQ6_K, G::kQ6_K, G::kQ6_K, G::kQ6_K, 18};
  // _M mixes: routed experts at 4-5 (5-6) bits, everything else at 6.5 (8.5) bits, the head at
  // Q6_K and the embedding at the base type, as llama.cpp's Q4_K_M / Q5_K_M keep them.
  if (t == "Q5_K_M") return {G::kQ5_K, G::kQ6_K, G::kQ5_K, G::kQ6_K, G::kQ8_0, 17};
  if (t == "Q4_K_M") return {G::kQ4_K, G::kQ6_K, G::kQ4_K, G::kQ5_K, G::kQ6_K, 15};
  // Every matrix at 4.25 bits but the head (Q6_K): llama.cpp's IQ4_XS base (it also keeps a few
  // tensors at Q5_K/Q8_0 by rules of its own, docs/gguf.md).
  if (t == "IQ4_XS") return {G::kIQ4_XS, G::kQ6_K, G::kIQ4_XS, G::kIQ4_XS, G::kIQ4_XS, 30};
  throw Error("--type " + t + " is not one of F32, BF16, Q8_0, Q6_K, Q5_K_M, Q4_K_M, IQ4_XS");
}

// The type a tensor gets: the recipe's, falling back when rows are not whole blocks — IQ4_XS
// to IQ4_NL (as llama.cpp), the others to Q8_0 (llama.cpp takes Q5_0/Q5_1 there, which dsinfer
// would decode to f32 at load; Q8_0 stays in its blocks), then F32.
GgmlType TypeFor(const Recipe& r, Kind k, int64_t row) {
  GgmlType t = GgmlType::kF32;
  switch (k) {
    case Kind::kVector:
    case Kind::kRouter:
      return GgmlType::kF32;  // norms, biases and the router stay f32 (as llama.cpp keeps them)
    case Kind::kEmbedding:
      t = r.embedding;
      break;
    case Kind::kHead:
      t = r.head;
      break;
    case Kind::kExpertGateUp:
      t = r.expert_gate_up;
      break;
    case Kind::kExpertDown:
      t = r.expert_down;
      break;
    case Kind::kOther:
      t = r.other;
      break;
  }
  if (row % GgmlTypeOf(t).block_elems == 0) return t;
  if (t == GgmlType::kIQ4_XS && row % 32 == 0) return GgmlType::kIQ4_NL;
  if (t != GgmlType::kF32 && t != GgmlType::kBF16 && row % 32 == 0) return GgmlType::kQ8_0;
  return t == GgmlType::kBF16 ? GgmlType::kBF16 : GgmlType::kF32;
}

// One row source: writes row `r` (of `cols` f32) of the output tensor.
using RowFn = std::function<void(int64_t r, float* out)>;

struct Planned {
  GgufTensorSpec spec;
  RowFn row;
};

class Planner {
 public:
  Planner(const Checkpoint& ck, const Recipe& recipe) : ck_(ck), recipe_(recipe) {}

  WeightView View(const std::string& name) const {
    const TensorView v = ck_.Get(name);
    WeightView w{.dtype = v.dtype(),
                 .rows = v.shape().size() == 2 ? v.shape()[0] : 1,
                 .cols = v.shape().back(),
                 .data = v.data};
    if (v.shape().size() > 2 || v.shape().empty())
      throw Error(ck_.dir() + ": tensor " + name + " is not 1-D or 2-D");
    if (v.dtype() == DType::kF8E4M3) {
      const std::string s = name.substr(0, name.size() - 7) + ".weight_scale_inv";
      const TensorView sv = ck_.Get(s, DType::kF32, {(w.rows + 127) / 128, (w.cols + 127) / 128});
      w.scales = sv.as<float>().data();
    } else if (v.dtype() != DType::kBF16 && v.dtype() != DType::kF16 && v.dtype() != DType::kF32) {
      throw Error(ck_.dir() + ": tensor " + name + " has dtype " +
                  std::string(DTypeName(v.dtype())) + ", expected F8_E4M3, BF16, F16 or F32");
    }
    return w;
  }

  // A tensor copied as it is (same [rows, cols]), named `gguf`.
  void Plain(const std::string& hf, const std::string& gguf, Kind kind) {
    const WeightView w = View(hf);
    const bool vec = ck_.Get(hf).shape().size() == 1;
    Add(gguf, vec ? std::vector<int64_t>{w.cols} : std::vector<int64_t>{w.cols, w.rows},
        vec ? Kind::kVector : kind, [w](int64_t r, float* out) { DecodeRow(w, r, out); });
  }

  // Stacked experts: dims {in, out, E}; row r = expert r / out, row r % out.
  void Experts(const std::string& prefix, int64_t E, const std::string& proj,
               const std::string& gguf, Kind kind) {
    std::vector<WeightView> ws;
    for (int64_t e = 0; e < E; ++e)
      ws.push_back(View(prefix + std::to_string(e) + "." + proj + ".weight"));
    const int64_t rows = ws[0].rows, cols = ws[0].cols;
    Add(gguf, {cols, rows, E}, kind,
        [ws, rows](int64_t r, float* out) { DecodeRow(ws[r / rows], r % rows, out); });
  }

  // kv_b_proj [heads·(nope + v), r] → attn_k_b {nope, r, heads} (k_b[h] = W_UK_hᵀ, [r, nope])
  // and attn_v_b {r, v, heads} (W_UV_h), as llama.cpp's converter splits it.
  void SplitKvB(const std::string& hf, const std::string& g, const ModelConfig& c) {
    const WeightView w = View(hf);
    const int64_t heads = c.num_attention_heads, nope = c.qk_nope_head_dim, v = c.v_head_dim,
                  r = c.kv_lora_rank;
    Add(g + "attn_k_b.weight", {nope, r, heads}, Kind::kOther,
        [w, nope, v, r](int64_t row, float* out) {
          const int64_t h = row / r, j = row % r;  // out[i] = kv_b[h·(nope+v) + i, j]
          std::vector<float> tmp(r);
          for (int64_t i = 0; i < nope; ++i) {
            DecodeRow(w, h * (nope + v) + i, tmp.data());
            out[i] = tmp[j];
          }
        });
    Add(g + "attn_v_b.weight", {r, v, heads}, Kind::kOther, [w, nope, v](int64_t row, float* out) {
      const int64_t h = row / v, i = row % v;
      DecodeRow(w, h * (nope + v) + nope + i, out);
    });
  }

  std::vector<Planned>& out() { return out_; }

 private:
  void Add(const std::string& name, std::vector<int64_t> dims, Kind kind, RowFn row) {
    Planned p;
    p.spec.name = name;
    p.spec.dims = std::move(dims);
    p.spec.type = TypeFor(recipe_, kind, p.spec.dims[0]);
    p.row = std::move(row);
    out_.push_back(std::move(p));
  }
  const Checkpoint& ck_;
  Recipe recipe_;
  std::vector<Planned> out_;
};

void PlanLayer(Planner& p, const Checkpoint& ck, const ModelConfig& c, int64_t layer, bool mtp) {
  const std::string g = "blk." + std::to_string(layer) + ".";
  const std::string h = "model.layers." + std::to_string(layer) + ".";
  const Kind O = Kind::kOther;
  if (mtp) {
    if (ck.Has(h + "embed_tokens.weight"))
      p.Plain(h + "embed_tokens.weight", g + "nextn.embed_tokens.weight", Kind::kEmbedding);
    p.Plain(h + "enorm.weight", g + "nextn.enorm.weight", O);
    p.Plain(h + "hnorm.weight", g + "nextn.hnorm.weight", O);
    p.Plain(h + "eh_proj.weight", g + "nextn.eh_proj.weight", O);
    p.Plain(h + "shared_head.norm.weight", g + "nextn.shared_head_norm.weight", O);
    if (ck.Has(h + "shared_head.head.weight"))
      p.Plain(h + "shared_head.head.weight", g + "nextn.shared_head_head.weight", Kind::kHead);
  }
  p.Plain(h + "input_layernorm.weight", g + "attn_norm.weight", O);
  const std::string a = h + "self_attn.";
  if (c.q_lora_rank) {
    p.Plain(a + "q_a_proj.weight", g + "attn_q_a.weight", O);
    p.Plain(a + "q_a_layernorm.weight", g + "attn_q_a_norm.weight", O);
    p.Plain(a + "q_b_proj.weight", g + "attn_q_b.weight", O);
  } else {
    p.Plain(a + "q_proj.weight", g + "attn_q.weight", O);
  }
  p.Plain(a + "kv_a_proj_with_mqa.weight", g + "attn_kv_a_mqa.weight", O);
  p.Plain(a + "kv_a_layernorm.weight", g + "attn_kv_a_norm.weight", O);
  p.SplitKvB(a + "kv_b_proj.weight", g, c);
  p.Plain(a + "o_proj.weight", g + "attn_output.weight", O);
  if (c.has_indexer() && ck.Has(a + "indexer.wq_b.weight")) {
    p.Plain(a + "indexer.wq_b.weight", g + "indexer.attn_q_b.weight", O);
    p.Plain(a + "indexer.wk.weight", g + "indexer.attn_k.weight", O);
    p.Plain(a + "indexer.k_norm.weight", g + "indexer.k_norm.weight", O);
    p.Plain(a + "indexer.k_norm.bias", g + "indexer.k_norm.bias", O);
    p.Plain(a + "indexer.weights_proj.weight", g + "indexer.proj.weight", O);
  }
  p.Plain(h + "post_attention_layernorm.weight", g + "ffn_norm.weight", O);
  const std::string f = h + "mlp.";
  if (!c.is_moe_layer(layer)) {
    p.Plain(f + "gate_proj.weight", g + "ffn_gate.weight", O);
    p.Plain(f + "up_proj.weight", g + "ffn_up.weight", O);
    p.Plain(f + "down_proj.weight", g + "ffn_down.weight", O);
    return;
  }
  p.Plain(f + "gate.weight", g + "ffn_gate_inp.weight", Kind::kRouter);
  if (ck.Has(f + "gate.e_score_correction_bias"))
    p.Plain(f + "gate.e_score_correction_bias", g + "exp_probs_b.bias", O);
  p.Experts(f + "experts.", c.n_routed_experts, "gate_proj", g + "ffn_gate_exps.weight",
            Kind::kExpertGateUp);
  p.Experts(f + "experts.", c.n_routed_experts, "up_proj", g + "ffn_up_exps.weight",
            Kind::kExpertGateUp);
  p.Experts(f + "experts.", c.n_routed_experts, "down_proj", g + "ffn_down_exps.weight",
            Kind::kExpertDown);
  if (c.n_shared_experts > 0) {
    p.Plain(f + "shared_experts.gate_proj.weight", g + "ffn_gate_shexp.weight", O);
    p.Plain(f + "shared_experts.up_proj.weight", g + "ffn_up_shexp.weight", O);
    p.Plain(f + "shared_experts.down_proj.weight", g + "ffn_down_shexp.weight", O);
  }
}

using Meta = std::vector<std::pair<std::string, GgufValue>>;

// tokenizer.json (+ the config's BOS/EOS ids) → tokenizer.ggml.* as llama.cpp's converter
// writes a byte-level BPE vocabulary (token types: 1 normal, 3 control, 4 user-defined, 5 unused).
void AddTokenizer(Meta& meta, const std::string& dir, const ModelConfig& c) {
  const std::string path = dir + "/tokenizer.json";
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open (quantize stores the tokenizer in the GGUF file)");
  std::stringstream ss;
  ss << in.rdbuf();
  Json j;
  try {
    j = Json::parse(ss.str());
  } catch (const Json::exception& e) {
    throw Error(path + ": malformed JSON: " + e.what());
  }
  const Json& model = j.at("model");
  std::map<int64_t, std::pair<std::string, int32_t>> by_id;
  for (const auto& [tok, id] : model.at("vocab").items()) by_id[id.get<int64_t>()] = {tok, 1};
  for (const Json& a : j.value("added_tokens", Json::array()))
    by_id[a.at("id").get<int64_t>()] = {a.at("content").get<std::string>(),
                                        a.value("special", false) ? 3 : 4};
  const int64_t n = std::max<int64_t>(c.vocab_size, by_id.empty() ? 0 : by_id.rbegin()->first + 1);
  std::vector<std::string> tokens(n);
  std::vector<int32_t> types(n, 5);
  for (int64_t id = 0; id < n; ++id) tokens[id] = "[PAD" + std::to_string(id) + "]";
  for (const auto& [id, tt] : by_id) {
    tokens[id] = tt.first;
    types[id] = tt.second;
  }
  std::vector<std::string> merges;
  for (const Json& m : model.at("merges"))
    merges.push_back(m.is_string() ? m.get<std::string>()
                                   : m.at(0).get<std::string>() + " " + m.at(1).get<std::string>());
  meta.emplace_back("tokenizer.ggml.model", GgufString("gpt2"));
  meta.emplace_back("tokenizer.ggml.pre", GgufString("deepseek-v3"));
  meta.emplace_back("tokenizer.ggml.tokens", GgufStringArray(std::move(tokens)));
  meta.emplace_back("tokenizer.ggml.token_type", GgufI32Array(types));
  meta.emplace_back("tokenizer.ggml.merges", GgufStringArray(std::move(merges)));
  meta.emplace_back("tokenizer.ggml.bos_token_id", GgufU32(static_cast<uint32_t>(c.bos_token_id)));
  meta.emplace_back("tokenizer.ggml.eos_token_id", GgufU32(static_cast<uint32_t>(c.eos_token_id)));
  meta.emplace_back("tokenizer.ggml.add_bos_token", GgufBool(true));
  meta.emplace_back("tokenizer.ggml.add_eos_token", GgufBool(false));
}

Meta ModelMetadata(const ModelConfig& c, const std::string& arch, int64_t mtp_layers,
                   uint32_t file_type, const std::string& name) {
  Meta m;
  auto u = [&](const std::string& k, int64_t v) {
    m.emplace_back(arch + "." + k, GgufU32(static_cast<uint32_t>(v)));
  };
  auto f = [&](const std::string& k, double v) {
    m.emplace_back(arch + "." + k, GgufF32(static_cast<float>(v)));
  };
  m.emplace_back("general.architecture", GgufString(arch));
  m.emplace_back("general.name", GgufString(name));
  m.emplace_back("general.file_type", GgufU32(file_type));
  m.emplace_back("general.quantization_version", GgufU32(2));
  u("block_count", c.num_hidden_layers + (arch == "deepseek32" ? mtp_layers : 0));
  u("context_length", c.max_position_embeddings);
  u("embedding_length", c.hidden_size);
  u("feed_forward_length", c.intermediate_size);
  u("attention.head_count", c.num_attention_heads);
  u("attention.head_count_kv", 1);  // MLA stored as MQA over the latent (llama.cpp)
  f("rope.freq_base", c.rope_theta);
  f("attention.layer_norm_rms_epsilon", c.rms_norm_eps);
  u("expert_used_count", c.num_experts_per_tok);
  u("expert_group_count", c.n_group);
  u("expert_group_used_count", c.topk_group);
  u("leading_dense_block_count", c.first_k_dense_replace);
  u("vocab_size", c.vocab_size);
  if (c.q_lora_rank) u("attention.q_lora_rank", *c.q_lora_rank);
  u("attention.kv_lora_rank", c.kv_lora_rank);
  u("attention.key_length", c.kv_lora_rank + c.qk_rope_head_dim);
  u("attention.value_length", c.kv_lora_rank);
  u("attention.key_length_mla", c.qk_head_dim());
  u("attention.value_length_mla", c.v_head_dim);
  u("expert_feed_forward_length", c.moe_intermediate_size);
  u("expert_count", c.n_routed_experts);
  u("expert_shared_count", c.n_shared_experts);
  f("expert_weights_scale", c.routed_scaling_factor);
  m.emplace_back(arch + ".expert_weights_norm", GgufBool(c.norm_topk_prob));
  u("expert_gating_func", 2);  // sigmoid
  u("rope.dimension_count", c.qk_rope_head_dim);
  if (c.rope_scaling) {
    m.emplace_back(arch + ".rope.scaling.type", GgufString("yarn"));
    f("rope.scaling.factor", c.rope_scaling->factor);
    u("rope.scaling.original_context_length", c.rope_scaling->original_max_position_embeddings);
    f("rope.scaling.yarn_log_multiplier", 0.1 * c.rope_scaling->mscale_all_dim);
    f("rope.scaling.yarn_beta_fast", c.rope_scaling->beta_fast);
    f("rope.scaling.yarn_beta_slow", c.rope_scaling->beta_slow);
  }
  if (arch == "deepseek32") {
    u("nextn_predict_layers", mtp_layers);
    u("attention.indexer.head_count", *c.index_n_heads);
    u("attention.indexer.key_length", *c.index_head_dim);
    u("attention.indexer.top_k", *c.index_topk);
  }
  return m;
}

}  // namespace

const std::vector<std::string>& QuantizeTypeNames() {
  static const std::vector<std::string> kNames = {"F32",    "BF16",   "Q8_0",  "Q6_K",
                                                  "Q5_K_M", "Q4_K_M", "IQ4_XS"};
  return kNames;
}

QuantizeResult QuantizeCheckpoint(const QuantizeOptions& o) {
  const Recipe recipe = RecipeFor(o.type);
  const Checkpoint ck = Checkpoint::Open(o.model_dir);
  const ModelConfig& c = ck.config();
  if (c.scoring_func != "sigmoid")
    throw Error(o.model_dir + "/config.json: scoring_func '" + c.scoring_func +
                "' is not supported");
  const std::string arch = c.has_indexer() ? "deepseek32" : "deepseek2";
  // MTP layers go into deepseek32 files when the checkpoint has them (llama.cpp's converter
  // keeps them for deepseek32 and drops them for deepseek2).
  int64_t mtp = 0;
  if (arch == "deepseek32")
    while (mtp < c.num_nextn_predict_layers &&
           ck.Has("model.layers." + std::to_string(c.num_hidden_layers + mtp) + ".eh_proj.weight"))
      ++mtp;
  Planner p(ck, recipe);
  p.Plain("model.embed_tokens.weight", "token_embd.weight", Kind::kEmbedding);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) PlanLayer(p, ck, c, l, false);
  for (int64_t l = c.num_hidden_layers; l < c.num_hidden_layers + mtp; ++l)
    PlanLayer(p, ck, c, l, true);
  p.Plain("model.norm.weight", "output_norm.weight", Kind::kOther);
  p.Plain("lm_head.weight", "output.weight", Kind::kHead);

  Meta meta =
      ModelMetadata(c, arch, mtp, recipe.file_type,
                    std::filesystem::path(o.model_dir).lexically_normal().filename().string());
  AddTokenizer(meta, o.model_dir, c);

  std::vector<GgufTensorSpec> specs;
  QuantizeResult r;
  std::map<std::string, int64_t> counts;
  for (const Planned& t : p.out()) {
    specs.push_back(t.spec);
    r.bytes += t.spec.nbytes();
    int64_t n = 1;
    for (int64_t d : t.spec.dims) n *= d;
    r.weights += n;
    ++counts[std::string(GgmlTypeName(t.spec.type))];
  }
  r.tensors = static_cast<int64_t>(specs.size());
  r.type_counts.assign(counts.begin(), counts.end());
  // Rows are encoded in parallel, a chunk of about 8 MiB of output at a time.
  uint64_t done = 0;
  WriteGguf(o.out_path, meta, specs, [&](size_t i, const GgufSink& sink) {
    const Planned& t = p.out()[i];
    const int64_t cols = t.spec.dims[0];
    const size_t rb = GgmlRowBytes(t.spec.type, cols);
    const int64_t rows = rb ? static_cast<int64_t>(t.spec.nbytes() / rb) : 0;
    const int64_t chunk =
        std::max<int64_t>(1, static_cast<int64_t>((8u << 20) / std::max<size_t>(rb, 1)));
    std::vector<std::byte> buf;
    for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
      const int64_t n = std::min(chunk, rows - r0);
      buf.assign(n * rb, std::byte{0});
      std::exception_ptr failure;
#pragma omp parallel
      {
        std::vector<float> row(cols);
#pragma omp for schedule(dynamic, 1)
        for (int64_t k = 0; k < n; ++k) {
          try {
            t.row(r0 + k, row.data());
            QuantizeRow(t.spec.type, row, std::span(buf).subspan(k * rb, rb), t.spec.name);
          } catch (...) {
#pragma omp critical
            if (!failure) failure = std::current_exception();
          }
        }
      }
      if (failure) std::rethrow_exception(failure);
      sink(buf);
      done += buf.size();
      if (o.progress) o.progress(done, r.bytes);
    }
  });
  return r;
}

}  // namespace dsinfer
