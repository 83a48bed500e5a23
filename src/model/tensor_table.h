// The one list of every tensor a DeepSeek-V3.2-class checkpoint holds (docs/model.md §8.1, §7),
// derived from its ModelConfig, and the one set of rules for what the engine accepts in each
// (docs/checkpoint.md): which tensors are required, which dtypes each may be stored in, its
// shape, and the FP8 block-scale rule. The checkpoint generator writes the table; weight loading
// (`LoadWeights`) and `inspect` both judge a checkpoint with `CheckTensors`, so `inspect` calls
// a checkpoint usable exactly when it loads. Names are the Hugging Face (safetensors) names; a
// loader of another container (GGUF) maps its names to these and checks through the same call.
// Thread-safe: pure functions.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "format/checkpoint.h"
#include "format/config.h"
#include "format/dtype.h"
#include "format/safetensors.h"

namespace dsinfer {

enum class TensorRole : uint8_t {
  kEmbedding,   // token embedding rows (also the MTP layer's copy)
  kHead,        // lm_head / MTP shared_head.head
  kNormWeight,  // RMSNorm / LayerNorm weight (init 1)
  kNormBias,    // LayerNorm bias (init 0)
  kLinear,      // a projection `[out, in]`; FP8 + `.weight_scale_inv` when `quantized`
  kBlockScale,  // `<matrix>.weight_scale_inv`, f32 `[ceil(out/128), ceil(in/128)]`
  kGate,        // MoE router weight, bf16 `[n_routed_experts, hidden]`
  kGateBias,    // `e_score_correction_bias`, f32 `[n_routed_experts]` (optional)
};

// The dtypes the engine computes with, by role (whatever the config's `quantization_config`
// says; it only decides what the generator writes). Matrices (embedding, head, linear, gate):
// F8_E4M3 (then with an F32 block scale), BF16, F16, F32. Vectors (norm weight/bias, gate
// bias): BF16, F16, F32. Block scales: F32.
std::span<const DType> AcceptedDTypes(TensorRole role);
// "BF16, F16 or F32" (F8_E4M3 written "F8_E4M3 + F32 block scale").
std::string AcceptedDTypesText(TensorRole role);
// `<prefix>.weight` → `<prefix>.weight_scale_inv`.
std::string BlockScaleName(std::string_view weight_name);
// The block-scale grid of an FP8 `[rows, cols]` weight: [ceil(rows/128), ceil(cols/128)].
std::vector<int64_t> BlockScaleShape(int64_t rows, int64_t cols);

struct TensorEntry {
  std::string name;  // HF name, e.g. "model.layers.3.mlp.experts.7.up_proj.weight"
  DType dtype;
  std::vector<int64_t> shape;  // [out, in] for linears
  TensorRole role;
  int64_t layer = -1;      // -1 for embedding / final norm / head
  bool quantized = false;  // written as F8_E4M3 with a kBlockScale sibling (the generator)
  // Presence. `required`: must be stored. Otherwise optional, unless `required_with` names a
  // tensor that is stored: then this one must be too (an MTP layer is all there once its
  // `eh_proj` is; an MTP indexer once its `wq_b` is). A kBlockScale entry follows neither: it
  // is required exactly when its weight is stored as F8_E4M3 (any matrix stored as F8_E4M3
  // needs its `.weight_scale_inv`, listed here or not).
  bool required = true;
  std::string required_with{};
};

// Every tensor of the checkpoint in a fixed order: embedding, layers 0..L-1, MTP layers
// (L..L+num_nextn_predict_layers-1), final norm, head. A quantized linear is followed by its
// block scale entry. Linears are quantized when the config has a `quantization_config` (the
// official FP8 checkpoint), BF16 without one (a BF16 conversion).
//
// `checkpoint_tensors`: how many tensors the checkpoint being checked holds. The config's counts
// (layers, experts, MTP layers) are then checked against it while the table grows: more
// required tensors (block scales aside: a BF16 checkpoint has none) than the checkpoint holds
// (or more entries in all than 4x its count plus
// 4096) is an Error naming the counts, raised before the table takes more memory than the
// checkpoint's own tensor list does.
std::vector<TensorEntry> TensorTable(const ModelConfig& config,
                                     std::optional<size_t> checkpoint_tensors = std::nullopt);

// The verdict on a checkpoint's stored tensors against the table of its config. Problems are
// listed in table order, each naming its tensor.
struct TensorCheck {
  std::vector<std::string> problems;          // every reason it cannot load, one line each
  std::vector<std::string> missing;           // required tensors absent (names)
  std::vector<std::string> bad;               // "<tensor>: expected ..., found ..." and scales
  std::vector<std::string> missing_optional;  // optional table tensors absent
  std::vector<std::string> unexpected;        // stored but unused (sorted): reported, harmless
  std::vector<TensorEntry> present;           // table entries stored and valid
  bool has_mtp = false;                       // the config has MTP layers, every tensor stored

  bool ok() const { return problems.empty(); }
};

// How a check reads the stored tensors: every name, and a view by name (nullopt: absent).
// `skip_values` (optional): weights whose block-scale values are not read (their dtypes and
// shapes still are): a rank of an expert-parallel job never touches the pages of other ranks'
// experts (model/expert_parallel.h).
struct StoredTensors {
  std::vector<std::string> names;
  std::function<std::optional<TensorView>(std::string_view)> find;
  std::function<bool(std::string_view weight_name)> skip_values{};
  // A share of the routed experts (`dsinfer split-experts`): tensors for which this is true
  // (other ranks' experts) may be absent, and the table's size is judged against `names` ×
  // `share_of` (the share holds about 1/share_of of the experts).
  std::function<bool(std::string_view name)> may_be_absent{};
  size_t share_of = 1;
};

// Checks `stored` against `TensorTable(config, stored.names.size())` by the rules above: each
// required tensor present; each present table tensor of an accepted dtype and the table's
// shape; each F8_E4M3 matrix with its `.weight_scale_inv`: F32, the block grid's shape, F32
// aligned, every value finite and positive (reads every scale, ~1/4096 of the FP8 bytes).
// Throws `Error` only for a config whose counts exceed the checkpoint (see TensorTable).
TensorCheck CheckTensors(const ModelConfig& config, const StoredTensors& stored);
// The same for a safetensors checkpoint and its own config (a share of the experts, see
// Checkpoint::expert_share, is judged as one: other ranks' experts may be absent).
TensorCheck CheckTensors(const Checkpoint& checkpoint,
                         std::function<bool(std::string_view weight_name)> skip_values = {});

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
