// Kernels on ggml block weights (kernels/qblocks.h, Linear on Q8_0 / Q4_K / Q5_K / Q6_K).
//
// Independent truths:
//  * Decoding: every vector decoder this CPU runs gives DequantizeRow's values bit for bit
//    (format/ggml_types.h, itself tested against the NumPy decoders of tests/reference), on
//    random block bytes (every nibble, high bit and 6-bit scale pattern; finite f16 scales).
//  * f32 path: Linear on block weights = Linear on an F32 copy of the dequantised weights, bit
//    for bit on each ISA (same f32 kernels), and within γ_{K+4}·Σ|x·w| of the f64 product.
//  * int8 activations: QuantizeActs' rounding (|x − q·d| ≤ d/2, |q| ≤ 127, the block maximum
//    at ±127) and every vector QuantizeActs = the scalar one bit for bit (ties, zeros, Inf,
//    NaN); the scalar specification against an f64 model of the same integer product,
//    Σ_i (a_i − m_i)·q_i·d with the weight split as the layout defines it (a = d·sc·q, m =
//    dmin·m_j), within γ_{2B+4}·Σ(|a_i| + |m_i|)·|q_i·d| (B blocks: each term meets a scale
//    product, its product with the integer sum and ≤ 2B additions); the VNNI kernel against
//    the specification within twice that (another summation order); and the whole product
//    against the f32-activation product within the activation rounding, Σ_i |w_i|·d_b/2.
//  * Batch invariance: a token's outputs are bitwise the same alone and inside a batch, on any
//    thread count, on both paths.
#include "kernels/qblocks.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "format/dtype.h"
#include "format/ggml_quantize.h"
#include "format/ggml_types.h"
#include "kernels/cpu.h"
#include "kernels/linear.h"
#include "linear_test_util.h"

