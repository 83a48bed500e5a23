#include "kernels/cpu.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include <cstdlib>
#include <string_view>

namespace dsinfer {
namespace {

CpuFeatures Detect() {
  CpuFeatures f;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  f.avx2 = __builtin_cpu_supports("avx2");
  f.fma = __builtin_cpu_supports("fma");
  // CPUID.1:ECX bit 29 (clang 14 does not know "f16c" in __builtin_cpu_supports).
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  f.f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & (1u << 29)) != 0;
  f.avx512f = __builtin_cpu_supports("avx512f");
  f.avx512bw = __builtin_cpu_supports("avx512bw");
  f.avx512vl = __builtin_cpu_supports("avx512vl");
  f.avx512_bf16 = __builtin_cpu_supports("avx512bf16");
  f.avx512_vnni = __builtin_cpu_supports("avx512vnni");
  f.avx512_vbmi = __builtin_cpu_supports("avx512vbmi");
#endif
  if (f.Supports(Isa::kAvx512)) {
    f.best = Isa::kAvx512;
  } else if (f.Supports(Isa::kAvx2)) {
    f.best = Isa::kAvx2;
  }
  if (const char* cap = std::getenv("DSINFER_ISA")) {
    std::string_view c(cap);
    Isa limit = c == "scalar" ? Isa::kScalar : c == "avx2" ? Isa::kAvx2 : Isa::kAvx512;
    if (static_cast<int>(limit) < static_cast<int>(f.best)) f.best = limit;
  }
  return f;
}

}  // namespace

const CpuFeatures& DetectCpu() {
  static const CpuFeatures features = Detect();
  return features;
}

bool CpuFeatures::Supports(Isa isa) const {
  const bool avx2_level = avx2 && fma && f16c;
  switch (isa) {
    case Isa::kAvx512:
      return avx2_level && avx512f && avx512bw && avx512vl;
    case Isa::kAvx2:
      return avx2_level;
    case Isa::kScalar:
      return true;
  }
  return false;
}

const char* IsaName(Isa isa) {
  switch (isa) {
    case Isa::kAvx512:
      return "avx512";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kScalar:
      return "scalar";
  }
  return "?";
}

std::string CpuFeatures::Describe() const {
  std::string s = IsaName(best);
  s += " (cpu:";
  if (avx2) s += " avx2";
  if (fma) s += " fma";
  if (f16c) s += " f16c";
  if (avx512f) s += " avx512f";
  if (avx512bw) s += " avx512bw";
  if (avx512vl) s += " avx512vl";
  if (avx512_bf16) s += " avx512bf16";
  if (avx512_vnni) s += " avx512vnni";
  if (avx512_vbmi) s += " avx512vbmi";
  s += ")";
  return s;
}

}  // namespace dsinfer
