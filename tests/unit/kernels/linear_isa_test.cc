// Every implementation of `LinearRows` / `LinearTransposed` (scalar specification, AVX2,
// AVX-512 — each one this CPU supports) for FP8 / BF16 / F16 / F32 weights, on odd shapes:
// columns and rows off the 128-blocks and vector widths, row ranges that start mid-block,
// strided activations and outputs, n = 1..33 (GEMV and micro-tile edges) and n = 512.
//
// Tolerance, derived from the arithmetic: every path computes the same f32 products (an FP8
// weight is e4m3·scale rounded once in the scalar path; the vector paths fold the scale into x
// instead — one rounding either way) and sums them in f32 in some order. Along any path a
// term meets at most K + 4 roundings (scale product, ≤ K additions, block fold, final sum of
// lanes/partials ≤ 2 more), so each result is within γ_{K+4}·Σ|x·w| of the exact sum and two
// paths differ by at most 2·γ_{K+4}·Σ|x·w|. With small integers every partial sum is exact,
// and then all paths must agree bit for bit.
//
// Batch invariance (continuous batching): on one ISA, a token's output row must be bitwise the
// same whether it is computed alone (n = 1, GEMV), inside any batch at any position (GEMM), and
// with any number of threads.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/cpu.h"
#include "kernels/linear.h"
#include "linear_test_util.h"

namespace dsinfer {
namespace {

using test::Gamma;
using test::Matrix;

struct IsaProduct {  // one call's operands and its exact (f64) result
  int64_t n, width, reduced;                  // tokens, outputs per token, summed length K
  int64_t xs, ys;                             // strides
  std::vector<float> x;                       // [n, xs]
  std::vector<double> exact, magnitude;       // [n, width]: Σ x·w and Σ|x·w| in f64
};

// LinearRows over [rb, re): y[t, r - rb] = x[t] · W[r].
IsaProduct RowsProduct(const Matrix& m, int64_t n, int64_t rb, int64_t re, int64_t pad, uint32_t seed,
                    bool integers) {
  IsaProduct p{n, re - rb, m.view.cols, m.view.cols + pad, re - rb + pad, {}, {}, {}};
  p.x = integers ? test::IntegerVector(n * p.xs, seed) : test::RandomVector(n * p.xs, seed);
  p.exact.assign(n * p.width, 0.0);
  p.magnitude.assign(n * p.width, 0.0);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t r = rb; r < re; ++r)
      for (int64_t c = 0; c < m.view.cols; ++c) {
        const double v = p.x[t * p.xs + c] * m.At(r, c);
        p.exact[t * p.width + r - rb] += v;
        p.magnitude[t * p.width + r - rb] += std::fabs(v);
      }
  return p;
}

// LinearTransposed over [rb, re): y[t, c] = Σ_i x[t, i] · W[rb + i, c].
IsaProduct TransposedProduct(const Matrix& m, int64_t n, int64_t rb, int64_t re, int64_t pad,
                          uint32_t seed, bool integers) {
  IsaProduct p{n, m.view.cols, re - rb, re - rb + pad, m.view.cols + pad, {}, {}, {}};
  p.x = integers ? test::IntegerVector(n * p.xs, seed) : test::RandomVector(n * p.xs, seed);
  p.exact.assign(n * p.width, 0.0);
  p.magnitude.assign(n * p.width, 0.0);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = rb; i < re; ++i)
      for (int64_t c = 0; c < m.view.cols; ++c) {
        const double v = p.x[t * p.xs + i - rb] * m.At(i, c);
        p.exact[t * p.width + c] += v;
        p.magnitude[t * p.width + c] += std::fabs(v);
      }
  return p;
}

using test::kSentinel;

class LinearIsaTest : public ::testing::TestWithParam<std::tuple<Isa, DType>> {
 protected:
  void SetUp() override {
    if (!DetectCpu().Supports(isa())) GTEST_SKIP() << IsaName(isa()) << " not supported here";
  }
  Isa isa() const { return std::get<0>(GetParam()); }
  DType dtype() const { return std::get<1>(GetParam()); }

