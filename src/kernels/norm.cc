#include "kernels/norm.h"

#include <cmath>

namespace dsinfer {

void RmsNorm(const float* x, int64_t n, int64_t dim, const float* w, float eps, float* y) {
  for (int64_t i = 0; i < n; ++i) {
    const float* xi = x + i * dim;
    double ss = 0;
    for (int64_t j = 0; j < dim; ++j) ss += static_cast<double>(xi[j]) * xi[j];
    const float ms = static_cast<float>(ss / dim);
    const float inv = 1.0f / std::sqrt(ms + eps);
    float* yi = y + i * dim;
    for (int64_t j = 0; j < dim; ++j) yi[j] = xi[j] * inv * w[j];
  }
}

void LayerNorm(const float* x, int64_t n, int64_t dim, const float* w, const float* b, float eps,
               float* y) {
  for (int64_t i = 0; i < n; ++i) {
    const float* xi = x + i * dim;
    double sum = 0;
    for (int64_t j = 0; j < dim; ++j) sum += xi[j];
    const double mean = sum / dim;
    double var = 0;
    for (int64_t j = 0; j < dim; ++j) var += (xi[j] - mean) * (xi[j] - mean);
    const float meanf = static_cast<float>(mean);
    const float inv = 1.0f / std::sqrt(static_cast<float>(var / dim) + eps);
    float* yi = y + i * dim;
    for (int64_t j = 0; j < dim; ++j) yi[j] = (xi[j] - meanf) * inv * w[j] + b[j];
  }
}

void Softmax(float* x, int64_t n) {
  float m = -INFINITY;
  for (int64_t i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - m);
    sum += x[i];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

float Silu(float x) { return x / (1.0f + std::exp(-x)); }
float Sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

}  // namespace dsinfer
