// Conversions checked against their definitions, written here independently of dtype.cc:
// decoding from the bit-field formulas (computed in f64), encoding by brute-force search for
// the nearest representable value with ties to even.
#include "format/dtype.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "format/ggml_types.h"

namespace dsinfer {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// ------------------------------------------------------------------------------------------
// e4m3fn

// (-1)^s · 2^(e-7) · (1 + m/8); subnormal (e = 0): (-1)^s · 2^-6 · m/8; 0x7F/0xFF NaN.
double E4M3Definition(int code) {
  const int s = code >> 7, e = (code >> 3) & 15, m = code & 7;
  if (e == 15 && m == 7) return std::numeric_limits<double>::quiet_NaN();
  const double mag = e == 0 ? std::pow(2.0, -6) * m / 8.0 : std::pow(2.0, e - 7) * (1.0 + m / 8.0);
  return s ? -mag : mag;
}

// Nearest finite e4m3 value to `x` (|x| beyond 448 → 448: saturation), ties to the even code;
// the sign bit is the sign of `x` (so tiny negatives become -0 = 0x80).
uint8_t E4M3Nearest(float x) {
  if (std::isnan(x)) return 0x7F;
  const double a = std::fabs(static_cast<double>(x));
  int best = 0;
  for (int c = 1; c <= 0x7E; ++c) {
    const double d = std::fabs(E4M3Definition(c) - a), bd = std::fabs(E4M3Definition(best) - a);
    if (d < bd || (d == bd && (c & 1) == 0)) best = c;
  }
  return static_cast<uint8_t>(best | (std::signbit(x) ? 0x80 : 0));
}

TEST(E4M3, AllCodesDecodeToDefinition) {
  for (int c = 0; c < 256; ++c) {
    const double want = E4M3Definition(c);
    const float got = E4M3ToFloat(static_cast<uint8_t>(c));
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << c;
    } else {
      EXPECT_EQ(static_cast<double>(got), want) << "code " << c;
      EXPECT_EQ(std::signbit(got), c >= 128) << c;  // incl. -0 = 0x80
    }
  }
  EXPECT_EQ(E4M3ToFloat(0x7E), 448.0f);
  EXPECT_EQ(E4M3ToFloat(0x01), 0x1p-9f);
  EXPECT_TRUE(std::isnan(E4M3ToFloat(0x7F)) && std::isnan(E4M3ToFloat(0xFF)));
}

TEST(E4M3, EveryFiniteCodeRoundTrips) {
  for (int c = 0; c < 256; ++c) {
    if ((c & 0x7F) == 0x7F) continue;
    EXPECT_EQ(FloatToE4M3(E4M3ToFloat(static_cast<uint8_t>(c))), c) << c;
  }
}

TEST(E4M3, MidpointsAndNeighboursMatchBruteForce) {
  int checked = 0;
  for (int c = 0; c < 0x7E; ++c) {
    const float lo = static_cast<float>(E4M3Definition(c)),
                hi = static_cast<float>(E4M3Definition(c + 1));
    const float mid = (lo + hi) / 2;  // exact: few mantissa bits
    ASSERT_EQ(static_cast<double>(mid), (E4M3Definition(c) + E4M3Definition(c + 1)) / 2);
    for (float x : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, kInf), lo, hi}) {
      for (float v : {x, -x}) {
        EXPECT_EQ(FloatToE4M3(v), E4M3Nearest(v)) << v;
        ++checked;
      }
    }
    // Ties go to the even code.
    EXPECT_EQ(FloatToE4M3(mid) & 1, 0) << mid;
  }
  EXPECT_EQ(checked, 0x7E * 10);
}

TEST(E4M3, SaturationSpecialValuesAndSignedZero) {
  // 464 would be the midpoint to a (non-existent) 480; everything ≥ 448 saturates.
  for (float x : {448.0f, 448.5f, 463.99f, 464.0f, 464.01f, 480.0f, 1e6f, 3.4e38f, kInf}) {
    EXPECT_EQ(FloatToE4M3(x), 0x7E) << x;
    EXPECT_EQ(FloatToE4M3(-x), 0xFE) << x;
    EXPECT_EQ(E4M3Nearest(x), 0x7E) << x;  // the brute force agrees: nearest finite is 448
  }
  EXPECT_EQ(FloatToE4M3(kNaN), 0x7F);
  EXPECT_EQ(FloatToE4M3(-kNaN), 0x7F);
  EXPECT_EQ(FloatToE4M3(0.0f), 0x00);
  EXPECT_EQ(FloatToE4M3(-0.0f), 0x80);
  EXPECT_EQ(FloatToE4M3(0x1p-11f), 0x00);    // below half the smallest subnormal
  EXPECT_EQ(FloatToE4M3(0x1p-10f), 0x00);    // exactly half: tie → even (0)
  EXPECT_EQ(FloatToE4M3(0x1.8p-10f), 0x01);  // 0.75 · 2^-9
  EXPECT_EQ(FloatToE4M3(-0x1p-140f), 0x80);  // f32 subnormal → -0
}

