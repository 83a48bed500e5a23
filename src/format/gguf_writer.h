// Streaming GGUF v3 writer (the layout gguf.h reads): metadata and tensor infos first, then
// each tensor's bytes produced by a callback in pieces, so that neither a multi-GB file
// nor a multi-GB tensor sits in memory. Data offsets are aligned to 32 (the default
// `general.alignment`, which is not written). The file is written as `path + ".partial"` and
// renamed when complete; any failure removes it and throws (Error naming the path for I/O).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "format/gguf.h"

namespace dsinfer {

// Metadata value builders (GgufValue as the reader returns it).
GgufValue GgufU32(uint32_t v);
GgufValue GgufI32(int32_t v);
GgufValue GgufF32(float v);
GgufValue GgufBool(bool v);
GgufValue GgufString(std::string v);
GgufValue GgufStringArray(std::vector<std::string> v);
GgufValue GgufI32Array(const std::vector<int32_t>& v);
GgufValue GgufF32Array(const std::vector<float>& v);

struct GgufTensorSpec {
  std::string name;
  std::vector<int64_t> dims;  // ggml order: dims[0] contiguous (PyTorch [out, in] → {in, out})
  GgmlType type = GgmlType::kF32;
  uint64_t nbytes() const;
};

// Appends bytes of the tensor being written.
using GgufSink = std::function<void(std::span<const std::byte>)>;

// `fill(i, sink)` passes tensor i's bytes to `sink`, in order and in pieces of any size (so a
// tensor never needs to be in memory whole); they must total specs[i].nbytes() (else Error).
void WriteGguf(const std::string& path,
               const std::vector<std::pair<std::string, GgufValue>>& metadata,
               const std::vector<GgufTensorSpec>& specs,
               const std::function<void(size_t, const GgufSink&)>& fill);

}  // namespace dsinfer
