#include "kernels/weight.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <span>

#include "base/error.h"
#include "base/threads.h"
#include "format/ggml_types.h"

namespace dsinfer {

const float* E4M3Table() {
  static const std::array<float, 256> table = [] {
    std::array<float, 256> t{};
    for (int i = 0; i < 256; ++i) t[i] = E4M3ToFloat(static_cast<uint8_t>(i));
    return t;
  }();
  return table.data();
}

namespace {

void DecodeFp8Row(const WeightView& w, int64_t row, float* out) {
  const float* lut = E4M3Table();
  const auto* q = static_cast<const uint8_t*>(w.data) + row * w.cols;
  const float* s = w.scales + (row / 128) * w.scale_cols();
  for (int64_t c0 = 0; c0 < w.cols; c0 += 128) {
    const float scale = s[c0 / 128];
    const int64_t c1 = c0 + 128 < w.cols ? c0 + 128 : w.cols;
    for (int64_t c = c0; c < c1; ++c) out[c] = lut[q[c]] * scale;
  }
}

}  // namespace

void DecodeRow(const WeightView& w, int64_t row, float* out) {
  DSINFER_DCHECK(row >= 0 && row < w.rows);
  switch (w.dtype) {
    case DType::kF8E4M3:
      DSINFER_CHECK(w.scales != nullptr, "FP8 weight without block scales");
      DSINFER_CHECK(!w.bf16_pairs, "DecodeRow: an FP8 weight repacked for the bf16 kernels");
      DecodeFp8Row(w, row, out);
      return;
    case DType::kBF16: {
      const auto* p = static_cast<const uint16_t*>(w.data) + row * w.cols;
      for (int64_t c = 0; c < w.cols; ++c)
        out[c] = std::bit_cast<float>(static_cast<uint32_t>(p[c]) << 16);
      return;
    }
    case DType::kF16: {
      const auto* p = static_cast<const uint16_t*>(w.data) + row * w.cols;
      for (int64_t c = 0; c < w.cols; ++c) out[c] = F16ToFloat(p[c]);
      return;
    }
    case DType::kF32:
      std::memcpy(out, static_cast<const float*>(w.data) + row * w.cols, w.cols * sizeof(float));
      return;
    case DType::kQ8_0:
    case DType::kQ4_K:
    case DType::kQ5_K:
    case DType::kQ6_K:
    case DType::kQ2_K:
    case DType::kQ3_K:
    case DType::kIQ4_NL:
    case DType::kIQ4_XS:
      DequantizeRow(GgmlOfBlockDType(w.dtype),
                    std::span<const std::byte>(w.row(row), static_cast<size_t>(w.row_bytes())),
                    std::span<float>(out, static_cast<size_t>(w.cols)));
      return;
    default:
      DSINFER_CHECK(false, "unsupported weight dtype");
  }
}

int64_t TransposeHeadsBytes(DType dtype, int64_t cols, int64_t heads, int64_t stride,
                            int64_t offset, int64_t rows) {
  if (IsBlockDType(dtype)) return 0;
  const bool fp8 = dtype == DType::kF8E4M3;
  if (fp8 && (stride % 128 != 0 || offset % 128 != 0 || cols % 128 != 0)) return 0;
  const int64_t values = heads * cols * rows * static_cast<int64_t>(DTypeSize(dtype));
  const int64_t scales = fp8 ? heads * cols / 128 * ((rows + 127) / 128) : 0;
  return values + scales * static_cast<int64_t>(sizeof(float));
}

std::shared_ptr<const OwnedWeight> RepackFp8Pairs(const WeightView& w) {
  DSINFER_CHECK(w.dtype == DType::kF8E4M3 && !w.bf16_pairs && w.scales != nullptr,
                "RepackFp8Pairs takes a row-major FP8 weight");
  auto out = std::make_shared<OwnedWeight>();
  const int64_t pairs = (w.cols + 1) / 2, tiles = (w.rows + kPairTileRows - 1) / kPairTileRows;
  out->bytes.assign(static_cast<size_t>(tiles * pairs * 2 * kPairTileRows), std::byte{0});
  const auto* src = static_cast<const std::byte*>(w.data);
  std::byte* const base = out->bytes.data();
#pragma omp parallel for schedule(static) if (w.rows * w.cols >= (int64_t{1} << 22))
  for (int64_t r = 0; r < w.rows; ++r) {
    DSINFER_NOTE_THREAD("weight.repack_fp8_pairs");
    std::byte* dst = base + (r / kPairTileRows) * pairs * 2 * kPairTileRows + 2 * (r % kPairTileRows);
    const std::byte* row = src + r * w.cols;
    for (int64_t c = 0; c < w.cols; ++c) dst[(c / 2) * 2 * kPairTileRows + c % 2] = row[c];
  }
  const int64_t scale_count = (w.rows + 127) / 128 * w.scale_cols();
  out->scales.assign(w.scales, w.scales + scale_count);
  out->view = w;
  out->view.data = out->bytes.data();
  out->view.scales = out->scales.data();
  out->view.bf16_pairs = true;
  out->view.repacked = nullptr;
  return out;
}

bool Bf16BlockDtype(DType dtype) {
  return dtype == DType::kQ8_0 || dtype == DType::kQ4_K || dtype == DType::kQ5_K ||
         dtype == DType::kQ6_K || dtype == DType::kIQ4_NL || dtype == DType::kIQ4_XS;
}

bool TileRepackDtype(DType dtype) {
  return Bf16BlockDtype(dtype) || dtype == DType::kQ2_K || dtype == DType::kQ3_K;
}

// Bytes of one repacked block (Q8_0, IQ4_NL: 32 columns; the K-quants, IQ4_XS: 256).
int64_t TileBlockBytes(DType dtype) {
  return dtype == DType::kQ8_0     ? kQ8Bf16BlockBytes
         : dtype == DType::kQ4_K   ? kQ4KBf16BlockBytes
         : dtype == DType::kQ5_K   ? kQ5KBf16BlockBytes
         : dtype == DType::kQ2_K   ? kQ2KTileBlockBytes
         : dtype == DType::kQ3_K   ? kQ3KTileBlockBytes
         : dtype == DType::kIQ4_NL ? kIq4NlTileBlockBytes
         : dtype == DType::kIQ4_XS ? kIq4XsTileBlockBytes
                                   : kQ6KBf16BlockBytes;
}

// Columns of one repacked block.
int64_t TileBlockCols(DType dtype) {
  return dtype == DType::kQ8_0 || dtype == DType::kIQ4_NL ? 32 : 256;
}

int64_t BlockTileBytes(DType dtype, int64_t cols) {
  return cols / TileBlockCols(dtype) * TileBlockBytes(dtype);
}

namespace {

// 32 columns' 4-bit codes q(l) (l < 32) of tile row a into a block's 256 bytes `out` of Q4_K's
// code layout: 64 bytes per four column pairs 4h..4h + 3, the 16-bit word 2a + e holding
// q(8h + 2k + e) at bits 4k..4k + 3.
template <class Q>
void PutNibbleCodes(const Q& q, int64_t a, uint8_t* out) {
  out += 4 * a;
  for (int h = 0; h < 4; ++h)
    for (int e = 0; e < 2; ++e) {
      out[64 * h + 2 * e] = static_cast<uint8_t>(q(8 * h + e) | q(8 * h + 2 + e) << 4);
      out[64 * h + 2 * e + 1] = static_cast<uint8_t>(q(8 * h + 4 + e) | q(8 * h + 6 + e) << 4);
    }
}

// An IQ4 block's 32 indices: element i < 16 the low nibble of qs[i], i + 16 its high nibble.
struct Iq4Index {
  const uint8_t* qs;
  int operator()(int l) const { return l < 16 ? qs[l] & 15 : qs[l - 16] >> 4; }
};

// RepackBlocksBf16's Q2_K (q3 = false) and Q3_K super-block of tile row a: `src` the stored
// super-block (Q2_K: scales[16] | qs[64] | f16 d | f16 dmin; Q3_K: hmask[32] | qs[64] |
// scales[12] | f16 d; element e = 128n + 32j + l has its low 2 bits at bits 2j of qs[32n + l]
// and Q3_K its hmask bit at bit 4n + j of hmask[l]).
void RepackQ2or3Row(const uint8_t* src, bool q3, int64_t a, uint8_t* dst) {
  const uint8_t* qs = src + (q3 ? 32 : 16);
  std::memcpy(dst + 2 * a, src + (q3 ? 108 : 80), 2);  // d
  if (!q3) std::memcpy(dst + 32 + 2 * a, src + 82, 2);  // dmin
  for (int i = 0; i < 16; ++i) {
    if (q3) {
      dst[32 + 16 * i + a] = static_cast<uint8_t>(static_cast<int8_t>(Q3Scale(src + 96, i)));
    } else {
      dst[64 + 16 * i + a] = src[i];
    }
  }
  uint8_t* codes = dst + (q3 ? 288 : 320);
  for (int i = 0; i < 16; ++i) {
    uint8_t lowbits[4] = {0, 0, 0, 0};
    int highbits = 0;
    for (int k = 0; k < 4; ++k)
      for (int e = 0; e < 4; ++e) {
        const int el = 16 * i + 4 * k + e, n = el / 128, j = (el % 128) / 32, l = el % 32;
        lowbits[e] = static_cast<uint8_t>(lowbits[e] | ((qs[32 * n + l] >> (2 * j)) & 3) << (2 * k));
        if (q3) highbits |= ((src[l] >> (4 * n + j)) & 1) << (4 * k + e);
      }
    std::memcpy(codes + 64 * i + 4 * a, lowbits, 4);
    if (q3) {
      dst[1312 + 32 * i + 2 * a] = static_cast<uint8_t>(highbits & 0xFF);
      dst[1312 + 32 * i + 2 * a + 1] = static_cast<uint8_t>(highbits >> 8);
    }
  }
}

}  // namespace

std::shared_ptr<const OwnedWeight> RepackBlocksBf16(const WeightView& w) {
  DSINFER_CHECK(TileRepackDtype(w.dtype) && !w.bf16_pairs,
                "RepackBlocksBf16 takes a row-major Q8_0, Q4_K, Q5_K, Q6_K, Q2_K, Q3_K, IQ4_NL or "
                "IQ4_XS weight");
  const bool q8 = w.dtype == DType::kQ8_0;
  auto out = std::make_shared<OwnedWeight>();
  const int64_t tiles = (w.rows + kBlockTileRows - 1) / kBlockTileRows;
  const int64_t tile_bytes = BlockTileBytes(w.dtype, w.cols);
  // Huge pages, zeroed by the kernel on first touch (inside the parallel loop below): with 4 KiB
  // pages a std::vector's zero fill and page faults took 95% of the time (0.3 GB/s here).
  out->huge = HugeBuffer(static_cast<size_t>(std::max<int64_t>(1, tiles * tile_bytes)));
  auto* const base = reinterpret_cast<uint8_t*>(out->huge.data());
  // Tile by tile, block by block, the tile's rows innermost: each output block (544, 2368, 2880,
  // 3360, 1344, 1824, 288 or 2208 bytes) is written whole while in L1.
  const int64_t blocks = w.cols / TileBlockCols(w.dtype);  // repacked blocks per row
#pragma omp parallel for schedule(static) if (w.rows * w.cols >= (int64_t{1} << 22))
  for (int64_t t = 0; t < tiles; ++t) {
    DSINFER_NOTE_THREAD("weight.repack_blocks_bf16");
    const int64_t rows = std::min(kBlockTileRows, w.rows - t * kBlockTileRows);
    for (int64_t b = 0; b < blocks; ++b) {
      uint8_t* dst = base + t * tile_bytes + b * TileBlockBytes(w.dtype);
      for (int64_t a = 0; a < rows; ++a) {
        const auto* row = reinterpret_cast<const uint8_t*>(w.row(t * kBlockTileRows + a));
        if (w.dtype == DType::kQ2_K || w.dtype == DType::kQ3_K) {
          const bool q3 = w.dtype == DType::kQ3_K;
          RepackQ2or3Row(row + b * (q3 ? 110 : 84), q3, a, dst);
          continue;
        }
        if (w.dtype == DType::kIQ4_NL) {  // f16 d | qs[16]
          const uint8_t* src = row + b * 18;
          std::memcpy(dst + 2 * a, src, 2);
          PutNibbleCodes(Iq4Index{src + 2}, a, dst + 32);
          continue;
        }
        if (w.dtype == DType::kIQ4_XS) {  // f16 d | u16 scales_h | scales_l[4] | qs[128]
          const uint8_t* src = row + b * 136;
          std::memcpy(dst + 2 * a, src, 2);
          for (int j = 0; j < 8; ++j) {
            dst[32 + 16 * j + a] = static_cast<uint8_t>(static_cast<int8_t>(Iq4XsScale(src, j) - 32));
            PutNibbleCodes(Iq4Index{src + 8 + 16 * j}, a, dst + 160 + 256 * j);
          }
          continue;
        }
        if (q8) {
          const uint8_t* src = row + b * 34;
          std::memcpy(dst + 2 * a, src, 2);
          for (int p = 0; p < 16; ++p) std::memcpy(dst + 32 + 32 * p + 2 * a, src + 2 + 2 * p, 2);
          continue;
        }
        if (w.dtype == DType::kQ6_K) {
          // Element e (half n = e/128, quarter k = (e%128)/32, l = e%32): low 4 bits from
          // ql[64n + l + 32(k odd)] (low nibble for k < 2), high 2 bits (qh[32n + l] >> 2k) & 3.
          const uint8_t* src = row + b * 210;
          std::memcpy(dst + 2 * a, src + 208, 2);  // d
          for (int i = 0; i < 16; ++i) dst[32 + 16 * i + a] = src[192 + i];
          uint8_t u[256];
          for (int n = 0; n < 2; ++n)
            for (int k = 0; k < 4; ++k)
              for (int l = 0; l < 32; ++l) {  // (vectorised: k and n are fixed inside)
                const uint8_t lo = src[64 * n + l + 32 * (k % 2)];
                u[128 * n + 32 * k + l] = static_cast<uint8_t>(
                    ((lo >> (4 * (k / 2))) & 15) | ((src[128 + 32 * n + l] >> (2 * k)) & 3) << 4);
              }
          for (int i = 0; i < 16; ++i) {
            const uint8_t* ui = u + 16 * i;
            uint8_t* out = dst + 288 + 192 * i + 2 * a;
            for (int e = 0; e < 2; ++e) {
              for (int h = 0; h < 4; ++h)
                out[32 * h + e] = static_cast<uint8_t>((ui[4 * h + e] & 15) |
                                                       (ui[4 * h + 2 + e] & 15) << 4);
              for (int g = 0; g < 2; ++g) {
                int hi = 0;
                for (int k = 0; k < 4; ++k) hi |= (ui[2 * (4 * g + k) + e] >> 4) << (2 * k);
                out[128 + 32 * g + e] = static_cast<uint8_t>(hi);
              }
            }
          }
          continue;
        }
        // Q4_K (144 bytes: d, dmin, scales, qs at 16) and Q5_K (176 bytes: the same, then qh at
        // 16, qs at 48; element l of sub-block j has its 5th bit at bit j of qh[l]).
        const bool q5 = w.dtype == DType::kQ5_K;
        const uint8_t* src = row + b * (q5 ? 176 : 144);
        std::memcpy(dst + 2 * a, src, 2);           // d
        std::memcpy(dst + 32 + 2 * a, src + 2, 2);  // dmin
        for (int j = 0; j < 8; ++j)
          UnpackK4Scale(src + 4, j, dst + 64 + 16 * j + a, dst + 192 + 16 * j + a);
        if (q5) {
          const uint8_t* qh = src + 16;
          for (int j = 0; j < 8; ++j)
            for (int g = 0; g < 2; ++g)
              for (int e = 0; e < 2; ++e) {
                int bits = 0;
                for (int hh = 0; hh < 4; ++hh)
                  for (int s = 0; s < 2; ++s)
                    bits |= ((qh[4 * (4 * g + hh) + 2 * s + e] >> j) & 1) << (2 * hh + s);
                dst[2368 + 64 * j + 32 * g + 2 * a + e] = static_cast<uint8_t>(bits);
              }
        }
        // Sub-block j's element l: its low 4 bits are nibble j % 2 of qs[32·(j/2) + l].
        for (int j = 0; j < 8; ++j) {
          const uint8_t* qs = src + (q5 ? 48 : 16) + 32 * (j / 2);
          const int shift = 4 * (j % 2);
          const auto q = [&](int l) { return (qs[l] >> shift) & 15; };
          if (q5) {  // 32 bytes per two column pairs
            uint8_t* out = dst + 320 + 256 * j + 2 * a;
            for (int h = 0; h < 8; ++h)
              for (int e = 0; e < 2; ++e)
                out[32 * h + e] = static_cast<uint8_t>(q(4 * h + e) | q(4 * h + 2 + e) << 4);
            continue;
          }
          PutNibbleCodes(q, a, dst + 320 + 256 * j);  // Q4_K
        }
      }
    }
  }
  out->view = w;
  out->view.data = out->huge.data();
  out->view.bf16_pairs = true;
  out->view.repacked = nullptr;
  return out;
}

std::shared_ptr<const OwnedWeight> TransposeHeads(const WeightView& w, int64_t heads,
                                                  int64_t stride, int64_t offset, int64_t rows) {
  DSINFER_CHECK(heads >= 1 && rows >= 1 && offset >= 0 && offset + rows <= stride &&
                    (heads - 1) * stride + offset + rows <= w.rows,
                "TransposeHeads: head blocks outside the weight");
  if (IsBlockDType(w.dtype)) return nullptr;
  const bool fp8 = w.dtype == DType::kF8E4M3;
  if (fp8 && (stride % 128 != 0 || offset % 128 != 0 || w.cols % 128 != 0)) return nullptr;
  auto out = std::make_shared<OwnedWeight>();
  const int64_t R = w.cols, size = static_cast<int64_t>(DTypeSize(w.dtype));
  out->bytes.resize(static_cast<size_t>(heads * R * rows * size));
  const auto* src = static_cast<const std::byte*>(w.data);
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t i = 0; i < rows; ++i) {
      const std::byte* in = src + ((h * stride + offset + i) * R) * size;
      for (int64_t c = 0; c < R; ++c)
        std::memcpy(&out->bytes[((h * R + c) * rows + i) * size], in + c * size, size);
    }
  out->view =
      WeightView{.dtype = w.dtype, .rows = heads * R, .cols = rows, .data = out->bytes.data()};
  if (fp8) {
    DSINFER_CHECK(w.scales != nullptr, "FP8 weight without block scales");
    const int64_t rblocks = heads * R / 128, cblocks = (rows + 127) / 128;
    out->scales.resize(rblocks * cblocks);
    for (int64_t rb = 0; rb < rblocks; ++rb)
      for (int64_t cb = 0; cb < cblocks; ++cb) {
        const int64_t h = rb * 128 / R, c = rb * 128 - h * R;  // first element of the block
        const int64_t src_row = h * stride + offset + cb * 128;
        out->scales[rb * cblocks + cb] = w.scales[(src_row / 128) * w.scale_cols() + c / 128];
      }
    out->view.scales = out->scales.data();
  }
  return out;
}

}  // namespace dsinfer
