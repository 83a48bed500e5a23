// Encoders (ggml_quantize.h) against the decoders (ggml_types.h, checked bit for bit against
// the NumPy decoders in tests/reference): decode(encode(x)) is within half a quantisation step
// of x for every element, where the step is read back from the encoded block's own fields;
// RMS error on Gaussian rows within the uniform-quantiser bound; edge rows (zeros, constants,
// one spike, tiny and large values, one sign only); errors name the tensor.
#include "format/ggml_quantize.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "base/error.h"
#include "format/dtype.h"

namespace dsinfer {
namespace {

float F16At(const std::vector<std::byte>& b, size_t off) {
  uint16_t h;
  std::memcpy(&h, b.data() + off, 2);
  return F16ToFloat(h);
}

// The decoded quantisation step of element e, read from the block fields.
float Step(GgmlType t, const std::vector<std::byte>& q, int64_t e) {
  const auto* u = reinterpret_cast<const uint8_t*>(q.data());
  switch (t) {
    case GgmlType::kQ8_0:
      return F16At(q, 34 * (e / 32));
    case GgmlType::kQ4_K:
    case GgmlType::kQ5_K: {
      const size_t bs = t == GgmlType::kQ4_K ? 144 : 176, b = bs * (e / 256);
      const int j = static_cast<int>((e % 256) / 32);
      uint8_t sc, m;
      UnpackK4Scale(u + b + 4, j, &sc, &m);
      return F16At(q, b) * static_cast<float>(sc);
    }
    case GgmlType::kQ6_K: {
      const size_t b = 210 * (e / 256);
      const int8_t sc = static_cast<int8_t>(u[b + 192 + (e % 256) / 16]);
      return F16At(q, b + 208) * static_cast<float>(sc);
    }
    case GgmlType::kIQ4_NL:  // the (signed) step of the levels
      return F16At(q, 18 * (e / 32));
    case GgmlType::kIQ4_XS: {  // d·(ls_j − 32), ls_j = 4 low bits of scales_l, 2 of scales_h
      const size_t b = 136 * (e / 256);
      const int j = static_cast<int>((e % 256) / 32);
      const int hi = ((u[b + 2] | (u[b + 3] << 8)) >> (2 * j)) & 3;
      const int ls = ((u[b + 4 + j / 2] >> (4 * (j % 2))) & 15) | (hi << 4);
      return F16At(q, b) * static_cast<float>(ls - 32);
    }
    default:
      return 0;
  }
}

struct RoundTrip {
  std::vector<float> y;
  std::vector<std::byte> q;
};

RoundTrip Roundtrip(GgmlType t, const std::vector<float>& x) {
  RoundTrip r;
  r.q.resize(GgmlRowBytes(t, static_cast<int64_t>(x.size())));
  QuantizeRow(t, x, r.q, "w");
  r.y.resize(x.size());
  DequantizeRow(t, r.q, r.y, "w");
  return r;
}

// IQ4's 16 levels (restated from the layout, ggml_types.h): non-uniform, so its encoders search
// the step and may clamp a block's extremes; what holds for every element is that it decodes
// to the level nearest to it at its block's step, and for every 32-element block that its
// squared error is no larger than storing the block as 0 would give (step 0 is a candidate:
// the levels have no 0, so a block far below the smallest f16 step must not decode to ±step).
bool Iq4(GgmlType t) { return t == GgmlType::kIQ4_NL || t == GgmlType::kIQ4_XS; }
constexpr int kLevels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

void ExpectNearestLevel(GgmlType t, const std::vector<float>& x, const std::string& what) {
  const RoundTrip r = Roundtrip(t, x);
  for (size_t e = 0; e < x.size(); ++e) {
    const float step = Step(t, r.q, static_cast<int64_t>(e));
    double nearest = std::fabs(double(x[e]) - double(step) * kLevels[0]);
    for (int l : kLevels) nearest = std::min(nearest, std::fabs(double(x[e]) - double(step) * l));
    // Plus the f32 roundings of x/step and of the decoder's product.
    const double tol = nearest + 4e-7 * (std::fabs(x[e]) + 128 * std::fabs(step)) + 1e-30;
    ASSERT_LE(std::fabs(r.y[e] - x[e]), tol)
        << GgmlTypeName(t) << " " << what << " element " << e << ": x=" << x[e] << " y=" << r.y[e]
        << " step=" << step;
  }
  for (size_t b = 0; b < x.size(); b += 32) {
    double e2 = 0, x2 = 0;
    for (size_t e = b; e < b + 32; ++e) {
      e2 += (double(r.y[e]) - x[e]) * (double(r.y[e]) - x[e]);
      x2 += double(x[e]) * x[e];
    }
    ASSERT_LE(e2, x2 * (1 + 1e-6)) << GgmlTypeName(t) << " " << what << " block at " << b;
  }
}

void ExpectHalfStep(GgmlType t, const std::vector<float>& x, const std::string& what) {
  if (Iq4(t)) return ExpectNearestLevel(t, x, what);
  const RoundTrip r = Roundtrip(t, x);
  for (size_t e = 0; e < x.size(); ++e) {
    const float step = Step(t, r.q, static_cast<int64_t>(e));
    // Half a step, plus the f32 rounding of the decoder's products (a few ulps of |x| + step).
    const float tol = 0.5f * step + 4e-7f * (std::fabs(x[e]) + 16 * step) + 1e-30f;
    ASSERT_LE(std::fabs(r.y[e] - x[e]), tol)
        << GgmlTypeName(t) << " " << what << " element " << e << ": x=" << x[e] << " y=" << r.y[e]
        << " step=" << step;
  }
}

const GgmlType kQuantised[] = {GgmlType::kQ8_0,   GgmlType::kQ4_K,  GgmlType::kQ5_K,
                               GgmlType::kQ6_K,   GgmlType::kIQ4_NL, GgmlType::kIQ4_XS};

TEST(GgmlQuantize, HalfStepBoundOnRandomAndEdgeRows) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int64_t n = 1024;
  std::vector<std::pair<std::string, std::vector<float>>> rows;
  for (float scale : {1e-3f, 0.02f, 1.0f, 300.0f}) {
    std::vector<float> x(n);
    for (float& v : x) v = scale * normal(rng);
    rows.emplace_back("gaussian*" + std::to_string(scale), x);
  }
  rows.emplace_back("zeros", std::vector<float>(n, 0.0f));
  rows.emplace_back("constant", std::vector<float>(n, 0.37f));
  rows.emplace_back("negative constant", std::vector<float>(n, -2.5f));
  std::vector<float> spike(n, 0.0f);
  spike[300] = 1000.0f;
  spike[700] = -1e-3f;
  rows.emplace_back("spike", spike);
  std::vector<float> pos(n), neg(n), tiny(n), ramp(n);
  for (int64_t i = 0; i < n; ++i) {
    pos[i] = std::fabs(normal(rng)) + 1.0f;
    neg[i] = -std::fabs(normal(rng)) - 5.0f;
    tiny[i] = 1e-9f * normal(rng);
    ramp[i] = static_cast<float>(i % 256) - 128.0f;
  }
  rows.emplace_back("positive only", pos);
  rows.emplace_back("negative only", neg);
  rows.emplace_back("f16-subnormal scales", tiny);
  rows.emplace_back("ramp", ramp);
  // One loud 32-element sub-block per 256, the others 2500x quieter (IQ4_XS: far below d).
  std::vector<float> mixed(n);
  for (int64_t i = 0; i < n; ++i) mixed[i] = normal(rng) * (i % 256 < 32 ? 2.5f : 1e-3f);
  rows.emplace_back("mixed sub-block scales", mixed);
  for (GgmlType t : kQuantised)
    for (const auto& [what, x] : rows) ExpectHalfStep(t, x, what);
}

// A block whose negative extreme needs a positive step near the f16 limit (−8e6/127 = 62,992)
// while the negative-step candidate would not fit (8e6/113 = 70,796 > 65,504): encoded with the
// sign that fits, not refused.
TEST(GgmlQuantize, Iq4StepSignThatFits) {
  std::vector<float> x(32, 1.0f);
  x[5] = -8e6f;
  for (GgmlType t : {GgmlType::kIQ4_NL}) ExpectNearestLevel(t, x, "large negative extreme");
  std::vector<float> huge(32, 9e6f);  // no step of either sign fits: refused, naming the block
  std::vector<std::byte> out(18);
  EXPECT_THROW(QuantizeRow(GgmlType::kIQ4_NL, huge, out, "w"), Error);
}

// Iq4Nearest (a table on ceil(2v)) against the definition, by brute force: the level with the
// least |v − L|, the lower on a tie. At every midpoint, its neighbouring floats, each level and
// its neighbours, a fine grid over and beyond the levels' range, and ±inf / the largest floats.
TEST(GgmlQuantize, Iq4NearestIsTheNearestLevel) {
  const auto brute = [](float f) {
    const double v = std::clamp(double(f), -1e9, 1e9);  // ±inf: as the largest finite values
    int best = 0;
    for (int i = 1; i < 16; ++i)  // strictly closer only: the lower level wins a tie
      if (std::fabs(v - kIq4Levels[i]) < std::fabs(v - kIq4Levels[best])) best = i;
    return best;
  };
  std::vector<float> vs = {0.0f, -0.0f, std::numeric_limits<float>::infinity(),
                           -std::numeric_limits<float>::infinity(), std::numeric_limits<float>::max(),
                           std::numeric_limits<float>::lowest(), 1e-30f, -1e-30f, 127.9f, 128.0f,
                           128.5f, -128.0f, -128.5f, 300.0f, -300.0f};
  for (int i = 0; i < 16; ++i) {
    const float c[2] = {float(kIq4Levels[i]),
                        i < 15 ? 0.5f * float(kIq4Levels[i] + kIq4Levels[i + 1]) : 200.0f};
    for (float v : c)
      for (float u : {v, std::nextafter(v, -1e9f), std::nextafter(v, 1e9f)}) vs.push_back(u);
  }
  for (int k = -4000; k <= 4000; ++k) vs.push_back(0.0371f * float(k));
  int checked = 0;
  for (float v : vs) {
    ASSERT_EQ(Iq4Nearest(v), brute(v)) << "v = " << v;
    ++checked;
  }
  EXPECT_GT(checked, 8000);
}

// RMS error of N(0, 1) rows, relative to the RMS of x. A uniform quantiser with step s has RMS
// error s/√12; the step is (range of the block)/(levels − 1), with block ranges of Gaussian data
// about 4.5σ (32 elements, Q4_K/Q5_K sub-blocks include the min offset) to 5σ (256 elements).
// Bounds: Q8_0 2·(2.5/127)/√12 ≈ 0.0114 → 0.012; Q6_K 2·(2.3/31)/√12 ≈ 0.043 → 0.045;
// Q5_K (4.8/31)/√12 ≈ 0.045 → 0.05; Q4_K (4.8/15)/√12 ≈ 0.092 → 0.1, plus the round-up of the
// 6-bit scales.
// IQ4_NL / IQ4_XS: with the range-safe step, about amax/127 ≈ 2.5σ/127 ≈ 0.02σ, the levels
// within ±1σ (±51 steps) lie 10-16 steps apart, an error RMS of about 13·0.02σ/√12 ≈ 0.075σ,
// plus wider gaps in the tails: measured 0.080 (IQ4_NL) and 0.082 (IQ4_XS, whose 6-bit scales
// round up). The encoders' search over smaller steps lowers it (measured 0.0749 / 0.0749), and
// the bound holds them below what the range-safe step alone gives.
constexpr double kIq4RmsBound = 0.078;
TEST(GgmlQuantize, GaussianRmsError) {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(256 * 64);
  for (float& v : x) v = normal(rng);
  const std::pair<GgmlType, double> bounds[] = {{GgmlType::kQ8_0, 0.012},
                                                {GgmlType::kQ6_K, 0.045},
                                                {GgmlType::kQ5_K, 0.05},
                                                {GgmlType::kQ4_K, 0.1},
                                                {GgmlType::kIQ4_NL, kIq4RmsBound},
                                                {GgmlType::kIQ4_XS, kIq4RmsBound}};
  for (const auto& [t, bound] : bounds) {
    const RoundTrip r = Roundtrip(t, x);
    double e2 = 0, x2 = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      e2 += (double(r.y[i]) - x[i]) * (double(r.y[i]) - x[i]);
      x2 += double(x[i]) * x[i];
    }
    const double rel = std::sqrt(e2 / x2);
    EXPECT_LT(rel, bound) << GgmlTypeName(t);
    std::printf("%s: relative RMS error %.5f (bound %.3f)\n", std::string(GgmlTypeName(t)).c_str(),
                rel, bound);
  }
}

