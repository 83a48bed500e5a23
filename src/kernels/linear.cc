#include "kernels/linear.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "base/error.h"
#include "base/threads.h"
#include "format/ggml_types.h"
#include "kernels/gemm/isa_kernels.h"
#include "kernels/linear_bf16.h"
#include "kernels/qblocks.h"

namespace dsinfer {

float Dot(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  for (; i < n; ++i) acc[i & 7] += a[i] * b[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

namespace {

void CheckArgs(const WeightView& w, int64_t n, int64_t row_begin, int64_t row_end) {
  DSINFER_CHECK(w.dtype == DType::kF8E4M3 || w.dtype == DType::kBF16 || w.dtype == DType::kF16 ||
                    w.dtype == DType::kF32 || IsBlockDType(w.dtype),
                "unsupported weight dtype");
  DSINFER_CHECK(w.cols % DTypeBlockElems(w.dtype) == 0,
                "a block weight's rows must be whole blocks");
  DSINFER_CHECK(w.dtype != DType::kF8E4M3 || w.scales != nullptr,
                "FP8 weight without block scales");
  DSINFER_CHECK(n >= 0 && 0 <= row_begin && row_begin <= row_end && row_end <= w.rows,
                "row range outside the weight");
}

// A weight re-laid out for the bf16 kernels (RepackFp8Pairs) reaches no other kernel.
void CheckRowMajor(const WeightView& w) {
  DSINFER_CHECK(!w.bf16_pairs, "a weight repacked for the bf16 kernels reached another kernel");
}

// A parallel region pays off for large products, and never nests (a caller that parallelises
// over heads gets a single-threaded kernel).
bool UseThreads(int64_t work) { return work >= kParallelWork && !omp_in_parallel(); }

// W[r, c0:c1] as f32: the values `DecodeRow` gives.
void DecodeSpan(const WeightView& w, int64_t r, int64_t c0, int64_t c1, float* out) {
  if (w.dtype == DType::kF8E4M3) {
    const float* lut = E4M3Table();
    const uint8_t* q = static_cast<const uint8_t*>(w.data) + r * w.cols;
    const float* s = w.scales + (r / 128) * w.scale_cols();
    for (int64_t c = c0; c < c1; ++c) out[c - c0] = lut[q[c]] * s[c / 128];
  } else if (w.dtype == DType::kF32) {
    std::memcpy(out, static_cast<const float*>(w.data) + r * w.cols + c0,
                (c1 - c0) * sizeof(float));
  } else if (IsBlockDType(w.dtype)) {  // the blocks that cover [c0, c1), decoded whole
    const int64_t be = DTypeBlockElems(w.dtype);
    const auto bb = static_cast<int64_t>(DTypeSize(w.dtype));
    float block[256];  // [be] one decoded block (be ≤ 256)
    for (int64_t b = c0 / be; b * be < c1; ++b) {
      DequantizeRow(GgmlOfBlockDType(w.dtype),
                    std::span<const std::byte>(w.row(r) + b * bb, static_cast<size_t>(bb)),
                    std::span<float>(block, static_cast<size_t>(be)));
      for (int64_t c = std::max(c0, b * be); c < std::min(c1, (b + 1) * be); ++c)
        out[c - c0] = block[c - b * be];
    }
  } else {
    const uint16_t* p = static_cast<const uint16_t*>(w.data) + r * w.cols;
    for (int64_t c = c0; c < c1; ++c)
      out[c - c0] = w.dtype == DType::kBF16 ? BF16ToFloat(p[c]) : F16ToFloat(p[c]);
  }
}

// ---- The specification --------------------------------------------------------------------
// y[t, r] = Dot(x[t], decoded W[r]): each weight row decoded once for all tokens.
void RowsScalar(const float* x, int64_t xs, int64_t n, const WeightView& w, int64_t rb, int64_t re,
                float* y, int64_t ys) {
#pragma omp parallel for schedule(dynamic, 32) if (UseThreads((re - rb) * w.cols * (n + 1)))
  for (int64_t r = rb; r < re; ++r) {
    DSINFER_NOTE_THREAD("linear.decoded_rows");
    thread_local std::vector<float> row;  // [cols] one decoded weight row (grows, never shrinks)
    if (static_cast<int64_t>(row.size()) < w.cols) row.resize(w.cols);
    DecodeRow(w, r, row.data());
    for (int64_t t = 0; t < n; ++t) y[t * ys + (r - rb)] = Dot(x + t * xs, row.data(), w.cols);
  }
}

// y[t, c] = Σ_i x[t, i] · W[rb + i, c], summed in ascending i (multiply, then add).
void TransposedScalar(const float* x, int64_t xs, int64_t n, const WeightView& w, int64_t rb,
                      int64_t re, float* y, int64_t ys) {
  constexpr int64_t kChunk = 128;
  const int64_t chunks = (w.cols + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(dynamic) if (UseThreads((re - rb) * w.cols * (n + 1)))
  for (int64_t ch = 0; ch < chunks; ++ch) {
    DSINFER_NOTE_THREAD("linear.decoded_cols");
    const int64_t c0 = ch * kChunk, c1 = std::min(c0 + kChunk, w.cols);
    float row[kChunk];  // W[i, c0:c1] decoded
    for (int64_t t = 0; t < n; ++t) std::fill(y + t * ys + c0, y + t * ys + c1, 0.0f);
    for (int64_t i = rb; i < re; ++i) {
      DecodeSpan(w, i, c0, c1, row);
      for (int64_t t = 0; t < n; ++t) {
        const float xv = x[t * xs + (i - rb)];
        float* dst = y + t * ys;
        for (int64_t c = c0; c < c1; ++c) dst[c] += xv * row[c - c0];
      }
    }
  }
}

// ---- Vector paths: loops over tiles and threads around the per-ISA kernels ----------------
void ZeroRows(float* y, int64_t ys, int64_t n, int64_t width) {
  for (int64_t t = 0; t < n; ++t) std::fill(y + t * ys, y + t * ys + width, 0.0f);
}

// Per-thread scratch of the vector paths (pre-scaled activations, panels, parked
// accumulators), 64-byte aligned so no vector load splits a cache line: grows, never shrinks,
// so steady-state calls allocate nothing.
float* Scratch(int64_t floats) {
  constexpr int64_t kAlign = 64 / sizeof(float);
  thread_local std::vector<float> buffer;
  if (static_cast<int64_t>(buffer.size()) < floats + kAlign) buffer.resize(floats + kAlign);
  const auto address = reinterpret_cast<uintptr_t>(buffer.data());
  return buffer.data() + (64 - address % 64) % 64 / sizeof(float);
}

// Pieces of [rb, re) cut at multiples of `height` (a divisor of 128), so that no piece crosses
// a 128-row scale block. How rows are cut never changes a result, only the work per piece.
struct Pieces {
  int64_t rb, re, height;
  int64_t count() const { return (re - 1) / height - rb / height + 1; }
  int64_t begin(int64_t p) const { return std::max(rb, (rb / height + p) * height); }
  int64_t end(int64_t p) const { return std::min(re, (rb / height + p + 1) * height); }
};

// Rows [rb, re) cut in `parts` contiguous ranges at multiples of `align` rows: range i is
// [Cut(i), Cut(i + 1)).
int64_t Cut(int64_t rb, int64_t re, int64_t i, int64_t parts, int64_t align = 8) {
  if (i == 0) return rb;
  if (i == parts) return re;
  return std::clamp((rb + (re - rb) * i / parts) / align * align, rb, re);
}

// Decode GEMV (memory-bound): each thread takes one contiguous range of rows, so its weight
// bytes are one sequential stream (which the kernel prefetches up to the range's end); x' is
// prepared per 128-row block. Threads from kParallelGemvBytes of weights: a read that long
// outlasts the parallel region's start-up.
void RowsGemv(const gemm::IsaKernels& k, const float* x, int64_t xs, int64_t n, const WeightView& w,
              int64_t rb, int64_t re, float* y, int64_t ys) {
  const int64_t xps = (w.cols + k.pair - 1) / k.pair * k.pair;
  const bool scaled = w.dtype == DType::kF8E4M3;  // else x' = x for every block
  const int64_t bytes = (re - rb) * w.cols * static_cast<int64_t>(DTypeSize(w.dtype));
  auto part = [&](int64_t parts, int64_t i) {
    const int64_t t0 = Cut(rb, re, i, parts), t1 = Cut(rb, re, i + 1, parts);
    float* xp = Scratch(n * xps);  // [n, xps] x' of the current block
    for (int64_t r0 = t0; r0 < t1;) {
      const int64_t r1 = std::min(t1, (r0 / 128 + 1) * 128);
      if (scaled || r0 == t0) k.prep_x(x, xs, static_cast<int>(n), w, r0 / 128, 0, w.cols, xp, xps);
      k.gemv(xp, xps, static_cast<int>(n), w, r0, r1, y + (r0 - rb), ys, t1);
      r0 = r1;
    }
  };
  // Small products and calls from inside a parallel loop (MLA's per-head products) run on the
  // calling thread without entering an OpenMP construct at all (its cost would rival theirs).
  if (bytes < kParallelGemvBytes || omp_in_parallel()) return part(1, 0);
#pragma omp parallel
  {
    DSINFER_NOTE_THREAD("linear.split");
    part(omp_get_num_threads(), omp_get_thread_num());
  }
}

// Pieces of ≤ 128 rows (64 when there are few, for two threads to share them evenly).
void RowsGemm(const gemm::IsaKernels& k, const float* x, int64_t xs, int64_t n, const WeightView& w,
              int64_t rb, int64_t re, float* y, int64_t ys) {
  const Pieces pieces{rb, re, re - rb < 1024 ? 64 : 128};
  auto piece = [&](int64_t p, float* work) {
    const int64_t r0 = pieces.begin(p), r1 = pieces.end(p);
    k.gemm_rows(x, xs, n, w, r0, r1, y + (r0 - rb), ys, work);
  };
  if (!UseThreads((re - rb) * w.cols * (n + 1))) {  // no OpenMP construct (see RowsGemv)
    float* work = Scratch(k.gemm_rows_work(n, w.cols));
    for (int64_t p = 0; p < pieces.count(); ++p) piece(p, work);
    return;
  }
#pragma omp parallel
  {
    DSINFER_NOTE_THREAD("linear.gemm_rows");
    float* work = Scratch(k.gemm_rows_work(n, w.cols));
#pragma omp for schedule(dynamic)
    for (int64_t p = 0; p < pieces.count(); ++p) piece(p, work);
  }
}

void TransposedGemv(const gemm::IsaKernels& k, const float* x, int64_t xs, int64_t n,
                    const WeightView& w, int64_t rb, int64_t re, float* y, int64_t ys) {
  constexpr int64_t kChunk = 128;  // output columns per scheduling unit (one scale block)
  const int64_t chunks = (w.cols + kChunk - 1) / kChunk;
  if (!UseThreads((re - rb) * w.cols * (n + 1)))  // no OpenMP construct (see RowsGemv)
    return k.gemv_t(x, xs, static_cast<int>(n), w, rb, re, 0, w.cols, y, ys);
#pragma omp parallel for schedule(dynamic)
  for (int64_t ch = 0; ch < chunks; ++ch) {
    DSINFER_NOTE_THREAD("linear.gemv_t");
    const int64_t c0 = ch * kChunk, c1 = std::min(c0 + kChunk, w.cols);
    k.gemv_t(x, xs, static_cast<int>(n), w, rb, re, c0, c1, y, ys);
  }
}

// One 128-column block (one scale column) per unit: x' of a chunk of kKc weight rows is
// prepared once and multiplied into every panel of the block; y carries the running sums.
void TransposedGemm(const gemm::IsaKernels& k, const float* x, int64_t xs, int64_t n,
                    const WeightView& w, int64_t rb, int64_t re, float* y, int64_t ys) {
  const int64_t blocks = (w.cols + 127) / 128;
  auto block = [&](int64_t b, float* xp) {  // xp: [n, kKc] x' of the current row chunk
    const int64_t c0 = b * 128, c1 = std::min(c0 + 128, w.cols);
    for (int64_t i0 = 0; i0 < re - rb; i0 += gemm::kKc) {
      const int kc = static_cast<int>(std::min<int64_t>(gemm::kKc, re - rb - i0));
      k.prep_t(x, xs, n, w, rb, i0, kc, c0, xp);
      for (int64_t pc = c0; pc < c1; pc += k.nr) {
        alignas(64) float panel[gemm::kKc * gemm::kMaxNr];  // [kc, nr] W[rows, panel cols]
        const int nv = static_cast<int>(std::min<int64_t>(k.nr, c1 - pc));
        k.pack_cols(w, rb + i0, kc, pc, nv, panel);
        for (int64_t t0 = 0; t0 < n; t0 += k.mr)
          k.tile(xp + t0 * gemm::kKc, gemm::kKc, static_cast<int>(std::min<int64_t>(k.mr, n - t0)),
                 panel, kc, y + t0 * ys + pc, ys, nv, /*accumulate=*/i0 > 0);
      }
    }
  };
  if (!UseThreads((re - rb) * w.cols * (n + 1))) {  // no OpenMP construct (see RowsGemv)
    float* xp = Scratch(n * gemm::kKc);
    for (int64_t b = 0; b < blocks; ++b) block(b, xp);
    return;
  }
#pragma omp parallel
  {
    DSINFER_NOTE_THREAD("linear.gemm_blocks");
    float* xp = Scratch(n * gemm::kKc);
#pragma omp for schedule(dynamic)
    for (int64_t b = 0; b < blocks; ++b) block(b, xp);
  }
}

// ---- ggml block weights (kernels/qblocks.h) -------------------------------------------------
// f32 path: `chunk` rows at a time decoded exactly into the thread's scratch and multiplied by
// the f32 kernels (GEMV for n ≤ gemv_max_n, else the row GEMM), so every output is bitwise the
// one an F32 copy of the dequantised weights gives on this ISA. The AVX-512 GEMV decodes in
// registers instead (qblocks::FusedGemv: the same bits). Threads as for RowsGemv (GEMV:
// one contiguous range each) and RowsGemm (GEMM: dynamic pieces of `chunk` rows).
void RowsDecoded(const gemm::IsaKernels& k, Isa isa, const float* x, int64_t xs, int64_t n,
                 const WeightView& w, int64_t rb, int64_t re, float* y, int64_t ys) {
  const bool gemv = n <= k.gemv_max_n;
  const int64_t chunk = gemv ? 8 : 32;  // rows decoded at once (f32: 8·cols or 32·cols floats)
  const int64_t xps = (w.cols + k.pair - 1) / k.pair * k.pair;
  const int64_t extra = gemv ? n * xps : k.gemm_rows_work(n, w.cols);
  auto run = [&](int64_t p0, int64_t p1) {
    float* dec = Scratch(chunk * w.cols + extra);  // [chunk, cols] decoded rows, then x' / work
    float* more = dec + chunk * w.cols;            // 64-byte aligned: cols is a multiple of 32
    const WeightView f32{.dtype = DType::kF32, .rows = chunk, .cols = w.cols, .data = dec};
    if (gemv) {
      k.prep_x(x, xs, static_cast<int>(n), f32, 0, 0, w.cols, more, xps);
      // AVX-512: decoded in registers, the same bits without the buffer.
      if (qblocks::FusedGemv(isa, more, xps, static_cast<int>(n), w, p0, p1, y + (p0 - rb), ys))
        return;
    }
    for (int64_t r0 = p0; r0 < p1; r0 += chunk) {
      const int64_t r1 = std::min(p1, r0 + chunk), rows = r1 - r0;
      qblocks::DecodeRows(isa, w, r0, r1, dec);
      if (gemv) {
        k.gemv(more, xps, static_cast<int>(n), f32, 0, rows, y + (r0 - rb), ys, rows);
      } else {
        k.gemm_rows(x, xs, n, f32, 0, rows, y + (r0 - rb), ys, more);
      }
    }
  };
  if (gemv) {
    if ((re - rb) * w.row_bytes() < kParallelGemvBytes || omp_in_parallel()) return run(rb, re);
#pragma omp parallel
    {
      DSINFER_NOTE_THREAD("linear.blocks_split");
      const int64_t parts = omp_get_num_threads(), i = omp_get_thread_num();
      run(Cut(rb, re, i, parts), Cut(rb, re, i + 1, parts));
    }
    return;
  }
  if (!UseThreads((re - rb) * w.cols * (n + 1))) return run(rb, re);
  const int64_t pieces = (re - rb + chunk - 1) / chunk;
#pragma omp parallel for schedule(dynamic)
  for (int64_t p = 0; p < pieces; ++p) {
    DSINFER_NOTE_THREAD("linear.blocks_gemm");
    run(rb + p * chunk, std::min(re, rb + (p + 1) * chunk));
  }
}

// int8 activations (Q8_0, Q2_K-Q6_K, IQ4_*): x quantised once per call; each thread takes one
// contiguous range of rows and walks it in tiles of kInt8Rows rows (a tile stays in L2 while
// every group of tokens meets it), so a prefill batch reads the weights once. A GEMM's tokens are
// quantised (and prepared for the tile kernels) by the threads, each a range of tokens, before
// the barrier, and its rows dealt in pieces; a GEMV's tokens (up to kInt8TileGemvMaxN) are
// quantised on the calling thread.
void RowsInt8(Isa isa, const float* x, int64_t xs, int64_t n, const WeightView& w, int64_t rb,
              int64_t re, float* y, int64_t ys) {
  constexpr int64_t kInt8Rows = 16;
  // A GEMM's pieces: 128 rows (the tile kernels' panel, whose tokens stream from L2), dealt
  // dynamically — a static split left one thread waiting ~10% of the time on this shared machine.
  constexpr int64_t kInt8GemmPiece = 128;
  thread_local qblocks::QuantizedActs acts;  // the calling thread's; the workers use `a`
  qblocks::QuantizedActs& a = acts;
  // Block weights (every type) on AVX-512 VNNI or AVX2 with the loader's 16-row tile copy
  // (qblocks.h Int8TileRows): the specification's bits; the threads' ranges cut at tiles.
  const bool tiles = w.repacked != nullptr && qblocks::Int8TilesRun(*w.repacked, isa);
  auto prepare = [&](int64_t t0, int64_t t1) {
    qblocks::QuantizeActRows(isa, x, xs, t0, t1, a);
    if (tiles)
      qblocks::PrepareTileActRows(isa, w.dtype, a, t0, t1);
    else
      qblocks::PrepareInt8RowActs(isa, w.dtype, a, t0, t1);
  };
  auto run = [&](int64_t p0, int64_t p1) {
    if (tiles) return qblocks::Int8TileRows(isa, a, 0, n, *w.repacked, p0, p1, y + (p0 - rb), ys);
    for (int64_t r0 = p0; r0 < p1; r0 += kInt8Rows)
      qblocks::Int8Rows(isa, a, 0, n, w, r0, std::min(p1, r0 + kInt8Rows), y + (r0 - rb), ys);
  };
  qblocks::SizeActs(n, w.cols, a);
  if (tiles)
    qblocks::SizeTileActs(isa, w.dtype, a);
  else
    qblocks::SizeInt8RowActs(isa, w.dtype, a);
  const bool big = (re - rb) * w.row_bytes() >= kParallelGemvBytes ||
                   (re - rb) * w.cols * (n + 1) >= kParallelWork;
  if (!big || omp_in_parallel()) {
    prepare(0, n);
    return run(rb, re);
  }
  const bool threads_prepare = n > qblocks::kInt8TileGemvMaxN;
  if (!threads_prepare) prepare(0, n);
#pragma omp parallel
  {
    DSINFER_NOTE_THREAD("linear.int8_rows");
    const int64_t parts = omp_get_num_threads(), i = omp_get_thread_num();
    if (threads_prepare) {  // a GEMM: pieces of rows taken as threads come free
      prepare(Cut(0, n, i, parts, 1), Cut(0, n, i + 1, parts, 1));
#pragma omp barrier
      // (at multiples of the piece, so that only a range's first piece can start inside a tile)
      const int64_t base = rb / kInt8GemmPiece * kInt8GemmPiece;
      const int64_t pieces = (re - base + kInt8GemmPiece - 1) / kInt8GemmPiece;
#pragma omp for schedule(dynamic)
      for (int64_t p = 0; p < pieces; ++p)
        run(std::max(rb, base + p * kInt8GemmPiece), std::min(re, base + (p + 1) * kInt8GemmPiece));
    } else {  // a GEMV: one contiguous stream of weights per thread
      const int64_t align = tiles ? 16 : 8;
      run(Cut(rb, re, i, parts, align), Cut(rb, re, i + 1, parts, align));
    }
  }
}

void RowsBlocks(Isa isa, const gemm::IsaKernels* k, const float* x, int64_t xs, int64_t n,
                const WeightView& w, int64_t rb, int64_t re, float* y, int64_t ys) {
  if (w.int8_activations && qblocks::Int8Dtype(w.dtype))
    return RowsInt8(isa, x, xs, n, w, rb, re, y, ys);
  if (k == nullptr) return RowsScalar(x, xs, n, w, rb, re, y, ys);
  RowsDecoded(*k, isa, x, xs, n, w, rb, re, y, ys);
}

// ---- bf16-activation numerics (linear.h `LinearRowsBf16`) ---------------------------------
// The specification: bf16(x) once per call, each weight row decoded to its bf16 values (FP8:
// the e4m3 value, unscaled), products exact in f32, summed in ascending column; FP8 folds each
// 128-column block's sum into the total with its scale (partial_0 · s_0, then fma).

// Per token t in [t0, t1) and 32-column block b, xsum[t·(cols/32) + b] = Σ value(t, c) over the
// block's columns, ascending, in f32: Q4_K's and Q5_K's activation sums (xsum_b, the bf16 kernels' min term;
// gemm/isa_kernels.h), the same additions in the specification (over bf16(x) as f32) and for the
// kernels (over the bf16 words).
template <class Value>
void SumBlocks(int64_t t0, int64_t t1, int64_t cols, float* xsum, Value value) {
  for (int64_t t = t0; t < t1; ++t)
    for (int64_t b = 0; b < cols / 32; ++b) {
      float s = 0.0f;
      for (int64_t c = 32 * b; c < 32 * b + 32; ++c) s += value(t, c);
      xsum[t * (cols / 32) + b] = s;
    }
}

// Q8_0 / Q4_K / Q5_K / Q6_K / IQ4_NL / IQ4_XS (docs/numerics.md "bf16 numerics"): per scale block
// (32 columns; Q6_K 16)
// the codes' sum with the bf16 activations (ascending), then total = fma(partial, s_b, total)
// and for Q4_K/Q5_K total = fma(−mm_b, xsum_b, total). xr: [n, K] bf16(x) as f32.
void RowsBf16BlocksScalar(const std::vector<float>& xr, int64_t n, const WeightView& w, int64_t rb,
                          int64_t re, float* y, int64_t ys) {
  const bool q5 = w.dtype == DType::kQ5_K, q6 = w.dtype == DType::kQ6_K;
  const bool nl = w.dtype == DType::kIQ4_NL, xs = w.dtype == DType::kIQ4_XS;
  const bool mins = Bf16BlockHasMins(w.dtype);  // Q4_K, Q5_K: mm_b, xsum_b
  const int64_t K = w.cols, bw = q6 ? 16 : 32, nb = K / bw;  // bw: columns per scale block
  std::vector<float> xsum(mins ? n * (K / 32) : 0);            // [n, K / 32] (Q4_K, Q5_K)
  if (mins) SumBlocks(0, n, K, xsum.data(), [&](int64_t t, int64_t c) { return xr[t * K + c]; });
#pragma omp parallel for schedule(dynamic, 32) if (UseThreads((re - rb) * K * (n + 1)))
  for (int64_t r = rb; r < re; ++r) {
    DSINFER_NOTE_THREAD("linear.bf16_scalar_block_rows");
    std::vector<float> code(K), s(nb), mm(nb);  // the row's integer codes; per block s_b, mm_b
    const auto* row = reinterpret_cast<const uint8_t*>(w.row(r));
    for (int64_t b = 0; b < nb; ++b) {
      if (q6) {  // element e of the super-block: docs in format/ggml_types.h
        const uint8_t* blk = row + b / 16 * 210;
        s[b] = F16ToFloat(static_cast<uint16_t>(blk[208] | blk[209] << 8)) *
               static_cast<float>(static_cast<int8_t>(blk[192 + b % 16]));
        for (int64_t c = 0; c < 16; ++c) {
          const int64_t e = 16 * (b % 16) + c, h = e / 128, k = (e % 128) / 32, l = e % 32;
          const uint8_t lo = blk[64 * h + l + 32 * (k % 2)];
          const int u = (k < 2 ? lo & 15 : lo >> 4) | ((blk[128 + 32 * h + l] >> (2 * k)) & 3) << 4;
          code[16 * b + c] = static_cast<float>(u - 32);
        }
        continue;
      }
      if (nl || xs) {  // step d (IQ4_NL) or d·(ls_j − 32); codes the levels of the indices
        const uint8_t* blk = nl ? row + b * 18 : row + b / 8 * 136;
        const int j = static_cast<int>(b % 8);
        const float d = F16ToFloat(static_cast<uint16_t>(blk[0] | blk[1] << 8));
        s[b] = nl ? d : d * static_cast<float>(Iq4XsScale(blk, j) - 32);
        const uint8_t* qs = nl ? blk + 2 : blk + 8 + 16 * j;
        for (int l = 0; l < 16; ++l) {
          code[32 * b + l] = kIq4Levels[qs[l] & 15];
          code[32 * b + 16 + l] = kIq4Levels[qs[l] >> 4];
        }
        continue;
      }
      if (!mins) {  // Q8_0
        const uint8_t* blk = row + b * 34;
        s[b] = F16ToFloat(static_cast<uint16_t>(blk[0] | blk[1] << 8));
        for (int c = 0; c < 32; ++c) code[32 * b + c] = static_cast<int8_t>(blk[2 + c]);
        continue;
      }
      const uint8_t* blk = row + b / 8 * (q5 ? 176 : 144);  // Q5_K: qh at 16, qs at 48
      const int j = static_cast<int>(b % 8);
      uint8_t sc = 0, m = 0;
      UnpackK4Scale(blk + 4, j, &sc, &m);
      s[b] = F16ToFloat(static_cast<uint16_t>(blk[0] | blk[1] << 8)) * static_cast<float>(sc);
      mm[b] = F16ToFloat(static_cast<uint16_t>(blk[2] | blk[3] << 8)) * static_cast<float>(m);
      for (int l = 0; l < 32; ++l) {
        const uint8_t byte = blk[(q5 ? 48 : 16) + 32 * (j / 2) + l];
        const int high = q5 ? (blk[16 + l] >> j & 1) << 4 : 0;  // Q5_K: bit j of qh[l]
        code[32 * b + l] = static_cast<float>((j % 2 == 0 ? byte & 15 : byte >> 4) | high);
      }
    }
    for (int64_t t = 0; t < n; ++t) {
      const float* a = xr.data() + t * K;
      float total = 0.0f;
      for (int64_t b = 0; b < nb; ++b) {
        float partial = 0.0f;
        for (int64_t c = bw * b; c < bw * b + bw; ++c) partial += a[c] * code[c];
        total = std::fma(partial, s[b], total);
        if (mins) total = std::fma(-mm[b], xsum[t * nb + b], total);
      }
      y[t * ys + (r - rb)] = total;
    }
  }
}

void RowsBf16Scalar(const float* x, int64_t xs, int64_t n, const WeightView& w, int64_t rb,
                    int64_t re, float* y, int64_t ys) {
  const int64_t K = w.cols;
  std::vector<float> xr(n * K);  // [n, K] bf16(x) as f32
  for (int64_t t = 0; t < n; ++t)
    for (int64_t c = 0; c < K; ++c) xr[t * K + c] = BF16ToFloat(FloatToBF16(x[t * xs + c]));
  if (IsBlockDType(w.dtype)) return RowsBf16BlocksScalar(xr, n, w, rb, re, y, ys);
  const bool fp8 = w.dtype == DType::kF8E4M3;
#pragma omp parallel for schedule(dynamic, 32) if (UseThreads((re - rb) * K * (n + 1)))
  for (int64_t r = rb; r < re; ++r) {
    DSINFER_NOTE_THREAD("linear.bf16_scalar_rows");
    std::vector<float> row(K);  // [K] W[r, :] as bf16 values (FP8: unscaled e4m3)
    for (int64_t c = 0; c < K; ++c)
      row[c] = fp8 ? E4M3ToFloat(static_cast<const uint8_t*>(w.data)[r * K + c])
                   : BF16ToFloat(static_cast<const uint16_t*>(w.data)[r * K + c]);
    for (int64_t t = 0; t < n; ++t) {
      const float* a = xr.data() + t * K;
      float total = 0.0f;
      if (!fp8) {
        for (int64_t c = 0; c < K; ++c) total += a[c] * row[c];
      } else {
        const float* s = w.scales + (r / 128) * w.scale_cols();
        for (int64_t b = 0; b * 128 < K; ++b) {
          float partial = 0.0f;
          for (int64_t c = b * 128; c < std::min(K, b * 128 + 128); ++c) partial += a[c] * row[c];
          total = b == 0 ? partial * s[b] : std::fma(partial, s[b], total);
        }
      }
      y[t * ys + (r - rb)] = total;
    }
  }
}

// 64-byte-aligned thread-local scratch of `count` T (grows, never shrinks), one per T.
template <class T>
T* TypedScratch(int64_t count) {
  constexpr int64_t kAlign = 64 / sizeof(T);
  thread_local std::vector<T> buffer;
  if (static_cast<int64_t>(buffer.size()) < count + kAlign) buffer.resize(count + kAlign);
  const auto address = reinterpret_cast<uintptr_t>(buffer.data());
  return buffer.data() + (64 - address % 64) % 64 / sizeof(T);
}

// SumBlocks of bf16 rows xb [.., xbs] for tokens [t0, t1) into xsum [.., cols / 32].
void Bf16BlockSums(const uint16_t* xb, int64_t xbs, int64_t t0, int64_t t1, int64_t cols,
                   float* xsum) {
  SumBlocks(t0, t1, cols, xsum,
            [&](int64_t t, int64_t c) { return BF16ToFloat(xb[t * xbs + c]); });
}

// The fast path: x is rounded once into a shared [n, xbs] bf16 buffer (split by token rows
// among the threads), then pieces of ≤ 128 weight rows as `RowsGemm`.
void RowsGemmBf16(const gemm::Bf16Kernels& k, const float* x, int64_t xs, int64_t n,
                  const WeightView& w, int64_t rb, int64_t re, float* y, int64_t ys) {
  const int64_t xbs = (w.cols + 32) / 32 * 32;     // ≥ cols + 1 (the odd pad), 64-byte rows
  uint16_t* xb = TypedScratch<uint16_t>(n * xbs);  // [n, xbs] bf16(x): the caller's buffer
  const Pieces pieces{rb, re, re - rb < 1024 ? 64 : 128};
  const bool blocks = IsBlockDType(w.dtype);
  const int64_t xss = w.cols / 32;  // block weights: xsum [n, xss] (Q4_K's and Q5_K's min term)
  float* xsum = blocks ? TypedScratch<float>(n * xss) : nullptr;
  const int64_t work_words = blocks ? gemm::Bf16BlockWorkWords() : k.work_words;
  auto piece = [&](int64_t p, uint32_t* work) {
    const int64_t r0 = pieces.begin(p), r1 = pieces.end(p);
    if (blocks)
      return gemm::Bf16BlocksGemm(xb, xbs, xsum, xss, n, w, r0, r1, y + (r0 - rb), ys, work);
    k.gemm_rows(xb, xbs, n, w, r0, r1, y + (r0 - rb), ys, work);
  };
  auto prepare = [&](int64_t t0, int64_t t1) {
    k.round_x(x, xs, t0, t1, w.cols, xb, xbs);
    if (Bf16BlockHasMins(w.dtype)) Bf16BlockSums(xb, xbs, t0, t1, w.cols, xsum);
  };
  if (!UseThreads((re - rb) * w.cols * (n + 1))) {  // no OpenMP construct (see RowsGemv)
    prepare(0, n);
    uint32_t* work = TypedScratch<uint32_t>(work_words);
    for (int64_t p = 0; p < pieces.count(); ++p) piece(p, work);
    return;
  }
#pragma omp parallel
  {
    DSINFER_NOTE_THREAD("linear.bf16_gemm_rows");
    const int64_t parts = omp_get_num_threads(), i = omp_get_thread_num();
    prepare(n * i / parts, n * (i + 1) / parts);
#pragma omp barrier
    uint32_t* work = TypedScratch<uint32_t>(work_words);
#pragma omp for schedule(dynamic)
    for (int64_t p = 0; p < pieces.count(); ++p) piece(p, work);
  }
}

// Decode (few tokens): x rounded once on the calling thread, then as `RowsGemv` each thread
// takes one contiguous range of rows (cut at multiples of 16, the kernel's row group), walked
// per 128-row block; the weights are converted in registers (no panel, no scratch).
void RowsGemvBf16(const gemm::Bf16Kernels& k, const float* x, int64_t xs, int64_t n,
                  const WeightView& w, int64_t rb, int64_t re, float* y, int64_t ys) {
  const int64_t xbs = (w.cols + 32) / 32 * 32;              // as RowsGemmBf16
  uint16_t* xb = TypedScratch<uint16_t>(n * xbs);           // [n, xbs] bf16(x)
  k.round_x(x, xs, 0, n, w.cols, xb, xbs);
  const bool blocks = IsBlockDType(w.dtype);
  const int64_t xss = w.cols / 32;
  float* xsum = blocks ? TypedScratch<float>(n * xss) : nullptr;
  if (Bf16BlockHasMins(w.dtype)) Bf16BlockSums(xb, xbs, 0, n, w.cols, xsum);
  auto part = [&](int64_t parts, int64_t i) {
    const int64_t t0 = Cut(rb, re, i, parts, 16), t1 = Cut(rb, re, i + 1, parts, 16);
    if (blocks)
      return gemm::Bf16BlocksGemv(xb, xbs, xsum, xss, n, w, t0, t1, y + (t0 - rb), ys);
    for (int64_t r0 = t0; r0 < t1;) {
      const int64_t r1 = std::min(t1, (r0 / 128 + 1) * 128);
      k.gemv_rows(xb, xbs, n, w, r0, r1, y + (r0 - rb), ys, t1);
      r0 = r1;
    }
  };
  if ((re - rb) * w.row_bytes() < kParallelGemvBytes || omp_in_parallel()) return part(1, 0);
#pragma omp parallel
  {
    DSINFER_NOTE_THREAD("linear.bf16_gemv");
    part(omp_get_num_threads(), omp_get_thread_num());
  }
}

const gemm::IsaKernels* KernelsFor(Isa isa) {
  DSINFER_CHECK(DetectCpu().Supports(isa), "this CPU cannot run the requested instruction set");
  switch (isa) {
    case Isa::kAvx512:
      return &gemm::Avx512Kernels();
    case Isa::kAvx2:
      return &gemm::Avx2Kernels();
    case Isa::kScalar:
      return nullptr;
  }
  return nullptr;
}

}  // namespace

void LinearRows(Isa isa, const float* x, int64_t x_stride, int64_t n, const WeightView& w,
                int64_t row_begin, int64_t row_end, float* y, int64_t y_stride) {
  CheckArgs(w, n, row_begin, row_end);
  CheckRowMajor(w);
  DSINFER_CHECK(n <= 1 || (x_stride >= w.cols && y_stride >= row_end - row_begin),
                "LinearRows: a row stride is shorter than its row");
  if (n == 0 || row_begin == row_end) return;
  const gemm::IsaKernels* k = KernelsFor(isa);
  if (w.cols == 0) return ZeroRows(y, y_stride, n, row_end - row_begin);  // empty sums
  if (IsBlockDType(w.dtype))
    return RowsBlocks(isa, k, x, x_stride, n, w, row_begin, row_end, y, y_stride);
  if (k == nullptr) return RowsScalar(x, x_stride, n, w, row_begin, row_end, y, y_stride);
  if (n <= k->gemv_max_n) return RowsGemv(*k, x, x_stride, n, w, row_begin, row_end, y, y_stride);
  RowsGemm(*k, x, x_stride, n, w, row_begin, row_end, y, y_stride);
}

void LinearTransposed(Isa isa, const float* x, int64_t x_stride, int64_t n, const WeightView& w,
                      int64_t row_begin, int64_t row_end, float* y, int64_t y_stride) {
  CheckArgs(w, n, row_begin, row_end);
  CheckRowMajor(w);
  DSINFER_CHECK(n <= 1 || (x_stride >= row_end - row_begin && y_stride >= w.cols),
                "LinearTransposed: a row stride is shorter than its row");
  if (n == 0 || w.cols == 0) return;
  const gemm::IsaKernels* k = KernelsFor(isa);
  // Block weights have no transposed vector path (the loader decodes the one weight the model
  // multiplies transposed, kv_b; docs/gguf.md): the scalar specification serves them.
  if (k == nullptr || IsBlockDType(w.dtype))
    return TransposedScalar(x, x_stride, n, w, row_begin, row_end, y, y_stride);
  if (row_begin == row_end) return ZeroRows(y, y_stride, n, w.cols);
  if (n <= k->gemv_t_max_n)
    return TransposedGemv(*k, x, x_stride, n, w, row_begin, row_end, y, y_stride);
  TransposedGemm(*k, x, x_stride, n, w, row_begin, row_end, y, y_stride);
}

Isa LinearIsa() { return DetectCpu().best; }

void LinearRows(const float* x, int64_t x_stride, int64_t n, const WeightView& w, int64_t row_begin,
                int64_t row_end, float* y, int64_t y_stride) {
  LinearRows(LinearIsa(), x, x_stride, n, w, row_begin, row_end, y, y_stride);
}

void LinearTransposed(const float* x, int64_t x_stride, int64_t n, const WeightView& w,
                      int64_t row_begin, int64_t row_end, float* y, int64_t y_stride) {
  LinearTransposed(LinearIsa(), x, x_stride, n, w, row_begin, row_end, y, y_stride);
}

void Linear(const float* x, int64_t n, const WeightView& w, float* y, int64_t y_stride) {
  LinearRows(x, w.cols, n, w, 0, w.rows, y, y_stride < 0 ? w.rows : y_stride);
}

const char* Bf16PathName(Bf16Path path) {
  return path == Bf16Path::kAvx512Bf16 ? "avx512bf16" : "scalar";
}

const char* Bf16KernelName(Bf16Kernel kernel) {
  switch (kernel) {
    case Bf16Kernel::kGemv:
      return "gemv";
    case Bf16Kernel::kGemm:
      return "gemm";
    case Bf16Kernel::kAuto:
      break;
  }
  return "auto";
}

int64_t Bf16GemvMaxN() { return gemm::kBf16GemvMaxN; }

Bf16Path LinearBf16Path() {
  return DetectCpu().Bf16DotUsable() ? Bf16Path::kAvx512Bf16 : Bf16Path::kScalar;
}

namespace {

// LinearRowsBf16 on `path`, the AVX512-BF16 path on `kernel`.
void RowsBf16(Bf16Path path, Bf16Kernel kernel, const float* x, int64_t x_stride, int64_t n,
              const WeightView& w, int64_t row_begin, int64_t row_end, float* y, int64_t y_stride) {
  CheckArgs(w, n, row_begin, row_end);
  DSINFER_CHECK(w.dtype == DType::kF8E4M3 || w.dtype == DType::kBF16 || Bf16BlockDtype(w.dtype),
                "the bf16 GEMM takes FP8 e4m3, BF16, Q8_0, Q4_K, Q5_K, Q6_K, IQ4_NL or IQ4_XS weights");
  DSINFER_CHECK(!IsBlockDType(w.dtype) || (path == Bf16Path::kScalar) != w.bf16_pairs,
                "a Q8_0/Q4_K/Q5_K/Q6_K/IQ4_* weight runs on the AVX512-BF16 path repacked (RepackBlocksBf16), "
                "on the scalar one as stored");
  DSINFER_CHECK(n <= 1 || (x_stride >= w.cols && y_stride >= row_end - row_begin),
                "LinearRowsBf16: a row stride is shorter than its row");
  DSINFER_CHECK(path == Bf16Path::kScalar || DetectCpu().SupportsBf16Dot(),
                "this CPU cannot run the AVX512-BF16 GEMM");
  DSINFER_CHECK(!w.bf16_pairs || (path == Bf16Path::kAvx512Bf16 && row_begin % 16 == 0),
                "a repacked weight runs on the AVX512-BF16 path, from a row multiple of 16");
  if (n == 0 || row_begin == row_end) return;
  if (w.cols == 0) return ZeroRows(y, y_stride, n, row_end - row_begin);  // empty sums
  if (path == Bf16Path::kScalar)
    return RowsBf16Scalar(x, x_stride, n, w, row_begin, row_end, y, y_stride);
  const gemm::Bf16Kernels& k = gemm::Avx512Bf16Kernels();
  // The GEMV and the GEMM give the same bits (gemm/isa_kernels.h): the choice is speed only.
  if (kernel == Bf16Kernel::kGemv || (kernel == Bf16Kernel::kAuto && n <= k.gemv_max_n))
    return RowsGemvBf16(k, x, x_stride, n, w, row_begin, row_end, y, y_stride);
  RowsGemmBf16(k, x, x_stride, n, w, row_begin, row_end, y, y_stride);
}

}  // namespace

void LinearRowsBf16(Bf16Path path, const float* x, int64_t x_stride, int64_t n, const WeightView& w,
                    int64_t row_begin, int64_t row_end, float* y, int64_t y_stride) {
  RowsBf16(path, Bf16Kernel::kAuto, x, x_stride, n, w, row_begin, row_end, y, y_stride);
}

void LinearRowsBf16Kernel(Bf16Kernel kernel, const float* x, int64_t x_stride, int64_t n,
                          const WeightView& w, int64_t row_begin, int64_t row_end, float* y,
                          int64_t y_stride) {
  RowsBf16(Bf16Path::kAvx512Bf16, kernel, x, x_stride, n, w, row_begin, row_end, y, y_stride);
}

void LinearBf16(const float* x, int64_t n, const WeightView& w, float* y) {
  const Bf16Path path = LinearBf16Path();
  const WeightView& v = w.repacked && path == Bf16Path::kAvx512Bf16 ? *w.repacked : w;
  LinearRowsBf16(path, x, w.cols, n, v, 0, w.rows, y, w.rows);
}

Numerics ParseNumerics(const std::string& name, const std::string& what) {
  if (name == "f32") return Numerics::kF32;
  if (name == "bf16") return Numerics::kBf16;
  if (name == "auto")  // bf16 where its kernels run fast, else the f32 reference
    return LinearBf16Path() == Bf16Path::kAvx512Bf16 ? Numerics::kBf16 : Numerics::kF32;
  throw Error(what + ": unknown numerics '" + name + "' (expected f32, bf16 or auto)");
}

const char* NumericsName(Numerics numerics) { return numerics == Numerics::kBf16 ? "bf16" : "f32"; }

void Linear(Numerics numerics, const float* x, int64_t n, const WeightView& w, float* y) {
  const bool bf16_weights = w.dtype == DType::kF8E4M3 || w.dtype == DType::kBF16;
  // Q8_0/Q4_K/Q5_K/Q6_K/IQ4_*: only with the repacked copy the loader makes for `--block-acts bf16`
  // (or `auto` where that is bf16), not the int8 tile copy.
  const bool bf16_blocks = Bf16BlockDtype(w.dtype) && w.repacked != nullptr && !w.repacked_int8;
  if (numerics == Numerics::kBf16 && (bf16_weights || bf16_blocks)) return LinearBf16(x, n, w, y);
  Linear(x, n, w, y);
}

}  // namespace dsinfer