TEST(E4M3, RandomFloatsMatchBruteForce) {
  std::mt19937 rng(1234);
  std::uniform_int_distribution<uint32_t> bits;
  std::normal_distribution<float> normal(0.0f, 100.0f);
  for (int i = 0; i < 20000; ++i) {
    const float x = i % 2 ? std::bit_cast<float>(bits(rng)) : normal(rng);
    ASSERT_EQ(FloatToE4M3(x), E4M3Nearest(x)) << x;
  }
}

// ------------------------------------------------------------------------------------------
// bf16: the top half of an f32.

// Nearest bf16 to a finite or infinite `x`, ties to even; overflow handled as IEEE does by
// treating the code after the largest finite value (0x7F80 = Inf) as the value 2^128.
uint16_t BF16Nearest(float x) {
  const uint32_t b = std::bit_cast<uint32_t>(x);
  const uint16_t sign = static_cast<uint16_t>(b >> 16) & 0x8000;
  const uint16_t lo = static_cast<uint16_t>((b & 0x7FFFFFFF) >> 16);  // truncation (≤ |x|)
  if (lo >= 0x7F80) return sign | lo;                                 // Inf stays Inf
  const uint16_t hi = lo + 1;
  auto value = [](uint16_t c) {
    return c == 0x7F80 ? std::ldexp(1.0, 128)
                       : static_cast<double>(std::bit_cast<float>(static_cast<uint32_t>(c) << 16));
  };
  const double a = std::fabs(static_cast<double>(x));
  const double dl = a - value(lo), dh = value(hi) - a;
  const uint16_t pick = dl < dh ? lo : dh < dl ? hi : (lo & 1) == 0 ? lo : hi;
  return sign | pick;
}

TEST(BF16, AllCodesDecodeAndRoundTrip) {
  for (uint32_t c = 0; c < 65536; ++c) {
    const float f = BF16ToFloat(static_cast<uint16_t>(c));
    ASSERT_EQ(std::bit_cast<uint32_t>(f), c << 16);
    if (std::isnan(f)) {
      const uint16_t back = FloatToBF16(f);
      ASSERT_TRUE(std::isnan(BF16ToFloat(back))) << c;
      ASSERT_EQ(back & 0x8000, c & 0x8000) << c;
    } else {
      ASSERT_EQ(FloatToBF16(f), c) << c;
    }
  }
}

TEST(BF16, RoundingMatchesDefinition) {
  const float max_bf16 = std::bit_cast<float>(0x7F7F0000u);
  const std::vector<float> edges = {
      1.0f,
      std::bit_cast<float>(0x3F808000u),  // 1 + half ulp: tie → even (1.0)
      std::bit_cast<float>(0x3F818000u),  // tie → even (up)
      std::bit_cast<float>(0x3F808001u),  // just above the tie → up
      std::bit_cast<float>(0x3F7FFFFFu),  // rounds up into the next exponent (1.0)
      std::bit_cast<float>(0x7F7F7FFFu),  // just below the midpoint to Inf → max
      std::bit_cast<float>(0x7F7F8000u),  // midpoint max/Inf: tie → even = Inf
      std::numeric_limits<float>::max(),  // → Inf
      max_bf16,
      kInf,
      0.0f,
      std::bit_cast<float>(0x00008000u),
      std::bit_cast<float>(0x00018000u),
      std::numeric_limits<float>::denorm_min(),
      std::numeric_limits<float>::min()};
  for (float e : edges) {
    for (float x : {e, -e}) EXPECT_EQ(FloatToBF16(x), BF16Nearest(x)) << x;
  }
  EXPECT_EQ(FloatToBF16(std::numeric_limits<float>::max()), 0x7F80);
  EXPECT_EQ(FloatToBF16(std::bit_cast<float>(0x3F7FFFFFu)), 0x3F80);

  std::mt19937 rng(99);
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 200000; ++i) {
    const float x = std::bit_cast<float>(bits(rng));
    if (std::isnan(x)) {
      const uint16_t r = FloatToBF16(x);
      ASSERT_TRUE(std::isnan(BF16ToFloat(r))) << std::hex << std::bit_cast<uint32_t>(x);
    } else {
      ASSERT_EQ(FloatToBF16(x), BF16Nearest(x)) << std::hex << std::bit_cast<uint32_t>(x);
    }
  }
  // A NaN whose payload lies only in the low 16 bits must not truncate to Inf.
  EXPECT_TRUE(std::isnan(BF16ToFloat(FloatToBF16(std::bit_cast<float>(0x7F800001u)))));
  EXPECT_TRUE(std::isnan(BF16ToFloat(FloatToBF16(std::bit_cast<float>(0xFF800001u)))));
}

