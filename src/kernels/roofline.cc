#include "kernels/roofline.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <vector>

#include "base/error.h"
#include "base/threads.h"

// GCC 12's _mm512_reduce_add_ps trips -Wuninitialized inside its own header.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace dsinfer::roofline {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Per-thread slice [begin, end) of n elements, aligned to 64 floats.
void Slice(size_t n, size_t* begin, size_t* end) {
  size_t t = omp_get_thread_num(), nt = omp_get_num_threads();
  size_t chunk = ((n / nt) + 63) & ~size_t{63};
  *begin = std::min(n, t * chunk);
  *end = std::min(n, *begin + chunk);
}

double ReadScalar(const float* p, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; ++i) s += p[i];
  return s;
}

__attribute__((target("avx2,fma"))) double ReadAvx2(const float* p, size_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    a0 = _mm256_add_ps(a0, _mm256_loadu_ps(p + i));
    a1 = _mm256_add_ps(a1, _mm256_loadu_ps(p + i + 8));
    a2 = _mm256_add_ps(a2, _mm256_loadu_ps(p + i + 16));
    a3 = _mm256_add_ps(a3, _mm256_loadu_ps(p + i + 24));
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  double s = 0;
  for (float v : lanes) s += v;
  return s + ReadScalar(p + i, n - i);
}

// Four interleaved streams per thread (quarters of the slice): one sequential stream per core
// cannot keep enough cache misses in flight to saturate the memory system.
__attribute__((target("avx512f"))) double ReadAvx512(const float* p, size_t n) {
  size_t q = (n / 4) & ~size_t{63};
  const float *p0 = p, *p1 = p + q, *p2 = p + 2 * q, *p3 = p + 3 * q;
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i < q; i += 32) {
    a0 = _mm512_add_ps(a0, _mm512_add_ps(_mm512_loadu_ps(p0 + i), _mm512_loadu_ps(p0 + i + 16)));
    a1 = _mm512_add_ps(a1, _mm512_add_ps(_mm512_loadu_ps(p1 + i), _mm512_loadu_ps(p1 + i + 16)));
    a2 = _mm512_add_ps(a2, _mm512_add_ps(_mm512_loadu_ps(p2 + i), _mm512_loadu_ps(p2 + i + 16)));
    a3 = _mm512_add_ps(a3, _mm512_add_ps(_mm512_loadu_ps(p3 + i), _mm512_loadu_ps(p3 + i + 16)));
  }
  double s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
  return s + ReadScalar(p + 4 * q, n - 4 * q);
}

__attribute__((target("avx512f"))) void TriadAvx512(float* a, const float* b, const float* c,
                                                    float s, size_t n) {
  __m512 vs = _mm512_set1_ps(s);
  size_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(a + i, _mm512_fmadd_ps(vs, _mm512_loadu_ps(c + i), _mm512_loadu_ps(b + i)));
  for (; i < n; ++i) a[i] = b[i] + s * c[i];
}

__attribute__((target("avx2,fma"))) void TriadAvx2(float* a, const float* b, const float* c,
                                                   float s, size_t n) {
  __m256 vs = _mm256_set1_ps(s);
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(a + i, _mm256_fmadd_ps(vs, _mm256_loadu_ps(c + i), _mm256_loadu_ps(b + i)));
  for (; i < n; ++i) a[i] = b[i] + s * c[i];
}

// FMA chains: acc_j = acc_j * x + y with x = 1, y = 1 so that every accumulator ends at `iters`
// exactly (for iters < 2^24) — the checksum a test can verify.
__attribute__((target("avx512f"))) double FmaAvx512(int64_t iters) {
  __m512 acc[kFmaChains];
  for (auto& a : acc) a = _mm512_setzero_ps();
  __m512 x = _mm512_set1_ps(1.0f), y = _mm512_set1_ps(1.0f);
  for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 12
    for (int j = 0; j < kFmaChains; ++j) acc[j] = _mm512_fmadd_ps(acc[j], x, y);
  }
  double s = 0;
  for (auto& a : acc) s += _mm512_reduce_add_ps(a);
  return s;
}

__attribute__((target("avx2,fma"))) double FmaAvx2(int64_t iters) {
  __m256 acc[kFmaChains];
  for (auto& a : acc) a = _mm256_setzero_ps();
  __m256 x = _mm256_set1_ps(1.0f), y = _mm256_set1_ps(1.0f);
  for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 12
    for (int j = 0; j < kFmaChains; ++j) acc[j] = _mm256_fmadd_ps(acc[j], x, y);
  }
  double s = 0;
  alignas(32) float lanes[8];
  for (auto& a : acc) {
    _mm256_store_ps(lanes, a);
    for (float v : lanes) s += v;
  }
  return s;
}

