// `dsinfer inspect FILE.gguf [--context N]`: what a GGUF model file holds — architecture,
// tensors by ggml type, bits per weight (all, routed experts, the rest) — and the memory
// dsinfer needs to run it at a context: the mapped file, the f32 copies it decodes quantised
// tensors into at load (gguf_checkpoint.h), and the latent/indexer caches. Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <string>

#include "format/config.h"

namespace dsinfer {

struct GgufInspectReport {
  std::string path;
  std::string architecture;
  ModelConfig config;
  int64_t tensors = 0;
  std::map<std::string, int64_t> tensors_by_type;  // ggml type name → count
  std::map<std::string, uint64_t> bytes_by_type;
  uint64_t file_bytes = 0;    // tensor data, all parts
  int64_t weights = 0;        // elements
  uint64_t expert_bytes = 0;  // ffn_*_exps
  int64_t expert_weights = 0;
  uint64_t decoded_bytes = 0;  // f32 copies made at load (kv_b: rebuilt, or quantised)
  int64_t context = 0;
  uint64_t cache_bytes_f32 = 0, cache_bytes_bf16 = 0, cache_bytes_fp8 = 0;  // at `context`

  double bits_per_weight() const { return weights ? 8.0 * file_bytes / weights : 0; }
};

GgufInspectReport InspectGguf(const std::string& path, int64_t context);
std::string FormatGgufInspect(const GgufInspectReport& r);
nlohmann::json GgufInspectJson(const GgufInspectReport& r);

}  // namespace dsinfer