  // Runs `isa()` and the scalar specification and checks both against the exact product.
  template <class Run>
  void Check(const IsaProduct& p, Run run, bool bit_exact, const std::string& what) {
    std::vector<float> fast(p.n * p.ys, kSentinel), spec(p.n * p.ys, kSentinel);
    run(isa(), fast.data());
    run(Isa::kScalar, spec.data());
    const double g = Gamma(p.reduced + 4);
    for (int64_t t = 0; t < p.n; ++t) {
      for (int64_t j = 0; j < p.width; ++j) {
        const float f = fast[t * p.ys + j], s = spec[t * p.ys + j];
        const double e = p.exact[t * p.width + j], mag = p.magnitude[t * p.width + j];
        if (bit_exact) {
          ASSERT_EQ(f, e) << what << " t=" << t << " j=" << j;
          ASSERT_EQ(s, e) << what << " t=" << t << " j=" << j;
        } else {
          ASSERT_LE(std::fabs(f - s), 2 * g * mag) << what << " vs scalar t=" << t << " j=" << j;
          ASSERT_LE(std::fabs(f - e), g * mag) << what << " vs f64 t=" << t << " j=" << j;
        }
      }
      for (int64_t j = p.width; j < p.ys; ++j)
        ASSERT_EQ(fast[t * p.ys + j], kSentinel) << what << " wrote padding t=" << t;
    }
  }

  void CheckRows(const Matrix& m, int64_t n, int64_t rb, int64_t re, int64_t pad,
                 bool integers = false) {
    const IsaProduct p = RowsProduct(m, n, rb, re, pad, static_cast<uint32_t>(n * 31 + rb), integers);
    Check(p, [&](Isa isa, float* y) {
      LinearRows(isa, p.x.data(), p.xs, n, m.view, rb, re, y, p.ys);
    }, integers, Describe("rows", m, n, rb, re));
  }

  void CheckTransposed(const Matrix& m, int64_t n, int64_t rb, int64_t re, int64_t pad,
                       bool integers = false) {
    const IsaProduct p =
        TransposedProduct(m, n, rb, re, pad, static_cast<uint32_t>(n * 17 + rb), integers);
    Check(p, [&](Isa isa, float* y) {
      LinearTransposed(isa, p.x.data(), p.xs, n, m.view, rb, re, y, p.ys);
    }, integers, Describe("transposed", m, n, rb, re));
  }

  std::string Describe(const char* op, const Matrix& m, int64_t n, int64_t rb, int64_t re) const {
    return std::string(op) + " " + IsaName(isa()) + " " + std::string(DTypeName(dtype())) + " " +
           std::to_string(m.view.rows) + "x" + std::to_string(m.view.cols) + " n=" +
           std::to_string(n) + " rows[" + std::to_string(rb) + "," + std::to_string(re) + ")";
  }
};

TEST_P(LinearIsaTest, RowsEveryBatchSize) {
  const Matrix m = test::MakeMatrix(dtype(), 37, 259, 1);
  for (int64_t n = 1; n <= 33; ++n) CheckRows(m, n, 0, 37, /*pad=*/0);
}

TEST_P(LinearIsaTest, RowsOddShapes) {
  for (int64_t rows : {1, 5, 33, 300})
    for (int64_t cols : {1, 7, 16, 33, 128, 259, 515}) {
      const Matrix m = test::MakeMatrix(dtype(), rows, cols, static_cast<uint32_t>(rows + cols));
      for (int64_t n : {1, 2, 3, 4, 5, 9}) CheckRows(m, n, 0, rows, /*pad=*/0);
    }
}

TEST_P(LinearIsaTest, RowsRangeAndStrides) {
  const Matrix m = test::MakeMatrix(dtype(), 300, 259, 2);
  for (int64_t n : {1, 3, 4, 5, 12}) {
    CheckRows(m, n, 100, 290, /*pad=*/5);  // starts mid-block, crosses rows 128 and 256
    CheckRows(m, n, 127, 129, /*pad=*/3);
  }
}

