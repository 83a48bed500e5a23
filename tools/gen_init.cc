#include "tools/gen_init.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "base/error.h"
#include "base/mix.h"
#include "base/threads.h"
#include "format/dtype.h"

namespace dsinfer {
namespace {

constexpr int64_t kBlock = 128;
constexpr uint64_t kGolden = kSplitMixGamma;

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

float Rsqrt(int64_t n) { return static_cast<float>(1.0 / std::sqrt(static_cast<double>(n))); }

// Plain-linear / FP8-linear std: 1/sqrt(fan_in) keeps each projection's output at the scale of its
// (normalised, O(1)) input. The projections that write into the residual stream (`o_proj`, every
// `down_proj`) are further scaled by 1/sqrt(2·layers) so that the stream's variance grows by
// O(1) in total over all attention + FFN additions instead of O(layers).
InitSpec LinearInit(const TensorEntry& e, const ModelConfig& c) {
  float std = Rsqrt(e.shape[1]);
  if (EndsWith(e.name, "o_proj.weight") || EndsWith(e.name, "down_proj.weight"))
    std *= Rsqrt(2 * (c.num_hidden_layers + c.num_nextn_predict_layers));
  return {0.0f, std};
}

}  // namespace

InitSpec InitFor(const TensorEntry& e, const ModelConfig& c) {
  switch (e.role) {
    case TensorRole::kEmbedding:  // residual stream starts at unit scale
      return {0.0f, 1.0f};
    case TensorRole::kHead:  // logits ≈ N(0, 1) on a normalised hidden state
      return {0.0f, Rsqrt(c.hidden_size)};
    case TensorRole::kNormWeight:  // 1 + noise: a forgotten or swapped norm weight shows
      return {1.0f, 0.1f};
    case TensorRole::kNormBias:  // small, but non-zero so that a missing bias shows
      return {0.0f, 0.1f};
    case TensorRole::kLinear:
      return LinearInit(e, c);
    case TensorRole::kGate:
      // Router logits with std ≈ 2 (input is RMS-normalised): sigmoid scores spread over
      // (0.1, 0.9), so the top-k experts are separated by gaps far above bf16 rounding.
      return {0.0f, 2.0f * Rsqrt(c.hidden_size)};
    case TensorRole::kGateBias:  // small selection bias, as a trained `noaux_tc` router has
      return {0.0f, 0.05f};
    case TensorRole::kBlockScale:
      break;
  }
  throw Error("InitFor: block scales are derived from their weight (" + e.name + ")");
}

uint64_t TensorKey(uint64_t seed, std::string_view name) {
  uint64_t h = 0xCBF29CE484222325ull;  // FNV-1a 64 of the name, then mixed with the seed
  for (char ch : name) h = (h ^ static_cast<uint8_t>(ch)) * 0x100000001B3ull;
  return Mix64(h ^ Mix64(seed + kGolden));
}

float UnitRandom(uint64_t key, uint64_t index) {
  const uint64_t r = Mix64(key + (index + 1) * kGolden);
  // Sum of four uniforms on (0, 1): mean 2, variance 4/12; rescaled to mean 0, variance 1.
  const uint32_t s = static_cast<uint32_t>(r & 0xFFFF) + static_cast<uint32_t>((r >> 16) & 0xFFFF) +
                     static_cast<uint32_t>((r >> 32) & 0xFFFF) + static_cast<uint32_t>(r >> 48);
  const float sum = (static_cast<float>(s) + 2.0f) * (1.0f / 65536.0f);
  return (sum - 2.0f) * 1.7320508f;  // sqrt(3)
}

void FillPlain(const TensorEntry& e, uint64_t key, InitSpec spec, std::span<std::byte> out) {
  int64_t n = 1;
  for (int64_t d : e.shape) n *= d;
  DSINFER_CHECK(out.size() == static_cast<size_t>(n) * DTypeSize(e.dtype));
  if (e.dtype == DType::kBF16) {
    uint16_t* dst = reinterpret_cast<uint16_t*>(out.data());
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; ++i) {
      DSINFER_NOTE_THREAD("gen.bf16");
      dst[i] = FloatToBF16(spec.mean + spec.std * UnitRandom(key, i));
    }
  } else if (e.dtype == DType::kF32) {
    float* dst = reinterpret_cast<float*>(out.data());
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; ++i) {
      DSINFER_NOTE_THREAD("gen.f32");
      dst[i] = spec.mean + spec.std * UnitRandom(key, i);
    }
  } else {
    throw Error("FillPlain: unsupported dtype " + std::string(DTypeName(e.dtype)) + " of " +
                e.name);
  }
}

void FillFp8(int64_t rows, int64_t cols, uint64_t key, InitSpec spec, std::span<std::byte> codes,
             std::span<float> scales) {
  const int64_t row_blocks = (rows + kBlock - 1) / kBlock;
  const int64_t col_blocks = (cols + kBlock - 1) / kBlock;
  DSINFER_CHECK(scales.size() == static_cast<size_t>(row_blocks * col_blocks));
  DSINFER_CHECK(codes.empty() || codes.size() == static_cast<size_t>(rows * cols));
  uint8_t* q = codes.empty() ? nullptr : reinterpret_cast<uint8_t*>(codes.data());
#pragma omp parallel for schedule(dynamic, 1) if (rows * cols > 65536)
  for (int64_t rb = 0; rb < row_blocks; ++rb) {
    DSINFER_NOTE_THREAD("gen.fp8_blocks");
    const int64_t r0 = rb * kBlock, r1 = std::min(rows, r0 + kBlock);
    std::vector<float> w(static_cast<size_t>((r1 - r0) * cols));  // [rows of this block, cols]
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t j = 0; j < cols; ++j)
        w[(r - r0) * cols + j] = spec.mean + spec.std * UnitRandom(key, r * cols + j);
    for (int64_t cb = 0; cb < col_blocks; ++cb) {
      const int64_t c0 = cb * kBlock, c1 = std::min(cols, c0 + kBlock);
      float amax = 0.0f;
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t j = c0; j < c1; ++j) amax = std::max(amax, std::fabs(w[(r - r0) * cols + j]));
      const float scale = amax > 0.0f ? amax / 448.0f : 1.0f;
      scales[rb * col_blocks + cb] = scale;
      if (!q) continue;
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t j = c0; j < c1; ++j)
          q[r * cols + j] = FloatToE4M3(w[(r - r0) * cols + j] / scale);
    }
  }
}

}  // namespace dsinfer
