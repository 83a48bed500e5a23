// Shared helpers of the kernel tests: deterministic random data and f64 references.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstring>
#include <cstdint>
#include <random>
#include <vector>

#include "kernels/kv_layout.h"

namespace dsinfer::test {

inline constexpr double kU = 1.0 / (1 << 24);  // unit roundoff of f32

inline std::vector<float> RandomVector(int64_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// `n` cache rows of `row_bytes` in pages of 2^page_shift rows, scattered in memory in reverse
// page order (so a kernel that assumes contiguity fails). Fill rows through `row(t)`.
class PagedBuffer {
 public:
  PagedBuffer(int64_t n, int64_t row_bytes, int page_shift) : shift_(page_shift), row_bytes_(row_bytes) {
    const int64_t rows = int64_t{1} << page_shift, pages = (n + rows - 1) / rows;
    storage_.resize(pages * rows * row_bytes);
    for (int64_t p = 0; p < pages; ++p)
      pages_.push_back(storage_.data() + (pages - 1 - p) * rows * row_bytes);
  }
  std::byte* row(int64_t t) {
    return pages_[t >> shift_] + (t & ((int64_t{1} << shift_) - 1)) * row_bytes_;
  }
  PagedRows view() const { return {pages_.data(), shift_, row_bytes_}; }

 private:
  int shift_;
  int64_t row_bytes_;
  std::vector<std::byte> storage_;
  std::vector<std::byte*> pages_;
};

}  // namespace dsinfer::test
