// MLA attention: the scalar specification (online softmax over gathered rows) against an f64
// softmax over the decoded rows; every vector path of the chunked sparse and dense kernels
// against the same f64 reference; dense flash == sparse over [0, p]; the cache layouts
// themselves (656-byte FP8 row, bf16 rounding, f32 identity).
//
// Tolerance (derived): a score s_t = scale·(q·c_t) in f32 is off by at most W·u·A_t with
// A_t = |scale|·Σ_i |q_i c_t,i| (W = R + dr terms). P_t = e^{s_t}/Σ e^{s} then has relative error
// ≤ 2·(W·u·max A + e_exp) with e_exp ≤ 4u (polynomial exp: truncation < 1e-8 plus ~3 roundings).
// o = Σ P_t c_t accumulated over n rows in f32: ≤ (n + 2)·u·Σ P_t |c_t|. Hence
//   |o − o_f64| ≤ (2·W·u·max A + 8u + (n + 2)·u) · mag,  mag = Σ_t P_t |c_t|.
#include "kernels/attention.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <numeric>

#include "base/error.h"
#include "format/dtype.h"
#include "kernels/cpu.h"
#include "test_util.h"

namespace dsinfer {
namespace {

TEST(KvLayoutTest, RowSizes) {
  EXPECT_EQ((LatentLayout{KvCacheType::kFP8, 512, 64}.RowBytes()), 656);
  EXPECT_EQ((LatentLayout{KvCacheType::kBF16, 512, 64}.RowBytes()), 1152);
  EXPECT_EQ((LatentLayout{KvCacheType::kF32, 512, 64}.RowBytes()), 2304);
  EXPECT_EQ((LatentLayout{KvCacheType::kFP8, 80, 16}.RowBytes()), 80 + 4 + 32);
  EXPECT_EQ((IndexKeyLayout{128}.RowBytes()), 132);
  EXPECT_EQ((IndexKeyLayout{256}.RowBytes()), 264);
}

TEST(KvLayoutTest, RoundTrips) {
  const int64_t R = 200, dr = 16;
  std::vector<float> c = test::RandomVector(R, 1), pe = test::RandomVector(dr, 2), out(R + dr);
  for (KvCacheType type : {KvCacheType::kF32, KvCacheType::kBF16, KvCacheType::kFP8}) {
    LatentLayout l{type, R, dr};
    std::vector<std::byte> row(l.RowBytes());
    l.Encode(c.data(), pe.data(), row.data());
    l.Decode(row.data(), out.data());
    for (int64_t i = 0; i < R; ++i) {
      const double rel = type == KvCacheType::kF32    ? 0
                         : type == KvCacheType::kBF16 ? 1.0 / 256
                                                      : 1.0 / 16;
      EXPECT_NEAR(out[i], c[i], rel * std::fabs(c[i]) + (type == KvCacheType::kFP8 ? 1e-2 : 0));
    }
    for (int64_t i = 0; i < dr; ++i) {
      const float e = type == KvCacheType::kF32 ? pe[i] : BF16ToFloat(FloatToBF16(pe[i]));
      EXPECT_EQ(out[R + i], e) << "k_pe is f32 or bf16-rounded";
    }
  }
}

// A paged latent cache of random rows and S queries of H heads.
struct MlaData {
  int64_t S, H, R, dr, n_ctx;
  LatentLayout layout;
  test::PagedBuffer cache;
  std::vector<float> rows;         // [n_ctx, R + dr] decoded: what every kernel must see
  std::vector<float> q_abs, q_pe;  // [S, H, R], [S, H, dr]
  float scale = 0.3f;

  MlaData(KvCacheType type, int64_t S_, int64_t H_, int64_t R_, int64_t dr_, int64_t n)
      : S(S_),
        H(H_),
        R(R_),
        dr(dr_),
        n_ctx(n),
        layout{type, R_, dr_},
        cache(n, layout.RowBytes(), /*page_shift=*/4),
        rows(n * (R_ + dr_)),
        q_abs(test::RandomVector(S_ * H_ * R_, 7)),
        q_pe(test::RandomVector(S_ * H_ * dr_, 8)) {
    for (int64_t t = 0; t < n; ++t) {
      std::vector<float> c = test::RandomVector(R, 100 + t), pe = test::RandomVector(dr, 500 + t);
      layout.Encode(c.data(), pe.data(), cache.row(t));
      layout.Decode(cache.row(t), &rows[t * (R + dr)]);
    }
  }
  MlaChunk Chunk(int64_t first_pos) const {
    return {q_abs.data(), q_pe.data(), S, H, scale, first_pos};
  }

