// `dsinfer quantize`: an HF checkpoint (the official FP8 block-scaled one, or BF16/F32) → one
// GGUF file in llama.cpp's layout for the `deepseek32` (with indexer) or `deepseek2`
// architecture: llama.cpp's tensor names, stacked experts, MLA's kv_b split into attn_k_b /
// attn_v_b, its metadata keys and the tokenizer as `tokenizer.ggml.*` (docs/gguf.md).
// Streams tensor by tensor: each output tensor is produced row by row from the FP8 blocks
// (decoded with their scales), so memory holds one output tensor, never a BF16 copy of the model.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "format/ggml_types.h"

namespace dsinfer {

struct QuantizeOptions {
  std::string model_dir;
  std::string out_path;
  std::string type = "Q8_0";  // F32 | BF16 | Q8_0 | Q6_K | Q5_K_M | Q4_K_M | IQ4_XS
  std::function<void(uint64_t done, uint64_t total)> progress{};  // bytes written
};

struct QuantizeResult {
  int64_t tensors = 0;
  uint64_t bytes = 0;                                        // tensor data bytes
  int64_t weights = 0;                                       // elements
  std::vector<std::pair<std::string, int64_t>> type_counts;  // ggml type name → tensors
  double bits_per_weight() const { return weights ? 8.0 * bytes / weights : 0; }
};

const std::vector<std::string>& QuantizeTypeNames();

QuantizeResult QuantizeCheckpoint(const QuantizeOptions& o);

}  // namespace dsinfer
