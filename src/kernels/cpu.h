// Run-time CPU feature detection for kernel dispatch. One binary runs on any x86-64: kernels
// compile their vector paths with function-level `target` attributes and pick one at run time
// through `DetectCpu()`. `DSINFER_ISA=scalar|avx2|avx512` caps the level (for tests/benchmarks).
// Thread-safe: the result is computed once.
#pragma once

#include <string>

namespace dsinfer {

enum class Isa { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512_bf16 = false;
  bool avx512_vnni = false;
  bool avx512_vbmi = false;  // byte permutes (vpermi2b): the indexer's e4m3 → bf16 table lookup
  Isa best = Isa::kScalar;  // highest usable level, capped by DSINFER_ISA
  // Whether the hardware can run `isa` (ignores the DSINFER_ISA cap; tests use it to run every
  // path the machine supports). kAvx2 = AVX2 + FMA + F16C; kAvx512 = F + BW + VL on top.
  bool Supports(Isa isa) const;
  // The bf16 dot-product kernels (`vdpbf16ps`: the bf16-activation GEMM, kernels/linear.h):
  // `SupportsBf16Dot` whether the hardware can run them (AVX-512 level + AVX512-BF16; tests),
  // `Bf16DotUsable` whether dispatch may pick them (also needs `best` = kAvx512, so
  // DSINFER_ISA=avx2|scalar turns them off).
  bool SupportsBf16Dot() const { return Supports(Isa::kAvx512) && avx512_bf16; }
  bool Bf16DotUsable() const { return best == Isa::kAvx512 && SupportsBf16Dot(); }
  std::string Describe() const;  // e.g. "avx512 (cpu: avx2 fma avx512f ...)"
};

const CpuFeatures& DetectCpu();
const char* IsaName(Isa isa);

}  // namespace dsinfer
