// The bf16-activation GEMM (`LinearRowsBf16`, docs/numerics.md "bf16 numerics"): the scalar
// specification and the AVX512-BF16 path (when this CPU has it) — as the model calls it and
// with each of its two kernels forced (kernels/linear_bf16.h: the GEMV of decode, the GEMM of
// prefill) — FP8 and BF16 weights. The two kernels must agree BIT FOR BIT on every output (batch
// and chunk invariance and the prefix cache's identity rely on it), and each must stay within
// the tolerance below of the truth and of the specification.
//
// Truth: the f64 product of the bf16-rounded inputs, Σ_c bf16(x[t,c]) · W[r,c], with bf16()
// computed here independently of the library (round to nearest even on the f64 value, exact
// for normal numbers). bf16 × bf16 (and bf16 × e4m3) products are exact in f32, so the only
// f32 errors are the sums' roundings. Tolerance, derived: a term passes through at most
// d roundings — FP8: ≤ min(K, 128) additions in its 128-column block (`vdpbf16ps` adds two
// products per instruction, at most two roundings per pair) plus the nb = ⌈K/128⌉ folds of
// block sums into the total (one fma or product each), plus one for the zero pad of an odd
// K; BF16: ≤ K + 1 additions — so each path is within γ_d·Σ|terms| of the truth and two paths
// within 2·γ_d·Σ|terms| of each other. With small integers every partial sum is exact: then
// both paths equal the truth bit for bit. Data stays clear of subnormals (the fast path's
// DAZ/FTZ).
#include "kernels/linear_bf16.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "base/error.h"
#include "kernels/cpu.h"
#include "kernels/linear.h"
#include "kernels/weight.h"
#include "linear_bf16_test_util.h"
#include "linear_test_util.h"

namespace dsinfer {
namespace {

using test::Gamma;
using test::Matrix;

using test::kSentinel;

using test::Impl;
using test::Impls;
using test::RoundBf16;

// Roundings a term of a K-long product passes through (see the header comment).
int64_t Depth(int64_t K, DType dtype) {
  return dtype == DType::kF8E4M3 ? std::min<int64_t>(K, 128) + (K + 127) / 128 + 1 : K + 1;
}

struct Product {  // LinearRowsBf16 over rows [rb, re), its operands and its f64 truth
  int64_t n, width, xs, ys;
  std::vector<float> x;                  // [n, xs]
  std::vector<double> exact, magnitude;  // [n, width]: Σ bf16(x)·W and Σ|bf16(x)·W|
};

Product MakeProduct(const Matrix& m, int64_t n, int64_t rb, int64_t re, int64_t pad, uint32_t seed,
                    bool integers) {
  const int64_t K = m.view.cols;
  Product p{n, re - rb, K + pad, re - rb + pad, {}, {}, {}};
  p.x = integers ? test::IntegerVector(n * p.xs, seed) : test::RandomVector(n * p.xs, seed);
  p.exact.assign(n * p.width, 0.0);
  p.magnitude.assign(n * p.width, 0.0);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t r = rb; r < re; ++r)
      for (int64_t c = 0; c < K; ++c) {
        const double v = RoundBf16(p.x[t * p.xs + c]) * m.At(r, c);
        p.exact[t * p.width + r - rb] += v;
        p.magnitude[t * p.width + r - rb] += std::fabs(v);
      }
  return p;
}

class LinearBf16Test : public ::testing::TestWithParam<DType> {
 protected:
  DType dtype() const { return GetParam(); }

