// `dsinfer inspect`: what a checkpoint directory holds and whether dsinfer can run it.
//
// Judges the checkpoint by `CheckTensors` (model/tensor_table.h), the very call weight loading
// makes, and loads its tokenizer as the text commands do (`Tokenizer::ForModel`), so its
// verdicts are those of `run`/`logits`; counts parameters, bytes by dtype, FP8 block-scale
// statistics and the per-token cache sizes. The JSON form (docs/inspect.md) is a stable interface:
// other tools verify checkpoints tensor by tensor with its `tensors` array. Thread-safe: pure
// functions.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "format/config.h"
#include "model/tensor_table.h"

namespace dsinfer {

struct InspectOptions {
  std::string dir{};
  bool checksums = false;  // FNV-1a 64 of every tensor's raw bytes
  int64_t context = 4096;  // tokens of context for the memory figure
};

struct ScaleStats {  // over every `.weight_scale_inv` value
  int64_t count = 0;
  double min = 0, max = 0, geomean = 0;
  double pow2_fraction = 0;  // values that are exact powers of two
};

struct CacheBytes {      // per token and layer
  int64_t mla_f32 = 0;   // c [kv_lora] + k_pe [rope] in f32
  int64_t mla_bf16 = 0;  // the same in bf16
  int64_t mla_fp8 = 0;   // DeepSeek's layout: e4m3 c + f32 scale per 128 + bf16 k_pe (656 B)
  int64_t indexer = 0;   // e4m3 key [d_I] + f32 scale per 128 (0 without indexer)
};

// Bits per weight and the memory to run a model at a context, as `inspect` reports them for a
// checkpoint directory and a GGUF file alike (docs/inspect.md "Memory").
struct SizeFigures {
  uint64_t bytes = 0;           // every tensor as stored (mapped from the files)
  int64_t weights = 0;          // elements of the tensors that are not FP8 block scales
  uint64_t expert_bytes = 0;    // the routed experts' tensors
  int64_t expert_weights = 0;
  uint64_t copy_bytes = 0;      // copies made at load
  // What the 16-row tile copy of the block weights adds (WeightMemory::tile_repack): made for bf16
  // block activations (the default in bf16 numerics on a CPU with AVX512-BF16) and for int8 ones
  // on a CPU with AVX-512 VNNI or AVX2 (the default elsewhere); not with --block-acts f32.
  uint64_t tile_repack = 0;
  int64_t context = 0;
  uint64_t cache_f32 = 0, cache_bf16 = 0, cache_fp8 = 0;  // the main layers' caches at `context`

  double bits_per_weight() const { return weights ? 8.0 * bytes / weights : 0; }
  uint64_t resident() const { return bytes + copy_bytes; }  // the weights once read
  // The caches of `config`'s main layers at `tokens` (CacheBytesPerToken).
  void SetContext(const ModelConfig& config, int64_t tokens);
  // Two summary lines: bits per weight (all, routed experts, the rest) and the memory at the
  // context; `copies` names what the copies are.
  std::string Describe(const std::string& indent, const std::string& copies) const;
  // weights, bits_per_weight, routed_expert_bytes, routed_expert_weights,
  // weights_resident_bytes, tile_repack_bytes, context, cache_bytes {f32, bf16, fp8}.
  void AddJson(nlohmann::json& j) const;
};

struct InspectedTensor {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  uint64_t nbytes = 0;
  std::optional<uint64_t> fnv1a64;
};

struct InspectReport {
  std::string dir{};
  std::optional<ModelConfig> config;
  std::vector<std::string> errors;    // why the checkpoint is unusable (config, open failure)
  std::vector<std::string> problems;  // CheckTensors' lines: every tensor it cannot load
  ParameterCounts params;             // of the table tensors present with the right shape
  std::map<std::string, uint64_t> bytes_by_dtype;
  uint64_t total_bytes = 0;
  // Bits per weight (bytes = total_bytes; the routed experts by RoutedExpertOf) and memory at
  // the context (copies: EstimateWeightMemory's).
  SizeFigures size;
  ScaleStats fp8_scales;
  std::vector<std::string> missing;           // required table tensors absent
  std::vector<std::string> missing_optional;  // e.g. an omitted MTP layer
  std::vector<std::string> unexpected;        // present but unused (e.g. a scale of a BF16 weight)
  std::vector<std::string> bad;               // wrong dtype/shape or invalid scales, with details
  bool has_mtp = false;                       // every MTP tensor present
  std::string tokenizer_error;                // empty: tokenizer.json loads
  CacheBytes cache;
  std::vector<InspectedTensor> tensors;  // sorted by name

  // The weights load: what `logits` and `run --ids` need (no tokenizer read).
  bool usable_token_ids() const { return errors.empty() && missing.empty() && bad.empty(); }
  // Every command runs it: the weights load and so does the tokenizer (text commands).
  bool usable() const { return usable_token_ids() && tokenizer_error.empty(); }
};

InspectReport Inspect(const InspectOptions& options);
CacheBytes CacheBytesPerToken(const ModelConfig& config);
// FNV-1a 64 (offset basis 0xcbf29ce484222325, prime 0x100000001b3).
uint64_t Fnv1a64(const void* data, size_t size);

// Human-readable summary (stdout of `dsinfer inspect`).
std::string FormatInspectSummary(const InspectReport& report);
// Why the checkpoint is unusable (missing / wrong tensors, errors); empty when usable.
std::string FormatInspectProblems(const InspectReport& report);
// The `--json` object (docs/inspect.md).
nlohmann::json InspectJson(const InspectReport& report);

}  // namespace dsinfer