// ------------------------------------------------------------------------------------------
// f16 (IEEE binary16).

// (-1)^s · 2^(e-15) · (1 + m/1024); subnormal 2^-14 · m/1024; e = 31: Inf (m = 0) or NaN.
double F16Definition(uint32_t c) {
  const int s = c >> 15, e = (c >> 10) & 31, m = c & 1023;
  double mag;
  if (e == 31) {
    mag =
        m == 0 ? std::numeric_limits<double>::infinity() : std::numeric_limits<double>::quiet_NaN();
  } else if (e == 0) {
    mag = std::pow(2.0, -14) * m / 1024.0;
  } else {
    mag = std::pow(2.0, e - 15) * (1.0 + m / 1024.0);
  }
  return s ? -mag : mag;
}

// Nearest f16 by binary search over the monotonic positive codes 0..0x7C00, where 0x7C00
// (Inf) stands for 2^16 in the distance (IEEE overflow rule); ties to the even code.
uint16_t F16Nearest(float x) {
  const double a = std::fabs(static_cast<double>(x));
  const uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  auto value = [](uint32_t c) { return c == 0x7C00 ? 65536.0 : F16Definition(c); };
  if (a >= 65536.0) return sign | 0x7C00;
  uint32_t lo = 0, hi = 0x7C00;  // value(lo) ≤ a < value(hi)
  while (hi - lo > 1) {
    const uint32_t mid = (lo + hi) / 2;
    (value(mid) <= a ? lo : hi) = mid;
  }
  const double dl = a - value(lo), dh = value(hi) - a;
  const uint32_t pick = dl < dh ? lo : dh < dl ? hi : (lo & 1) == 0 ? lo : hi;
  return static_cast<uint16_t>(sign | pick);
}

TEST(F16, AllCodesDecodeAndRoundTrip) {
  for (uint32_t c = 0; c < 65536; ++c) {
    const double want = F16Definition(c);
    const float f = F16ToFloat(static_cast<uint16_t>(c));
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan(f)) << c;
      ASSERT_TRUE(std::isnan(F16ToFloat(FloatToF16(f)))) << c;
    } else {
      ASSERT_EQ(static_cast<double>(f), want) << c;
      ASSERT_EQ(std::signbit(f), c >= 0x8000) << c;
      ASSERT_EQ(FloatToF16(f), c) << c;
    }
  }
}

TEST(F16, RoundingMatchesDefinition) {
  std::vector<float> edges = {
      65504.0f,        65519.99f,         65520.0f, 65536.0f,     kInf,         0x1p-24f,
      0x1p-25f,        0x1.8p-25f,        0x1p-26f, 0x1.ffcp-15f, 0x1.ffep-15f, 0x1p-14f,
      1.0f + 0x1p-11f, 1.0f + 0x1.8p-10f, 2047.5f,  2048.5f};
  // Every midpoint between adjacent positive codes, and the floats either side of it.
  for (uint32_t c = 0; c < 0x7BFF; c += 7) {
    const float mid = static_cast<float>((F16Definition(c) + F16Definition(c + 1)) / 2);
    edges.insert(edges.end(), {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, kInf)});
  }
  for (float e : edges) {
    for (float x : {e, -e}) ASSERT_EQ(FloatToF16(x), F16Nearest(x)) << x;
  }
  std::mt19937 rng(7);
  std::uniform_int_distribution<uint32_t> bits;
  std::uniform_real_distribution<float> exp(-30.0f, 17.0f);
  for (int i = 0; i < 200000; ++i) {
    float x = i % 2 ? std::bit_cast<float>(bits(rng)) : std::exp2(exp(rng)) * (i % 4 ? 1 : -1);
    if (std::isnan(x)) {
      ASSERT_TRUE(std::isnan(F16ToFloat(FloatToF16(x))));
    } else {
      ASSERT_EQ(FloatToF16(x), F16Nearest(x)) << std::hex << std::bit_cast<uint32_t>(x);
    }
  }
}

// ------------------------------------------------------------------------------------------
// ue8m0 activation scale: 2^ceil(log2(max(amax, 1e-4) / 448)), evaluated in f64.

