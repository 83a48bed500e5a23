#include "model/weights.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iterator>
#include <string_view>
#include <utility>

#include "base/error.h"
#include "format/dtype.h"
#include "kernels/qblocks.h"
#include "model/routed_expert.h"
#include "model/tensor_table.h"

namespace dsinfer {

namespace {

// Views of tensors that `CheckTensors` has passed: present, of an accepted dtype (docs/
// checkpoint.md) and the table's shape, FP8 ones with valid block scales. What it checks is
// only re-asserted here (an invariant, not input validation).

// The weights Loader::Bf16Site loads (HF names): the projections of attention, the indexer and
// every MLP (dense, shared and routed experts). EstimateWeightMemory counts their bf16 block
// repack by this list; Bf16Site asserts it holds every site.
bool IsBf16Site(std::string_view name) {
  static constexpr std::string_view kSuffixes[] = {
      ".gate_proj.weight",  ".up_proj.weight", ".down_proj.weight",
      ".q_a_proj.weight",   ".q_b_proj.weight", ".q_proj.weight",
      ".kv_a_proj_with_mqa.weight", ".o_proj.weight", ".indexer.wq_b.weight",
      ".indexer.wk.weight"};
  return std::any_of(std::begin(kSuffixes), std::end(kSuffixes),
                     [name](std::string_view s) { return name.ends_with(s); });
}

class Loader {
 public:
  // repacked: where the weights of the bf16 GEMM sites get their repacked copies (null: none are
  // made): FP8 ones when fp8_pairs; Q8_0/Q4_K/Q5_K/Q6_K/IQ4_* ones when bf16_blocks (--block-acts
  // bf16); the same ones and the Q2_K/Q3_K ones with int8 activations when int8_tiles (the int8
  // tile kernels, on AVX-512 VNNI or AVX2).
  Loader(const Checkpoint& ckpt, bool int8_block_activations, ModelWeights* repacked,
         bool fp8_pairs, bool bf16_blocks, bool int8_tiles)
      : ckpt_(ckpt),
        int8_(int8_block_activations),
        fp8_pairs_(fp8_pairs),
        bf16_blocks_(bf16_blocks),
        int8_tiles_(int8_tiles),
        repacked_(repacked) {}

  bool Has(const std::string& name) const { return ckpt_.Has(name); }

  TensorView Get(const std::string& name, const std::vector<int64_t>& shape) const {
    TensorView v = ckpt_.Get(name);
    DSINFER_CHECK(v.shape() == shape, "tensor shape not checked against the table");
    return v;
  }

  // `prefix.weight` [rows, cols], with `prefix.weight_scale_inv` when it is F8_E4M3.
  WeightView Linear(const std::string& prefix, int64_t rows, int64_t cols) const {
    TensorView v = Get(prefix + ".weight", {rows, cols});
    WeightView w{.dtype = v.dtype(), .rows = rows, .cols = cols, .data = v.data};
    w.int8_activations = IsBlockDType(v.dtype()) && int8_;
    if (v.dtype() == DType::kF8E4M3)
      w.scales = Get(prefix + ".weight_scale_inv", BlockScaleShape(rows, cols)).as<float>().data();
    return w;
  }

  // Linear() of a site the bf16 numerics multiply with `LinearBf16` (docs/numerics.md, "Where
  // activations are rounded"): an FP8 weight gets its repacked copy when copies are made.
  WeightView Bf16Site(const std::string& prefix, int64_t rows, int64_t cols) const {
    DSINFER_CHECK(IsBf16Site(prefix + ".weight"), "IsBf16Site misses " + prefix);
    WeightView w = Linear(prefix, rows, cols);
    const bool fp8 = fp8_pairs_ && w.dtype == DType::kF8E4M3;
    const bool bf16 = bf16_blocks_ && Bf16BlockDtype(w.dtype);
    const bool int8 = int8_tiles_ && w.int8_activations && qblocks::Int8TileDtype(w.dtype);
    const bool blocks = bf16 || int8;
    w.repacked_int8 = int8 && !bf16;
    if (repacked_ != nullptr && (fp8 || blocks)) {
      repacked_->repacked.push_back(blocks ? RepackBlocksBf16(w) : RepackFp8Pairs(w));
      repacked_->repacked_from.push_back(prefix + ".weight");
      w.repacked = &repacked_->repacked.back()->view;
    }
    return w;
  }

  // A 1-D f32 vector stored as BF16, F16 or F32 (norm weights, biases).
  std::vector<float> Vector(const std::string& name, int64_t n) const {
    TensorView v = Get(name, {n});
    std::vector<float> out(n);  // [n]
    WeightView w{.dtype = v.dtype(), .rows = 1, .cols = n, .data = v.data};
    DecodeRow(w, 0, out.data());
    return out;
  }

