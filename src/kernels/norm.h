// Row-wise normalisations and element-wise activations (f32 in, f32 out; reductions in f64 so
// that the result is the correctly rounded definition up to one final rounding).
// Thread-safe: pure functions on caller buffers.
#pragma once

#include <cstdint>

namespace dsinfer {

// y[i,:] = x[i,:] / sqrt(mean(x[i,:]²) + eps) * w   for n rows of `dim`. y may alias x.
void RmsNorm(const float* x, int64_t n, int64_t dim, const float* w, float eps, float* y);

// y = (x - mean) / sqrt(var + eps) * w + b, population variance. y may alias x.
void LayerNorm(const float* x, int64_t n, int64_t dim, const float* w, const float* b, float eps,
               float* y);

// In-place softmax over x[0..n).
void Softmax(float* x, int64_t n);

float Silu(float x);
float Sigmoid(float x);

}  // namespace dsinfer