TEST_P(LinearIsaTest, RowsPrefillChunk) {
  const Matrix m = test::MakeMatrix(dtype(), 70, 700, 3);
  CheckRows(m, 512, 0, 70, /*pad=*/0);
}

TEST_P(LinearIsaTest, RowsExactOnIntegers) {
  const Matrix m = test::MakeMatrix(dtype(), 300, 259, 4, /*integers=*/true);
  for (int64_t n : {1, 2, 4, 5, 33}) CheckRows(m, n, 3, 297, /*pad=*/2, /*integers=*/true);
}

TEST_P(LinearIsaTest, TransposedOddShapes) {
  for (int64_t cols : {1, 16, 33, 64, 100, 259, 512}) {
    const Matrix m = test::MakeMatrix(dtype(), 300, cols, static_cast<uint32_t>(cols));
    for (int64_t n : {1, 2, 3, 4, 5, 9, 17}) {
      CheckTransposed(m, n, 5, 290, /*pad=*/3);
      CheckTransposed(m, n, 0, 300, /*pad=*/0);
    }
  }
}

TEST_P(LinearIsaTest, TransposedPrefillChunk) {
  const Matrix m = test::MakeMatrix(dtype(), 256, 160, 5);  // one head: rows [128, 256)
  CheckTransposed(m, 512, 128, 256, /*pad=*/0);
}

TEST_P(LinearIsaTest, TransposedExactOnIntegers) {
  const Matrix m = test::MakeMatrix(dtype(), 300, 259, 6, /*integers=*/true);
  for (int64_t n : {1, 3, 4, 5, 33}) CheckTransposed(m, n, 7, 300, /*pad=*/1, /*integers=*/true);
}

TEST_P(LinearIsaTest, EmptyReductionGivesZeros) {
  Matrix no_cols = test::MakeMatrix(dtype(), 9, 0, 7);
  const float unused_scale = 1.0f;  // an FP8 view needs a scale grid, here of zero columns
  if (dtype() == DType::kF8E4M3) no_cols.view.scales = &unused_scale;
  for (int64_t n : {1, 6}) {
    std::vector<float> y(n * 9, std::numeric_limits<float>::quiet_NaN());
    LinearRows(isa(), nullptr, 0, n, no_cols.view, 0, 9, y.data(), 9);
    for (float v : y) ASSERT_EQ(v, 0.0f);
  }
  const Matrix m = test::MakeMatrix(dtype(), 9, 40, 8);
  for (int64_t n : {1, 6}) {
    std::vector<float> y(n * 40, std::numeric_limits<float>::quiet_NaN());
    LinearTransposed(isa(), nullptr, 0, n, m.view, 4, 4, y.data(), 40);
    for (float v : y) ASSERT_EQ(v, 0.0f);
  }
}

// ---- Batch invariance -------------------------------------------------------------------------
// `run(x, n, y)` computes n rows of output (row stride ys, `width` outputs) from activation rows
// of stride xs. Every one of 512 rows is computed alone, then inside batches of each size at a
// shifting offset; the rows must match bit for bit (memcmp: -0 vs +0 would count).
template <class Run>
void ExpectBatchInvariant(int64_t xs, int64_t ys, int64_t width, Run run, const std::string& what) {
  constexpr int64_t kTotal = 512;
  const std::vector<float> x =
      test::RandomVector(kTotal * xs, static_cast<uint32_t>(xs * 7 + width));
  std::vector<float> alone(kTotal * ys, kSentinel);
  for (int64_t t = 0; t < kTotal; ++t) run(x.data() + t * xs, 1, alone.data() + t * ys);
  for (int64_t n : {2, 4, 5, 8, 13, 33, 512}) {
    const int64_t off = (n * 37) % (kTotal - n + 1);
    std::vector<float> y(n * ys, kSentinel);
    run(x.data() + off * xs, n, y.data());
    for (int64_t t = 0; t < n; ++t)
      ASSERT_EQ(std::memcmp(&y[t * ys], &alone[(off + t) * ys], width * sizeof(float)), 0)
          << what << " n=" << n << " row " << off + t;
  }
}

