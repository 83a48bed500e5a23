// Element types of safetensors files and the exact scalar conversions between them.
//
// Conversions are the specification other code is tested against (docs/model.md §6):
//  * e4m3fn: 1 sign, 4 exponent (bias 7), 3 mantissa bits; no infinities; 0x7F/0xFF are NaN;
//    max finite ±448. FloatToE4M3 rounds to nearest even and saturates: every |x| ≥ 448,
//    ±Inf included, becomes ±448 (as `act_quant` clamps before casting); NaN → 0x7F; the sign
//    of zero is kept (tiny negatives → 0x80).
//  * bf16: the top 16 bits of an IEEE f32. FloatToBF16 rounds to nearest even (overflow → Inf);
//    NaN stays NaN (quiet, sign kept).
//  * f16: IEEE binary16, nearest even with gradual underflow, overflow → Inf, NaN stays NaN.
//  * ue8m0: the power-of-two activation scale of DeepSeek's `act_quant` (docs/model.md §6.2).
//  * Q8_0, Q2_K-Q6_K, IQ4_NL, IQ4_XS: ggml block types (format/ggml_types.h has the layouts), which
//  only
//    GGUF files hold. Their elements are not addressable one by one: a row of `cols` elements
//    is cols / DTypeBlockElems whole blocks of DTypeSize bytes (DTypeRowBytes). Safetensors
//    never carries them (ParseDType does not know their names).
// Thread-safe: pure functions.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace dsinfer {

enum class DType : uint8_t {
  kBool,
  kU8,
  kI8,
  kI16,
  kU16,
  kI32,
  kU32,
  kI64,
  kU64,
  kF8E4M3,
  kF8E5M2,
  kF16,
  kBF16,
  kF32,
  kF64,
  kQ8_0,  // ggml block types (GGUF only): 32 or 256 elements per block
  kQ4_K,
  kQ5_K,
  kQ6_K,
  kQ2_K,
  kQ3_K,
  kIQ4_NL,  // non-linear 4-bit (a 16-entry table of int8 levels): 32 elements per block
  kIQ4_XS,  // the same levels in 256-element super-blocks with 6-bit sub-block scales
};

// The safetensors spelling, e.g. "F8_E4M3", "BF16", "I64" (ggml's for the block types: "Q4_K").
std::string_view DTypeName(DType t);
// Inverse of DTypeName for the safetensors dtypes; nullopt for an unknown spelling and for the
// ggml block types.
std::optional<DType> ParseDType(std::string_view name);
// Bytes per element; for a block type, bytes per block.
size_t DTypeSize(DType t);
// Elements per block: 1, except the ggml block types (32 for Q8_0 and IQ4_NL, 256 for the
// K-quants and IQ4_XS).
int64_t DTypeBlockElems(DType t);
inline bool IsBlockDType(DType t) { return DTypeBlockElems(t) > 1; }
// Bytes of a row of `cols` elements (a multiple of DTypeBlockElems for a block type).
inline int64_t DTypeRowBytes(DType t, int64_t cols) {
  return cols / DTypeBlockElems(t) * static_cast<int64_t>(DTypeSize(t));
}

namespace detail {
// The 256 e4m3fn values, built exactly from the bit fields (subnormals m/8 · 2^-6 are exact
// f32 quotients m / 512).
constexpr std::array<float, 256> MakeE4M3Values() {
  std::array<float, 256> v{};
  for (uint32_t code = 0; code < 256; ++code) {
    const uint32_t sign = (code >> 7) << 31, exponent = (code >> 3) & 0xF, mantissa = code & 7;
    if (exponent == 0xF && mantissa == 7) {
      v[code] = std::bit_cast<float>(sign | 0x7FC00000u);
    } else if (exponent == 0) {
      v[code] = std::bit_cast<float>(
          sign | std::bit_cast<uint32_t>(static_cast<float>(mantissa) / 512.0f));
    } else {
      v[code] = std::bit_cast<float>(sign | ((exponent - 7 + 127) << 23) | (mantissa << 20));
    }
  }
  return v;
}
}  // namespace detail
inline constexpr std::array<float, 256> kE4M3Values = detail::MakeE4M3Values();

// Inline: these sit in the model's inner loops.
inline float E4M3ToFloat(uint8_t bits) { return kE4M3Values[bits]; }
uint8_t FloatToE4M3(float x);
inline float BF16ToFloat(uint16_t bits) {
  return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
}
inline uint16_t FloatToBF16(float x) {
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  // NaN: truncate and force the quiet bit so that the payload cannot become zero (= Inf).
  if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((bits >> 16) | 0x0040u);
  // Round to nearest even; the largest finite values correctly carry into Inf.
  return static_cast<uint16_t>((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
}
float F16ToFloat(uint16_t bits);
uint16_t FloatToF16(float x);

// ue8m0 scale of one 128-block with absolute maximum `amax`, exactly as `act_quant`:
// v = max(amax, 1e-4) * (1/448) in f32; result = 2^(exponent(v) + (mantissa(v) != 0)).
float Ue8m0Scale(float amax);

}  // namespace dsinfer