double Ue8m0Definition(float amax) {
  return std::exp2(std::ceil(std::log2(std::max(static_cast<double>(amax), 1e-4) / 448.0)));
}

TEST(Ue8m0, ExactPowersOfTwoAndTheirNeighbours) {
  for (int k = -40; k <= 40; ++k) {
    const float amax = std::ldexp(448.0f, k);  // amax / 448 = 2^k exactly
    if (amax <= 1e-4f) continue;
    EXPECT_EQ(Ue8m0Scale(amax), std::ldexp(1.0f, k)) << k;
    float x = amax;
    for (int step = 0; step < 64; ++step) x = std::nextafter(x, 0.0f);
    for (int step = 0; step < 128; ++step, x = std::nextafter(x, kInf)) {
      ASSERT_EQ(static_cast<double>(Ue8m0Scale(x)), Ue8m0Definition(x)) << x;
    }
  }
}

TEST(Ue8m0, SweepOfFloatsMatchesDefinition) {
  // Every 1009th positive finite f32 bit pattern: all exponents, arbitrary mantissas.
  for (uint32_t b = 0; b < 0x7F800000u; b += 1009) {
    const float amax = std::bit_cast<float>(b);
    const double want = Ue8m0Definition(amax);
    if (want > std::numeric_limits<float>::max()) {
      ASSERT_TRUE(std::isinf(Ue8m0Scale(amax))) << amax;
    } else {
      ASSERT_EQ(static_cast<double>(Ue8m0Scale(amax)), want) << amax;
    }
  }
  EXPECT_EQ(Ue8m0Scale(0.0f), 0x1p-22f);  // clamped to 1e-4: 1e-4/448 ≈ 2.2e-7 ≤ 2^-22
  EXPECT_TRUE(std::isnan(Ue8m0Scale(kNaN)));
  EXPECT_TRUE(std::isinf(Ue8m0Scale(kInf)));
}

// ------------------------------------------------------------------------------------------

TEST(DTypeNames, RoundTripAndSizes) {
  const std::vector<std::pair<const char*, size_t>> names = {
      {"BOOL", 1},    {"U8", 1},  {"I8", 1},   {"I16", 2}, {"U16", 2},
      {"I32", 4},     {"U32", 4}, {"I64", 8},  {"U64", 8}, {"F8_E4M3", 1},
      {"F8_E5M2", 1}, {"F16", 2}, {"BF16", 2}, {"F32", 4}, {"F64", 8}};
  for (const auto& [name, size] : names) {
    std::optional<DType> t = ParseDType(name);
    ASSERT_TRUE(t.has_value()) << name;
    EXPECT_EQ(DTypeName(*t), name);
    EXPECT_EQ(DTypeSize(*t), size) << name;
  }
  EXPECT_FALSE(ParseDType("bf16").has_value());
  EXPECT_FALSE(ParseDType("F8_E4M3FN").has_value());
  EXPECT_FALSE(ParseDType("").has_value());
}

// The ggml block types: geometry as ggml_types.h gives it, names spelled as ggml does, and not
// parseable as safetensors dtypes (a safetensors header naming one is rejected).
TEST(DTypeNames, BlockTypes) {
  struct B {
    DType t;
    const char* name;
    GgmlType g;
  };
  for (const B& b :
       {B{DType::kQ8_0, "Q8_0", GgmlType::kQ8_0}, B{DType::kQ4_K, "Q4_K", GgmlType::kQ4_K},
        B{DType::kQ5_K, "Q5_K", GgmlType::kQ5_K}, B{DType::kQ6_K, "Q6_K", GgmlType::kQ6_K}}) {
    const GgmlTypeInfo& info = GgmlTypeOf(b.g);
    EXPECT_EQ(DTypeName(b.t), b.name);
    EXPECT_EQ(DTypeName(b.t), info.name);
    EXPECT_EQ(DTypeSize(b.t), info.block_bytes) << b.name;
    EXPECT_EQ(DTypeBlockElems(b.t), info.block_elems) << b.name;
    EXPECT_TRUE(IsBlockDType(b.t));
    EXPECT_EQ(DTypeRowBytes(b.t, 4 * info.block_elems), 4 * static_cast<int64_t>(info.block_bytes));
    EXPECT_FALSE(ParseDType(b.name).has_value()) << b.name;
  }
  EXPECT_FALSE(IsBlockDType(DType::kF8E4M3));
  EXPECT_EQ(DTypeRowBytes(DType::kBF16, 7), 14);
}

}  // namespace
}  // namespace dsinfer