TEST_P(LinearIsaTest, RowsBatchInvariant) {
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{37, 7}, {300, 259}, {133, 515}, {45, 7168}}) {
    const Matrix m = test::MakeMatrix(dtype(), rows, cols, static_cast<uint32_t>(rows * cols));
    const int64_t mid = rows >= 128 ? 100 : 3;  // a range starting mid-block (and mid-tile)
    for (auto range : {std::pair<int64_t, int64_t>{0, rows}, {mid, rows - 2}}) {
      const int64_t rb = range.first, re = range.second;  // locals: lambdas capture them
      const int64_t xs = cols + 3, ys = re - rb + 1;
      ExpectBatchInvariant(xs, ys, re - rb, [&](const float* x, int64_t n, float* y) {
        LinearRows(isa(), x, xs, n, m.view, rb, re, y, ys);
      }, Describe("rows", m, 0, rb, re));
    }
  }
}

TEST_P(LinearIsaTest, TransposedBatchInvariant) {
  // Reduced lengths 7, 259, 515 (ranges starting mid-block), odd column counts.
  for (int64_t cols : {7, 33, 259}) {
    const Matrix m = test::MakeMatrix(dtype(), 700, cols, static_cast<uint32_t>(cols + 11));
    for (auto range : {std::pair<int64_t, int64_t>{0, 7}, {60, 319}, {100, 615}}) {
      const int64_t rb = range.first, re = range.second;
      const int64_t xs = re - rb + 2, ys = cols + 5;
      ExpectBatchInvariant(xs, ys, cols, [&](const float* x, int64_t n, float* y) {
        LinearTransposed(isa(), x, xs, n, m.view, rb, re, y, ys);
      }, Describe("transposed", m, 0, rb, re));
    }
  }
}

// Large enough for a parallel region from n = 4 (rows · cols · (n + 1) ≥ kParallelWork).
TEST_P(LinearIsaTest, ThreadCountInvariant) {
  const Matrix m = test::MakeMatrix(dtype(), 1200, 1543, 12);
  const int saved = omp_get_max_threads();
  for (int64_t n : {4, 5, 33}) {
    const std::vector<float> x = test::RandomVector(n * 1543, static_cast<uint32_t>(n));
    std::vector<float> rows[2], transposed[2];
    for (int threads : {1, 2}) {
      omp_set_num_threads(threads);
      rows[threads - 1].assign(n * 1100, kSentinel);
      LinearRows(isa(), x.data(), 1543, n, m.view, 100, 1200, rows[threads - 1].data(), 1100);
      transposed[threads - 1].assign(n * 1543, kSentinel);
      LinearTransposed(isa(), x.data(), 1543, n, m.view, 5, 1200, transposed[threads - 1].data(),
                       1543);
    }
    EXPECT_EQ(std::memcmp(rows[0].data(), rows[1].data(), rows[0].size() * sizeof(float)), 0)
        << "rows n=" << n;
    EXPECT_EQ(std::memcmp(transposed[0].data(), transposed[1].data(),
                          transposed[0].size() * sizeof(float)), 0)
        << "transposed n=" << n;
  }
  omp_set_num_threads(saved);
}

INSTANTIATE_TEST_SUITE_P(
    AllPaths, LinearIsaTest,
    ::testing::Combine(::testing::Values(Isa::kScalar, Isa::kAvx2, Isa::kAvx512),
                       ::testing::Values(DType::kF8E4M3, DType::kBF16, DType::kF16, DType::kF32)),
    [](const auto& info) {
      return std::string(IsaName(std::get<0>(info.param))) + "_" +
             std::string(DTypeName(std::get<1>(info.param)));
    });

}  // namespace
}  // namespace dsinfer
