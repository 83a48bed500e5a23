#include "kernels/linear.h"

#include <vector>

namespace dsinfer {

float Dot(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  for (; i < n; ++i) acc[i & 7] += a[i] * b[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

void Linear(const float* x, int64_t n, const WeightView& w, float* y, int64_t y_stride) {
  if (y_stride < 0) y_stride = w.rows;
  const bool direct = w.dtype == DType::kF32;
  // Small products stay on one thread: a parallel region costs more than it saves there.
  const bool parallel = w.rows * w.cols * (n + 1) >= kParallelWork;
#pragma omp parallel if (parallel)
  {
    std::vector<float> row(direct ? 0 : w.cols);  // [cols] one decoded weight row
#pragma omp for schedule(dynamic, 32)
    for (int64_t r = 0; r < w.rows; ++r) {
      const float* wr = direct ? static_cast<const float*>(w.data) + r * w.cols : row.data();
      if (!direct) DecodeRow(w, r, row.data());
      for (int64_t t = 0; t < n; ++t) y[t * y_stride + r] = Dot(x + t * w.cols, wr, w.cols);
    }
  }
}

}  // namespace dsinfer
