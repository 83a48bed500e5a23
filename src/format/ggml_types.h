// ggml tensor types (the `type` field of a GGUF tensor info): block geometry of every type
// dsinfer recognises, and exact scalar dequantisation of the ones it decodes.
//
// A ggml tensor row (`dims[0]` elements, the contiguous extent) is a sequence of blocks; a
// block holds `block_elems` elements in `block_bytes` bytes. All multi-byte fields are
// little-endian. "f16" is IEEE binary16. The layouts below are those of ggml's
// `ggml/src/ggml-common.h` (struct `block_*`, `QK8_0 = 32`, `QK_K = 256`, `K_SCALE_SIZE = 12`)
// and the reference decoders `dequantize_row_*` of `ggml/src/ggml-quants.c`; the layouts are
// restated here from those definitions (docs/gguf.md has the table):
//
//  * F32  (0): 1 element, 4 bytes.  F16 (1): 1 element, 2 bytes (IEEE binary16).
//  * BF16 (30): 1 element, 2 bytes (top half of an IEEE f32).
//  * Q8_0 (8): 32 elements, 34 bytes = f16 d | int8 q[32];  x[i] = q[i] * d.
//  * Q4_0 (2): 32 elements, 18 bytes = f16 d | u8 qs[16]. Element i < 16: q = qs[i] & 15,
//      element i + 16: q = qs[i] >> 4; x = (q - 8) * d.
//  * Q4_1 (3): 32 elements, 20 bytes = f16 d | f16 m | u8 qs[16]; q as Q4_0, x = q * d + m (the
//      product rounded to f32, then the sum).
//  * Q5_0 (6): 32 elements, 22 bytes = f16 d | u8 qh[4] | u8 qs[16]; q as Q4_0 plus 16 if bit i
//      of the little-endian u32 qh is set (element i, 0..31); x = (q - 16) * d.
//  * Q5_1 (7): 32 elements, 24 bytes = f16 d | f16 m | u8 qh[4] | u8 qs[16]; q as Q5_0,
//      x = q * d + m as Q4_1.
//    (llama.cpp writes these where a K-quant cannot go: a row whose length is not a multiple of
//    256, e.g. DeepSeek's attn_k_b with rows of qk_nope_head_dim = 128, falls back from Q4_K to
//    Q5_0, from Q5_K to Q5_1. dsinfer decodes them to f32 at load.)
//  * Q4_K (12): 256 elements, 144 bytes = f16 d | f16 dmin | u8 scales[12] | u8 qs[128].
//      8 sub-blocks of 32; sub-block j has a 6-bit scale sc_j and a 6-bit min m_j packed in
//      `scales` (see UnpackK4Scale). Element e (chunk c = e / 64, half h = (e / 32) % 2,
//      l = e % 32): q = qs[32c + l] low nibble (h = 0) or high nibble (h = 1), j = 2c + h,
//      x = (d * sc_j) * q - (dmin * m_j), each product and the difference rounded to f32.
//  * Q5_K (13): 256 elements, 176 bytes = f16 d | f16 dmin | u8 scales[12] | u8 qh[32] |
//      u8 qs[128]. As Q4_K with a fifth bit: q += 16 if bit j of qh[l] is set (j = 2c + h).
//  * Q6_K (14): 256 elements, 210 bytes = u8 ql[128] | u8 qh[64] | int8 scales[16] | f16 d.
//      Element e (half n = e / 128, r = e % 128, quarter k = r / 32, l = r % 32):
//      low 4 bits = ql[64n + l + 32 (k odd)] low nibble (k < 2) or high nibble (k >= 2);
//      high 2 bits = (qh[32n + l] >> 2k) & 3; q = (low | high << 4) - 32;
//      x = (d * scales[8n + 2k + l / 16]) * q, each product rounded to f32.
//  * Q2_K (10): 256 elements, 84 bytes = u8 scales[16] | u8 qs[64] | f16 d | f16 dmin.
//      16 groups of 16 elements; group g = e / 16: scale scales[g] & 15, min scales[g] >> 4.
//      Element e (half n = e / 128, j = (e % 128) / 32): q = (qs[32n + e % 32] >> 2j) & 3;
//      x = (d * scale) * q - (dmin * min), each product and the difference rounded to f32.
//  * Q3_K (11): 256 elements, 110 bytes = u8 hmask[32] | u8 qs[64] | u8 scales[12] | f16 d.
//      16 groups of 16 with 6-bit scales s_g stored as s_g + 32: low 4 bits the low nibble of
//      scales[g] (g < 8) or the high nibble of scales[g - 8] (g >= 8), high 2 bits
//      (scales[8 + g % 4] >> 2 (g / 4)) & 3. Element e (n, j as Q2_K, l = e % 32):
//      q = ((qs[32n + l] >> 2j) & 3) - (bit 4n + j of hmask[l] set ? 0 : 4), in -4..3;
//      x = (d * s_{e/16}) * q, each product rounded to f32.
//  * IQ4_NL (20): 32 elements, 18 bytes = f16 d | u8 qs[16]. Element i < 16: index
//      qs[i] & 15, element i + 16: qs[i] >> 4; x = d * kIq4Levels[index], rounded to f32.
//      kIq4Levels, ggml's `kvalues_iq4nl`: -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25,
//      38, 53, 69, 89, 113 (non-uniform int8 levels, denser near zero).
//  * IQ4_XS (23): 256 elements, 136 bytes = f16 d | u16 scales_h | u8 scales_l[4] | u8 qs[128].
//      8 sub-blocks of 32; sub-block j has the 6-bit scale
//      ls_j = ((scales_l[j / 2] >> 4 (j % 2)) & 15) | ((scales_h >> 2j) & 3) << 4, and
//      dl_j = d * (ls_j - 32) (rounded to f32). Element i < 16 of sub-block j: index
//      qs[16j + i] & 15, element i + 16: qs[16j + i] >> 4; x = dl_j * kIq4Levels[index].
//    (llama.cpp's IQ4_XS files fall back to IQ4_NL for rows that are not whole 256-blocks.)
//
// The other types below are recognised (so that a file listing them parses and names them)
// but not decoded yet: DequantizeRow throws `Error` naming the type.
// Thread-safe: pure functions and constant tables.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "format/dtype.h"

