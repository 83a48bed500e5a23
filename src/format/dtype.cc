#include "format/dtype.h"

#include <array>
#include <bit>
#include <cmath>

namespace dsinfer {
namespace {

struct DTypeEntry {
  DType type;
  std::string_view name;
  size_t size;              // bytes per element (per block for the block types)
  int64_t block_elems = 1;  // elements per block
};

// The safetensors dtype spellings (huggingface/safetensors `Dtype`).
constexpr std::array<DTypeEntry, 23> kDTypes = {{
    {DType::kBool, "BOOL", 1},
    {DType::kU8, "U8", 1},
    {DType::kI8, "I8", 1},
    {DType::kI16, "I16", 2},
    {DType::kU16, "U16", 2},
    {DType::kI32, "I32", 4},
    {DType::kU32, "U32", 4},
    {DType::kI64, "I64", 8},
    {DType::kU64, "U64", 8},
    {DType::kF8E4M3, "F8_E4M3", 1},
    {DType::kF8E5M2, "F8_E5M2", 1},
    {DType::kF16, "F16", 2},
    {DType::kBF16, "BF16", 2},
    {DType::kF32, "F32", 4},
    {DType::kF64, "F64", 8},
    // ggml block types (format/ggml_types.h): bytes and elements per block.
    {DType::kQ8_0, "Q8_0", 34, 32},
    {DType::kQ4_K, "Q4_K", 144, 256},
    {DType::kQ5_K, "Q5_K", 176, 256},
    {DType::kQ6_K, "Q6_K", 210, 256},
    {DType::kQ2_K, "Q2_K", 84, 256},
    {DType::kQ3_K, "Q3_K", 110, 256},
    {DType::kIQ4_NL, "IQ4_NL", 18, 32},
    {DType::kIQ4_XS, "IQ4_XS", 136, 256},
}};

const DTypeEntry& Entry(DType t) {
  // The enum values are the table indices (checked below at compile time).
  return kDTypes[static_cast<size_t>(t)];
}

constexpr bool TableMatchesEnum() {
  for (size_t i = 0; i < kDTypes.size(); ++i) {
    if (static_cast<size_t>(kDTypes[i].type) != i) return false;
  }
  return true;
}
static_assert(TableMatchesEnum());

// Rounds a non-negative float `q` (< 2^23) to the nearest integer, ties to even, without
// depending on the floating-point environment's rounding mode.
uint32_t RoundHalfEven(float q) {
  auto i = static_cast<uint32_t>(q);       // truncation; q >= 0
  float frac = q - static_cast<float>(i);  // exact for q < 2^23
  if (frac > 0.5f || (frac == 0.5f && (i & 1u) != 0)) ++i;
  return i;
}

// Rounds the f32 bit pattern `bits` (non-negative, finite) to keep its top (32 - `drop`)
// bits, nearest even; a mantissa carry correctly propagates into the exponent.
uint32_t RoundBitsHalfEven(uint32_t bits, int drop) {
  const uint32_t half_minus_one = (1u << (drop - 1)) - 1u;
  const uint32_t lsb = (bits >> drop) & 1u;
  return (bits + half_minus_one + lsb) >> drop;
}

}  // namespace

std::string_view DTypeName(DType t) { return Entry(t).name; }

std::optional<DType> ParseDType(std::string_view name) {
  for (const DTypeEntry& e : kDTypes) {
    if (e.name == name && e.block_elems == 1) return e.type;
  }
  return std::nullopt;
}

size_t DTypeSize(DType t) { return Entry(t).size; }

int64_t DTypeBlockElems(DType t) { return Entry(t).block_elems; }

uint8_t FloatToE4M3(float x) {
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  const uint8_t sign = static_cast<uint8_t>((bits >> 24) & 0x80u);
  const uint32_t abs_bits = bits & 0x7FFFFFFFu;
  if (abs_bits > 0x7F800000u) return 0x7F;  // NaN
  const float a = std::bit_cast<float>(abs_bits);
  // Saturation: everything from the largest finite value up (including +Inf) becomes 448.
  if (a >= 448.0f) return sign | 0x7E;
  if (a < 0x1p-6f) {
    // e4m3 subnormal range: multiples of 2^-9; 8 · 2^-9 is the smallest normal (code 0x08).
    return sign | static_cast<uint8_t>(RoundHalfEven(a * 512.0f));
  }
  // Normal: re-bias the exponent (127 → 7) and round 23 mantissa bits to 3.
  const uint32_t code = RoundBitsHalfEven(abs_bits - ((127u - 7u) << 23), 20);
  return sign | static_cast<uint8_t>(code > 0x7Eu ? 0x7Eu : code);
}

float F16ToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1Fu;
  const uint32_t mantissa = h & 0x3FFu;
  if (exponent == 0x1F) {  // Inf / NaN (payload kept)
    return std::bit_cast<float>(sign | 0x7F800000u | (mantissa << 13));
  }
  if (exponent == 0) {  // zero / subnormal: m · 2^-24, exact in f32
    const float v = std::ldexp(static_cast<float>(mantissa), -24);
    return sign != 0 ? -v : v;
  }
  return std::bit_cast<float>(sign | ((exponent + 127u - 15u) << 23) | (mantissa << 13));
}

uint16_t FloatToF16(float x) {
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  const auto sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t abs_bits = bits & 0x7FFFFFFFu;
  if (abs_bits > 0x7F800000u) {  // NaN: keep the top payload bits, force quiet
    return sign | 0x7E00u | static_cast<uint16_t>((abs_bits >> 13) & 0x3FFu);
  }
  // 65520 = midway between 65504 (max finite, odd mantissa) and 2^16: ties go to Inf.
  if (abs_bits >= 0x477FF000u) return sign | 0x7C00u;
  if (abs_bits < 0x38800000u) {  // below 2^-14: f16 subnormals, multiples of 2^-24
    const float a = std::bit_cast<float>(abs_bits);
    return sign | static_cast<uint16_t>(RoundHalfEven(a * 0x1p24f));  // 1024 → smallest normal
  }
  return sign | static_cast<uint16_t>(RoundBitsHalfEven(abs_bits - ((127u - 15u) << 23), 13));
}

float Ue8m0Scale(float amax) {
  if (std::isnan(amax)) return amax;
  const float v = (amax > 1e-4f ? amax : 1e-4f) * (1.0f / 448.0f);
  const uint32_t bits = std::bit_cast<uint32_t>(v);
  uint32_t exponent = (bits >> 23) & 0xFFu;
  if ((bits & 0x7FFFFFu) != 0 && exponent < 0xFFu) ++exponent;  // round up to a power of two
  return std::bit_cast<float>(exponent << 23);
}

}  // namespace dsinfer
