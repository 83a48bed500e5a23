#include "kernels/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "base/error.h"

namespace dsinfer {

namespace {

// YaRN correction dimension for `rotations` turns within the original context (f64).
double CorrectionDim(double rotations, int64_t dim, double base, int64_t orig) {
  return dim * std::log(orig / (rotations * 2 * std::numbers::pi)) / (2 * std::log(base));
}

}  // namespace

RopeTable::RopeTable(int64_t dim, double base, std::optional<YarnParams> yarn) : dim_(dim) {
  DSINFER_CHECK(dim > 0 && dim % 2 == 0, "rope dim must be even");
  const int64_t half = dim / 2;
  freqs_.resize(half);
  for (int64_t i = 0; i < half; ++i)
    freqs_[i] = 1.0f / std::pow(static_cast<float>(base),
                                static_cast<float>(2 * i) / static_cast<float>(dim));
  if (!yarn) return;
  const int64_t orig = yarn->original_max_position_embeddings;
  const double low = std::max(std::floor(CorrectionDim(yarn->beta_fast, dim, base, orig)), 0.0);
  double high = std::min(std::ceil(CorrectionDim(yarn->beta_slow, dim, base, orig)),
                         static_cast<double>(dim - 1));
  if (low == high) high += 0.001;  // avoid a zero-width ramp
  const float lowf = static_cast<float>(low), span = static_cast<float>(high - low);
  const float factor = static_cast<float>(yarn->factor);
  for (int64_t i = 0; i < half; ++i) {
    const float ramp = std::clamp((static_cast<float>(i) - lowf) / span, 0.0f, 1.0f);
    const float smooth = 1.0f - ramp;
    freqs_[i] = freqs_[i] / factor * (1.0f - smooth) + freqs_[i] * smooth;
  }
}

void RopeTable::Reserve(int64_t n) {
  if (n <= positions_) return;
  const int64_t half = dim_ / 2;
  cos_.resize(n * half);
  sin_.resize(n * half);
  for (int64_t p = positions_; p < n; ++p)
    for (int64_t i = 0; i < half; ++i) {
      const float angle = static_cast<float>(p) * freqs_[i];
      cos_[p * half + i] = std::cos(angle);
      sin_[p * half + i] = std::sin(angle);
    }
  positions_ = n;
}

void RopeTable::ApplyInterleaved(float* x, int64_t pos) const {
  DSINFER_DCHECK(pos < positions_);
  const float* c = Cos(pos);
  const float* s = Sin(pos);
  for (int64_t j = 0; j < dim_ / 2; ++j) {
    const float a = x[2 * j], b = x[2 * j + 1];
    x[2 * j] = a * c[j] - b * s[j];
    x[2 * j + 1] = a * s[j] + b * c[j];
  }
}

void RopeTable::ApplyHalves(float* x, int64_t pos) const {
  DSINFER_DCHECK(pos < positions_);
  const int64_t half = dim_ / 2;
  const float* c = Cos(pos);
  const float* s = Sin(pos);
  for (int64_t j = 0; j < half; ++j) {
    const float a = x[j], b = x[j + half];
    x[j] = a * c[j] - b * s[j];
    x[j + half] = a * s[j] + b * c[j];
  }
}

}  // namespace dsinfer
