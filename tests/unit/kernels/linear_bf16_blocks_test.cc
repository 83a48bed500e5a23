// The bf16-activation product on Q8_0, Q4_K, Q5_K, Q6_K, IQ4_NL and IQ4_XS weights (`LinearRowsBf16`, docs/numerics.md
// "bf16 numerics"): the scalar specification on the weight as a GGUF file stores it, and the
// AVX512-BF16 path (when this CPU has it) on its repacked form (RepackBlocksBf16) — as the model
// calls it and with each kernel forced (the GEMV of decode, the GEMM of prefill). The two kernels
// must agree BIT FOR BIT on every output; each must stay within the bound below of the truth.
//
// Truth, independent of the library: the weights are made here from chosen fields (Q8_0: d and
// int8 codes; Q4_K / Q5_K: d, dmin, 6-bit sc/m per 32-column sub-block, 4-/5-bit codes; Q6_K: d, int8
// scales per 16-column sub-block, 6-bit codes u, q = u − 32; IQ4_NL: d and 4-bit indices whose
// levels are the codes; IQ4_XS: d, 6-bit ls per 32-column sub-block, s = d·(ls − 32)), encoded into
// ggml's byte layout by this file (format/ggml_types.h documents it; the encoding is checked
// against `DequantizeRow`, itself bitwise ggml's by tests/llamacpp), and the truth is the f64 sum
// Σ_b [s_b · Σ_c bf16(x_c)·q_c − mm_b · Σ_c bf16(x_c)] with s_b = d·sc, mm_b = dmin·m (exact).
// Bound, derived: every product bf16 × small integer is exact in f32; a term passes through at
// most d = bw additions in its block's chain (bw = 32 columns, Q6_K 16), one fma into the total,
// one fma of the min and nb = K/bw later folds of the running total, so each path is within γ_d·Σ|terms| of the truth
// (Σ|terms| = Σ_b |s_b|·Σ|x·q| + |mm_b|·Σ|x|), two paths within 2·γ_d. With small integers all
// sums are exact: then every path equals the truth bit for bit.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "base/error.h"
#include "format/dtype.h"
#include "format/ggml_types.h"
#include "kernels/cpu.h"
#include "kernels/linear.h"
#include "kernels/linear_bf16.h"
#include "kernels/weight.h"
#include "linear_bf16_test_util.h"
#include "linear_test_util.h"

