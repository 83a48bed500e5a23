// `dsinfer inspect FILE.gguf [--context N]`: what a GGUF model file holds — architecture,
// tensors by ggml type, bits per weight (all, routed experts, the rest) — and the memory
// dsinfer needs to run it at a context: the mapped file, the copies loading makes (kv_b, W_UK,
// tensors without kernels: gguf_checkpoint.h), and the latent/indexer caches. Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <string>

#include "format/config.h"
#include "tools/inspect.h"

namespace dsinfer {

struct GgufInspectReport {
  std::string path;
  std::string architecture;
  ModelConfig config;
  int64_t tensors = 0;
  std::map<std::string, int64_t> tensors_by_type;  // ggml type name → count
  std::map<std::string, uint64_t> bytes_by_type;
  // bytes: tensor data of all parts; experts: ffn_*_exps; copy_bytes: the copies made at load
  // (kv_b rebuilt or decoded, W_UK transposed, Q4_0/Q4_1/Q5_0/Q5_1 tensors; GgufDecodedBytes).
  SizeFigures size;
};

GgufInspectReport InspectGguf(const std::string& path, int64_t context);
std::string FormatGgufInspect(const GgufInspectReport& r);
nlohmann::json GgufInspectJson(const GgufInspectReport& r);

}  // namespace dsinfer
