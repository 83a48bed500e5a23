// Indexer scores and the fused indexer + streaming top-k.
//  * The scalar scores against an f64 evaluation of docs/numerics.md §5 from the dequantised
//    values:
//      I(t) = Σ_h w_h ReLU(Σ_d q̂[h,d] k̂(t)[d]),  q̂ = e4m3·q_s, k̂ = e4m3·k_s.
//    Tolerance: f32 sums of (d + H) terms: (d + H + 4)·u·Σ_h |w_h| Σ_d |q̂ k̂|.
//  * Every vector path against the scalar one. Products of e4m3 values are exact in f32 on every
//    path (bf16 holds every e4m3 value), so the two differ only by summation order: each result
//    is within (d + H + 4)·u·mag of the exact value, hence within twice that of each other.
//  * IndexerTopK == TopK over the same path's scores, exactly (ties, ReLU zeros, k ≥ n, k = 1,
//    causal chunks, scattered pages, the key-range split).
#include "kernels/indexer.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <random>

#include "base/error.h"
#include "format/dtype.h"
#include "kernels/cpu.h"
#include "kernels/quant.h"
#include "kernels/topk.h"
#include "test_util.h"

namespace dsinfer {
namespace {

// Queries and a paged key cache with quantised random values (or raw codes).
struct IndexerData {
  int64_t S, H, d, n_keys;
  std::vector<uint8_t> qc, kc;   // [S, H, d], [n_keys, d]
  std::vector<float> qs, ks, w;  // [S, H, nb], [n_keys, nb], [S, H]
  test::PagedBuffer keys;

  IndexerData(int64_t S_, int64_t H_, int64_t d_, int64_t n, int page_shift)
      : S(S_),
        H(H_),
        d(d_),
        n_keys(n),
        qc(S * H * d),
        kc(n * d),
        qs(S * H * QuantBlocks(d)),
        ks(n * QuantBlocks(d)),
        w(S * H),
        keys(n, IndexKeyLayout{d}.RowBytes(), page_shift) {}
  int64_t nb() const { return QuantBlocks(d); }