  // Every implementation against the truth, the fast ones against the scalar one, and the fast
  // ones against each other bit for bit (the GEMV's rows are the GEMM's).
  void Check(const Matrix& m, int64_t n, int64_t rb, int64_t re, int64_t pad,
             bool integers = false) {
    const Product p =
        MakeProduct(m, n, rb, re, pad, static_cast<uint32_t>(n * 29 + rb + m.view.cols), integers);
    const double g = Gamma(Depth(m.view.cols, dtype()));
    std::vector<std::vector<float>> ys;
    for (const Impl& impl : Impls()) {
      const std::string what = impl.Name() + " " + std::string(DTypeName(dtype())) + " " +
                               std::to_string(m.view.rows) + "x" + std::to_string(m.view.cols) +
                               " n=" + std::to_string(n) + " rows[" + std::to_string(rb) + "," +
                               std::to_string(re) + ")";
      std::vector<float> y(n * p.ys, kSentinel);
      impl.Run(p.x.data(), p.xs, n, m.view, rb, re, y.data(), p.ys);
      for (int64_t t = 0; t < n; ++t) {
        for (int64_t j = 0; j < p.width; ++j) {
          const double e = p.exact[t * p.width + j], mag = p.magnitude[t * p.width + j];
          const float v = y[t * p.ys + j];
          if (integers) {
            ASSERT_EQ(v, e) << what << " t=" << t << " j=" << j;
          } else {
            ASSERT_LE(std::fabs(v - e), g * mag) << what << " vs f64 t=" << t << " j=" << j;
          }
          if (!ys.empty()) {
            ASSERT_LE(std::fabs(v - ys[0][t * p.ys + j]), 2 * g * mag)
                << what << " vs scalar t=" << t << " j=" << j;
          }
        }
        for (int64_t j = p.width; j < p.ys; ++j)
          ASSERT_EQ(y[t * p.ys + j], kSentinel) << what << " wrote padding t=" << t;
        if (ys.size() >= 2) {  // ys[1]: the fast path as the model calls it
          ASSERT_EQ(std::memcmp(&y[t * p.ys], &ys[1][t * p.ys], p.width * sizeof(float)), 0)
              << what << " differs in its bits from " << Impls()[1].Name() << " in row t=" << t;
        }
      }
      ys.push_back(std::move(y));
    }
  }
};

TEST_P(LinearBf16Test, EveryBatchSize) {
  const Matrix m = test::MakeMatrix(dtype(), 37, 259, 1);
  for (int64_t n = 1; n <= 14; ++n) Check(m, n, 0, 37, /*pad=*/0);
}

TEST_P(LinearBf16Test, OddShapes) {
  // Columns: single, odd, one block, block + 1, several chunks of 512 with an odd tail.
  for (int64_t rows : {1, 5, 64, 70, 130})
    for (int64_t cols : {1, 7, 128, 129, 259, 1031}) {
      const Matrix m = test::MakeMatrix(dtype(), rows, cols, static_cast<uint32_t>(rows + cols));
      for (int64_t n : {1, 6, 7}) Check(m, n, 0, rows, /*pad=*/0);
    }
}

TEST_P(LinearBf16Test, RangeAndStrides) {
  const Matrix m = test::MakeMatrix(dtype(), 300, 600, 2);
  for (int64_t n : {1, 5, 13}) {
    Check(m, n, 100, 290, /*pad=*/5);  // starts mid-block, crosses rows 128 and 256
    Check(m, n, 127, 129, /*pad=*/3);
  }
}

// The GEMV and the GEMM on random shapes: rows and row ranges that are no multiple of 16 (the
// GEMV's row group) or of 64 (the GEMM's), that start inside a 128-row scale block; columns that
// are odd, shorter than a 32-column segment, no multiple of 128 or of the GEMM's 512-column
// chunk; padded strides; n = 1..8 (one and two GEMV passes of 4 tokens) and 37 (GEMM tiles of 6
// with a tail, ten GEMV passes). Every row bitwise equal between the two, each within the
// tolerance of the truth and of the specification (Check).
TEST_P(LinearBf16Test, GemvEqualsGemmBitwise) {
  std::mt19937 rng(dtype() == DType::kF8E4M3 ? 21 : 22);
  struct Case {
    int64_t rows, cols, rb, re;
  };
  std::vector<Case> cases = {{16, 32, 0, 16},  {17, 33, 0, 17}, {15, 31, 0, 15},
                             {130, 1, 1, 130}, {3, 1100, 0, 3}, {140, 257, 120, 140}};
  for (int i = 0; i < 8; ++i) {
    const int64_t rows = 1 + static_cast<int64_t>(rng() % 200);
    const int64_t cols = 1 + static_cast<int64_t>(rng() % 900);
    const int64_t rb = static_cast<int64_t>(rng() % rows);
    const int64_t re = rb + 1 + static_cast<int64_t>(rng() % (rows - rb));
    cases.push_back({rows, cols, rb, re});
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    const Matrix m = test::MakeMatrix(dtype(), c.rows, c.cols, static_cast<uint32_t>(40 + i));
    for (int64_t n : {1, 2, 3, 4, 5, 6, 7, 8, 37})
      Check(m, n, c.rb, c.re, /*pad=*/static_cast<int64_t>(i % 3));
  }
}

// A decode-sized product: K = 7168 (56 scale blocks), many 16-row groups, the GEMV's threads.
TEST_P(LinearBf16Test, DecodeShape) {
  const Matrix m = test::MakeMatrix(dtype(), 96, 7168, 12);
  for (int64_t n : {1, 4, 5}) Check(m, n, 0, 96, /*pad=*/0);
}

TEST_P(LinearBf16Test, PrefillChunk) {
  const Matrix m = test::MakeMatrix(dtype(), 70, 700, 3);
  Check(m, 512, 0, 70, /*pad=*/0);
}

TEST_P(LinearBf16Test, ExactOnIntegers) {
  const Matrix m = test::MakeMatrix(dtype(), 300, 1031, 4, /*integers=*/true);
  for (int64_t n : {1, 6, 33}) Check(m, n, 3, 297, /*pad=*/2, /*integers=*/true);
}

// The activation is rounded to bf16, to nearest even, before the product: with one column and
// the weight 1 the output IS bf16(x). Ties round to the even neighbour, overflow carries into
// Inf, Inf and NaN pass through.
TEST_P(LinearBf16Test, RoundsActivationsToNearestEven) {
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<std::pair<float, float>> cases = {
      {1.0f + 0x1p-8f, 1.0f},                       // tie → even (1.0)
      {1.0f + 3 * 0x1p-8f, 1.0f + 0x1p-6f},         // tie → even (up)
      {-(1.0f + 0x1p-8f), -1.0f},                   // negative tie
      {1.0f + 0x1p-8f + 0x1p-20f, 1.0f + 0x1p-7f},  // just above the tie
      {3.0f + 0x1p-9f, 3.0f},                       // below half an ulp
      {std::numeric_limits<float>::max(), inf},     // rounds past the largest bf16
      {-inf, -inf},
      {0.0f, 0.0f}};
  Matrix one = test::MakeMatrix(dtype(), 1, 1, 5);
  if (dtype() == DType::kF8E4M3) {
    one.bytes[0] = FloatToE4M3(1.0f);
    one.scales[0] = 1.0f;
  } else {
    const uint16_t b = FloatToBF16(1.0f);
    std::memcpy(one.bytes.data(), &b, 2);
  }
  std::vector<float> x;
  for (const auto& c : cases) x.push_back(c.first);
  x.push_back(std::numeric_limits<float>::quiet_NaN());
  const int64_t n = static_cast<int64_t>(x.size());
  for (const Impl& impl : Impls()) {
    std::vector<float> y(n, kSentinel);
    impl.Run(x.data(), 1, n, one.view, 0, 1, y.data(), 1);
    for (size_t i = 0; i < cases.size(); ++i)
      EXPECT_EQ(y[i], cases[i].second) << impl.Name() << " x=" << cases[i].first;
    EXPECT_TRUE(std::isnan(y[n - 1])) << impl.Name();
  }
}

TEST_P(LinearBf16Test, EmptyReductionGivesZeros) {
  Matrix no_cols = test::MakeMatrix(dtype(), 9, 0, 7);
  const float unused_scale = 1.0f;  // an FP8 view needs a scale grid, here of zero columns
  if (dtype() == DType::kF8E4M3) no_cols.view.scales = &unused_scale;
  for (const Impl& impl : Impls())
    for (int64_t n : {1, 7}) {
      std::vector<float> y(n * 9, std::numeric_limits<float>::quiet_NaN());
      impl.Run(nullptr, 0, n, no_cols.view, 0, 9, y.data(), 9);
      for (float v : y) ASSERT_EQ(v, 0.0f) << impl.Name();
    }
}

// On the fast path a token's output row is bitwise the same computed alone, inside a batch at
// any position, and with any number of threads (as the f32 paths: continuous batching). Alone
// and with n = 2 the GEMV runs, from n = 6 the GEMM.
TEST_P(LinearBf16Test, FastPathBatchAndThreadInvariant) {
  if (!DetectCpu().SupportsBf16Dot()) GTEST_SKIP() << "no AVX512-BF16 here";
  const Matrix m = test::MakeMatrix(dtype(), 300, 1031, 8);
  const int64_t rb = 100, re = 298, xs = 1031 + 3, ys = re - rb + 1, width = re - rb;
  constexpr int64_t kTotal = 64;
  const std::vector<float> x = test::RandomVector(kTotal * xs, 9);
  auto run = [&](const float* xp, int64_t n, float* y) {
    LinearRowsBf16(Bf16Path::kAvx512Bf16, xp, xs, n, m.view, rb, re, y, ys);
  };
  ASSERT_NO_FATAL_FAILURE(
      test::ExpectBatchAndThreadInvariant(run, x, xs, ys, width, kTotal, {2, 6, 7, 13, 64}));
}

// `Linear(Numerics, ...)`, the model's dispatch (docs/numerics.md "bf16 numerics"): kF32 is
// `Linear`, kBf16 is `LinearBf16` for FP8 and BF16 weights and `Linear` for F16 and F32 weights
// (not bf16 numbers), bit for bit, at every n (decode and prefill take the same kernel). On random
// data the activation rounding is visible: the bf16 result differs from the f32 one.
TEST(NumericsDispatch, PicksTheKernelByNumericsAndDtypeOnly) {
  constexpr int64_t kRows = 70, kCols = 259;
  for (DType dtype : {DType::kF8E4M3, DType::kBF16, DType::kF16, DType::kF32}) {
    const Matrix m = test::MakeMatrix(dtype, kRows, kCols, 3);
    const bool rounds = dtype == DType::kF8E4M3 || dtype == DType::kBF16;
    for (int64_t n : {1, 5, 9}) {
      const std::string what = std::string(DTypeName(dtype)) + " n=" + std::to_string(n);
      const std::vector<float> x = test::RandomVector(n * kCols, static_cast<uint32_t>(4 + n));
      const size_t bytes = n * kRows * sizeof(float);
      std::vector<float> f32(n * kRows), bf16(n * kRows), got(n * kRows);
      Linear(x.data(), n, m.view, f32.data());
      Linear(Numerics::kF32, x.data(), n, m.view, got.data());
      EXPECT_EQ(std::memcmp(got.data(), f32.data(), bytes), 0) << what << " f32";
      Linear(Numerics::kBf16, x.data(), n, m.view, got.data());
      if (!rounds) {
        EXPECT_EQ(std::memcmp(got.data(), f32.data(), bytes), 0) << what << " bf16 mode";
        continue;
      }
      LinearBf16(x.data(), n, m.view, bf16.data());
      EXPECT_EQ(std::memcmp(got.data(), bf16.data(), bytes), 0) << what << " bf16 mode";
      EXPECT_NE(std::memcmp(bf16.data(), f32.data(), bytes), 0) << what << " rounding invisible";
    }
  }
  EXPECT_EQ(ParseNumerics("f32", "--numerics"), Numerics::kF32);
  EXPECT_EQ(ParseNumerics("bf16", "--numerics"), Numerics::kBf16);
  EXPECT_STREQ(NumericsName(Numerics::kBf16), "bf16");
  try {
    ParseNumerics("f16", "--numerics");
    ADD_FAILURE() << "f16 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--numerics: unknown numerics 'f16'"), std::string::npos)
        << e.what();
  }
}

