// Minimal writer of NumPy `.npy` files (format version 1.0, little-endian, C order) for
// debugging dumps and CLI outputs. Thread-safe: no shared state.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dsinfer {

// Writes `data` with `shape` as float32 (`<f4`). Throws Error naming `path` on I/O failure.
void WriteNpy(const std::string& path, const float* data, const std::vector<int64_t>& shape);
// Same for int32 (`<i4`).
void WriteNpy(const std::string& path, const int32_t* data, const std::vector<int64_t>& shape);

}  // namespace dsinfer