namespace dsinfer {
namespace {

using test::kSentinel;

// Columns per scale block: 32 (Q8_0, Q4_K's sub-blocks) or 16 (Q6_K's).
int64_t BlockWidth(DType dtype) { return dtype == DType::kQ6_K ? 16 : 32; }

// A Q8_0, Q4_K, Q5_K, Q6_K, IQ4_NL or IQ4_XS matrix built from its fields.
struct FieldMatrix {
  DType dtype;
  int64_t rows = 0, cols = 0;
  std::vector<uint8_t> bytes;       // the GGUF rows
  std::vector<double> code;         // [rows, cols] q
  std::vector<double> scale, min;   // [rows, cols / BlockWidth] s_b, mm_b (mm: Q4_K, Q5_K)
  WeightView view;
};

void PutHalf(uint8_t* p, uint16_t h) {
  p[0] = static_cast<uint8_t>(h & 0xFF);
  p[1] = static_cast<uint8_t>(h >> 8);
}

// Q4_K's 12-byte scales field from sc[8], m[8] (6 bits each): bytes 0-3 sc_0..3 low 6 bits with
// sc_4..7's top 2 bits above; bytes 4-7 the same for m; bytes 8-11: sc_{4+i} low 4 bits | m_{4+i}
// low 4 bits << 4.
void PackK4Scales(const int* sc, const int* m, uint8_t* out) {
  for (int i = 0; i < 4; ++i) {
    out[i] = static_cast<uint8_t>((sc[i] & 63) | ((sc[4 + i] >> 4) << 6));
    out[4 + i] = static_cast<uint8_t>((m[i] & 63) | ((m[4 + i] >> 4) << 6));
    out[8 + i] = static_cast<uint8_t>((sc[4 + i] & 15) | ((m[4 + i] & 15) << 4));
  }
}

// `integers`: d = dmin = 1 and small codes/scales (exact sums with integer activations).
FieldMatrix MakeFieldBlocks(DType dtype, int64_t rows, int64_t cols, uint32_t seed,
                       bool integers = false) {
  FieldMatrix m{dtype, rows, cols, {}, {}, {}, {}, {}};
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> mag(0.002f, 0.05f);
  const int64_t bw = BlockWidth(dtype), nb = cols / bw, row_bytes = DTypeRowBytes(dtype, cols);
  m.bytes.assign(rows * row_bytes, 0);
  m.code.assign(rows * cols, 0);
  m.scale.assign(rows * nb, 0);
  m.min.assign(rows * nb, 0);
  for (int64_t r = 0; r < rows; ++r) {
    uint8_t* row = m.bytes.data() + r * row_bytes;
    if (dtype == DType::kQ8_0) {
      for (int64_t b = 0; b < nb; ++b) {
        const float d = integers ? 1.0f : (rng() % 2 ? 1.0f : -1.0f) * mag(rng);
        const uint16_t h = FloatToF16(d);
        PutHalf(row + 34 * b, h);
        m.scale[r * nb + b] = F16ToFloat(h);
        for (int c = 0; c < 32; ++c) {
          const int q = integers ? static_cast<int>(rng() % 7) - 3 : static_cast<int>(rng() % 256) - 128;
          row[34 * b + 2 + c] = static_cast<uint8_t>(static_cast<int8_t>(q));
          m.code[r * cols + 32 * b + c] = q;
        }
      }
      continue;
    }
    if (dtype == DType::kIQ4_NL || dtype == DType::kIQ4_XS) {
      // IQ4_NL: 18-byte blocks (f16 d | qs[16]); IQ4_XS: 136-byte super-blocks (f16 d | u16
      // scales_h | scales_l[4] | qs[128]), sub-block j's 6-bit ls: low 4 bits in nibble j % 2 of
      // scales_l[j / 2], high 2 at bits 2j of scales_h. Element i < 16 of a 32-element (sub-)block
      // is the low nibble of its qs[i], i + 16 the high one. Integers: levels times d = 1 and
      // ls − 32 ∈ {1, 2}.
      const bool xs = dtype == DType::kIQ4_XS;
      for (int64_t blk0 = 0; blk0 < cols / (xs ? 256 : 32); ++blk0) {
        uint8_t* blk = row + (xs ? 136 : 18) * blk0;
        const float dv = integers ? 1.0f : (rng() % 2 ? 1.0f : -1.0f) * mag(rng);
        const uint16_t d = FloatToF16(dv);
        PutHalf(blk, d);
        for (int j = 0; j < (xs ? 8 : 1); ++j) {
          const int64_t b = (xs ? 8 : 1) * blk0 + j;
          double step = F16ToFloat(d);
          if (xs) {
            const int ls = integers ? 33 + static_cast<int>(rng() % 2) : static_cast<int>(rng() % 64);
            blk[4 + j / 2] |= static_cast<uint8_t>((ls & 15) << (4 * (j % 2)));
            const uint16_t h = static_cast<uint16_t>(blk[2] | blk[3] << 8 | (ls >> 4) << (2 * j));
            PutHalf(blk + 2, h);
            step *= ls - 32;
          }
          m.scale[r * nb + b] = step;
          uint8_t* qs = blk + (xs ? 8 + 16 * j : 2);
          for (int i = 0; i < 32; ++i) {
            const int idx = static_cast<int>(rng() % 16);
            qs[i % 16] |= static_cast<uint8_t>(idx << (i < 16 ? 0 : 4));
            m.code[r * cols + 32 * b + i] = kIq4Levels[idx];
          }
        }
      }
      continue;
    }
    if (dtype == DType::kQ6_K) {
      for (int64_t s = 0; s < cols / 256; ++s) {
        uint8_t* blk = row + 210 * s;
        const uint16_t d = FloatToF16(integers ? 1.0f : mag(rng));
        PutHalf(blk + 208, d);
        for (int i = 0; i < 16; ++i) {
          const int sc = integers ? static_cast<int>(rng() % 5) - 2 : static_cast<int>(rng() % 256) - 128;
          blk[192 + i] = static_cast<uint8_t>(static_cast<int8_t>(sc));
          m.scale[r * nb + 16 * s + i] = static_cast<double>(F16ToFloat(d)) * sc;
        }
        // Element e (half h = e/128, quarter k = (e%128)/32, l = e%32): low 4 bits of u in
        // ql[64h + l + 32(k odd)] (low nibble for k < 2, high for k ≥ 2), high 2 bits at bit 2k
        // of qh[32h + l] (qh at byte 128); q = u − 32.
        for (int e = 0; e < 256; ++e) {
          const int u = integers ? 29 + static_cast<int>(rng() % 7) : static_cast<int>(rng() % 64);
          const int h = e / 128, k = (e % 128) / 32, l = e % 32;
          uint8_t& lo = blk[64 * h + l + 32 * (k % 2)];
          lo = static_cast<uint8_t>(k < 2 ? (lo & 0xF0) | (u & 15) : (lo & 0x0F) | (u & 15) << 4);
          blk[128 + 32 * h + l] |= static_cast<uint8_t>((u >> 4) << (2 * k));
          m.code[r * cols + 256 * s + e] = u - 32;
        }
      }
      continue;
    }
    // Q4_K (144-byte blocks: d, dmin, scales, qs at 16) and Q5_K (176: the same with qh at 16
    // and qs at 48; code bit 4 of element e at bit e/32 of qh[e%32]).
    const bool q5 = dtype == DType::kQ5_K;
    for (int64_t s = 0; s < cols / 256; ++s) {
      uint8_t* blk = row + (q5 ? 176 : 144) * s;
      const uint16_t d = FloatToF16(integers ? 1.0f : mag(rng));
      const uint16_t dmin = FloatToF16(integers ? 1.0f : mag(rng));
      PutHalf(blk, d);
      PutHalf(blk + 2, dmin);
      int sc[8], mn[8];
      for (int j = 0; j < 8; ++j) {
        sc[j] = integers ? static_cast<int>(rng() % 3) : static_cast<int>(rng() % 64);
        mn[j] = integers ? static_cast<int>(rng() % 3) : static_cast<int>(rng() % 64);
        m.scale[r * nb + 8 * s + j] = static_cast<double>(F16ToFloat(d)) * sc[j];
        m.min[r * nb + 8 * s + j] = static_cast<double>(F16ToFloat(dmin)) * mn[j];
      }
      PackK4Scales(sc, mn, blk + 4);
      for (int e = 0; e < 256; ++e) {  // element e: qs[32·(e/64) + e%32], low nibble if (e/32) even
        int q = static_cast<int>(rng() % (integers ? 4 : q5 ? 32 : 16));
        if (integers && q5) q += 14 * static_cast<int>(rng() % 2);  // 0..3 or 14..17
        uint8_t& byte = blk[(q5 ? 48 : 16) + 32 * (e / 64) + e % 32];
        byte = static_cast<uint8_t>((e / 32) % 2 == 0 ? (byte & 0xF0) | (q & 15)
                                                      : (byte & 0x0F) | (q & 15) << 4);
        if (q5) blk[16 + e % 32] |= static_cast<uint8_t>((q >> 4) << (e / 32));
        m.code[r * cols + 256 * s + e] = q;
      }
    }
  }
  m.view = WeightView{.dtype = dtype, .rows = rows, .cols = cols, .data = m.bytes.data()};
  // The encoding is ggml's: DequantizeRow (bitwise ggml's decoder) gives f32(s·q) − f32(mm).
  std::vector<float> dq(cols);
  const GgmlType gt = GgmlOfBlockDType(dtype);
  for (int64_t r = 0; r < rows; ++r) {
    DequantizeRow(gt, {reinterpret_cast<const std::byte*>(m.bytes.data()) + r * row_bytes,
                       static_cast<size_t>(row_bytes)},
                  dq);
    for (int64_t c = 0; c < cols; ++c) {
      const float want = static_cast<float>(m.scale[r * nb + c / bw] * m.code[r * cols + c]) -
                         static_cast<float>(m.min[r * nb + c / bw]);
      if (dq[c] != want) {
        ADD_FAILURE() << "test encoder disagrees with DequantizeRow at " << r << "," << c;
        return m;
      }
    }
  }
  return m;
}

using test::Impl;
using test::Impls;
using test::RoundBf16;

class BlocksBf16Test : public ::testing::TestWithParam<DType> {
 protected:
  void Check(const FieldMatrix& m, int64_t n, int64_t rb, int64_t re, int64_t pad,
             bool integers = false) {
    const int64_t K = m.cols, bw = BlockWidth(m.dtype), nb = K / bw, width = re - rb,
                  xs = K + pad, ys = width + pad;
    const std::vector<float> x =
        integers ? test::IntegerVector(n * xs, static_cast<uint32_t>(n + K))
                 : test::RandomVector(n * xs, static_cast<uint32_t>(n * 7 + rb + K));
    std::vector<double> exact(n * width, 0.0), magnitude(n * width, 0.0);
    for (int64_t t = 0; t < n; ++t)
      for (int64_t r = rb; r < re; ++r)
        for (int64_t b = 0; b < nb; ++b) {
          double dot = 0, abs_dot = 0, sum = 0, abs_sum = 0;
          for (int64_t c = bw * b; c < bw * b + bw; ++c) {
            const double xv = RoundBf16(x[t * xs + c]), q = m.code[r * K + c];
            dot += xv * q;
            abs_dot += std::fabs(xv * q);
            sum += xv;
            abs_sum += std::fabs(xv);
          }
          const double s = m.scale[r * nb + b], mm = m.min[r * nb + b];
          exact[t * width + r - rb] += s * dot - mm * sum;
          magnitude[t * width + r - rb] += std::fabs(s) * abs_dot + std::fabs(mm) * abs_sum;
        }
    const double g = test::Gamma(bw + 2 + nb);
    const auto packed = RepackBlocksBf16(m.view);
    std::vector<std::vector<float>> ys_all;
    for (const Impl& impl : Impls()) {
      const std::string what = impl.Name() + " " + std::string(DTypeName(m.dtype)) + " " +
                               std::to_string(m.rows) + "x" + std::to_string(K) +
                               " n=" + std::to_string(n) + " rows[" + std::to_string(rb) + "," +
                               std::to_string(re) + ")";
      std::vector<float> y(n * ys, kSentinel);  // the specification reads the stored form
      impl.Run(x.data(), xs, n, impl.scalar ? m.view : packed->view, rb, re, y.data(), ys);
      for (int64_t t = 0; t < n; ++t) {
        for (int64_t j = 0; j < width; ++j) {
          const double e = exact[t * width + j], mag = magnitude[t * width + j];
          const float v = y[t * ys + j];
          if (integers) {
            ASSERT_EQ(v, e) << what << " t=" << t << " j=" << j;
          } else {
            ASSERT_LE(std::fabs(v - e), g * mag) << what << " vs f64 t=" << t << " j=" << j;
          }
          if (!ys_all.empty()) {
            ASSERT_LE(std::fabs(v - ys_all[0][t * ys + j]), 2 * g * mag)
                << what << " vs scalar t=" << t << " j=" << j;
          }
        }
        for (int64_t j = width; j < ys; ++j)
          ASSERT_EQ(y[t * ys + j], kSentinel) << what << " wrote padding t=" << t;
        if (ys_all.size() >= 2) {
          ASSERT_EQ(std::memcmp(&y[t * ys], &ys_all[1][t * ys], width * sizeof(float)), 0)
              << what << " differs in its bits from the fast path's auto kernel, row t=" << t;
        }
      }
      ys_all.push_back(std::move(y));
    }
  }
  int64_t Block() const {
    return GetParam() == DType::kQ8_0 || GetParam() == DType::kIQ4_NL ? 32 : 256;
  }
};

// Rows not whole 16-row tiles, ranges from any multiple of 16, several 512-column chunks of the
// GEMM with a tail chunk, n = 1..8 (GEMV passes of 4) and 13, 37 (GEMM tiles of 8 with a tail).
TEST_P(BlocksBf16Test, ShapesRangesAndBatchSizes) {
  struct Case {
    int64_t rows, blocks, rb, re;
  };
  std::vector<Case> cases = {{1, 1, 0, 1},     {5, 3, 0, 5},     {16, 2, 0, 16},
                             {17, 1, 16, 17},  {33, 5, 0, 33},   {70, 4, 16, 70},
                             {130, 3, 48, 129}, {200, 2, 64, 200}};
  if (Block() == 32) {  // a partial last chunk of 512 columns (17 and 33 blocks)
    cases.push_back({40, 17, 0, 40});
    cases.push_back({21, 33, 16, 21});
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    const FieldMatrix m =
        MakeFieldBlocks(GetParam(), c.rows, c.blocks * Block(), static_cast<uint32_t>(10 + i));
    for (int64_t n : {1, 2, 3, 4, 5, 6, 7, 8, 13, 37})
      Check(m, n, c.rb, c.re, /*pad=*/static_cast<int64_t>(i % 3));
  }
}

// A decode and a prefill shape: K = 7168 (224 blocks, 14 chunks), the threads of the GEMV and
// the GEMM.
TEST_P(BlocksBf16Test, ModelShapes) {
  const FieldMatrix m = MakeFieldBlocks(GetParam(), 160, 7168, 3);
  for (int64_t n : {1, 4, 64}) Check(m, n, 0, 160, /*pad=*/0);
}

TEST_P(BlocksBf16Test, ExactOnIntegers) {
  const FieldMatrix m = MakeFieldBlocks(GetParam(), 100, 4 * Block(), 4, /*integers=*/true);
  for (int64_t n : {1, 3, 6, 19}) Check(m, n, 16, 99, /*pad=*/1, /*integers=*/true);
}

// A token's row is bitwise the same alone, in a batch at any position, with any thread count.
// 1000 rows × 1024 columns: large enough for the threaded GEMV (≥ 256 KiB of weights) and GEMM.
TEST_P(BlocksBf16Test, FastPathBatchAndThreadInvariant) {
  if (!DetectCpu().SupportsBf16Dot()) GTEST_SKIP() << "no AVX512-BF16 here";
  const FieldMatrix m = MakeFieldBlocks(GetParam(), 1000, 1024, 8);
  const auto packed = RepackBlocksBf16(m.view);
  const int64_t rb = 96, re = 998, xs = m.cols + 3, ys = re - rb + 1, width = re - rb;
  constexpr int64_t kTotal = 64;
  const std::vector<float> x = test::RandomVector(kTotal * xs, 9);
  auto run = [&](const float* xp, int64_t n, float* y) {
    LinearRowsBf16(Bf16Path::kAvx512Bf16, xp, xs, n, packed->view, rb, re, y, ys);
  };
  ASSERT_NO_FATAL_FAILURE(
      test::ExpectBatchAndThreadInvariant(run, x, xs, ys, width, kTotal, {2, 5, 6, 7, 13, 64}));
}

// The model's dispatch: in bf16 numerics a block weight with a repacked copy (what the loader
// makes for --block-acts bf16) takes LinearBf16 on it; without one, the f32/int8 `Linear`.
TEST_P(BlocksBf16Test, NumericsDispatchNeedsTheRepackedCopy) {
  if (!DetectCpu().Bf16DotUsable()) GTEST_SKIP() << "the bf16 path is not the fast one here";
  const FieldMatrix m = MakeFieldBlocks(GetParam(), 48, 2 * Block(), 5);
  const auto packed = RepackBlocksBf16(m.view);
  WeightView with = m.view;
  with.repacked = &packed->view;
  for (int64_t n : {1, 9}) {
    const std::vector<float> x = test::RandomVector(n * m.cols, static_cast<uint32_t>(n));
    const size_t bytes = n * 48 * sizeof(float);
    std::vector<float> f32(n * 48), bf16(n * 48), got(n * 48);
    Linear(x.data(), n, m.view, f32.data());
    LinearRowsBf16(Bf16Path::kAvx512Bf16, x.data(), m.cols, n, packed->view, 0, 48, bf16.data(), 48);
    Linear(Numerics::kBf16, x.data(), n, m.view, got.data());
    EXPECT_EQ(std::memcmp(got.data(), f32.data(), bytes), 0) << "n=" << n << " without a copy";
    Linear(Numerics::kBf16, x.data(), n, with, got.data());
    EXPECT_EQ(std::memcmp(got.data(), bf16.data(), bytes), 0) << "n=" << n << " with the copy";
    EXPECT_NE(std::memcmp(bf16.data(), f32.data(), bytes), 0) << "n=" << n;
  }
}

// The repacked form runs on the fast path only, the stored one on the scalar one; other kernels
// refuse the repacked form; other block types are not repacked.
TEST_P(BlocksBf16Test, RefusesTheWrongForm) {
  const FieldMatrix m = MakeFieldBlocks(GetParam(), 32, Block(), 6);
  const auto packed = RepackBlocksBf16(m.view);
  std::vector<float> x(m.cols, 1.0f), y(32);
  EXPECT_DEATH(Linear(x.data(), 1, packed->view, y.data()), "reached another kernel");
  EXPECT_DEATH(LinearRowsBf16(Bf16Path::kScalar, x.data(), m.cols, 1, packed->view, 0, 32,
                              y.data(), 32),
               "repacked");
  if (DetectCpu().SupportsBf16Dot()) {
    EXPECT_DEATH(LinearRowsBf16(Bf16Path::kAvx512Bf16, x.data(), m.cols, 1, m.view, 0, 32,
                                y.data(), 32),
                 "repacked");
    EXPECT_DEATH(LinearRowsBf16Kernel(Bf16Kernel::kGemm, x.data(), m.cols, 1, packed->view, 8, 32,
                                      y.data(), 32),
                 "from a row multiple of 16");
  }
  const char* kForms = "row-major Q8_0, Q4_K, Q5_K, Q6_K, Q2_K, Q3_K, IQ4_NL or IQ4_XS";
  EXPECT_DEATH(RepackBlocksBf16(packed->view), kForms);
  WeightView bf16 = m.view;  // a type with no tile form (every block type has one)
  bf16.dtype = DType::kBF16;
  EXPECT_DEATH(RepackBlocksBf16(bf16), kForms);
}

INSTANTIATE_TEST_SUITE_P(BlockDtypes, BlocksBf16Test,
                         ::testing::Values(DType::kQ8_0, DType::kQ4_K, DType::kQ5_K, DType::kQ6_K,
                                           DType::kIQ4_NL, DType::kIQ4_XS),
                         [](const auto& info) { return std::string(DTypeName(info.param)); });

}  // namespace
}  // namespace dsinfer