namespace dsinfer {

enum class GgmlType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kIQ4_NL = 20,
  kIQ4_XS = 23,
  kI8 = 24,
  kI16 = 25,
  kI32 = 26,
  kI64 = 27,
  kF64 = 28,
  kBF16 = 30,
};

struct GgmlTypeInfo {
  GgmlType type;
  std::string_view name;  // ggml's spelling, e.g. "Q4_K"
  int64_t block_elems;    // elements per block
  size_t block_bytes;     // bytes per block
  bool decodable;         // DequantizeRow implements it
};

// The geometry of type id `id`; nullptr for an id dsinfer does not know (including ggml's
// IQ* types other than IQ4_NL/IQ4_XS, and TQ*/MXFP4, whose layouts are not implemented).
const GgmlTypeInfo* FindGgmlType(uint32_t id);
const GgmlTypeInfo& GgmlTypeOf(GgmlType t);  // `t` must be a listed enumerator
inline std::string_view GgmlTypeName(GgmlType t) { return GgmlTypeOf(t).name; }

// Decodes one row of `out.size()` elements (a multiple of the block size) from `src`
// (exactly out.size() / block_elems * block_bytes bytes, any alignment) to f32, bit for bit
// as ggml's reference decoders define it. Throws `Error` for a type that is not decodable
// or sizes that do not match; `what` (e.g. a tensor name) starts the message.
void DequantizeRow(GgmlType t, std::span<const std::byte> src, std::span<float> out,
                   std::string_view what = "");

// The engine's DType of a ggml type that stays in its storage form: F32, F16, BF16 and the
// block types Q8_0, Q4_K, Q5_K, Q6_K, Q2_K, Q3_K, IQ4_NL, IQ4_XS; nullopt for the others.
std::optional<DType> DTypeOfGgml(GgmlType t);
// The ggml type of a block DType (IsBlockDType(t) must hold).
GgmlType GgmlOfBlockDType(DType t);

// The 6-bit scale and min of sub-block `j` (0..7) of a Q4_K/Q5_K `scales[12]` field:
// bytes 0-3 hold sc_0..3 in their low 6 bits, bytes 4-7 m_0..3 likewise; sub-blocks 4..7 keep
// their low 4 bits in the nibbles of bytes 8-11 (scale low, min high) and their top 2 bits in
// the top 2 bits of bytes 0-3 (scale) and 4-7 (min).
void UnpackK4Scale(const uint8_t* scales, int j, uint8_t* sc, uint8_t* m);

// Q3_K's signed scale (−32..31) of group g (0..15) from its 12 packed `scales` bytes (6 bits
// each, stored as s + 32): the low 4 bits of group g < 8 are the low nibble of scales[g], of
// g ≥ 8 the high nibble of scales[g − 8]; the top 2 bits are bits 2(g / 4), 2(g / 4) + 1 of
// scales[8 + g % 4].
inline int Q3Scale(const uint8_t* scales, int g) {
  const int low = g < 8 ? (scales[g] & 0xF) : (scales[g - 8] >> 4);
  const int high = (scales[8 + g % 4] >> (2 * (g / 4))) & 3;
  return (low | (high << 4)) - 32;
}

// The 16 int8 levels of IQ4_NL and IQ4_XS (ggml's kvalues_iq4nl), by 4-bit index.
inline constexpr int8_t kIq4Levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                          1,    13,   25,  38,  53,  69,  89,  113};
// The 6-bit scale ls_j (0..63, before the −32) of sub-block j (0..7) of an IQ4_XS block `b`.
inline int Iq4XsScale(const uint8_t* b, int j) {
  const int scales_h = b[2] | (b[3] << 8);
  return ((b[4 + j / 2] >> (4 * (j % 2))) & 15) | (((scales_h >> (2 * j)) & 3) << 4);
}

}  // namespace dsinfer
