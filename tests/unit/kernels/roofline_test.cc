// The roofline kernels must do exactly the work they count, or every "fraction of roofline"
// figure is wrong. Each kernel's checksum is compared with its closed form.
#include "kernels/roofline.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <vector>

namespace dsinfer::roofline {
namespace {

std::vector<Isa> SupportedIsas() {
  std::vector<Isa> out = {Isa::kScalar};
  if (static_cast<int>(DetectCpu().best) >= static_cast<int>(Isa::kAvx2)) out.push_back(Isa::kAvx2);
  if (DetectCpu().best == Isa::kAvx512) out.push_back(Isa::kAvx512);
  return out;
}

TEST(RooflineTest, ReadSumMatchesClosedFormOnEveryIsa) {
  // Odd length so that every tail path runs; values are small integers so f32 sums are exact.
  std::vector<float> v(100003);
  double expect = 0;
  for (size_t i = 0; i < v.size(); ++i) expect += (v[i] = static_cast<float>(i % 7));
  for (Isa isa : SupportedIsas()) EXPECT_EQ(ReadSum(v.data(), v.size(), isa), expect) << IsaName(isa);
}

TEST(RooflineTest, TriadComputesEveryElement) {
  const size_t n = 4099;
  std::vector<float> b(n), c(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<float>(i), c[i] = static_cast<float>(2 * i);
  for (Isa isa : SupportedIsas()) {
    std::vector<float> a(n, -1.0f);
    Triad(a.data(), b.data(), c.data(), 0.5f, n, isa);
    for (size_t i = 0; i < n; ++i) ASSERT_EQ(a[i], 2.0f * i) << IsaName(isa) << " at " << i;
  }
}

TEST(RooflineTest, FmaLoopDoesTheCountedWork) {
  // Every lane of every chain ends at `iters`; lanes × chains × threads of them.
  const int64_t iters = 1000;
  for (Isa isa : SupportedIsas()) {
    int lanes = isa == Isa::kAvx512 ? 16 : isa == Isa::kAvx2 ? 8 : 1;
    double sum = FmaLoop(isa, iters, 2);
    EXPECT_EQ(sum, static_cast<double>(iters) * lanes * kFmaChains * 2) << IsaName(isa);
    EXPECT_EQ(FmaFlops(isa, iters, 2), 2.0 * iters * lanes * kFmaChains * 2);
  }
}

TEST(RooflineTest, Bf16DotLoopDoesTheCountedWork) {
  if (!DetectCpu().avx512_bf16) GTEST_SKIP() << "no AVX512-BF16 on this CPU";
  const int64_t iters = 1000;
  // Each instruction adds 1·1 + 1·1 = 2 to each of 16 lanes.
  EXPECT_EQ(Bf16DotLoop(iters, 1), 2.0 * iters * 16 * kFmaChains);
}

TEST(RooflineTest, Int8DotLoopDoesTheCountedWork) {
  if (!DetectCpu().avx512_vnni) GTEST_SKIP() << "no AVX-512 VNNI on this CPU";
  // Each instruction adds 1·1 four times to each of 16 lanes; 2^20 + 5 iterations cross the
  // point where the int32 lanes are emptied into the total.
  for (int64_t iters : {int64_t{1000}, (int64_t{1} << 20) + 5}) {
    EXPECT_EQ(Int8DotLoop(iters, 1), 4.0 * static_cast<double>(iters) * 16 * kFmaChains);
    EXPECT_EQ(Int8DotLoop(iters, 2), 2 * 4.0 * static_cast<double>(iters) * 16 * kFmaChains);
  }
  EXPECT_EQ(Int8DotOps(1000, 2), 8.0 * 1000 * 16 * kFmaChains * 2);
}

TEST(RooflineTest, MeasureReportsPositiveRates) {
  Options o;
  o.bytes = size_t{8} << 20;
  o.reps = 1;
  o.seconds = 0.02;
  Result r = Measure(o);
  EXPECT_GT(r.read_gbps, 0);
  EXPECT_GT(r.triad_gbps, 0);
  EXPECT_GT(r.fma_gflops, 0);
  // The int8 dot peak exactly when the CPU has VNNI (and AVX-512 is the best ISA).
  EXPECT_EQ(r.int8_gops > 0, DetectCpu().avx512_vnni && r.isa == Isa::kAvx512);
  EXPECT_EQ(r.threads, omp_get_max_threads());
}

}  // namespace
}  // namespace dsinfer::roofline