double FmaScalar(int64_t iters) {
  float acc[kFmaChains] = {};
  for (int64_t i = 0; i < iters; ++i)
    for (int j = 0; j < kFmaChains; ++j) acc[j] = acc[j] * 1.0f + 1.0f;
  double s = 0;
  for (float a : acc) s += a;
  return s;
}

int Lanes(Isa isa) { return isa == Isa::kAvx512 ? 16 : isa == Isa::kAvx2 ? 8 : 1; }

// bf16 dot chains: acc += x·y over pairs with x = y = 1.0 (bf16 0x3F80), so each lane gains 2 per
// instruction: every accumulator lane ends at 2·iters exactly (for 2·iters < 2^24).
__attribute__((target("avx512f,avx512bf16"))) double Bf16Avx512(int64_t iters) {
  __m512 acc[kFmaChains];
  for (auto& a : acc) a = _mm512_setzero_ps();
  __m512bh one = (__m512bh)_mm512_set1_epi16(0x3F80);
  for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 12
    for (int j = 0; j < kFmaChains; ++j) acc[j] = _mm512_dpbf16_ps(acc[j], one, one);
  }
  double s = 0;
  for (auto& a : acc) s += _mm512_reduce_add_ps(a);
  return s;
}

// int8 dot chains: acc += Σ of 4 products u8·s8 per lane with u8 = s8 = 1, so each lane gains 4
// per instruction; the int32 lanes are emptied into the total every 2^20 iterations (before
// they could overflow), so the total is 4·iters per lane exactly.
__attribute__((target("avx512f,avx512vnni"))) double Int8Avx512(int64_t iters) {
  const __m512i one = _mm512_set1_epi8(1);
  double s = 0;
  for (int64_t done = 0; done < iters;) {
    const int64_t chunk = std::min<int64_t>(iters - done, int64_t{1} << 20);
    // Chain j starts at j (and gives it back below): chains from equal starts are equal
    // integers, which the compiler merged into one (measuring one chain's latency, counted 12×).
    __m512i acc[kFmaChains];
    for (int j = 0; j < kFmaChains; ++j) acc[j] = _mm512_set1_epi32(j);
    for (int64_t i = 0; i < chunk; ++i) {
#pragma GCC unroll 12
      for (int j = 0; j < kFmaChains; ++j) acc[j] = _mm512_dpbusd_epi32(acc[j], one, one);
    }
    for (int j = 0; j < kFmaChains; ++j) {
      alignas(64) int32_t lanes[16];
      _mm512_store_si512(lanes, acc[j]);
      for (int32_t v : lanes) s += v - j;
    }
    done += chunk;
  }
  return s;
}

template <class F>
double BestTime(int reps, F&& f) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    auto t0 = Clock::now();
    f();
    best = std::min(best, Seconds(t0, Clock::now()));
  }
  return best;
}

// Calibrates iterations so one run of `loop(iters)` takes about `seconds`, then returns FLOP/s.
template <class Loop, class Flops>
double PeakRate(double seconds, Loop&& loop, Flops&& flops) {
  int64_t iters = 1 << 16;
  for (;;) {
    double t = BestTime(1, [&] { loop(iters); });
    if (t > seconds / 4 || iters > (int64_t{1} << 40)) break;
    iters *= 2;
  }
  iters = static_cast<int64_t>(iters * (seconds / std::max(1e-6, BestTime(1, [&] { loop(iters); }))));
  iters = std::max<int64_t>(iters, 1 << 16);
  double t = BestTime(3, [&] { loop(iters); });
  return flops(iters) / t;
}

}  // namespace

double ReadSum(const float* data, size_t n, Isa isa) {
  double total = 0;
#pragma omp parallel reduction(+ : total)
  {
    DSINFER_NOTE_THREAD("roofline.read");
    size_t b, e;
    Slice(n, &b, &e);
    if (b < e) {
      total += isa == Isa::kAvx512 ? ReadAvx512(data + b, e - b)
             : isa == Isa::kAvx2   ? ReadAvx2(data + b, e - b)
                                   : ReadScalar(data + b, e - b);
    }
  }
  return total;
}

void Triad(float* a, const float* b, const float* c, float s, size_t n, Isa isa) {
#pragma omp parallel
  {
    DSINFER_NOTE_THREAD("roofline.copy");
    size_t lo, hi;
    Slice(n, &lo, &hi);
    if (lo < hi) {
      if (isa == Isa::kAvx512) {
        TriadAvx512(a + lo, b + lo, c + lo, s, hi - lo);
      } else if (isa == Isa::kAvx2) {
        TriadAvx2(a + lo, b + lo, c + lo, s, hi - lo);
      } else {
        for (size_t i = lo; i < hi; ++i) a[i] = b[i] + s * c[i];
      }
    }
  }
}

