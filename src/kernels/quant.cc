#include "kernels/quant.h"

#include <algorithm>
#include <cmath>

#include "base/error.h"
#include "format/dtype.h"
#include "kernels/weight.h"

namespace dsinfer {

void Hadamard(float* x, int64_t n) {
  DSINFER_CHECK(n > 0 && (n & (n - 1)) == 0, "Hadamard size must be a power of two");
  for (int64_t h = 1; h < n; h *= 2)
    for (int64_t i = 0; i < n; i += 2 * h)
      for (int64_t j = i; j < i + h; ++j) {
        const float a = x[j], b = x[j + h];
        x[j] = a + b;
        x[j + h] = a - b;
      }
  const float scale = 1.0f / std::sqrt(static_cast<float>(n));
  for (int64_t i = 0; i < n; ++i) x[i] *= scale;
}

void ActQuant(const float* x, int64_t n, uint8_t* codes, float* scales) {
  for (int64_t b0 = 0, blk = 0; b0 < n; b0 += kQuantBlock, ++blk) {
    const int64_t b1 = std::min(b0 + kQuantBlock, n);
    float amax = 0;
    for (int64_t i = b0; i < b1; ++i) amax = std::max(amax, std::fabs(x[i]));
    const float s = Ue8m0Scale(amax);
    scales[blk] = s;
    for (int64_t i = b0; i < b1; ++i) codes[i] = FloatToE4M3(std::clamp(x[i] / s, -448.0f, 448.0f));
  }
}

void Dequant(const uint8_t* codes, const float* scales, int64_t n, float* y) {
  const float* lut = E4M3Table();
  for (int64_t i = 0; i < n; ++i) y[i] = lut[codes[i]] * scales[i / kQuantBlock];
}

}  // namespace dsinfer