  // Checks o [H, R] of query s over `sel` against the f64 softmax (tolerance: file comment), and
  // against the scalar specification's output `spec` [H, R] when given (both are within the
  // bound of the f64 value, so within twice of each other).
  void Check(int64_t s, const std::vector<int32_t>& sel, const float* o, const std::string& what,
             const float* spec = nullptr) const {
    const int64_t W = R + dr;
    const double u = test::kU;
    for (int64_t h = 0; h < H; ++h) {
      const float* qa = &q_abs[(s * H + h) * R];
      const float* qp = &q_pe[(s * H + h) * dr];
      std::vector<double> p;
      double m = -INFINITY, max_a = 0;
      for (int32_t t : sel) {
        const float* row = &rows[t * W];
        double v = 0, a = 0;
        for (int64_t i = 0; i < R; ++i)
          v += double(qa[i]) * row[i], a += std::fabs(double(qa[i]) * row[i]);
        for (int64_t i = 0; i < dr; ++i)
          v += double(qp[i]) * row[R + i], a += std::fabs(double(qp[i]) * row[R + i]);
        p.push_back(v * scale);
        m = std::max(m, p.back());
        max_a = std::max(max_a, a * std::fabs(scale));
      }
      double sum = 0;
      for (double& v : p) sum += (v = std::exp(v - m));
      const double n = static_cast<double>(sel.size());
      const double rel = 2 * W * u * max_a + 8 * u + (n + 2) * u;
      for (int64_t i = 0; i < R; ++i) {
        double e = 0, mag = 0;
        for (size_t j = 0; j < sel.size(); ++j) {
          e += p[j] / sum * rows[sel[j] * W + i];
          mag += p[j] / sum * std::fabs(rows[sel[j] * W + i]);
        }
        if (spec) {
          ASSERT_NEAR(o[h * R + i], spec[h * R + i], 2 * rel * mag + 1e-30)
              << what << " vs the scalar specification, s=" << s << " h=" << h << " c=" << i;
        }
        ASSERT_NEAR(o[h * R + i], e, rel * mag + 1e-30)
            << what << " s=" << s << " h=" << h << " c=" << i;
      }
    }
  }
};

std::vector<Isa> SupportedIsas() {
  std::vector<Isa> isas;
  for (int i = 0; i <= static_cast<int>(DetectCpu().best); ++i) isas.push_back(static_cast<Isa>(i));
  return isas;
}

const KvCacheType kTypes[] = {KvCacheType::kF32, KvCacheType::kBF16, KvCacheType::kFP8};

TEST(SparseMlaAttentionTest, SpecDenseSetAllLayouts) {
  for (KvCacheType type : kTypes) {
    MlaData x(type, 1, 3, 80, 16, 150);
    std::vector<int32_t> all(150);  // > one 64-row tile: exercises the online rescaling
    std::iota(all.begin(), all.end(), 0);
    std::vector<float> o(x.H * x.R);
    SparseMlaAttention(MlaQuery{x.q_abs.data(), x.q_pe.data(), x.H, x.scale}, x.layout,
                       x.cache.view(), all.data(), 150, o.data());
    x.Check(0, all, o.data(), KvCacheTypeName(type));
  }
}

TEST(SparseMlaAttentionTest, SpecGatheredSubsetAnyOrder) {
  MlaData x(KvCacheType::kF32, 1, 3, 80, 16, 200);
  const std::vector<int32_t> sel = {199, 3, 77, 150, 0, 64, 65, 128, 12};
  std::vector<float> o(x.H * x.R);
  SparseMlaAttention(MlaQuery{x.q_abs.data(), x.q_pe.data(), x.H, x.scale}, x.layout,
                     x.cache.view(), sel.data(), 9, o.data());
  x.Check(0, sel, o.data(), "subset");
}

// Chunks of S queries, each with its own selected set (IndexerTopK's [S, k] layout).
TEST(SparseMlaAttentionTest, ChunkEveryIsaAndLayout) {
  struct Shape {
    int64_t H, R, dr;
  };
  for (Shape sh : {Shape{5, 80, 16}, Shape{8, 200, 24}, Shape{4, 512, 64}}) {
    for (KvCacheType type : kTypes) {
      const int64_t S = 3, n_ctx = 300, p0 = n_ctx - S, k = 150;
      MlaData x(type, S, sh.H, sh.R, sh.dr, n_ctx);
      std::vector<int32_t> sel(S * k);
      for (int64_t s = 0; s < S; ++s)  // scattered rows over many pages, any order
        for (int64_t j = 0; j < k; ++j)
          sel[s * k + j] = static_cast<int32_t>((j * 37 + s * 11) % (p0 + s + 1));
      std::vector<float> spec(S * sh.H * sh.R);  // the scalar twin, query by query
      for (int64_t s = 0; s < S; ++s)
        SparseMlaAttention(
            MlaQuery{&x.q_abs[s * sh.H * sh.R], &x.q_pe[s * sh.H * sh.dr], sh.H, x.scale}, x.layout,
            x.cache.view(), &sel[s * k], k, &spec[s * sh.H * sh.R]);
      MlaWorkspace ws;
      for (Isa isa : SupportedIsas()) {
        std::vector<float> o(S * sh.H * sh.R, NAN);
        SparseMlaAttentionChunk(x.Chunk(p0), x.layout, x.cache.view(), sel.data(), k, o.data(), ws,
                                isa);
        for (int64_t s = 0; s < S; ++s)
          x.Check(s, std::vector<int32_t>(sel.begin() + s * k, sel.begin() + (s + 1) * k),
                  &o[s * sh.H * sh.R], std::string(IsaName(isa)) + " " + KvCacheTypeName(type),
                  &spec[s * sh.H * sh.R]);
      }
    }
  }
}

TEST(SparseMlaAttentionTest, ChunkFewerRowsThanK) {
  // Query s at position s uses min(k, s + 1) entries: the first ones of its row.
  MlaData x(KvCacheType::kFP8, 4, 3, 80, 16, 4);
  const int64_t k = 8;
  std::vector<int32_t> sel(4 * k, 0);
  for (int64_t s = 0; s < 4; ++s)
    for (int64_t j = 0; j <= s; ++j) sel[s * k + j] = static_cast<int32_t>(s - j);
  MlaWorkspace ws;
  for (Isa isa : SupportedIsas()) {
    std::vector<float> o(4 * 3 * 80);
    SparseMlaAttentionChunk(x.Chunk(0), x.layout, x.cache.view(), sel.data(), k, o.data(), ws, isa);
    for (int64_t s = 0; s < 4; ++s)
      x.Check(s, std::vector<int32_t>(sel.begin() + s * k, sel.begin() + s * k + s + 1),
              &o[s * 3 * 80], IsaName(isa));
  }
}

TEST(DenseMlaAttentionTest, EqualsSparseOverFullRange) {
  for (KvCacheType type : kTypes) {
    const int64_t S = 70, p0 = 60, n_ctx = p0 + S;  // queries straddle tile boundaries
    MlaData x(type, S, 5, 80, 16, n_ctx);
    std::vector<int32_t> full(S * n_ctx);
    for (int64_t s = 0; s < S; ++s) std::iota(&full[s * n_ctx], &full[s * n_ctx] + p0 + s + 1, 0);
    MlaWorkspace ws;
    for (Isa isa : SupportedIsas()) {
      std::vector<float> dense(S * 5 * 80), sparse(S * 5 * 80);
      DenseMlaAttentionChunk(x.Chunk(p0), x.layout, x.cache.view(), dense.data(), ws, isa);
      SparseMlaAttentionChunk(x.Chunk(p0), x.layout, x.cache.view(), full.data(), n_ctx,
                              sparse.data(), ws, isa);
      for (int64_t s = 0; s < S; s += 7) {
        std::vector<int32_t> sel(&full[s * n_ctx], &full[s * n_ctx] + p0 + s + 1);
        std::vector<float> spec(5 * 80);  // the scalar twin over [0, p]
        SparseMlaAttention(MlaQuery{&x.q_abs[s * 5 * 80], &x.q_pe[s * 5 * 16], 5, x.scale},
                           x.layout, x.cache.view(), sel.data(), p0 + s + 1, spec.data());
        x.Check(s, sel, &dense[s * 5 * 80], std::string("dense ") + IsaName(isa), spec.data());
        x.Check(s, sel, &sparse[s * 5 * 80], std::string("sparse ") + IsaName(isa), spec.data());
      }
    }
  }
}

TEST(DenseMlaAttentionTest, SplitKeysMatchesReference) {
  const int threads = omp_get_max_threads();  // the merge needs >= 2 threads, even on 1 core
  omp_set_num_threads(std::max(2, threads));
  // 3000 keys = 3 blocks of 1024 over the threads; query 0 ends inside the last block.
  const int64_t S = 2, p0 = 2998, n_ctx = p0 + S;
  MlaData x(KvCacheType::kFP8, S, 4, 80, 16, n_ctx);
  std::vector<int32_t> all(n_ctx);
  std::iota(all.begin(), all.end(), 0);
  for (Isa isa : SupportedIsas()) {
    std::vector<float> o(S * 4 * 80, NAN);
    DenseMlaAttentionSplitKeys(x.Chunk(p0), x.layout, x.cache.view(), o.data(), isa);
    for (int64_t s = 0; s < S; ++s) {
      const std::vector<int32_t> sel(all.begin(), all.begin() + p0 + s + 1);
      std::vector<float> spec(4 * 80);
      SparseMlaAttention(MlaQuery{&x.q_abs[s * 4 * 80], &x.q_pe[s * 4 * 16], 4, x.scale}, x.layout,
                         x.cache.view(), sel.data(), p0 + s + 1, spec.data());
      x.Check(s, sel, &o[s * 4 * 80], std::string("split ") + IsaName(isa), spec.data());
    }
  }
  omp_set_num_threads(threads);
}

TEST(MlaAttentionTest, SoftmaxExpWithinFourUlp) {
  std::vector<float> x;
  for (float v = 0; v > -87.3f; v = std::nextafter(v, -INFINITY) * 1.0001f - 1e-7f) x.push_back(v);
  x.push_back(-87.4f);
  x.push_back(-1000.0f);
  x.push_back(-INFINITY);
  std::vector<float> y(x.size());
  for (Isa isa : SupportedIsas()) {
    SoftmaxExp(x.data(), static_cast<int64_t>(x.size()), y.data(), isa);
    for (size_t i = 0; i + 3 < x.size(); ++i) {
      const double e = std::exp(double(x[i]));
      ASSERT_NEAR(y[i], e, 4 * test::kU * 2 * e) << IsaName(isa) << " x=" << x[i];
    }
    for (size_t i = x.size() - 3; i < x.size(); ++i) {
      ASSERT_GE(y[i], 0.0f);
      ASSERT_LT(y[i], 1.3e-38f) << IsaName(isa) << " x=" << x[i];
    }
  }
}

TEST(MlaAttentionTest, NoWorkspaceGrowthOnceWarm) {
  MlaData x(KvCacheType::kFP8, 2, 4, 80, 16, 200);
  std::vector<int32_t> sel(2 * 100);
  for (size_t i = 0; i < sel.size(); ++i) sel[i] = static_cast<int32_t>(i % 198);
  std::vector<float> o(2 * 4 * 80);
  MlaWorkspace ws;
  const Isa isa = DetectCpu().best;
  SparseMlaAttentionChunk(x.Chunk(198), x.layout, x.cache.view(), sel.data(), 100, o.data(), ws,
                          isa);
  DenseMlaAttentionChunk(x.Chunk(198), x.layout, x.cache.view(), o.data(), ws, isa);
  const int64_t grows = ws.grow_count();
  SparseMlaAttentionChunk(x.Chunk(198), x.layout, x.cache.view(), sel.data(), 100, o.data(), ws,
                          isa);
  DenseMlaAttentionChunk(x.Chunk(198), x.layout, x.cache.view(), o.data(), ws, isa);
  EXPECT_EQ(ws.grow_count(), grows);
}

TEST(MlaAttentionTest, BadInputIsAnError) {
  MlaData x(KvCacheType::kBF16, 1, 2, 80, 16, 10);
  std::vector<float> o(2 * 80);
  MlaWorkspace ws;
  std::vector<int32_t> sel = {3, 10};  // row 10 is past position 9
  EXPECT_THROW(SparseMlaAttentionChunk(x.Chunk(9), x.layout, x.cache.view(), sel.data(), 2,
                                       o.data(), ws, Isa::kScalar),
               Error);
  PagedRows wrong = x.cache.view();
  wrong.row_bytes = 656;
  try {
    DenseMlaAttentionChunk(x.Chunk(9), x.layout, wrong, o.data(), ws, Isa::kScalar);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("656 bytes"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dsinfer