// An FP8 weight repacked for the bf16 kernels (RepackFp8Pairs: tiles of 64 rows, 16 rows' code
// pairs per 32 bytes) gives every output bit for bit as the row-major weight, on the GEMV and
// the GEMM: rows not whole tiles (padded), odd and short columns, row ranges starting at any
// multiple of 16 (inside a tile, inside a 128-row scale block), n = 1..8 (1-4 row groups of a
// tile per GEMV pass, one and two passes of 4 tokens) and 37 (GEMM tiles of 6 with a tail).
// Every other kernel refuses a repacked weight.
TEST(LinearBf16Repacked, EqualsRowMajorBitwise) {
  if (!DetectCpu().SupportsBf16Dot()) GTEST_SKIP() << "no AVX512-BF16 on this CPU";
  struct Case {
    int64_t rows, cols, rb, re;
  };
  const std::vector<Case> cases = {{16, 32, 0, 16},    {17, 33, 0, 17},   {64, 128, 16, 64},
                                   {130, 1, 16, 130},  {3, 1100, 0, 3},   {140, 257, 112, 140},
                                   {200, 700, 48, 199}, {96, 7168, 0, 96}, {70, 1031, 32, 70}};
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    const Matrix m = test::MakeMatrix(DType::kF8E4M3, c.rows, c.cols, static_cast<uint32_t>(70 + i));
    const auto packed = RepackFp8Pairs(m.view);
    ASSERT_TRUE(packed->view.bf16_pairs);
    const int64_t rows = c.re - c.rb;
    for (int64_t n : {1, 2, 3, 4, 5, 6, 7, 8, 37}) {
      std::vector<float> x(n * c.cols);
      std::mt19937 rng(static_cast<uint32_t>(i * 100 + n));
      std::uniform_real_distribution<float> u(-2.0f, 2.0f);
      for (float& v : x) v = u(rng);
      for (Bf16Kernel k : {Bf16Kernel::kAuto, Bf16Kernel::kGemv, Bf16Kernel::kGemm}) {
        std::vector<float> want(n * rows, kSentinel), got(n * rows, kSentinel);
        LinearRowsBf16Kernel(k, x.data(), c.cols, n, m.view, c.rb, c.re, want.data(), rows);
        LinearRowsBf16Kernel(k, x.data(), c.cols, n, packed->view, c.rb, c.re, got.data(), rows);
        ASSERT_EQ(0, std::memcmp(want.data(), got.data(), want.size() * sizeof(float)))
            << c.rows << "x" << c.cols << " rows [" << c.rb << "," << c.re << ") n=" << n
            << " kernel " << Bf16KernelName(k);
      }
    }
  }
  const Matrix m = test::MakeMatrix(DType::kF8E4M3, 64, 64, 9);
  const auto packed = RepackFp8Pairs(m.view);
  std::vector<float> x(64, 1.0f), y(64);
  EXPECT_DEATH(Linear(x.data(), 1, packed->view, y.data()), "reached another kernel");
  EXPECT_DEATH(
      LinearRowsBf16(Bf16Path::kScalar, x.data(), 64, 1, packed->view, 0, 64, y.data(), 64),
      "from a row multiple of 16");
  EXPECT_DEATH(LinearRowsBf16Kernel(Bf16Kernel::kGemv, x.data(), 64, 1, packed->view, 8, 64,
                                    y.data(), 64),
               "from a row multiple of 16");
  EXPECT_DEATH(RepackFp8Pairs(packed->view), "row-major FP8");
}

INSTANTIATE_TEST_SUITE_P(WeightDtypes, LinearBf16Test,
                         ::testing::Values(DType::kF8E4M3, DType::kBF16),
                         [](const auto& info) { return std::string(DTypeName(info.param)); });

}  // namespace
}  // namespace dsinfer
