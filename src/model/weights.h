// The model's weights as kernel views into the mmapped checkpoint (FP8 stays FP8; only norm
// vectors, biases and the router bias are copied to f32). Loading first judges the checkpoint
// with `CheckTensors` (model/tensor_table.h, docs/checkpoint.md) — the same call `inspect`
// makes — and names the tensor, the accepted dtypes and the expected shape on failure. Names follow
// DeepSeek's reference (docs/model.md §8.2); the HF tensor names they map from are in weights.cc.
// Immutable after Load; thread-safe to read.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "format/checkpoint.h"
#include "kernels/weight.h"
#include "model/expert_parallel.h"

namespace dsinfer {

struct MlpWeights {  // SwiGLU: w2(silu(w1 x) * w3 x)
  WeightView w1;     // gate_proj [inter, hidden]
  WeightView w2;     // down_proj [hidden, inter]
  WeightView w3;     // up_proj   [inter, hidden]
};

struct IndexerWeights {
  WeightView wq_b;              // [index_n_heads * index_head_dim, q_lora_rank]
  WeightView wk;                // [index_head_dim, hidden]
  std::vector<float> k_norm_w;  // [index_head_dim] LayerNorm weight
  std::vector<float> k_norm_b;  // [index_head_dim] LayerNorm bias
  WeightView weights_proj;      // [index_n_heads, hidden]
};

struct MoeWeights {
  WeightView gate;                  // [n_routed_experts, hidden]
  std::vector<float> gate_bias;     // [n_routed_experts] e_score_correction_bias (zeros if absent)
  bool has_gate_bias = false;       // the checkpoint has it: it decides how groups are scored
  std::vector<MlpWeights> experts;  // n_routed_experts (empty views outside a rank's range)
  std::optional<MlpWeights> shared_experts;
};

struct MtpWeights {              // the extra parts of an MTP layer (docs/model.md §7)
  WeightView embed;              // [vocab, hidden] (own copy, else the main embedding)
  std::vector<float> enorm;      // [hidden]
  std::vector<float> hnorm;      // [hidden]
  WeightView eh_proj;            // [hidden, 2 * hidden]
  std::vector<float> head_norm;  // [hidden] shared_head.norm
  WeightView head;               // [vocab, hidden] shared_head.head (else lm_head)
};

struct LayerWeights {
  int64_t layer = 0;
  std::vector<float> attn_norm;  // [hidden] input_layernorm
  std::vector<float> ffn_norm;   // [hidden] post_attention_layernorm
  // MLA
  std::optional<WeightView> wq_a;  // [q_lora_rank, hidden] (absent: q_lora_rank null)
  std::vector<float> q_norm;       // [q_lora_rank]
  WeightView wq_b;                 // [n_heads * qk_head_dim, q_lora_rank or hidden (q_proj)]
  WeightView wkv_a;                // [kv_lora_rank + qk_rope_head_dim, hidden]
  std::vector<float> kv_norm;      // [kv_lora_rank]
  WeightView wkv_b;                // [n_heads * (qk_nope_head_dim + v_head_dim), kv_lora_rank]
  // W_UK_hᵀ of every head, [n_heads * kv_lora_rank, qk_nope_head_dim]: an exact re-layout of
  // wkv_b's key rows made at load, so the query absorption is a row product (streams its
  // weights) instead of a transposed one. Null where FP8 blocks cannot move whole (dims not
  // multiples of 128): the absorption then reads wkv_b transposed.
  std::shared_ptr<const OwnedWeight> wuk_t;
  // ModelConfig::kv_b_split (a GGUF's attn_k_b / attn_v_b): wkv_b is empty, wuk_t views the
  // mapped k_b_proj as stored (no copy) and wv_b is v_b_proj [n_heads * v_head_dim,
  // kv_lora_rank]; both multiply f32 activations (block weights: the exact f32 path).
  WeightView wv_b;
  WeightView wo;  // [hidden, n_heads * v_head_dim]
  std::optional<IndexerWeights> indexer;
  // FFN: exactly one of the two
  std::optional<MlpWeights> mlp;
  std::optional<MoeWeights> moe;
  std::optional<MtpWeights> mtp;
};

struct ModelWeights {
  WeightView embed;                  // [vocab, hidden]
  std::vector<LayerWeights> layers;  // num_hidden_layers
  std::vector<float> norm;           // [hidden]
  WeightView head;                   // [vocab, hidden]
  std::optional<LayerWeights> mtp;   // layer num_hidden_layers, if present in the checkpoint
  // The FP8 weights of the bf16 GEMM sites repacked for the bf16 kernels (LoadWeights with
  // repack_bf16; with bf16_blocks their Q8_0/Q4_K/Q5_K/Q6_K/IQ4_* weights too; with int8_tiles their
  // block weights, every type, for the int8 tile kernels), which their views point at
  // (WeightView::repacked).
  std::vector<std::shared_ptr<const OwnedWeight>> repacked;
  std::vector<std::string> repacked_from;  // the tensors they were made from
};

// Throws Error naming the tensor and the expected dtype/shape for anything missing or wrong
// (the first problem `CheckTensors` finds, and how many more). With `experts` (a rank of an
// expert-parallel job), only those routed experts get views and only their block scales are
// read: the other experts' tensors must still be stored with the right dtypes and shapes, but
// their bytes are never touched. `int8_block_activations` sets
// `WeightView::int8_activations` on every block-quantised weight (Q8_0, Q2_K-Q6_K, IQ4_*:
// LoadOptions::int8_block_activations).
// What the weights of `ckpt` occupy in memory once loaded and read (docs/inspect.md "Memory"):
// every tensor as stored, mapped from the files (with `experts`, of the routed experts only
// those), and the copies LoadWeights makes (the key half of each kv_b, transposed per head;
// a few f32 norm vectors are left out).
// `tile_repack`: what the 16-row tile copy adds, made for bf16 block activations (LoadWeights'
// bf16_blocks: --block-acts bf16, the default in bf16 numerics on AVX512-BF16) and for int8 ones
// on AVX-512 VNNI or AVX2 (int8_tiles) alike: it replaces the Q8_0/Q4_K/Q5_K/Q6_K/IQ4_* weights of the
// bf16 sites (whose mapped pages are dropped), and their Q2_K/Q3_K ones for the int8 tile kernels
// (TileRepackDtype), larger for Q4_K (+2.8%), Q5_K (+2.3%), Q3_K (+3.6%) and IQ4_XS
// (+1.5%) and, for a row count
// that is not a multiple of 16, by the padding rows.
struct WeightMemory {
  int64_t tensors = 0;
  int64_t copies = 0;
  int64_t tile_repack = 0;
  int64_t total(bool tile_copy = false) const { return tensors + copies + (tile_copy ? tile_repack : 0); }
};
WeightMemory EstimateWeightMemory(const Checkpoint& ckpt,
                                  std::optional<ExpertRange> experts = std::nullopt);

// `repack_bf16`: the FP8 weights that the bf16 numerics multiply with `LinearBf16` (the inputs
// docs/numerics.md lists) also get a copy repacked for the AVX512-BF16 kernels
// (RepackFp8Pairs; as many bytes as those weights; the mapped originals stay for f32 numerics).
// `bf16_blocks` (with repack_bf16): so do the Q8_0/Q4_K/Q5_K/Q6_K/IQ4_* weights of those sites
// (RepackBlocksBf16), which then multiply bf16 activations instead of int8 ones.
// `int8_tiles` (with int8_block_activations, on a CPU with AVX-512 VNNI or AVX2): the Q8_0/Q4_K/Q5_K/Q6_K/IQ4_*
// (and Q2_K/Q3_K, which the bf16 path does not take) weights of those sites get the same 16-row tile copy (WeightMemory::tile_repack counts its
// growth), which the int8 tile kernels multiply (kernels/qblocks.h Int8TileRows: the
// specification's bits).
ModelWeights LoadWeights(const Checkpoint& ckpt, std::optional<ExpertRange> experts = std::nullopt,
                         bool int8_block_activations = true, bool repack_bf16 = false,
                         bool bf16_blocks = false, bool int8_tiles = false);

}  // namespace dsinfer
