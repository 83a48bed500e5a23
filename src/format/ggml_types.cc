#include "format/ggml_types.h"

#include <array>
#include <cstring>
#include <string>

#include "base/error.h"
#include "format/dtype.h"

// The decoders rely on every product and difference being rounded to f32 separately, as in
// ggml's reference C. This library is built for baseline x86-64 in ISO C++ mode (no FMA
// instructions, `-ffp-contract=off`), so the compiler cannot fuse `d1 * q - m1`.

namespace dsinfer {
namespace {

constexpr int64_t kQK = 256;  // elements per K-quant super-block (ggml's QK_K)

constexpr std::array<GgmlTypeInfo, 22> kTypes = {{
    {GgmlType::kF32, "F32", 1, 4, true},         {GgmlType::kF16, "F16", 1, 2, true},
    {GgmlType::kQ4_0, "Q4_0", 32, 18, true},     {GgmlType::kQ4_1, "Q4_1", 32, 20, true},
    {GgmlType::kQ5_0, "Q5_0", 32, 22, true},     {GgmlType::kQ5_1, "Q5_1", 32, 24, true},
    {GgmlType::kQ8_0, "Q8_0", 32, 34, true},     {GgmlType::kQ8_1, "Q8_1", 32, 36, false},
    {GgmlType::kQ2_K, "Q2_K", kQK, 84, true},    {GgmlType::kQ3_K, "Q3_K", kQK, 110, true},
    {GgmlType::kQ4_K, "Q4_K", kQK, 144, true},   {GgmlType::kQ5_K, "Q5_K", kQK, 176, true},
    {GgmlType::kQ6_K, "Q6_K", kQK, 210, true},   {GgmlType::kQ8_K, "Q8_K", kQK, 292, false},
    {GgmlType::kI8, "I8", 1, 1, false},          {GgmlType::kI16, "I16", 1, 2, false},
    {GgmlType::kI32, "I32", 1, 4, false},        {GgmlType::kI64, "I64", 1, 8, false},
    {GgmlType::kF64, "F64", 1, 8, false},        {GgmlType::kBF16, "BF16", 1, 2, true},
    {GgmlType::kIQ4_NL, "IQ4_NL", 32, 18, true}, {GgmlType::kIQ4_XS, "IQ4_XS", kQK, 136, true},
}};

uint16_t LoadU16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
float LoadF16(const uint8_t* p) { return F16ToFloat(LoadU16(p)); }

// Q8_0 block: f16 d | int8 q[32].
void DecodeQ8_0(const uint8_t* b, float* y) {
  const float d = LoadF16(b);
  for (int i = 0; i < 32; ++i) y[i] = static_cast<float>(static_cast<int8_t>(b[2 + i])) * d;
}

// The legacy 32-element types: f16 d [| f16 m] [| u8 qh[4]] | u8 qs[16]. Element i < 16 takes
// the low nibble of qs[i], element i + 16 the high nibble; with qh (Q5_0, Q5_1), bit i of the
// little-endian u32 qh is element i's fifth bit (value 16). Q4_0 / Q5_0 (no m): x = (q - 8) · d /
// (q - 16) · d; Q4_1 / Q5_1: x = q · d + m, the product rounded to f32 before the sum.
void DecodeLegacy(const uint8_t* b, bool has_min, bool has_high, float* y) {
  const float d = LoadF16(b);
  const float m = has_min ? LoadF16(b + 2) : 0.0f;
  const uint8_t* p = b + (has_min ? 4 : 2);
  uint32_t qh = 0;
  if (has_high) {
    qh = static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
         static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24;
    p += 4;
  }
  const int offset = has_min ? 0 : (has_high ? 16 : 8);
  for (int i = 0; i < 32; ++i) {
    int q = i < 16 ? (p[i] & 0xF) : (p[i - 16] >> 4);
    if (has_high && ((qh >> i) & 1)) q += 16;
    if (has_min) {
      const float prod = static_cast<float>(q) * d;
      y[i] = prod + m;
    } else {
      y[i] = static_cast<float>(q - offset) * d;
    }
  }
}

// Q4_K (qh == nullptr) and Q5_K super-blocks: d, dmin, scales[12], then qh / qs.
void DecodeK4or5(const uint8_t* b, const uint8_t* qh, const uint8_t* qs, float* y) {
  const float d = LoadF16(b), dmin = LoadF16(b + 2);
  const uint8_t* scales = b + 4;
  for (int e = 0; e < kQK; ++e) {
    const int chunk = e / 64, half = (e / 32) % 2, l = e % 32, j = 2 * chunk + half;
    uint8_t sc, m;
    UnpackK4Scale(scales, j, &sc, &m);
    const uint8_t byte = qs[32 * chunk + l];
    int q = half == 0 ? (byte & 0xF) : (byte >> 4);
    if (qh != nullptr && ((qh[l] >> j) & 1)) q += 16;
    const float d_j = d * static_cast<float>(sc), m_j = dmin * static_cast<float>(m);
    y[e] = d_j * static_cast<float>(q) - m_j;
  }
}

// Q6_K super-block: ql[128] | qh[64] | int8 scales[16] | f16 d.
void DecodeQ6_K(const uint8_t* b, float* y) {
  const uint8_t *ql = b, *qh = b + 128;
  const int8_t* scales = reinterpret_cast<const int8_t*>(b + 192);
  const float d = LoadF16(b + 208);
  for (int e = 0; e < kQK; ++e) {
    const int n = e / 128, r = e % 128, k = r / 32, l = r % 32;
    const uint8_t low_byte = ql[64 * n + l + 32 * (k % 2)];
    const int low = k < 2 ? (low_byte & 0xF) : (low_byte >> 4);
    const int high = (qh[32 * n + l] >> (2 * k)) & 3;
    const int q = (low | (high << 4)) - 32;
    const float d_s = d * static_cast<float>(scales[8 * n + 2 * k + l / 16]);
    y[e] = d_s * static_cast<float>(q);
  }
}

// Q2_K super-block: u8 scales[16] | u8 qs[64] | f16 d | f16 dmin. Sixteen groups of 16
// elements; group g = e / 16 has the 4-bit scale scales[g] & 15 and 4-bit min scales[g] >> 4.
// Element e: half n = e / 128, shift 2j with j = (e % 128) / 32, byte qs[32n + e % 32]:
// q = (byte >> 2j) & 3; x = (d · sc) · q − dmin · m.
void DecodeQ2_K(const uint8_t* b, float* y) {
  const uint8_t *scales = b, *qs = b + 16;
  const float d = LoadF16(b + 80), dmin = LoadF16(b + 82);
  for (int e = 0; e < kQK; ++e) {
    const int n = e / 128, j = (e % 128) / 32;
    const uint8_t sc = scales[e / 16];
    const int q = (qs[32 * n + e % 32] >> (2 * j)) & 3;
    const float d_g = d * static_cast<float>(sc & 0xF), m_g = dmin * static_cast<float>(sc >> 4);
    y[e] = d_g * static_cast<float>(q) - m_g;
  }
}

// Q3_K super-block: u8 hmask[32] | u8 qs[64] | u8 scales[12] | f16 d. Element e: half n = e /
// 128, j = (e % 128) / 32, low two bits (qs[32n + e % 32] >> 2j) & 3, minus 4 unless bit
// 4n + j of hmask[e % 32] is set (−4..3); x = (d · s_g) · q with g = e / 16.
void DecodeQ3_K(const uint8_t* b, float* y) {
  const uint8_t *hmask = b, *qs = b + 32, *scales = b + 96;
  const float d = LoadF16(b + 108);
  for (int e = 0; e < kQK; ++e) {
    const int n = e / 128, j = (e % 128) / 32, l = e % 32;
    const int low = (qs[32 * n + l] >> (2 * j)) & 3;
    const int q = low - (((hmask[l] >> (4 * n + j)) & 1) ? 0 : 4);
    const float d_g = d * static_cast<float>(Q3Scale(scales, e / 16));
    y[e] = d_g * static_cast<float>(q);
  }
}

// IQ4_NL block: f16 d | u8 qs[16]; element i < 16 the level of qs[i]'s low nibble, i + 16 of
// its high nibble, times d.
void DecodeIQ4_NL(const uint8_t* b, float* y) {
  const float d = LoadF16(b);
  for (int i = 0; i < 16; ++i) {
    y[i] = d * static_cast<float>(kIq4Levels[b[2 + i] & 0xF]);
    y[i + 16] = d * static_cast<float>(kIq4Levels[b[2 + i] >> 4]);
  }
}

// IQ4_XS super-block: f16 d | u16 scales_h | u8 scales_l[4] | u8 qs[128]; sub-block j's step
// dl_j = d · (ls_j − 32), its 32 elements as an IQ4_NL block's on qs[16j..16j+15].
void DecodeIQ4_XS(const uint8_t* b, float* y) {
  const float d = LoadF16(b);
  const uint8_t* qs = b + 8;
  for (int j = 0; j < 8; ++j) {
    const float dl = d * static_cast<float>(Iq4XsScale(b, j) - 32);
    for (int i = 0; i < 16; ++i) {
      y[32 * j + i] = dl * static_cast<float>(kIq4Levels[qs[16 * j + i] & 0xF]);
      y[32 * j + i + 16] = dl * static_cast<float>(kIq4Levels[qs[16 * j + i] >> 4]);
    }
  }
}

}  // namespace

const GgmlTypeInfo* FindGgmlType(uint32_t id) {
  for (const GgmlTypeInfo& t : kTypes)
    if (static_cast<uint32_t>(t.type) == id) return &t;
  return nullptr;
}

const GgmlTypeInfo& GgmlTypeOf(GgmlType t) {
  const GgmlTypeInfo* info = FindGgmlType(static_cast<uint32_t>(t));
  DSINFER_CHECK(info != nullptr, "unlisted GgmlType " + std::to_string(static_cast<int>(t)));
  return *info;
}

std::optional<DType> DTypeOfGgml(GgmlType t) {
  switch (t) {
    case GgmlType::kF32:
      return DType::kF32;
    case GgmlType::kF16:
      return DType::kF16;
    case GgmlType::kBF16:
      return DType::kBF16;
    case GgmlType::kQ8_0:
      return DType::kQ8_0;
    case GgmlType::kQ4_K:
      return DType::kQ4_K;
    case GgmlType::kQ5_K:
      return DType::kQ5_K;
    case GgmlType::kQ6_K:
      return DType::kQ6_K;
    case GgmlType::kQ2_K:
      return DType::kQ2_K;
    case GgmlType::kQ3_K:
      return DType::kQ3_K;
    case GgmlType::kIQ4_NL:
      return DType::kIQ4_NL;
    case GgmlType::kIQ4_XS:
      return DType::kIQ4_XS;
    default:
      return std::nullopt;
  }
}

GgmlType GgmlOfBlockDType(DType t) {
  switch (t) {
    case DType::kQ8_0:
      return GgmlType::kQ8_0;
    case DType::kQ4_K:
      return GgmlType::kQ4_K;
    case DType::kQ5_K:
      return GgmlType::kQ5_K;
    case DType::kQ6_K:
      return GgmlType::kQ6_K;
    case DType::kQ2_K:
      return GgmlType::kQ2_K;
    case DType::kQ3_K:
      return GgmlType::kQ3_K;
    case DType::kIQ4_NL:
      return GgmlType::kIQ4_NL;
    case DType::kIQ4_XS:
      return GgmlType::kIQ4_XS;
    default:
      break;
  }
  DSINFER_CHECK(false, "not a ggml block dtype: " + std::string(DTypeName(t)));
  return GgmlType::kF32;
}

void UnpackK4Scale(const uint8_t* scales, int j, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = scales[j] & 63;
    *m = scales[j + 4] & 63;
  } else {
    *sc = static_cast<uint8_t>((scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((scales[j + 4] >> 4) | ((scales[j] >> 6) << 4));
  }
}

void DequantizeRow(GgmlType t, std::span<const std::byte> src, std::span<float> out,
                   std::string_view what) {
  const GgmlTypeInfo& info = GgmlTypeOf(t);
  const std::string prefix = what.empty() ? std::string() : std::string(what) + ": ";
  if (!info.decodable)
    throw Error(prefix + "ggml type " + std::string(info.name) + " cannot be decoded yet");
  const int64_t n = static_cast<int64_t>(out.size());
  if (n % info.block_elems != 0 ||
      src.size() != static_cast<size_t>(n / info.block_elems) * info.block_bytes)
    throw Error(prefix + "a " + std::string(info.name) + " row of " + std::to_string(n) +
                " elements needs " + std::to_string(n / info.block_elems * info.block_bytes) +
                " bytes in whole blocks of " + std::to_string(info.block_elems) + ", got " +
                std::to_string(src.size()));
  const auto* s = reinterpret_cast<const uint8_t*>(src.data());
  float* y = out.data();
  const int64_t blocks = n / info.block_elems;
  switch (t) {
    case GgmlType::kF32:
      std::memcpy(y, s, src.size());
      break;
    case GgmlType::kF16:
      for (int64_t i = 0; i < n; ++i) y[i] = LoadF16(s + 2 * i);
      break;
    case GgmlType::kBF16:
      for (int64_t i = 0; i < n; ++i) y[i] = BF16ToFloat(LoadU16(s + 2 * i));
      break;
    case GgmlType::kQ8_0:
      for (int64_t i = 0; i < blocks; ++i) DecodeQ8_0(s + 34 * i, y + 32 * i);
      break;
    case GgmlType::kQ4_0:
    case GgmlType::kQ4_1:
    case GgmlType::kQ5_0:
    case GgmlType::kQ5_1: {
      const bool has_min = t == GgmlType::kQ4_1 || t == GgmlType::kQ5_1;
      const bool has_high = t == GgmlType::kQ5_0 || t == GgmlType::kQ5_1;
      for (int64_t i = 0; i < blocks; ++i)
        DecodeLegacy(s + info.block_bytes * i, has_min, has_high, y + 32 * i);
      break;
    }
    case GgmlType::kQ4_K:
      for (int64_t i = 0; i < blocks; ++i) {
        const uint8_t* b = s + 144 * i;
        DecodeK4or5(b, /*qh=*/nullptr, /*qs=*/b + 16, y + kQK * i);
      }
      break;
    case GgmlType::kQ5_K:
      for (int64_t i = 0; i < blocks; ++i) {
        const uint8_t* b = s + 176 * i;
        DecodeK4or5(b, /*qh=*/b + 16, /*qs=*/b + 48, y + kQK * i);
      }
      break;
    case GgmlType::kQ6_K:
      for (int64_t i = 0; i < blocks; ++i) DecodeQ6_K(s + 210 * i, y + kQK * i);
      break;
    case GgmlType::kQ2_K:
      for (int64_t i = 0; i < blocks; ++i) DecodeQ2_K(s + 84 * i, y + kQK * i);
      break;
    case GgmlType::kQ3_K:
      for (int64_t i = 0; i < blocks; ++i) DecodeQ3_K(s + 110 * i, y + kQK * i);
      break;
    case GgmlType::kIQ4_NL:
      for (int64_t i = 0; i < blocks; ++i) DecodeIQ4_NL(s + 18 * i, y + 32 * i);
      break;
    case GgmlType::kIQ4_XS:
      for (int64_t i = 0; i < blocks; ++i) DecodeIQ4_XS(s + 136 * i, y + kQK * i);
      break;
    default:
      DSINFER_CHECK(false, "decodable type without a decoder: " + std::string(info.name));
  }
}

}  // namespace dsinfer
