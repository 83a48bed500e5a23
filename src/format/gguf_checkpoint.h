// A GGUF model file (or split set `NAME-00001-of-0000N.gguf`) as llama.cpp's converter writes
// DeepSeek models (architectures `deepseek2` and `deepseek32`), opened as a `Checkpoint` with
// the HF tensor names and layouts the engine loads (docs/gguf.md, "Model loading"):
//  * metadata → ModelConfig (`GgufModelConfig`);
//  * llama.cpp names → HF names; stacked experts (`ffn_*_exps`, [n_expert, out, in]) are cut
//    into per-expert tensors; MLA's kv_b split by recent converters (`attn_k_b`, k_b transposed
//    per head, and `attn_v_b`) becomes `k_b_proj` / `v_b_proj` as stored
//    (ModelConfig::kv_b_split), a whole `attn_kv_b` (older files) `kv_b_proj`;
//  * F32 / F16 / BF16 tensors and the quantised ones (Q8_0, Q2_K-Q6_K, IQ4_*) stay mmapped as
//    the file stores them (zero copy; quantised rows are whole ggml blocks, which the kernels
//    multiply directly: kernels/qblocks.h). Decoded into owned f32: a quantised attn_kv_b (the
//    model transposes its per-head blocks, which block rows do not allow) and the types without
//    kernels (Q4_0, Q4_1, Q5_0, Q5_1).
// Errors name the file and the key or tensor: unknown architecture, a missing or mistyped key,
// a tensor whose dims contradict the metadata, an undecodable type, a missing split part.
#pragma once

#include <string>

#include "format/checkpoint.h"
#include "format/gguf.h"

namespace dsinfer {

// True if `path` names a GGUF file (ends in ".gguf").
bool IsGgufPath(const std::string& path);

// The parts of a split set, in order (`path` itself when it is not named -0000k-of-0000N.gguf).
std::vector<std::string> GgufSplitPaths(const std::string& path);

// The model configuration a deepseek2 / deepseek32 file's metadata describes.
ModelConfig GgufModelConfig(const GgufFile& file);

// Bytes of the copies loading makes: a whole kv_b (attn_kv_b, older files) in f32 when quantised
// and its W_UK half transposed per head (for the query absorption; kv_b's element type), and
// every tensor of a type without kernels (Q4_0, Q4_1, Q5_0, Q5_1) in f32. The split form
// (attn_k_b / attn_v_b) is multiplied as stored: no copy. `c`: the file's configuration (its
// head dimensions).
uint64_t GgufDecodedBytes(const std::vector<GgufFile>& files, const ModelConfig& c);
// Bytes of every tensor as stored (what stays mapped and becomes resident as it is read).
uint64_t GgufTensorBytes(const std::vector<GgufFile>& files);

// Opens the file or set. Before decoding anything, fails with the figures when the resident
// weights (mapped tensors + the copies loading makes) would exceed the memory available (MemAvailable in
// /proc/meminfo).
Checkpoint OpenGgufCheckpoint(const std::string& path);

}  // namespace dsinfer
