// Indexer scores against an f64 evaluation of NUMERICS.md §5 from the dequantised values:
//   I(t) = Σ_h w_h ReLU(Σ_d q̂[h,d] k̂(t)[d]),  q̂ = e4m3·q_s, k̂ = e4m3·k_s.
// Tolerance: f32 sums of (d + H) terms: (d + H + 4)·u·Σ_h |w_h| Σ_d |q̂ k̂|.
#include "kernels/indexer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "format/dtype.h"
#include "kernels/quant.h"
#include "test_util.h"

namespace dsinfer {
namespace {

TEST(IndexerTest, MatchesDequantisedF64) {
  for (int64_t d : {64, 128, 256}) {
    const int64_t H = 4, T = 37, nb = QuantBlocks(d);
    std::vector<float> qf = test::RandomVector(H * d, 1), kf = test::RandomVector(T * d, 2, 4.0f);
    std::vector<float> w = test::RandomVector(H, 3);
    std::vector<uint8_t> qc(H * d), kc(T * d);
    std::vector<float> qs(H * nb), ks(T * nb), out(T);
    for (int64_t h = 0; h < H; ++h) ActQuant(&qf[h * d], d, &qc[h * d], &qs[h * nb]);
    const IndexKeyLayout layout{d};
    test::PagedBuffer keys(T, layout.RowBytes(), /*page_shift=*/3);  // 37 keys over 5 pages
    for (int64_t t = 0; t < T; ++t) {
      ActQuant(&kf[t * d], d, &kc[t * d], &ks[t * nb]);
      std::memcpy(keys.row(t), &kc[t * d], d);
      std::memcpy(keys.row(t) + d, &ks[t * nb], nb * 4);
    }
    IndexerScores(IndexerQuery{qc.data(), qs.data(), w.data(), H, d}, keys.view(), T, out.data());
    int positive = 0;
    for (int64_t t = 0; t < T; ++t) {
      double e = 0, mag = 0;
      for (int64_t h = 0; h < H; ++h) {
        double dot = 0, dmag = 0;
        for (int64_t i = 0; i < d; ++i) {
          const double a = double(E4M3ToFloat(qc[h * d + i])) * qs[h * nb + i / 128];
          const double b = double(E4M3ToFloat(kc[t * d + i])) * ks[t * nb + i / 128];
          dot += a * b;
          dmag += std::fabs(a * b);
        }
        positive += dot > 0;
        e += w[h] * std::max(dot, 0.0);
        mag += std::fabs(w[h]) * dmag;
      }
      EXPECT_NEAR(out[t], e, (d + H + 4) * test::kU * mag) << "d=" << d << " t=" << t;
    }
    EXPECT_GT(positive, 0);
    EXPECT_LT(positive, H * T);  // the ReLU is exercised both ways
  }
}

}  // namespace
}  // namespace dsinfer
