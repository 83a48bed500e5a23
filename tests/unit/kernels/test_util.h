// Shared helpers of the kernel tests: deterministic random data and f64 references.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace dsinfer::test {

inline constexpr double kU = 1.0 / (1 << 24);  // unit roundoff of f32

inline std::vector<float> RandomVector(int64_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

}  // namespace dsinfer::test