double FmaLoop(Isa isa, int64_t iters, int threads) {
  double total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
  {
    DSINFER_NOTE_THREAD("roofline.fma");
    total += isa == Isa::kAvx512 ? FmaAvx512(iters) : isa == Isa::kAvx2 ? FmaAvx2(iters)
                                                                        : FmaScalar(iters);
  }
  return total;
}

double FmaFlops(Isa isa, int64_t iters, int threads) {
  return 2.0 * kFmaChains * Lanes(isa) * static_cast<double>(iters) * threads;
}

double Bf16DotLoop(int64_t iters, int threads) {
  DSINFER_CHECK(DetectCpu().avx512_bf16, "Bf16DotLoop needs AVX512-BF16");
  double total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
  {
    DSINFER_NOTE_THREAD("roofline.bf16");
    total += Bf16Avx512(iters);
  }
  return total;
}

double Bf16DotFlops(int64_t iters, int threads) {
  // Per instruction and lane: 2 multiplies + 2 adds.
  return 4.0 * kFmaChains * 16 * static_cast<double>(iters) * threads;
}

double Int8DotLoop(int64_t iters, int threads) {
  DSINFER_CHECK(DetectCpu().avx512_vnni, "Int8DotLoop needs AVX-512 VNNI");
  double total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
  {
    DSINFER_NOTE_THREAD("roofline.int8");
    total += Int8Avx512(iters);
  }
  return total;
}

double Int8DotOps(int64_t iters, int threads) {
  // Per instruction and lane: 4 multiplies + 4 adds.
  return 8.0 * kFmaChains * 16 * static_cast<double>(iters) * threads;
}

Result Measure(const Options& options) {
  const CpuFeatures& cpu = DetectCpu();
  Result r;
  r.isa = cpu.best;
  r.threads = omp_get_max_threads();
  volatile double sink = 0;
  if (options.memory) {
    size_t n = options.bytes / sizeof(float);
    auto alloc = [n] {
      return std::unique_ptr<float[], decltype(&std::free)>(
          static_cast<float*>(std::aligned_alloc(64, n * sizeof(float))), &std::free);
    };
    auto a = alloc(), b = alloc(), c = alloc();
    if (!a || !b || !c) throw Error("bench roofline: cannot allocate 3 x " + std::to_string(options.bytes) + " bytes");
#pragma omp parallel
    {  // First touch by the thread that will read each slice (NUMA-friendly).
      DSINFER_NOTE_THREAD("roofline.touch");
      size_t lo, hi;
      Slice(n, &lo, &hi);
      for (size_t i = lo; i < hi; ++i) a[i] = 0.0f, b[i] = 1.0f, c[i] = 2.0f;
    }
    if (options.progress) options.progress("memory read bandwidth");
    double t = BestTime(options.reps, [&] { sink = sink + ReadSum(b.get(), n, r.isa); });
    r.read_gbps = static_cast<double>(n * sizeof(float)) / t / 1e9;
    if (options.progress) options.progress("memory triad bandwidth");
    t = BestTime(options.reps, [&] { Triad(a.get(), b.get(), c.get(), 3.0f, n, r.isa); });
    r.triad_gbps = 3.0 * static_cast<double>(n * sizeof(float)) / t / 1e9;
  }
  if (options.progress) options.progress("peak f32 FMA throughput");
  r.fma_gflops = PeakRate(options.seconds, [&](int64_t it) { sink = sink + FmaLoop(r.isa, it, r.threads); },
                          [&](int64_t it) { return FmaFlops(r.isa, it, r.threads); }) / 1e9;
  if (cpu.avx512_bf16 && r.isa == Isa::kAvx512) {
    if (options.progress) options.progress("peak BF16 dot throughput");
    r.bf16_gflops = PeakRate(options.seconds, [&](int64_t it) { sink = sink + Bf16DotLoop(it, r.threads); },
                             [&](int64_t it) { return Bf16DotFlops(it, r.threads); }) / 1e9;
  }
  if (cpu.avx512_vnni && r.isa == Isa::kAvx512) {
    if (options.progress) options.progress("peak int8 dot (VNNI) throughput");
    r.int8_gops = PeakRate(options.seconds, [&](int64_t it) { sink = sink + Int8DotLoop(it, r.threads); },
                           [&](int64_t it) { return Int8DotOps(it, r.threads); }) / 1e9;
  }
  return r;
}

}  // namespace dsinfer::roofline
