// The one list of every tensor a DeepSeek-V3.2-class checkpoint holds (docs/model.md §8.1, §7),
// derived from its ModelConfig. It drives the checkpoint generator, `inspect`
// (missing/unexpected tensors) and weight loading, so the three can never disagree.
// Thread-safe: pure functions.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "format/config.h"
#include "format/dtype.h"

namespace dsinfer {

enum class TensorRole : uint8_t {
  kEmbedding,   // token embedding rows (also the MTP layer's copy)
  kHead,        // lm_head / MTP shared_head.head
  kNormWeight,  // RMSNorm / LayerNorm weight (init 1)
  kNormBias,    // LayerNorm bias (init 0)
  kLinear,      // a projection `[out, in]`; FP8 + `.weight_scale_inv` when `quantized`
  kBlockScale,  // `<linear>.weight_scale_inv`, f32 `[ceil(out/128), ceil(in/128)]`
  kGate,        // MoE router weight, bf16 `[n_routed_experts, hidden]`
  kGateBias,    // `e_score_correction_bias`, f32 `[n_routed_experts]` (optional)
};

struct TensorEntry {
  std::string name;  // HF name, e.g. "model.layers.3.mlp.experts.7.up_proj.weight"
  DType dtype;
  std::vector<int64_t> shape;  // [out, in] for linears
  TensorRole role;
  int64_t layer = -1;      // -1 for embedding / final norm / head
  bool quantized = false;  // kLinear stored as F8_E4M3 with a kBlockScale sibling
  bool required = true;    // false: may be absent (e.g. MTP layer tensors)
};

// Every tensor of the checkpoint in a fixed order: embedding, layers 0..L-1, MTP layers
// (L..L+num_nextn_predict_layers-1), final norm, head. A quantized linear is followed by its
// block scale entry.
//
// `checkpoint_tensors`: how many tensors the checkpoint being checked holds. The config's counts
// (layers, experts, MTP layers) are then checked against it while the table grows: more
// required tensors than the checkpoint holds (or more entries in all than 4x its count plus
// 4096) is an Error naming the counts, raised before the table takes more memory than the
// checkpoint's own tensor list does.
std::vector<TensorEntry> TensorTable(const ModelConfig& config,
                                     std::optional<size_t> checkpoint_tensors = std::nullopt);

// Parameter counts (elements of weights; FP8 block scales are not parameters).
struct ParameterCounts {
  int64_t total = 0;           // main model: embedding, layers 0..L-1, final norm, lm_head
  int64_t active = 0;          // per token: `total` minus the routed experts not chosen
                               // (each routed expert counts num_experts_per_tok/n_routed_experts)
  int64_t routed_experts = 0;  // all routed-expert weights of the main model
  int64_t indexer = 0;         // lightning-indexer weights of the main model
  int64_t mtp = 0;             // MTP layers, including their embedding and head copies
  int64_t mtp_unique = 0;      // MTP layers without their embedding and head copies
};
// Counts over `entries` (a TensorTable of `config`, or the subset a checkpoint holds).
ParameterCounts CountParameters(const ModelConfig& config, const std::vector<TensorEntry>& entries);

}  // namespace dsinfer