namespace dsinfer {
namespace {

using test::Gamma;

constexpr DType kBlockTypes[] = {DType::kQ8_0, DType::kQ4_K, DType::kQ5_K, DType::kQ6_K};
// Block types whose kernel tests use random bytes (every code pattern): those dsinfer runs but
// does not write (Q2_K, Q3_K: llama.cpp's files hold them) and the IQ4 types.
constexpr DType kDecodeOnlyTypes[] = {DType::kQ2_K, DType::kQ3_K, DType::kIQ4_NL, DType::kIQ4_XS};
constexpr Isa kIsas[] = {Isa::kScalar, Isa::kAvx2, Isa::kAvx512};

// A block weight [rows, cols] and its dequantised f32 copy.
struct BlockMatrix {
  DType dtype;
  int64_t rows, cols;
  std::vector<std::byte> bytes;
  std::vector<float> f32;  // [rows, cols] DequantizeRow's values
  WeightView view, f32_view;
};

// Byte offsets of the f16 scale fields in a block of `t` (kept finite: random bytes elsewhere).
std::vector<int> F16Fields(DType t) {
  switch (t) {
    case DType::kQ8_0:
    case DType::kIQ4_NL:
    case DType::kIQ4_XS:
      return {0};
    case DType::kQ6_K:
      return {208};
    case DType::kQ2_K:
      return {80, 82};
    case DType::kQ3_K:
      return {108};
    default:
      return {0, 2};
  }
}

// `random_bytes`: every byte random except finite f16 scales (covers all code patterns);
// otherwise the encoder's blocks of normal values (as `dsinfer quantize` writes them).
BlockMatrix MakeBlocks(DType t, int64_t rows, int64_t cols, uint32_t seed, bool random_bytes) {
  BlockMatrix m{t, rows, cols, {}, {}, {}, {}};
  const GgmlType g = GgmlOfBlockDType(t);
  const int64_t rb = DTypeRowBytes(t, cols), bb = static_cast<int64_t>(DTypeSize(t));
  m.bytes.resize(rows * rb);
  std::mt19937 rng(seed);
  if (random_bytes) {
    for (std::byte& b : m.bytes) b = static_cast<std::byte>(rng() & 0xFF);
    std::uniform_real_distribution<float> scale(-0.02f, 0.02f);
    for (int64_t off = 0; off < rows * rb; off += bb)
      for (int f : F16Fields(t)) {
        const uint16_t h = FloatToF16(scale(rng));
        std::memcpy(&m.bytes[off + f], &h, 2);
      }
  } else {
    const std::vector<float> x = test::RandomVector(rows * cols, seed, 0.5f);
    for (int64_t r = 0; r < rows; ++r)
      QuantizeRow(g, std::span<const float>(x.data() + r * cols, cols),
                  std::span<std::byte>(m.bytes.data() + r * rb, rb));
  }
  m.f32.resize(rows * cols);
  for (int64_t r = 0; r < rows; ++r)
    DequantizeRow(g, std::span<const std::byte>(m.bytes.data() + r * rb, rb),
                  std::span<float>(m.f32.data() + r * cols, cols));
  m.view = WeightView{.dtype = t, .rows = rows, .cols = cols, .data = m.bytes.data()};
  m.f32_view = WeightView{.dtype = DType::kF32, .rows = rows, .cols = cols, .data = m.f32.data()};
  return m;
}

template <size_t N>
bool IsIn(const DType (&list)[N], DType t) {
  return std::find(std::begin(list), std::end(list), t) != std::end(list);
}

std::string Name(Isa isa, DType t) {
  return std::string(IsaName(isa)) + " " + std::string(DTypeName(t));
}

TEST(QBlocks, VectorDecodersEqualDequantizeRow) {
  for (Isa isa : kIsas) {
    if (!DetectCpu().Supports(isa)) continue;
    for (DType t : kBlockTypes)
      for (bool random_bytes : {true, false}) {
        const BlockMatrix m = MakeBlocks(t, 9, 768, 11, random_bytes);
        std::vector<float> out(4 * 768, -1.0f);
        qblocks::DecodeRows(isa, m.view, 3, 7, out.data());
        ASSERT_EQ(std::memcmp(out.data(), m.f32.data() + 3 * 768, out.size() * sizeof(float)), 0)
            << Name(isa, t) << (random_bytes ? " random bytes" : " encoded");
      }
    for (DType t : kDecodeOnlyTypes) {
      const BlockMatrix m = MakeBlocks(t, 9, 768, 12, /*random_bytes=*/true);
      std::vector<float> out(4 * 768, -1.0f);
      qblocks::DecodeRows(isa, m.view, 3, 7, out.data());
      ASSERT_EQ(std::memcmp(out.data(), m.f32.data() + 3 * 768, out.size() * sizeof(float)), 0)
          << Name(isa, t) << " random bytes";
    }
  }
}

// y over rows [rb, re) with padded strides on `isa`, for weight view `w`.
std::vector<float> Rows(Isa isa, const WeightView& w, const std::vector<float>& x, int64_t xs,
                        int64_t n, int64_t rb, int64_t re, int64_t ys) {
  std::vector<float> y(n * ys, -7.0f);
  LinearRows(isa, x.data(), xs, n, w, rb, re, y.data(), ys);
  return y;
}

TEST(QBlocks, F32PathIsTheDequantisedProductBitForBit) {
  std::vector<DType> types(std::begin(kBlockTypes), std::end(kBlockTypes));
  types.insert(types.end(), std::begin(kDecodeOnlyTypes), std::end(kDecodeOnlyTypes));
  for (DType t : types) {
    const bool decode_only = !IsIn(kBlockTypes, t);
    const BlockMatrix m = MakeBlocks(t, 45, 512, 21, /*random_bytes=*/decode_only);
    for (Isa isa : kIsas) {
      if (!DetectCpu().Supports(isa)) continue;
      for (int64_t n : {1, 3, 4, 8, 9, 40}) {
        const int64_t xs = 512 + 3, ys = 45 + 2, rb = 2, re = 43;
        const std::vector<float> x = test::RandomVector(n * xs, static_cast<uint32_t>(n));
        const std::vector<float> got = Rows(isa, m.view, x, xs, n, rb, re, ys);
        const std::vector<float> ref = Rows(isa, m.f32_view, x, xs, n, rb, re, ys);
        ASSERT_EQ(std::memcmp(got.data(), ref.data(), got.size() * sizeof(float)), 0)
            << Name(isa, t) << " n=" << n;
        for (int64_t tk = 0; tk < n; ++tk)
          for (int64_t r = rb; r < re; ++r) {
            double exact = 0, mag = 0;
            for (int64_t c = 0; c < 512; ++c) {
              const double v = double(x[tk * xs + c]) * m.f32[r * 512 + c];
              exact += v;
              mag += std::fabs(v);
            }
            ASSERT_LE(std::fabs(got[tk * ys + r - rb] - exact), Gamma(512 + 4) * mag)
                << Name(isa, t) << " n=" << n << " t=" << tk << " r=" << r;
          }
      }
    }
  }
}

TEST(QBlocks, TransposedProductOfBlocksIsTheDequantisedOne) {
  const BlockMatrix m = MakeBlocks(DType::kQ4_K, 40, 512, 5, /*random_bytes=*/false);
  for (Isa isa : kIsas) {
    if (!DetectCpu().Supports(isa)) continue;
    const int64_t n = 3;
    const std::vector<float> x = test::RandomVector(n * 30, 9);
    std::vector<float> got(n * 512), ref(n * 512);
    LinearTransposed(isa, x.data(), 30, n, m.view, 5, 35, got.data(), 512);
    LinearTransposed(Isa::kScalar, x.data(), 30, n, m.f32_view, 5, 35, ref.data(), 512);
    ASSERT_EQ(got, ref) << IsaName(isa);
  }
}

// ---- int8 activations -------------------------------------------------------------------------

TEST(QBlocks, ActivationQuantisation) {
  std::vector<float> x = test::RandomVector(3 * 128, 4, 2.0f);
  for (int i = 32; i < 64; ++i) x[i] = 0.0f;       // a block of zeros
  x[70] = std::numeric_limits<float>::infinity();  // block 2 holds Inf
  qblocks::QuantizedActs a;
  qblocks::QuantizeActs(x.data(), 128, 3, 128, a);
  ASSERT_EQ(a.blocks, 4);
  for (int64_t t = 0; t < 3; ++t)
    for (int64_t b = 0; b < 4; ++b) {
      const int64_t k = t * 4 + b;
      const float* xb = x.data() + t * 128 + 32 * b;
      const int8_t* q = a.q.data() + t * 128 + 32 * b;
      if (t == 0 && b == 1) {
        EXPECT_EQ(a.d[k], 0.0f);
        for (int i = 0; i < 32; ++i) EXPECT_EQ(q[i], 0);
        continue;
      }
      if (t == 0 && b == 2) {
        EXPECT_TRUE(std::isnan(a.d[k]));
        continue;
      }
      float amax = 0;
      for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(xb[i]));
      EXPECT_EQ(a.d[k], amax / 127.0f);
      int isum = 0, at_max = 0;
      for (int i = 0; i < 32; ++i) {
        ASSERT_LE(std::abs(int{q[i]}), 127);
        // d/2, plus the roundings of 127/amax and amax/127 (a few units of 2^-24 of 127·d)
        ASSERT_LE(std::fabs(double(xb[i]) - double(q[i]) * a.d[k]), a.d[k] * (0.5 + 1e-4))
            << "t=" << t << " b=" << b << " i=" << i;
        at_max += std::abs(int{q[i]}) == 127;
        isum += q[i];
      }
      EXPECT_GE(at_max, 1);
      EXPECT_EQ(a.sum[k], a.d[k] * static_cast<float>(isum));
      EXPECT_EQ(a.ds[2 * k], a.d[k]);
      EXPECT_EQ(a.ds[2 * k + 1], a.sum[k]);
    }
}

TEST(QBlocks, VectorActivationQuantisationIsTheSpecification) {
  // Every isa's QuantizeActs = the scalar specification bit for bit (q, d, sum, the pairs), on
  // random blocks, a zero block, Inf, NaN, -0 and exact ties (amax = 127: x·(127/amax) = x, so
  // ±k.5 must round to the even neighbour).
  const int64_t n = 3, cols = 256, xs = cols + 3;
  std::vector<float> x = test::RandomVector(n * xs, 21, 3.0f);
  for (int i = 0; i < 32; ++i) x[32 + i] = i % 2 == 0 ? 0.0f : -0.0f;  // zeros (block 1)
  x[70] = -std::numeric_limits<float>::infinity();                     // block 2
  x[xs + 100] = std::numeric_limits<float>::quiet_NaN();               // token 1, block 3
  for (int i = 0; i < 32; ++i) x[xs + 160 + i] = static_cast<float>(i - 16) + 0.5f;  // ties
  x[xs + 160] = 127.0f;
  qblocks::QuantizedActs spec;
  qblocks::QuantizeActs(x.data(), xs, n, cols, spec);
  for (Isa isa : kIsas) {
    if (!DetectCpu().Supports(isa)) continue;
    qblocks::QuantizedActs got;
    qblocks::QuantizeActs(isa, x.data(), xs, n, cols, got);
    ASSERT_EQ(got.q, spec.q) << IsaName(isa);
    ASSERT_EQ(got.blocks, spec.blocks);
    for (size_t k = 0; k < spec.d.size(); ++k) {
      ASSERT_EQ(std::memcmp(&got.d[k], &spec.d[k], 4), 0) << IsaName(isa) << " d " << k;
      ASSERT_EQ(std::memcmp(&got.sum[k], &spec.sum[k], 4), 0) << IsaName(isa) << " sum " << k;
      ASSERT_EQ(std::memcmp(&got.ds[2 * k], &spec.d[k], 4), 0) << IsaName(isa) << " pair " << k;
      ASSERT_EQ(std::memcmp(&got.ds[2 * k + 1], &spec.sum[k], 4), 0) << IsaName(isa);
    }
  }
  // The ties went to the even neighbour (the specification itself).
  const int8_t* tie = spec.q.data() + cols + 160;
  EXPECT_EQ(tie[1], -14);                  // -14.5
  EXPECT_EQ(tie[2], -14);                  // -13.5
  EXPECT_EQ(tie[3], -12);                  // -12.5
  EXPECT_EQ(tie[31], 16);                  // 15.5
  EXPECT_EQ(spec.d[1], 0.0f);              // the zero block
  EXPECT_TRUE(std::isnan(spec.d[2]));      // -Inf
  EXPECT_TRUE(std::isnan(spec.d[8 + 3]));  // NaN
  EXPECT_EQ(spec.d[8 + 5], 1.0f);          // the ties block: amax = 127
}

// The layout's split of every weight, w = a − m (Q8_0: a = d·q, m = 0; Q4_K and Q5_K:
// a = (d·sc_j)·q, m = dmin·m_j; Q6_K: a = (d·sc_i)·(u − 32), m = 0; Q2_K: a = (d·sc_i)·q,
// m = dmin·m_i; Q3_K: a = (d·s_i)·q, m = 0; IQ4_NL / IQ4_XS: a = step·level, m = 0; levels
// restated here from the layout), in f64 from the f32
// factors the kernels use; checked to round to DequantizeRow's value.
void Split(const BlockMatrix& m, int64_t r, std::vector<double>& a, std::vector<double>& mins) {
  a.assign(m.cols, 0.0);
  mins.assign(m.cols, 0.0);
  const auto* row =
      reinterpret_cast<const uint8_t*>(m.bytes.data()) + r * DTypeRowBytes(m.dtype, m.cols);
  auto f16 = [](const uint8_t* p) { return F16ToFloat(static_cast<uint16_t>(p[0] | (p[1] << 8))); };
  if (m.dtype == DType::kQ8_0) {
    for (int64_t c = 0; c < m.cols; ++c) {
      const uint8_t* blk = row + 34 * (c / 32);
      a[c] = double(f16(blk)) * static_cast<int8_t>(blk[2 + c % 32]);
    }
  } else if (m.dtype == DType::kIQ4_NL || m.dtype == DType::kIQ4_XS) {
    // IQ4_NL: f16 d, qs[16]; IQ4_XS: f16 d, u16 scales_h, scales_l[4], qs[128].
    static constexpr int kLevels[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                        1,    13,   25,  38,  53,  69,  89,  113};
    const bool xs = m.dtype == DType::kIQ4_XS;
    for (int64_t c = 0; c < m.cols; ++c) {
      const uint8_t* blk = row + (xs ? 136 * (c / 256) : 18 * (c / 32));
      const int j = xs ? static_cast<int>(c % 256) / 32 : 0, l = static_cast<int>(c % 32);
      float step = f16(blk);
      if (xs) {
        const int hi = ((blk[2] | (blk[3] << 8)) >> (2 * j)) & 3;
        const int lo = (blk[4 + j / 2] >> (4 * (j % 2))) & 15;
        step = step * static_cast<float>((lo | (hi << 4)) - 32);
      }
      const uint8_t byte = blk[(xs ? 8 + 16 * j : 2) + l % 16];
      a[c] = double(step) * kLevels[l < 16 ? (byte & 15) : (byte >> 4)];
    }
  } else if (m.dtype == DType::kQ2_K) {  // scales[16], qs[64], f16 d, f16 dmin
    for (int64_t c = 0; c < m.cols; ++c) {
      const uint8_t* blk = row + 84 * (c / 256);
      const int e = static_cast<int>(c % 256), n = e / 128, j = (e % 128) / 32, l = e % 32;
      const int q = (blk[16 + 32 * n + l] >> (2 * j)) & 3;
      const uint8_t sc = blk[e / 16];
      a[c] = double(f16(blk + 80) * static_cast<float>(sc & 15)) * q;
      mins[c] = double(f16(blk + 82) * static_cast<float>(sc >> 4));
    }
  } else if (m.dtype == DType::kQ3_K) {  // hmask[32], qs[64], scales[12], f16 d
    for (int64_t c = 0; c < m.cols; ++c) {
      const uint8_t* blk = row + 110 * (c / 256);
      const int e = static_cast<int>(c % 256), n = e / 128, j = (e % 128) / 32, l = e % 32;
      const int g = e / 16;
      const int low4 = g < 8 ? (blk[96 + g] & 15) : (blk[96 + g - 8] >> 4);
      const int sc = (low4 | (((blk[104 + g % 4] >> (2 * (g / 4))) & 3) << 4)) - 32;
      const int q = ((blk[32 + 32 * n + l] >> (2 * j)) & 3) - (((blk[l] >> (4 * n + j)) & 1) ? 0 : 4);
      a[c] = double(f16(blk + 108) * static_cast<float>(sc)) * q;
    }
  } else if (m.dtype == DType::kQ6_K) {  // ql[128], qh[64], int8 scales[16], f16 d
    for (int64_t c = 0; c < m.cols; ++c) {
      const uint8_t* blk = row + 210 * (c / 256);
      const int e = static_cast<int>(c % 256), n = e / 128, k = (e % 128) / 32, l = e % 32;
      const uint8_t byte = blk[64 * n + 32 * (k % 2) + l];
      const int top = (blk[128 + 32 * n + l] >> 2 * k) & 3;
      const int u = (k < 2 ? (byte & 0xF) : (byte >> 4)) | (top << 4);
      const int sc = static_cast<int8_t>(blk[192 + 8 * n + 2 * k + l / 16]);
      a[c] = double(f16(blk + 208) * static_cast<float>(sc)) * (u - 32);
    }
  } else {  // Q4_K: d, dmin, scales[12], qs[128]; Q5_K: d, dmin, scales[12], qh[32], qs[128]
    const bool q5 = m.dtype == DType::kQ5_K;
    for (int64_t c = 0; c < m.cols; ++c) {
      const uint8_t* blk = row + (q5 ? 176 : 144) * (c / 256);
      const int e = static_cast<int>(c % 256), j = e / 32, l = e % 32;
      uint8_t sc, mn;
      UnpackK4Scale(blk + 4, j, &sc, &mn);
      const uint8_t byte = blk[(q5 ? 48 : 16) + 32 * (j / 2) + l];
      int q = j % 2 == 0 ? (byte & 0xF) : (byte >> 4);
      if (q5) q += ((blk[16 + l] >> j) & 1) * 16;
      a[c] = double(f16(blk) * static_cast<float>(sc)) * q;
      mins[c] = double(f16(blk + 2) * static_cast<float>(mn));
    }
  }
  for (int64_t c = 0; c < m.cols; ++c) {  // DequantizeRow: fl(fl(a) − m)
    const float af = static_cast<float>(a[c]), mf = static_cast<float>(mins[c]);
    ASSERT_EQ(af - mf, m.f32[r * m.cols + c]) << "split of c=" << c;
  }
}

class Int8Test : public ::testing::TestWithParam<DType> {};

TEST_P(Int8Test, SpecificationVnniAndActivationBound) {
  const DType t = GetParam();
  // Q8_0, IQ4_NL: 9 blocks (an odd tail)
  const int64_t rows = 21, cols = t == DType::kQ8_0 || t == DType::kIQ4_NL ? 288 : 512;
  const int64_t blocks = cols / 32, n = 11, xs = cols + 5, ys = rows + 1;
  BlockMatrix m = MakeBlocks(t, rows, cols, 31, /*random_bytes=*/true);
  m.view.int8_activations = true;
  std::vector<float> x = test::RandomVector(n * xs, 8);
  for (int64_t c = 64; c < 96; ++c) x[2 * xs + c] = 0.0f;  // a zero block in token 2
  qblocks::QuantizedActs acts;
  qblocks::QuantizeActs(x.data(), xs, n, cols, acts);
  const std::vector<float> spec = Rows(Isa::kScalar, m.view, x, xs, n, 0, rows, ys);
  // The vector paths this CPU runs: AVX2 (vpmaddubsw) and AVX-512 (VNNI when present).
  std::vector<std::pair<std::string, std::vector<float>>> fast;
  for (Isa isa : {Isa::kAvx2, Isa::kAvx512})
    if (DetectCpu().Supports(isa))
      fast.emplace_back(std::string(IsaName(isa)) + (qblocks::Int8UsesVnni(isa) ? " vnni" : ""),
                        Rows(isa, m.view, x, xs, n, 0, rows, ys));
  std::vector<double> a, mins;
  for (int64_t r = 0; r < rows; ++r) {
    ASSERT_NO_FATAL_FAILURE(Split(m, r, a, mins));
    for (int64_t tk = 0; tk < n; ++tk) {
      double model = 0, mag = 0, f32_exact = 0, act_bound = 0, f32_mag = 0;
      for (int64_t c = 0; c < cols; ++c) {
        const double d = acts.d[tk * blocks + c / 32];
        const double xq = acts.q[tk * cols + c] * d, xv = x[tk * xs + c];
        model += (a[c] - mins[c]) * xq;
        mag += (std::fabs(a[c]) + std::fabs(mins[c])) * std::fabs(xq);
        const double w = m.f32[r * cols + c];
        f32_exact += w * xv;
        f32_mag += std::fabs(w * xv) + (std::fabs(a[c]) + std::fabs(mins[c])) * std::fabs(xv);
        act_bound += (std::fabs(a[c]) + std::fabs(mins[c])) * d * (0.5 + 1e-4);
      }
      const double g = Gamma(2 * blocks + 4);
      const float s = spec[tk * ys + r];
      ASSERT_LE(std::fabs(s - model), g * mag) << DTypeName(t) << " spec r=" << r << " t=" << tk;
      for (const auto& [name, y] : fast)
        ASSERT_LE(std::fabs(y[tk * ys + r] - s), 2 * g * mag)
            << DTypeName(t) << " " << name << " vs the specification r=" << r << " t=" << tk;
      // The activation rounding is the only other difference from the f32 product (plus the
      // f32 roundings of both products).
      ASSERT_LE(std::fabs(s - f32_exact), act_bound + g * mag + Gamma(cols + 4) * f32_mag)
          << DTypeName(t) << " vs f32 activations r=" << r << " t=" << tk;
    }
  }
  if (!qblocks::Int8UsesVnni(Isa::kAvx512))
    GTEST_SKIP() << "no AVX-512 VNNI here: the VNNI kernel was not checked";
}

TEST_P(Int8Test, BatchAndThreadInvariant) {
  const DType t = GetParam();
  // (large enough for the threads: a GEMM whose tokens the threads quantise and prepare)
  const int64_t rows = 1000, cols = 1024, n = 13;
  BlockMatrix m = MakeBlocks(t, rows, cols, 41, /*random_bytes=*/IsIn(kDecodeOnlyTypes, t));
  m.view.int8_activations = true;
  const std::vector<float> x = test::RandomVector(n * cols, 12);
  for (Isa isa : kIsas) {
    if (!DetectCpu().Supports(isa)) continue;
    const std::vector<float> all = Rows(isa, m.view, x, cols, n, 0, rows, rows);
    for (int64_t tk : {0, 5, 12}) {
      const std::vector<float> xt(x.begin() + tk * cols, x.begin() + (tk + 1) * cols);
      const std::vector<float> one = Rows(isa, m.view, xt, cols, 1, 0, rows, rows);
      ASSERT_EQ(std::memcmp(one.data(), all.data() + tk * rows, rows * sizeof(float)), 0)
          << Name(isa, t) << " token " << tk << " alone vs in a batch of " << n;
    }
    for (int64_t batch : {2, 3}) {  // token groups of the kernels (13 = 4+4+4+1; Q8_0, IQ4: 8+5)
      const std::vector<float> xb(x.begin() + 3 * cols, x.begin() + (3 + batch) * cols);
      const std::vector<float> some = Rows(isa, m.view, xb, cols, batch, 0, rows, rows);
      ASSERT_EQ(std::memcmp(some.data(), all.data() + 3 * rows, batch * rows * sizeof(float)), 0)
          << Name(isa, t) << " tokens 3.." << 3 + batch - 1 << " vs in a batch of " << n;
    }
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    const std::vector<float> single = Rows(isa, m.view, x, cols, n, 0, rows, rows);
    omp_set_num_threads(threads);
    ASSERT_EQ(single, all) << Name(isa, t) << " one thread vs " << threads;
  }
}

// Every block type (Q8_0, Q4_K, Q5_K, Q6_K, Q2_K, Q3_K, IQ4_NL, IQ4_XS) in 16-row tiles on AVX-512
// VNNI and on AVX2 (qblocks.h Int8TileRows, what the model runs with the
// loader's copy): the scalar specification's bits exactly, through LinearRows as the model calls
// it — GEMV (n ≤ 8) and GEMM (n > 8, token tails of the 6-token tile), one chunk of the GEMM's 512
// columns and several (Q8_0 and IQ4_NL 9 and 37 blocks, the K-quants and IQ4_XS 2 and 5 super-blocks), a last tile of 13 rows,
// ranges starting inside a tile, zero and Inf activation blocks, an Inf weight step, random codes
// and scales (every nibble and 6-bit pattern), and on 1 and 2 threads.
class Int8TilesTest : public ::testing::TestWithParam<DType> {};

TEST_P(Int8TilesTest, IsTheSpecificationBitForBit) {
  const DType t = GetParam();
  // AVX-512 VNNI and AVX2 (qblocks_tiles_avx2.cc), each where this CPU has it.
  std::vector<Isa> isas;
  if (qblocks::Int8UsesVnni(Isa::kAvx512)) isas.push_back(Isa::kAvx512);
  if (qblocks::Int8UsesAvx2(Isa::kAvx2)) isas.push_back(Isa::kAvx2);
  if (isas.empty()) GTEST_SKIP() << "neither AVX-512 VNNI nor AVX2 here";
  for (const Isa isa : isas) {
    SCOPED_TRACE(isa == Isa::kAvx512 ? "avx512 vnni" : "avx2");
    const bool q8 = t == DType::kQ8_0 || t == DType::kIQ4_NL;  // 32-column blocks
    for (const int64_t cols : {q8 ? int64_t{288} : int64_t{512}, q8 ? int64_t{1184} : int64_t{1280}}) {
      const int64_t rows = 77, xs = cols + 3;
      BlockMatrix m = MakeBlocks(t, rows, cols, 71, /*random_bytes=*/true);
      const uint16_t inf = 0x7C00;  // row 3, its second (super-)block: d = +Inf
      const int64_t d_at = t == DType::kQ6_K ? 208 : t == DType::kQ2_K ? 80 : t == DType::kQ3_K ? 108 : 0;
      std::memcpy(&m.bytes[3 * DTypeRowBytes(t, cols) + DTypeSize(t) + d_at], &inf, 2);
      // Row 7: the largest codes everywhere (Q4_K 15, Q5_K 31, Q6_K u = 63, Q8_0 −128, Q2_K 3,
      // Q3_K u = 7, IQ4 index 0: level −127; IQ4_XS's scales 31), met by
      // token 2's q = 127 in every column: the 16-bit partial sums of the AVX2 kernels at their
      // largest (for Q5_K and Q6_K a group of twice as many quads would overflow).
      for (int64_t blk = 0; blk < cols / DTypeBlockElems(t); ++blk) {
        auto* p = reinterpret_cast<uint8_t*>(&m.bytes[7 * DTypeRowBytes(t, cols) + blk * DTypeSize(t)]);
        if (t == DType::kQ8_0) std::memset(p + 2, 0x80, 32);
        if (t == DType::kQ4_K) std::memset(p + 4, 0xFF, 140);
        if (t == DType::kQ5_K) std::memset(p + 4, 0xFF, 172);
        if (t == DType::kQ6_K) std::memset(p, 0xFF, 208);
        if (t == DType::kQ2_K) std::memset(p, 0xFF, 80);  // codes 3, scales and mins 15
        if (t == DType::kQ3_K) std::memset(p, 0xFF, 96);  // u = 7 (q = 3)
        if (t == DType::kIQ4_NL) std::memset(p + 2, 0x00, 16);
        if (t == DType::kIQ4_XS) {
          std::memset(p + 2, 0xFF, 6);  // ls = 63
          std::memset(p + 8, 0x00, 128);
        }
      }
      m.view.int8_activations = true;
      const std::shared_ptr<const OwnedWeight> tiles = RepackBlocksBf16(m.view);
      WeightView tiled = m.view;
      tiled.repacked = &tiles->view;
      const int64_t n_max = 13;
      std::vector<float> x = test::RandomVector(n_max * xs, 17);
      for (int64_t c = 32; c < 64; ++c) x[1 * xs + c] = 0.0f;  // token 1, block 1: zeros
      x[4 * xs + 100] = std::numeric_limits<float>::infinity();  // token 4, block 3: d = NaN
      for (int64_t c = 0; c < cols; ++c) x[2 * xs + c] = 0.5f;  // token 2: q = 127 everywhere
      for (const int64_t n : {1, 2, 3, 4, 5, 6, 7, 8, 9, 13}) {
        for (const auto& [rb, re] : {std::pair<int64_t, int64_t>{0, rows}, {5, rows}, {16, 40}, {21, 30}}) {
          const int64_t ys = re - rb + 2;
          const std::vector<float> spec = Rows(Isa::kScalar, m.view, x, xs, n, rb, re, ys);
          const std::vector<float> got = Rows(isa, tiled, x, xs, n, rb, re, ys);
          for (int64_t tk = 0; tk < n; ++tk)
            for (int64_t r = 0; r < re - rb; ++r) {
              // Equal bits, or both NaN: where two NaNs meet (an Inf step times a zero scale,
              // times a NaN activation step) which one an operation returns depends on the
              // operand order the compiler chose, which C++ leaves open.
              const float a = spec[tk * ys + r], b = got[tk * ys + r];
              ASSERT_TRUE(std::memcmp(&a, &b, sizeof a) == 0 || (std::isnan(a) && std::isnan(b)))
                  << DTypeName(t) << " cols " << cols << " n " << n << " rows [" << rb << ", " << re
                  << ") token " << tk << " row " << rb + r << ": " << b << " vs the specification's "
                  << a;
            }
        }
      }
    }
    // Large enough for the threads (LinearRows splits the rows at tiles; a GEMM's tokens are
    // quantised and prepared by the threads, each a range of tokens): 1 and 2 threads.
    BlockMatrix m = MakeBlocks(t, 600, 2048, 73, /*random_bytes=*/true);
    m.view.int8_activations = true;
    const std::shared_ptr<const OwnedWeight> tiles = RepackBlocksBf16(m.view);
    WeightView tiled = m.view;
    tiled.repacked = &tiles->view;
    for (const int64_t n : {1, 9, 40}) {
      const std::vector<float> x = test::RandomVector(n * 2048, 19);
      const std::vector<float> spec = Rows(Isa::kScalar, m.view, x, 2048, n, 0, 600, 600);
      const std::vector<float> threaded = Rows(isa, tiled, x, 2048, n, 0, 600, 600);
      const int threads = omp_get_max_threads();
      omp_set_num_threads(1);
      const std::vector<float> single = Rows(isa, tiled, x, 2048, n, 0, 600, 600);
      omp_set_num_threads(threads);
      ASSERT_EQ(std::memcmp(spec.data(), threaded.data(), spec.size() * sizeof(float)), 0) << n;
      ASSERT_EQ(std::memcmp(spec.data(), single.data(), spec.size() * sizeof(float)), 0) << n;
    }
  }  // isa
}

INSTANTIATE_TEST_SUITE_P(Types, Int8TilesTest,
                         ::testing::Values(DType::kQ8_0, DType::kQ4_K, DType::kQ5_K,
                                           DType::kQ6_K, DType::kQ2_K, DType::kQ3_K,
                                           DType::kIQ4_NL, DType::kIQ4_XS),
                         [](const auto& info) { return std::string(DTypeName(info.param)); });

INSTANTIATE_TEST_SUITE_P(Types, Int8Test,
                         ::testing::Values(DType::kQ8_0, DType::kQ4_K, DType::kQ5_K, DType::kQ6_K,
                                           DType::kQ2_K, DType::kQ3_K, DType::kIQ4_NL,
                                           DType::kIQ4_XS),
                         [](const auto& info) { return std::string(DTypeName(info.param)); });

}  // namespace
}  // namespace dsinfer