 private:
  const Checkpoint& ckpt_;
  bool int8_;
  bool fp8_pairs_;
  bool bf16_blocks_;
  bool int8_tiles_;
  ModelWeights* repacked_;  // where repacked copies go (null: none are made)
};

MlpWeights LoadMlp(const Loader& ld, const std::string& p, int64_t hidden, int64_t inter) {
  return MlpWeights{.w1 = ld.Bf16Site(p + ".gate_proj", inter, hidden),
                    .w2 = ld.Bf16Site(p + ".down_proj", hidden, inter),
                    .w3 = ld.Bf16Site(p + ".up_proj", inter, hidden)};
}

IndexerWeights LoadIndexer(const Loader& ld, const ModelConfig& c, const std::string& p) {
  const int64_t heads = *c.index_n_heads, dim = *c.index_head_dim;
  return IndexerWeights{.wq_b = ld.Bf16Site(p + ".wq_b", heads * dim, *c.q_lora_rank),
                        .wk = ld.Bf16Site(p + ".wk", dim, c.hidden_size),
                        .k_norm_w = ld.Vector(p + ".k_norm.weight", dim),
                        .k_norm_b = ld.Vector(p + ".k_norm.bias", dim),
                        .weights_proj = ld.Linear(p + ".weights_proj", heads, c.hidden_size)};
}

void LoadAttention(const Loader& ld, const ModelConfig& c, const std::string& p, LayerWeights& lw) {
  const int64_t h = c.num_attention_heads, hidden = c.hidden_size;
  if (c.q_lora_rank) {
    lw.wq_a = ld.Bf16Site(p + ".q_a_proj", *c.q_lora_rank, hidden);
    lw.q_norm = ld.Vector(p + ".q_a_layernorm.weight", *c.q_lora_rank);
    lw.wq_b = ld.Bf16Site(p + ".q_b_proj", h * c.qk_head_dim(), *c.q_lora_rank);
  } else {
    lw.wq_b = ld.Bf16Site(p + ".q_proj", h * c.qk_head_dim(), hidden);
  }
  lw.wkv_a = ld.Bf16Site(p + ".kv_a_proj_with_mqa", c.kv_lora_rank + c.qk_rope_head_dim, hidden);
  lw.kv_norm = ld.Vector(p + ".kv_a_layernorm.weight", c.kv_lora_rank);
  if (c.kv_b_split) {
    // The kv_b products stay f32 in every mode (layers.h), so block weights take the exact f32
    // path here, not int8 or bf16 activations: the same products as the f32 kv_b bit for bit.
    auto k_b = std::make_shared<OwnedWeight>();
    k_b->view = ld.Linear(p + ".k_b_proj", h * c.kv_lora_rank, c.qk_nope_head_dim);
    k_b->view.int8_activations = false;
    lw.wuk_t = std::move(k_b);
    lw.wv_b = ld.Linear(p + ".v_b_proj", h * c.v_head_dim, c.kv_lora_rank);
    lw.wv_b.int8_activations = false;
  } else {
    lw.wkv_b = ld.Linear(p + ".kv_b_proj", h * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank);
    lw.wuk_t = TransposeHeads(lw.wkv_b, h, c.qk_nope_head_dim + c.v_head_dim, 0, c.qk_nope_head_dim);
  }
  lw.wo = ld.Bf16Site(p + ".o_proj", hidden, h * c.v_head_dim);
}

MoeWeights LoadMoe(const Loader& ld, const ModelConfig& c, const std::string& p,
                   const std::optional<ExpertRange>& range) {
  MoeWeights m;
  m.gate = ld.Linear(p + ".gate", c.n_routed_experts, c.hidden_size);
  const std::string bias = p + ".gate.e_score_correction_bias";
  m.has_gate_bias = ld.Has(bias);
  m.gate_bias = m.has_gate_bias ? ld.Vector(bias, c.n_routed_experts)
                                : std::vector<float>(c.n_routed_experts, 0.0f);
  m.experts.resize(c.n_routed_experts);
  for (int64_t e = 0; e < c.n_routed_experts; ++e)
    if (!range || range->Has(e))
      m.experts[e] =
          LoadMlp(ld, p + ".experts." + std::to_string(e), c.hidden_size, c.moe_intermediate_size);
  if (c.n_shared_experts > 0)
    m.shared_experts = LoadMlp(ld, p + ".shared_experts", c.hidden_size,
                               c.n_shared_experts * c.moe_intermediate_size);
  return m;
}

// One decoder layer `layer` (main or MTP). `indexer_required`: the config declares an indexer
// and this is a main layer (the MTP layer's indexer is used when present).
LayerWeights LoadLayer(const Loader& ld, const ModelConfig& c, int64_t layer, bool indexer_required,
                       const std::optional<ExpertRange>& range) {
  const std::string p = "model.layers." + std::to_string(layer);
  LayerWeights lw;
  lw.layer = layer;
  lw.attn_norm = ld.Vector(p + ".input_layernorm.weight", c.hidden_size);
  lw.ffn_norm = ld.Vector(p + ".post_attention_layernorm.weight", c.hidden_size);
  LoadAttention(ld, c, p + ".self_attn", lw);
  const std::string ip = p + ".self_attn.indexer";
  if (c.has_indexer() && c.q_lora_rank && (indexer_required || ld.Has(ip + ".wq_b.weight")))
    lw.indexer = LoadIndexer(ld, c, ip);
  if (c.is_moe_layer(layer))
    lw.moe = LoadMoe(ld, c, p + ".mlp", range);
  else
    lw.mlp = LoadMlp(ld, p + ".mlp", c.hidden_size, c.intermediate_size);
  return lw;
}

// The checkpoint against the tensor table and its rules (the same call as `inspect`): the first
// problem in table order, naming the tensor, and how many more there are. With `range`, the
// block-scale values of other ranks' experts are not read.
void CheckAgainstTable(const Checkpoint& ckpt, const std::optional<ExpertRange>& range) {
  std::function<bool(std::string_view)> skip;
  if (range)
    skip = [r = *range](std::string_view name) {
      const int64_t e = RoutedExpertOf(name);
      return e >= 0 && !r.Has(e);
    };
  const TensorCheck check = CheckTensors(ckpt, std::move(skip));
  if (check.ok()) return;
  std::string more;
  if (check.problems.size() > 1)
    more = " (and " + std::to_string(check.problems.size() - 1) +
           " more problems; `dsinfer inspect` lists them)";
  throw Error(ckpt.dir() + ": " + check.problems.front() + more);
}

}  // namespace

WeightMemory EstimateWeightMemory(const Checkpoint& ckpt, std::optional<ExpertRange> experts) {
  WeightMemory m;
  for (const std::string& name : ckpt.Names()) {
    const int64_t e = RoutedExpertOf(name);
    if (e >= 0 && experts && !experts->Has(e)) continue;
    const TensorView t = ckpt.Get(name);
    m.tensors += static_cast<int64_t>(t.nbytes());
    if (TileRepackDtype(t.dtype()) && t.shape().size() == 2 && IsBf16Site(name)) {
      const int64_t rows = t.shape()[0], cols = t.shape()[1];
      const int64_t copy = (rows + kBlockTileRows - 1) / kBlockTileRows * BlockTileBytes(t.dtype(), cols);
      const int64_t growth = std::max<int64_t>(0, copy - static_cast<int64_t>(t.nbytes()));
      m.tile_repack += growth;
    }
  }
  const ModelConfig& c = ckpt.config();
  for (int64_t l = 0; l < c.num_hidden_layers + c.num_nextn_predict_layers; ++l) {
    const std::string kv_b = "model.layers." + std::to_string(l) + ".self_attn.kv_b_proj.weight";
    if (!ckpt.Has(kv_b)) continue;
    m.copies += TransposeHeadsBytes(ckpt.Get(kv_b).dtype(), c.kv_lora_rank, c.num_attention_heads,
                                    c.qk_nope_head_dim + c.v_head_dim, 0, c.qk_nope_head_dim);
  }
  return m;
}

ModelWeights LoadWeights(const Checkpoint& ckpt, std::optional<ExpertRange> experts,
                         bool int8_block_activations, bool repack_bf16, bool bf16_blocks,
                         bool int8_tiles) {
  const ModelConfig& c = ckpt.config();
  if (c.scoring_func != "sigmoid")
    throw Error(ckpt.dir() + "/config.json: scoring_func '" + c.scoring_func +
                "' is not supported (only sigmoid)");
  if (c.has_indexer() && !c.q_lora_rank)
    throw Error(ckpt.dir() + "/config.json: the lightning indexer needs q_lora_rank");
  CheckAgainstTable(ckpt, experts);
  ModelWeights w;
  Loader ld(ckpt, int8_block_activations, repack_bf16 || int8_tiles ? &w : nullptr, repack_bf16,
            repack_bf16 && bf16_blocks, int8_tiles);
  w.embed = ld.Linear("model.embed_tokens", c.vocab_size, c.hidden_size);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l)
    w.layers.push_back(LoadLayer(ld, c, l, /*indexer_required=*/true, experts));
  w.norm = ld.Vector("model.norm.weight", c.hidden_size);
  w.head = ld.Linear("lm_head", c.vocab_size, c.hidden_size);
  const int64_t L = c.num_hidden_layers;
  const std::string mp = "model.layers." + std::to_string(L);
  if (c.num_nextn_predict_layers >= 1 && ld.Has(mp + ".eh_proj.weight")) {
    LayerWeights lw = LoadLayer(ld, c, L, /*indexer_required=*/false, experts);
    MtpWeights m;
    m.embed = ld.Has(mp + ".embed_tokens.weight")
                  ? ld.Linear(mp + ".embed_tokens", c.vocab_size, c.hidden_size)
                  : w.embed;
    m.enorm = ld.Vector(mp + ".enorm.weight", c.hidden_size);
    m.hnorm = ld.Vector(mp + ".hnorm.weight", c.hidden_size);
    m.eh_proj = ld.Linear(mp + ".eh_proj", c.hidden_size, 2 * c.hidden_size);
    m.head_norm = ld.Vector(mp + ".shared_head.norm.weight", c.hidden_size);
    m.head = ld.Has(mp + ".shared_head.head.weight")
                 ? ld.Linear(mp + ".shared_head.head", c.vocab_size, c.hidden_size)
                 : w.head;
    lw.mtp = std::move(m);
    w.mtp = std::move(lw);
  }
  return w;
}

}  // namespace dsinfer
