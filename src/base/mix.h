// splitmix64 (Steele, Lea & Flood): a fast bijective 64-bit mix, used for deterministic
// synthetic data (generated checkpoints, benchmark weights and caches) and the prefix cache's
// hash chain. Not cryptographic. Thread-safe: pure functions.
#pragma once

#include <cstdint>

namespace dsinfer {

inline constexpr uint64_t kSplitMixGamma = 0x9E3779B97F4A7C15ull;

// The finaliser alone: a bijection with good avalanche.
constexpr uint64_t Mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// One splitmix64 step from `x`: Mix64(x + gamma).
constexpr uint64_t SplitMix64(uint64_t x) { return Mix64(x + kSplitMixGamma); }

}  // namespace dsinfer