TEST(GgmlQuantize, PlainTypesRoundTrip) {
  const std::vector<float> x = {0.0f, -0.0f, 1.0f, -3.14159f, 65504.0f, 1e-7f, 1e30f, -2.0f};
  EXPECT_EQ(Roundtrip(GgmlType::kF32, x).y, x);
  const RoundTrip b = Roundtrip(GgmlType::kBF16, x), h = Roundtrip(GgmlType::kF16, x);
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_EQ(b.y[i], BF16ToFloat(FloatToBF16(x[i])));
    EXPECT_EQ(h.y[i], F16ToFloat(FloatToF16(x[i])));
  }
}

TEST(GgmlQuantize, ErrorsNameTheTensor) {
  std::vector<float> x(256, 1.0f);
  std::vector<std::byte> out(GgmlRowBytes(GgmlType::kQ4_K, 256));
  x[5] = NAN;
  try {
    QuantizeRow(GgmlType::kQ4_K, x, out, "blk.0.attn_q_a.weight");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("blk.0.attn_q_a.weight: element 5 is not finite"),
              std::string::npos)
        << e.what();
  }
  x[5] = 1e9f;  // scale beyond f16
  EXPECT_THROW(QuantizeRow(GgmlType::kQ8_0, x, std::span(out.data(), 34 * 8), "w"), Error);
  std::vector<float> odd(100, 1.0f);
  EXPECT_THROW(QuantizeRow(GgmlType::kQ8_0, odd, out, "w"), Error);
  EXPECT_THROW(QuantizeRow(GgmlType::kQ4_0, x, out, "w"), Error);
}

}  // namespace
}  // namespace dsinfer
