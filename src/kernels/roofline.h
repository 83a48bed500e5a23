// Machine roofline: the denominators of every "fraction of the machine" figure dsinfer reports.
// Decode is memory-bandwidth bound (weights are streamed once per step), prefill is compute bound,
// so we measure (a) sustained multi-threaded memory bandwidth on a buffer far larger than the
// caches (STREAM-like read and triad), and (b) peak f32 FMA and BF16-dot throughput with enough
// independent accumulators to hide latency. Each kernel returns a checksum of the work it did so
// that tests can verify the counted work really happened (and the optimiser kept it).
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/cpu.h"

namespace dsinfer::roofline {

// Sum of `n` floats, multi-threaded (OpenMP), with the widest loads `isa` allows.
double ReadSum(const float* data, size_t n, Isa isa);
// a[i] = b[i] + s * c[i] (STREAM triad), multi-threaded.
void Triad(float* a, const float* b, const float* c, float s, size_t n, Isa isa);

// Runs `iters` iterations of kFmaChains independent FMA chains `acc = acc * x + y` per thread on
// full vectors of `isa` and returns the sum of all accumulators over all threads. FLOPs done:
// FmaFlops(isa, iters, threads).
constexpr int kFmaChains = 12;
double FmaLoop(Isa isa, int64_t iters, int threads);
double FmaFlops(Isa isa, int64_t iters, int threads);

// Same with AVX512-BF16 `vdpbf16ps` (2 bf16 products accumulated into each f32 lane).
// Requires DetectCpu().avx512_bf16. FLOPs: Bf16DotFlops(iters, threads).
double Bf16DotLoop(int64_t iters, int threads);
double Bf16DotFlops(int64_t iters, int threads);

// Same with AVX-512 VNNI `vpdpbusd` (4 u8·s8 products added into each int32 lane): the peak of
// the int8-activation products of block weights (kernels/qblocks.h). Requires
// DetectCpu().avx512_vnni. Ops (a multiply and an add per product): Int8DotOps(iters, threads).
double Int8DotLoop(int64_t iters, int threads);
double Int8DotOps(int64_t iters, int threads);

struct Result {
  int threads = 1;
  Isa isa = Isa::kScalar;
  double read_gbps = 0;   // best of reps
  double triad_gbps = 0;  // counts 3 streams (2 reads + 1 write; write-allocate not counted)
  double fma_gflops = 0;  // f32 FMA, best ISA
  double bf16_gflops = 0; // 0 when the CPU has no AVX512-BF16
  double int8_gops = 0;   // VNNI int8 dot; 0 when the CPU has no AVX-512 VNNI
};

struct Options {
  size_t bytes = size_t{1} << 30;  // per buffer for the bandwidth tests
  int reps = 5;
  double seconds = 0.5;            // per compute measurement
  bool memory = true;              // false: only the compute peaks (bandwidths stay 0)
  void (*progress)(const char* what) = nullptr;
};

Result Measure(const Options& options);

}  // namespace dsinfer::roofline