  void Quantise(uint32_t seed) {
    std::vector<float> qf = test::RandomVector(S * H * d, seed),
                       kf = test::RandomVector(n_keys * d, seed + 1, 4.0f);
    for (int64_t i = 0; i < S * H; ++i) ActQuant(&qf[i * d], d, &qc[i * d], &qs[i * nb()]);
    for (int64_t t = 0; t < n_keys; ++t) ActQuant(&kf[t * d], d, &kc[t * d], &ks[t * nb()]);
    w = test::RandomVector(S * H, seed + 2);
    Store();
  }
  void Store() {
    for (int64_t t = 0; t < n_keys; ++t) {
      std::memcpy(keys.row(t), &kc[t * d], d);
      std::memcpy(keys.row(t) + d, &ks[t * nb()], nb() * 4);
    }
  }
  IndexerQuery Query(int64_t s) const {
    return {&qc[s * H * d], &qs[s * H * nb()], &w[s * H], H, d};
  }
  IndexerChunk Chunk(int64_t first_pos) const {
    return {qc.data(), qs.data(), w.data(), S, H, d, first_pos};
  }
};

TEST(IndexerTest, MatchesDequantisedF64) {
  for (int64_t d : {64, 128, 256}) {
    const int64_t H = 4, T = 37;
    IndexerData x(1, H, d, T, /*page_shift=*/3);  // 37 keys over 5 pages
    x.Quantise(1);
    std::vector<float> out(T);
    IndexerScores(x.Query(0), x.keys.view(), T, out.data());
    int positive = 0;
    for (int64_t t = 0; t < T; ++t) {
      double e = 0, mag = 0;
      for (int64_t h = 0; h < H; ++h) {
        double dot = 0, dmag = 0;
        for (int64_t i = 0; i < d; ++i) {
          const double a = double(E4M3ToFloat(x.qc[h * d + i])) * x.qs[h * x.nb() + i / 128];
          const double b = double(E4M3ToFloat(x.kc[t * d + i])) * x.ks[t * x.nb() + i / 128];
          dot += a * b;
          dmag += std::fabs(a * b);
        }
        positive += dot > 0;
        e += x.w[h] * std::max(dot, 0.0);
        mag += std::fabs(x.w[h]) * dmag;
      }
      EXPECT_NEAR(out[t], e, (d + H + 4) * test::kU * mag) << "d=" << d << " t=" << t;
    }
    EXPECT_GT(positive, 0);
    EXPECT_LT(positive, H * T);  // the ReLU is exercised both ways
  }
}

// Σ_h |w_h| Σ_d |q̂ k̂| of key t for query s.
double Magnitude(const IndexerData& x, int64_t s, int64_t t) {
  double mag = 0;
  for (int64_t h = 0; h < x.H; ++h)
    for (int64_t i = 0; i < x.d; ++i)
      mag += std::fabs(double(x.w[s * x.H + h]) * E4M3ToFloat(x.qc[(s * x.H + h) * x.d + i]) *
                       x.qs[(s * x.H + h) * x.nb() + i / 128] * E4M3ToFloat(x.kc[t * x.d + i]) *
                       x.ks[t * x.nb() + i / 128]);
  return mag;
}

// Every e4m3 code (both signs, subnormals, zeros, NaN) through every conversion the CPU runs,
// against the value route: bf16 of the decoded float, and bf16 → float gives the e4m3 value back.
TEST(IndexerTest, EveryBf16ConversionIsExactForEveryCode) {
  std::vector<uint8_t> codes(256 * 3);
  for (size_t i = 0; i < codes.size(); ++i) codes[i] = static_cast<uint8_t>(i * 7 + i / 256);
  for (Bf16Conversion how : SupportedBf16Conversions()) {
    std::vector<uint16_t> out(codes.size(), 0x1234);
    ConvertE4m3ToBf16(codes.data(), static_cast<int64_t>(codes.size()), out.data(), how);
    for (size_t i = 0; i < codes.size(); ++i) {
      const float v = E4M3ToFloat(codes[i]);
      if (std::isnan(v)) {
        EXPECT_TRUE(std::isnan(BF16ToFloat(out[i]))) << "code " << int{codes[i]};
        EXPECT_EQ(out[i] & 0x8000, (codes[i] & 0x80) << 8) << "code " << int{codes[i]};
        continue;
      }
      ASSERT_EQ(out[i], FloatToBF16(v)) << "conversion " << static_cast<int>(how) << " code "
                                        << int{codes[i]};
      ASSERT_EQ(BF16ToFloat(out[i]), v) << "code " << int{codes[i]};
    }
  }
  if (DetectCpu().avx512_vbmi && DetectCpu().avx512_bf16) {
    EXPECT_EQ(SupportedBf16Conversions().size(), 3u);
  }
}

TEST(IndexerTest, EveryPathMatchesScalar) {
  for (int64_t d : {64, 128, 256}) {
    for (int64_t H : {4, 17, 64}) {
      const int64_t T = 75;
      IndexerData x(1, H, d, T, /*page_shift=*/4);
      x.Quantise(static_cast<uint32_t>(d + H));
      // Every e4m3 code (subnormals, ±0, extremes) appears in some key; NaN codes excluded.
      for (int64_t i = 0; i < T * d; ++i) {
        const uint8_t c = static_cast<uint8_t>(i % 256);
        if ((c & 0x7F) != 0x7F) x.kc[i] = c;
      }
      x.Store();
      std::vector<float> ref(T), out(T);
      IndexerScores(x.Query(0), x.keys.view(), T, ref.data());
      IndexerWorkspace ws;
      for (IndexerPath path : SupportedIndexerPaths(d)) {
        IndexerScores(x.Query(0), x.keys.view(), T, out.data(), path, ws);
        for (int64_t t = 0; t < T; ++t)
          ASSERT_NEAR(out[t], ref[t], 2 * (d + H + 4) * test::kU * Magnitude(x, 0, t))
              << IndexerPathName(path) << " d=" << d << " H=" << H << " t=" << t;
      }
    }
  }
}

// Expected selection of every query of a chunk: TopK over the path's scores of keys 0..p.
std::vector<std::vector<int32_t>> ExpectedChunk(const IndexerData& x, int64_t p0, int64_t k,
                                                IndexerPath path) {
  std::vector<std::vector<int32_t>> want(x.S);
  IndexerWorkspace ws;
  std::vector<float> sc(x.n_keys);
  for (int64_t s = 0; s < x.S; ++s) {
    const int64_t n = p0 + s + 1;
    IndexerScores(x.Query(s), x.keys.view(), n, sc.data(), path, ws);
    want[s] = TopK(sc.data(), n, std::min(k, n));
  }
  return want;
}

void CheckChunk(const IndexerData& x, int64_t p0, int64_t k, const std::string& what) {
  for (IndexerPath path : SupportedIndexerPaths(x.d)) {
    const auto want = ExpectedChunk(x, p0, k, path);
    for (bool split : {false, true}) {
      const int64_t stride = split ? k : k + 3;  // 0 (= k) or a wider output row
      std::vector<int32_t> sel(x.S * stride, -7);
      IndexerWorkspace ws;
      if (split)
        IndexerTopKSplitKeys(x.Chunk(p0), x.keys.view(), k, sel.data(), path);
      else
        IndexerTopK(x.Chunk(p0), x.keys.view(), k, sel.data(), ws, path, stride);
      for (int64_t s = 0; s < x.S; ++s) {
        const int64_t n = std::min(k, p0 + s + 1);
        std::vector<int32_t> got(sel.begin() + s * stride, sel.begin() + s * stride + n);
        ASSERT_EQ(got, want[s]) << what << " path=" << IndexerPathName(path) << " split=" << split
                                << " s=" << s << " k=" << k;
        for (int64_t i = n; i < stride; ++i)
          ASSERT_EQ(sel[s * stride + i], -7) << "wrote past the count";
      }
    }
  }
}

TEST(IndexerTopKTest, RandomScoresEqualTopK) {
  IndexerData x(5, 8, 128, 300, /*page_shift=*/5);
  x.Quantise(11);
  for (int64_t k : {1, 7, 64, 150, 296, 400}) CheckChunk(x, /*p0=*/295, k, "random");
  CheckChunk(x, /*p0=*/0, 3, "prefill from 0");  // queries with k ≥ p+1 and k < p+1 mixed
}

TEST(IndexerTopKTest, ManyTiesAndReluZeros) {
  // Codes from {0, ±1, ±2} with unit scales: integer dot products, exact on every path, so
  // scores tie exactly and often; negative logits give ReLU zeros (ties at 0).
  const uint8_t vals[] = {0x00, 0x38, 0xB8, 0x40, 0xC0};  // 0, 1, -1, 2, -2
  for (int64_t H : {1, 3, 16}) {
    IndexerData x(4, H, 64, 1000, /*page_shift=*/6);  // 16 pages, reversed in memory
    std::mt19937 rng(static_cast<uint32_t>(H));
    for (auto& c : x.qc) c = vals[rng() % 3];
    for (auto& c : x.kc) c = vals[rng() % 5] & (rng() % 4 ? 0xFF : 0x00);
    for (int64_t t = 0; t < x.n_keys; t += 7)  // all-zero keys: score exactly 0 with any heads
      std::fill(&x.kc[t * x.d], &x.kc[(t + 1) * x.d], uint8_t{0});
    for (auto& s : x.qs) s = 1.0f;
    for (auto& s : x.ks) s = rng() % 2 ? 1.0f : 0.5f;
    for (auto& w : x.w) w = 0.25f * static_cast<float>(1 + rng() % 2);
    x.Store();
    std::vector<float> sc(x.n_keys);
    IndexerScores(x.Query(0), x.keys.view(), x.n_keys, sc.data());
    int64_t zeros = 0, relu_zeros = 0;
    for (int64_t t = 0; t < x.n_keys; ++t) {
      zeros += sc[t] == 0;
      relu_zeros += sc[t] == 0 && t % 7 != 0;
    }
    EXPECT_GT(zeros, 140) << "the test needs many ties at zero";
    if (H == 1) {
      EXPECT_GT(relu_zeros, 100) << "negative logits clamped by the ReLU";
    }
    for (int64_t k : {1, 5, 100, 600, 996, 2000}) CheckChunk(x, /*p0=*/996, k, "ties");
  }
}

TEST(IndexerTopKTest, SplitKeysOverManyBlocks) {
  const int threads = omp_get_max_threads();  // the merge needs >= 2 threads, even on 1 core
  omp_set_num_threads(std::max(2, threads));
  // > 2 blocks of 2048 keys, so the key-range split really runs on several threads; quantised
  // keys make many exact ties across block boundaries.
  IndexerData x(2, 4, 64, 7000, /*page_shift=*/6);
  x.Quantise(21);
  std::mt19937 rng(4);
  for (auto& c : x.kc) c = rng() % 3 ? c : uint8_t{0};
  for (int64_t t = 0; t < x.n_keys; t += 5) std::fill_n(&x.kc[t * x.d], x.d, uint8_t{0});
  x.Store();
  for (int64_t k : {1, 100, 2048, 5000, 6999}) CheckChunk(x, /*p0=*/6998, k, "split");
  omp_set_num_threads(threads);
}

TEST(IndexerTopKTest, NoWorkspaceGrowthOnceWarm) {
  IndexerData x(3, 16, 128, 500, 6);
  x.Quantise(5);
  std::vector<int32_t> sel(3 * 64);
  IndexerWorkspace ws;
  IndexerTopK(x.Chunk(497), x.keys.view(), 64, sel.data(), ws, BestIndexerPath(128));
  const int64_t grows = ws.grow_count();
  for (int i = 0; i < 3; ++i)
    IndexerTopK(x.Chunk(497), x.keys.view(), 64, sel.data(), ws, BestIndexerPath(128));
  EXPECT_EQ(ws.grow_count(), grows);
}

TEST(IndexerTopKTest, BadInputIsAnError) {
  IndexerData x(1, 4, 64, 10, 3);
  x.Quantise(1);
  std::vector<int32_t> sel(16);
  IndexerWorkspace ws;
  auto run = [&](IndexerChunk c, PagedRows keys, int64_t k) {
    IndexerTopK(c, keys, k, sel.data(), ws, IndexerPath::kScalar);
  };
  EXPECT_THROW(run(x.Chunk(9), x.keys.view(), 0), Error);
  IndexerChunk c = x.Chunk(9);
  c.n_queries = 0;
  EXPECT_THROW(run(c, x.keys.view(), 4), Error);
  PagedRows wrong = x.keys.view();
  wrong.row_bytes = 132;
  try {
    run(x.Chunk(9), wrong, 4);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("132 bytes"), std::string::npos) << e.what();
  }
}

TEST(StreamingTopKTest, MatchesTopKOnQuantisedScores) {
  std::mt19937 rng(9);
  std::vector<TopKCandidate> buf;
  for (int trial = 0; trial < 300; ++trial) {
    const int64_t n = 1 + rng() % 2000, k = 1 + rng() % (n + 5);
    std::vector<float> s(n);
    for (float& v : s) v = static_cast<float>(static_cast<int>(rng() % 9) - 3);  // ties
    for (float& v : s)
      if (rng() % 50 == 0) v = -INFINITY;
    buf.resize(StreamingTopK::Capacity(k));
    StreamingTopK top;
    top.Reset(k, buf.data(), static_cast<int64_t>(buf.size()));
    for (int64_t i = 0; i < n; ++i) top.Push(s[i], static_cast<int32_t>(i));
    const int64_t m = top.Finish();
    std::vector<int32_t> got(m);
    for (int64_t i = 0; i < m; ++i) got[i] = top.candidates()[i].index;
    EXPECT_EQ(got, TopK(s.data(), n, std::min(k, n))) << "n=" << n << " k=" << k;
  }
}

}  // namespace
}  // namespace dsinfer
