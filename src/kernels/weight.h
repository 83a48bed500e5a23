// A matrix of weights as the kernels see it: a dtype, a shape and raw bytes (typically inside
// an mmapped safetensors shard or GGUF file), plus the 128×128 block scales of FP8 weights.
// ggml block types (Q8_0, Q2_K-Q6_K, IQ4_NL, IQ4_XS) are rows of whole blocks exactly as the GGUF file
// stores them (row r starts at data + r·row_bytes()); cols is a multiple of the block size.
// Kernels never know tensor names; the model builds these views. Cheap to copy; read-only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "base/huge_buffer.h"
#include "format/dtype.h"

namespace dsinfer {

struct WeightView {
  DType dtype = DType::kF32;      // kF8E4M3, kBF16, kF16, kF32 or a ggml block type
  int64_t rows = 0;               // out features
  int64_t cols = 0;               // in features
  const void* data = nullptr;     // [rows, cols] row-major
  const float* scales = nullptr;  // FP8 only: [ceil(rows/128), ceil(cols/128)] (weight_scale_inv)
  // Block types (qblocks::Int8Dtype): the product quantises each 32-element block of the
  // activations to int8 and multiplies integers (AVX-512 VNNI; docs/numerics.md "int8
  // activations"). Otherwise (default) every block type is decoded exactly to f32 and multiplied in
  // f32.
  bool int8_activations = false;
  // FP8, Q8_0, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS (and Q2_K, Q3_K for the int8 tile kernels only):
  // `data` holds
  // the codes re-laid out for the bf16 GEMV/GEMM
  // (RepackFp8Pairs / RepackBlocksBf16 below), not [rows, cols] row-major. Only
  // `LinearRowsBf16`'s AVX512-BF16 path reads such a weight, and a block one the int8 tile kernels
  // (kernels/qblocks.h Int8TileRows); every other kernel refuses it.
  bool bf16_pairs = false;
  // This weight repacked, when its owner made a copy: for the bf16 kernels (the model in bf16
  // numerics: FP8 always, Q8_0/Q4_K/Q5_K/Q6_K/IQ4_* with --block-acts bf16, the default there), which
  // `LinearBf16` multiplies on the AVX512-BF16 path (FP8: the same bits as this view, faster;
  // blocks: the only form that path takes); or, for a block weight (any type) with
  // int8_activations on a CPU with AVX-512 VNNI or AVX2, for the int8 tile kernels (the specification's bits, faster). Every other
  // kernel reads this view. Not owned.
  const WeightView* repacked = nullptr;
  // `repacked` is the int8 tile copy only (made for int8 activations): the bf16 kernels leave it
  // (the int8 tile kernels take any tile copy of a block weight: the same layout).
  bool repacked_int8 = false;

