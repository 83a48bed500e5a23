#include "kernels/weight.h"

#include <array>
#include <bit>
#include <cstring>

#include "base/error.h"

namespace dsinfer {

const float* E4M3Table() {
  static const std::array<float, 256> table = [] {
    std::array<float, 256> t{};
    for (int i = 0; i < 256; ++i) t[i] = E4M3ToFloat(static_cast<uint8_t>(i));
    return t;
  }();
  return table.data();
}

namespace {

void DecodeFp8Row(const WeightView& w, int64_t row, float* out) {
  const float* lut = E4M3Table();
  const auto* q = static_cast<const uint8_t*>(w.data) + row * w.cols;
  const float* s = w.scales + (row / 128) * w.scale_cols();
  for (int64_t c0 = 0; c0 < w.cols; c0 += 128) {
    const float scale = s[c0 / 128];
    const int64_t c1 = c0 + 128 < w.cols ? c0 + 128 : w.cols;
    for (int64_t c = c0; c < c1; ++c) out[c] = lut[q[c]] * scale;
  }
}

}  // namespace

void DecodeRow(const WeightView& w, int64_t row, float* out) {
  DSINFER_DCHECK(row >= 0 && row < w.rows);
  switch (w.dtype) {
    case DType::kF8E4M3:
      DSINFER_CHECK(w.scales != nullptr, "FP8 weight without block scales");
      DecodeFp8Row(w, row, out);
      return;
    case DType::kBF16: {
      const auto* p = static_cast<const uint16_t*>(w.data) + row * w.cols;
      for (int64_t c = 0; c < w.cols; ++c)
        out[c] = std::bit_cast<float>(static_cast<uint32_t>(p[c]) << 16);
      return;
    }
    case DType::kF16: {
      const auto* p = static_cast<const uint16_t*>(w.data) + row * w.cols;
      for (int64_t c = 0; c < w.cols; ++c) out[c] = F16ToFloat(p[c]);
      return;
    }
    case DType::kF32:
      std::memcpy(out, static_cast<const float*>(w.data) + row * w.cols, w.cols * sizeof(float));
      return;
    default:
      DSINFER_CHECK(false, "unsupported weight dtype");
  }
}

}  // namespace dsinfer
