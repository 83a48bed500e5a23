// Deterministic random initialisation of one checkpoint tensor (the generator's numerics).
//
// Every value depends only on (seed, tensor name, element index): a counter-based generator
// (splitmix64 of `key + (i+1)·φ`, key = hash(seed, name)) gives each element its own 64 random
// bits, so the order in which tensors or elements are generated, and the number of threads,
// never change a byte. Values are Irwin–Hall(4) approximations of a normal (the sum of four
// 16-bit uniforms, rescaled to unit variance, bounded at ±3.46σ): cheap enough that the `tiny`
// preset's 129280-row embeddings generate in a fraction of a second.
//
// The init keeps activations O(1) through the layers and keeps discrete decisions (router,
// indexer top-k) away from near-ties; see `InitFor` for each role's distribution and why.
// Thread-safe: pure functions (the fills parallelise internally with OpenMP).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "format/config.h"
#include "model/tensor_table.h"

namespace dsinfer {

// value = mean + std · z, z ≈ N(0, 1).
struct InitSpec {
  float mean = 0.0f;
  float std = 0.0f;
};

InitSpec InitFor(const TensorEntry& entry, const ModelConfig& config);

// 64-bit key of one tensor's random stream.
uint64_t TensorKey(uint64_t seed, std::string_view name);
// The unit-variance random value number `index` of the stream `key`.
float UnitRandom(uint64_t key, uint64_t index);

// Fills `out` (exactly `entry`'s byte size) with `entry`'s values drawn from `spec`, converted to
// its dtype (BF16 round-to-nearest-even, F32). Not for quantised linears.
void FillPlain(const TensorEntry& entry, uint64_t key, InitSpec spec, std::span<std::byte> out);

// A quantised linear `[rows, cols]`: draws f32 weights, and per 128×128 block stores
// scale = amax / 448 (f32, not rounded to a power of two) and codes = e4m3(w / scale).
// `codes` may be empty (only the scales are computed); `scales` has
// ceil(rows/128)·ceil(cols/128) entries.
void FillFp8(int64_t rows, int64_t cols, uint64_t key, InitSpec spec, std::span<std::byte> codes,
             std::span<float> scales);

}  // namespace dsinfer
