// Encoders of the ggml block types dsinfer writes (`dsinfer quantize`): the inverse of
// `DequantizeRow` (ggml_types.h, whose header and docs/gguf.md give the block layouts).
//
// The encoders are written from the layouts, not from ggml's code, and are "range-safe": every
// scale is rounded up (never down) so that no element of a block is clamped, which gives a
// guaranteed bound per element, |x − decode(encode(x))| ≤ step/2 (plus f32 rounding), where
// step is the decoded quantisation step of the element's (sub-)block:
//   Q8_0: d;  Q4_K / Q5_K: d·sc_j of the 32-element sub-block;  Q6_K: d·scales[j] of the
//   16-element sub-block. F32 is exact; BF16 and F16 round to nearest even. IQ4_NL / IQ4_XS
//   are the exception: their 16 levels (step·L, L = −127 … 113) are non-uniform, so each
//   32-element block searches a few signed steps around the range-safe one for the least
//   squared error (never worse than range-safe) and maps every element to its nearest level,
//   the step being d (IQ4_NL) or d·(ls_j − 32) (IQ4_XS's sub-block).
// ggml's reference encoders search scales to minimise the squared error instead, so their
// outputs differ from ours; both decode with the same formulas (any decoder reads ours).
// Thread-safe: pure functions.
#pragma once

#include <cstddef>
#include <span>

#include "format/ggml_types.h"

namespace dsinfer {

// Encodes `x` (a multiple of the type's block size) into `out` (exactly
// x.size() / block_elems * block_bytes bytes). Supported: F32, F16, BF16, Q8_0, Q4_K, Q5_K, Q6_K,
// IQ4_NL, IQ4_XS;
// others throw `Error` naming the type. Non-finite inputs throw (a quantised block cannot hold
// them), naming `what`.
void QuantizeRow(GgmlType t, std::span<const float> x, std::span<std::byte> out,
                 std::string_view what = "");

// The index (0..15) of the IQ4 level (kIq4Levels) nearest to v: the lower one on a tie, an end
// level for v beyond the ends (±inf included). NaN is not an input (the encoders refuse
// non-finite elements first). Exposed for its test.
int Iq4Nearest(float v);

// Bytes a row of `n` elements takes in type `t` (n a multiple of the block size).
size_t GgmlRowBytes(GgmlType t, int64_t n);

}  // namespace dsinfer
