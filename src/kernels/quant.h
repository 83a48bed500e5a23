// Activation FP8 quantisation (docs/model.md §6.2) and the Hadamard rotation of the indexer
// (docs/model.md §3.5). Thread-safe: pure functions on caller buffers.
#pragma once

#include <cstdint>

namespace dsinfer {

// Activation quantisation block (elements); the last block of a row may be shorter.
inline constexpr int64_t kQuantBlock = 128;
inline int64_t QuantBlocks(int64_t n) { return (n + kQuantBlock - 1) / kQuantBlock; }

// In-place y = H_n · x · n^-0.5 (Sylvester H[i][j] = (-1)^popcount(i&j)); n a power of two.
void Hadamard(float* x, int64_t n);

// act_quant of one row x[0..n): per block s = ue8m0(amax), codes = e4m3(clamp(x/s, ±448)).
// codes: [n] e4m3 bytes, scales: [QuantBlocks(n)] f32.
void ActQuant(const float* x, int64_t n, uint8_t* codes, float* scales);

// y[i] = e4m3(codes[i]) * scales[i / 128].
void Dequant(const uint8_t* codes, const float* scales, int64_t n, float* y);

}  // namespace dsinfer
