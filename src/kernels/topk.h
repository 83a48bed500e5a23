// Top-k selection with the project-wide tie rule: larger score first, equal scores → lower index
// wins (NUMERICS.md §8). Partial selection (nth_element), not a full sort.
// Thread-safe: pure function.
#pragma once

#include <cstdint>
#include <vector>

namespace dsinfer {

// Indices of the k largest of scores[0..n) (k ≤ n), returned in ascending index order.
std::vector<int32_t> TopK(const float* scores, int64_t n, int64_t k);

}  // namespace dsinfer
