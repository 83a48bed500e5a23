// Sparse MLA attention (online softmax over gathered rows) against an f64 softmax over the
// decoded rows of the selected set, for the three cache layouts; and the cache layouts
// themselves (656-byte FP8 row, bf16 rounding, f32 identity).
#include "kernels/attention.h"

#include <gtest/gtest.h>

#include <cmath>

#include "format/dtype.h"
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
      const double rel = type == KvCacheType::kF32 ? 0 : type == KvCacheType::kBF16 ? 1.0 / 256 : 1.0 / 16;
      EXPECT_NEAR(out[i], c[i], rel * std::fabs(c[i]) + (type == KvCacheType::kFP8 ? 1e-2 : 0));
    }
    for (int64_t i = 0; i < dr; ++i) {
      const float e = type == KvCacheType::kF32 ? pe[i] : BF16ToFloat(FloatToBF16(pe[i]));
      EXPECT_EQ(out[R + i], e) << "k_pe is f32 or bf16-rounded";
    }
  }
}

void CheckAttention(KvCacheType type, int64_t n_ctx, std::vector<int32_t> sel) {
  const int64_t H = 3, R = 80, dr = 16;
  LatentLayout l{type, R, dr};
  test::PagedBuffer cache(n_ctx, l.RowBytes(), /*page_shift=*/4);
  std::vector<float> rows(n_ctx * (R + dr));  // decoded, what the kernel must see
  for (int64_t t = 0; t < n_ctx; ++t) {
    std::vector<float> c = test::RandomVector(R, 100 + t), pe = test::RandomVector(dr, 500 + t);
    l.Encode(c.data(), pe.data(), cache.row(t));
    l.Decode(cache.row(t), &rows[t * (R + dr)]);
  }
  std::vector<float> q_abs = test::RandomVector(H * R, 7), q_pe = test::RandomVector(H * dr, 8);
  const float scale = 0.3f;
  std::vector<float> o(H * R);
  SparseMlaAttention(MlaQuery{q_abs.data(), q_pe.data(), H, scale}, l, cache.view(), sel.data(),
                     static_cast<int64_t>(sel.size()), o.data());
  for (int64_t h = 0; h < H; ++h) {
    std::vector<double> s;
    double m = -INFINITY;
    for (int32_t t : sel) {
      double v = 0;
      for (int64_t i = 0; i < R; ++i) v += double(q_abs[h * R + i]) * rows[t * (R + dr) + i];
      for (int64_t i = 0; i < dr; ++i) v += double(q_pe[h * dr + i]) * rows[t * (R + dr) + R + i];
      s.push_back(v * scale);
      m = std::max(m, s.back());
    }
    double sum = 0;
    for (double& v : s) sum += (v = std::exp(v - m));
    for (int64_t i = 0; i < R; ++i) {
      double e = 0, mag = 0;
      for (size_t j = 0; j < sel.size(); ++j) {
        e += s[j] / sum * rows[sel[j] * (R + dr) + i];
        mag += s[j] / sum * std::fabs(rows[sel[j] * (R + dr) + i]);
      }
      // Score errors of ~R·u·|q||c| (|scores| ≲ 10) perturb the weights by ~1e-5 relative.
      EXPECT_NEAR(o[h * R + i], e, 2e-5 * mag + 1e-7) << h << "," << i;
    }
  }
}

TEST(SparseMlaAttentionTest, DenseSetAllLayouts) {
  std::vector<int32_t> all(150);  // > one 64-row tile: exercises the online rescaling
  for (int32_t i = 0; i < 150; ++i) all[i] = i;
  for (KvCacheType type : {KvCacheType::kF32, KvCacheType::kBF16, KvCacheType::kFP8})
    CheckAttention(type, 150, all);
}

TEST(SparseMlaAttentionTest, GatheredSubsetAnyOrder) {
  CheckAttention(KvCacheType::kF32, 200, {199, 3, 77, 150, 0, 64, 65, 128, 12});
  CheckAttention(KvCacheType::kFP8, 200, {5});
}

}  // namespace
}  // namespace dsinfer