  int64_t scale_cols() const { return (cols + 127) / 128; }
  int64_t row_bytes() const { return DTypeRowBytes(dtype, cols); }
  const std::byte* row(int64_t r) const {
    return static_cast<const std::byte*>(data) + r * row_bytes();
  }
};

// A weight that owns its bytes (a re-laid-out copy); `view` points into `bytes` / `scales`, so
// the object is shared (shared_ptr), never copied.
struct OwnedWeight {
  std::vector<std::byte> bytes;
  HugeBuffer huge;  // instead of `bytes` for large copies (RepackBlocksBf16): huge pages, zeroed
  std::vector<float> scales;  // FP8 only
  WeightView view;
};

// Per-head blocks of `w` transposed into one matrix: for head h < heads, rows
// [h·stride + offset, h·stride + offset + rows) of w (each [w.cols]) become rows
// [h·w.cols, (h+1)·w.cols) of the result (each [rows]):
//   out[h·w.cols + c, i] = w[h·stride + offset + i, c].
// Every element is copied as is (exact). FP8 block scales move along with their 128×128
// blocks, which needs stride, offset and w.cols to be multiples of 128 (each result block then
// comes from one block of w); returns null when they are not, and for the ggml block types
// (their blocks run along rows, which the transpose would cut).
std::shared_ptr<const OwnedWeight> TransposeHeads(const WeightView& w, int64_t heads,
                                                  int64_t stride, int64_t offset, int64_t rows);
// The bytes TransposeHeads allocates for a weight of `dtype` with `cols` columns (values and
// FP8 block scales), 0 when it returns null.
int64_t TransposeHeadsBytes(DType dtype, int64_t cols, int64_t heads, int64_t stride,
                            int64_t offset, int64_t rows);

// An FP8 weight's codes re-laid out for the bf16-activation kernels (kernels/linear.h
// `LinearRowsBf16`): rows in tiles of 64 (the last padded with code 0 = +0), and in each tile,
// for each column pair p (an odd last column padded with +0), the tile's rows' code pairs
// (W[r, 2p], W[r, 2p+1]) in row order: byte (tile · pairs + p) · 128 + 2 · (r % 64) + {0, 1}.
// 32 consecutive bytes are then one vector of 16 rows' pairs, what `vdpbf16ps` multiplies, so the
// kernels need no transposes. The same bytes as the weight (up to the padding); block scales are
// copied. The view has bf16_pairs = true.
std::shared_ptr<const OwnedWeight> RepackFp8Pairs(const WeightView& w);
inline constexpr int64_t kPairTileRows = 64;

// Block weights (every type) re-laid out for the bf16-activation kernels (kernels/linear.h
// `LinearRowsBf16`): rows in tiles of 16 (the last padded with zero blocks), each tile's bytes
// contiguous, block after block along the row; inside a block the 16 rows' fields side by side
// so that one load gives a vector with row a in lane a:
//   Q8_0, per 32-column block (kQ8Bf16BlockBytes = 544): f16 d[16 rows]; then for each column
//     pair p < 16, 32 bytes: byte 2a + e = q[a, 2p + e] (int8 codes).
//   Q4_K, per 256-column super-block (kQ4KBf16BlockBytes = 2368): f16 d[16], f16 dmin[16],
//     u8 sc[8][16], u8 m[8][16] (sub-block j's 6-bit scale and min per row, unpacked); then per
//     sub-block j 256 bytes of codes, 64 per four column pairs 4h..4h + 3 (h < 4) of the
//     sub-block: the 16-bit word 2a + e holds q[a, 32j + 8h + 2k + e] at bits 4k..4k + 3 (k < 4).
//   Q5_K, per 256-column super-block (kQ5KBf16BlockBytes = 2880): d, dmin, sc and m as Q4_K; then
//     per sub-block j 256 bytes of the codes' low 4 bits, 32 per two column pairs 2h, 2h + 1
//     (h < 8): byte 2a + e holds q[a, 32j + 4h + e] & 15 in its low nibble and
//     q[a, 32j + 4h + 2 + e] & 15 in its high one; then per sub-block j 64 bytes of their 5th
//     bits, 2 × 32 bytes, one per four nibble groups h = 4g..4g + 3 (g < 2): byte 2a + e holds
//     the 5th bit of q[a, 32j + 4h + 2s + e] at bit 2(h − 4g) + s (s = 0, 1).
//   Q6_K, per 256-column super-block (kQ6KBf16BlockBytes = 3360): f16 d[16], int8 sc[16][16]
//     (16-element sub-block i's scale per row); then per sub-block i 192 bytes of the 6-bit codes
//     u (q = u − 32), split like the stored form into low nibbles and high 2 bits: 4 × 32 bytes
//     of nibbles, one per two column pairs h2 = 2h, 2h + 1 (h < 4), byte 2a + e holding
//     u[a, 16i + 4h + e] & 15 in its low nibble and u[a, 16i + 4h + 2 + e] & 15 in its high one;
//     then 2 × 32 bytes of high bits, one per four column pairs 4g..4g + 3 (g < 2), byte 2a + e
//     holding u[a, 16i + 2p + e] >> 4 in bits 2k, 2k + 1 for pair p = 4g + k.
//   Q2_K and Q3_K, for the int8 tile kernels only (kernels/qblocks.h Int8TileRows), per
//   256-column super-block of sixteen 16-column groups i:
//     Q2_K (kQ2KTileBlockBytes = 1344): f16 d[16], f16 dmin[16], u8 sc[16][16] (group i's stored
//     scale byte per row: scale in the low nibble, min in the high one); then per group i 64
//     bytes of 2-bit codes: byte 4a + e holds q[a, 16i + 4k + e] at bits 2k, 2k + 1 (k < 4).
//     Q3_K (kQ3KTileBlockBytes = 1824): f16 d[16], int8 sc[16][16] (group i's 6-bit scale − 32
//     per row); then per group i 64 bytes of the low 2 bits of u = q + 4 (0..7) laid out as
//     Q2_K's codes; then per group i 32 bytes of u's third bit (the hmask bit): the 16-bit word
//     a holds that bit of column 16i + 4k + e at bit 4k + e.
//   IQ4_NL and IQ4_XS, their 4-bit level indices laid out as Q4_K's codes:
//     IQ4_NL, per 32-column block (kIq4NlTileBlockBytes = 288): f16 d[16]; then the block's 256
//     bytes of indices as a Q4_K sub-block's.
//     IQ4_XS, per 256-column super-block (kIq4XsTileBlockBytes = 2208): f16 d[16], int8
//     ls[8][16] (sub-block j's 6-bit scale − 32 per row); then per sub-block j 256 bytes of
//     indices as Q4_K's.
// The same numbers as the weight: 2.8% more bytes for Q4_K, 2.3% for Q5_K (their packed 6-bit
// scales unpacked), 3.6% for Q3_K and 1.5% for IQ4_XS, none for Q8_0, Q6_K, Q2_K and IQ4_NL. The view has bf16_pairs =
// true (dtype, rows and cols unchanged).
std::shared_ptr<const OwnedWeight> RepackBlocksBf16(const WeightView& w);
inline constexpr int64_t kBlockTileRows = 16;
inline constexpr int64_t kQ8Bf16BlockBytes = 32 + 16 * 32;
inline constexpr int64_t kQ4KBf16BlockBytes = 64 + 256 + 8 * 256;
inline constexpr int64_t kQ5KBf16BlockBytes = 64 + 256 + 8 * 256 + 8 * 64;
inline constexpr int64_t kQ6KBf16BlockBytes = 32 + 256 + 16 * 192;
inline constexpr int64_t kQ2KTileBlockBytes = 64 + 256 + 16 * 64;
inline constexpr int64_t kQ3KTileBlockBytes = 32 + 256 + 16 * 64 + 16 * 32;
inline constexpr int64_t kIq4NlTileBlockBytes = 32 + 256;
inline constexpr int64_t kIq4XsTileBlockBytes = 32 + 128 + 8 * 256;
// Whether the bf16 kernels take a weight of `dtype` in RepackBlocksBf16's form (Q8_0, Q4_K,
// Q5_K, Q6_K, IQ4_NL, IQ4_XS).
bool Bf16BlockDtype(DType dtype);
// Whether RepackBlocksBf16 takes a weight of `dtype`: Bf16BlockDtype's types, Q2_K and Q3_K (the
// int8 tile kernels' only): every block type.
bool TileRepackDtype(DType dtype);
// Whether that weight's blocks have mins (Q4_K, Q5_K: the −dmin·m_j·Σx term, so the bf16 path
// needs the activations' per-32-column sums).
inline bool Bf16BlockHasMins(DType dtype) {
  return dtype == DType::kQ4_K || dtype == DType::kQ5_K;
}
// Bytes of one 16-row tile of a repacked block weight with `cols` columns.
int64_t BlockTileBytes(DType dtype, int64_t cols);

// e4m3fn code → f32 through a 256-entry table (built once from `E4M3ToFloat`).
const float* E4M3Table();

// Row `row` of `w` as f32 `out[cols]`: FP8 rows are `e4m3(q) * scale[row/128, col/128]`
// (docs/model.md §6.1), BF16/F16 exact, F32 copied, ggml block types as DequantizeRow
// (format/ggml_types.h) decodes them.
void DecodeRow(const WeightView& w, int64_t row, float* out);

}  // namespace dsinfer
