#include "kernels/indexer.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <numeric>
#include <string>

#include "base/error.h"
#include "base/threads.h"
#include "format/dtype.h"
#include "kernels/cpu.h"
#include "kernels/quant.h"
#include "kernels/weight.h"

// GCC 12's _mm512_reduce_add_ps trips -Wuninitialized inside its own header.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#define DSINFER_AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,fma")))
#define DSINFER_AVX2 __attribute__((target("avx2,fma")))
#define DSINFER_AVX512VBMI __attribute__((target("avx512f,avx512bw,avx512vbmi")))

namespace dsinfer {

namespace {

constexpr int64_t kKeyTile = 32;  // keys converted at once (bf16: 8 KiB for head_dim 128)
constexpr int64_t kPairsPerBlock = kQuantBlock / 2;

int64_t RoundUp(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

bool PathSupported(IndexerPath p, int64_t head_dim) {
  const CpuFeatures& cpu = DetectCpu();
  switch (p) {
    case IndexerPath::kScalar:
      return true;
    case IndexerPath::kAvx2:
      return cpu.best >= Isa::kAvx2;
    case IndexerPath::kAvx512Bf16:
      return cpu.best >= Isa::kAvx512 && cpu.avx512_bf16 && head_dim % 32 == 0;
  }
  return false;
}

// ---- scalar (the specification) ------------------------------------------------------------

// One key's score from its unscaled values kf [d] and block scales ks [nb]; qf: [H, d] unscaled.
float ScoreKeyScalar(const float* qf, const float* qs, const float* w, int64_t H, int64_t d,
                     const float* kf, const float* ks) {
  const int64_t nb = QuantBlocks(d);
  float total = 0;
  for (int64_t h = 0; h < H; ++h) {
    float logit = 0;
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t d0 = b * kQuantBlock, d1 = std::min(d0 + kQuantBlock, d);
      float dot = 0;
      for (int64_t i = d0; i < d1; ++i) dot += qf[h * d + i] * kf[i];
      logit += qs[h * nb + b] * ks[b] * dot;
    }
    total += w[h] * std::max(logit, 0.0f);
  }
  return total;
}

void LoadKeyScales(const IndexKeyLayout& layout, const std::byte* row, int64_t nb, float* ks) {
  for (int64_t b = 0; b < nb; ++b) ks[b] = layout.scale(row, b);  // fixed-size unaligned reads
}

// ---- AVX-512 BF16 ------------------------------------------------------------------------------

// bf16 bit patterns of every e4m3 code (exact: e4m3 values are normal bf16 numbers).
const uint16_t* E4M3Bf16Table() {
  static const std::array<uint16_t, 256> table = [] {
    std::array<uint16_t, 256> t{};
    for (int c = 0; c < 256; ++c) t[c] = FloatToBF16(E4M3ToFloat(static_cast<uint8_t>(c)));
    return t;
  }();
  return table.data();
}

// 32 e4m3 codes → 32 bf16: normals re-bias the exponent (7 → 127: + 120 << 7), the 8
// subnormal magnitudes m·2^-9 come from a table, NaN (S.1111.111) stays NaN.
DSINFER_AVX512BF16 inline __m512i E4m3ToBf16x32(const uint8_t* codes) {
  const __m512i sub_table = _mm512_set_epi16(  // entries 0..7: bf16(m · 2^-9)
      0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  //
      0x3C60, 0x3C40, 0x3C20, 0x3C00, 0x3BC0, 0x3B80, 0x3B00, 0);
  const __m512i w =
      _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes)));
  const __m512i mag = _mm512_and_si512(w, _mm512_set1_epi16(0x7F));
  const __m512i normal = _mm512_add_epi16(_mm512_slli_epi16(mag, 4), _mm512_set1_epi16(0x3C00));
  const __m512i sub = _mm512_permutexvar_epi16(mag, sub_table);
  __m512i v =
      _mm512_mask_blend_epi16(_mm512_cmplt_epu16_mask(mag, _mm512_set1_epi16(8)), normal, sub);
  v = _mm512_mask_blend_epi16(_mm512_cmpeq_epi16_mask(mag, _mm512_set1_epi16(0x7F)), v,
                              _mm512_set1_epi16(0x7FC0));
  const __m512i sign = _mm512_slli_epi16(_mm512_and_si512(w, _mm512_set1_epi16(0x80)), 8);
  return _mm512_or_si512(v, sign);
}

// Adds to tot[kb] the weighted ReLU head sums of head vectors hv0 .. hv0+HB-1 (16 heads each)
// for KB keys. qt: [d/2, Hp] bf16 pairs, qs: [nb, Hp], w: [Hp]; keys: [KB, d/2] bf16 pairs,
// ks: [KB, nb]. Every key's arithmetic is the same whatever KB/HB (each lane is one head).
template <int KB, int HB>
DSINFER_AVX512BF16 inline void HeadBlockBf16(const float* qt, const float* qs, const float* w,
                                             int64_t Hp, int64_t hv0, const uint16_t* keys,
                                             const float* ks, int64_t d2, int64_t nb, __m512* tot) {
  __m512 logit[KB][HB];
  for (int64_t b = 0; b < nb; ++b) {
    __m512 acc[KB][HB];
    for (int kb = 0; kb < KB; ++kb)
      for (int hb = 0; hb < HB; ++hb) acc[kb][hb] = _mm512_setzero_ps();
    const int64_t j1 = std::min(d2, (b + 1) * kPairsPerBlock);
    for (int64_t j = b * kPairsPerBlock; j < j1; ++j) {
      __m512bh qv[HB];
      for (int hb = 0; hb < HB; ++hb)
        qv[hb] = (__m512bh)_mm512_loadu_si512(qt + j * Hp + (hv0 + hb) * 16);
      for (int kb = 0; kb < KB; ++kb) {
        int32_t pair;  // key values (2j, 2j+1)
        std::memcpy(&pair, keys + kb * 2 * d2 + 2 * j, 4);
        const __m512bh kv = (__m512bh)_mm512_set1_epi32(pair);
        for (int hb = 0; hb < HB; ++hb) acc[kb][hb] = _mm512_dpbf16_ps(acc[kb][hb], qv[hb], kv);
      }
    }
    for (int kb = 0; kb < KB; ++kb)
      for (int hb = 0; hb < HB; ++hb) {
        const __m512 qsks = _mm512_mul_ps(_mm512_loadu_ps(qs + b * Hp + (hv0 + hb) * 16),
                                          _mm512_set1_ps(ks[kb * nb + b]));
        logit[kb][hb] = b == 0 ? _mm512_mul_ps(acc[kb][hb], qsks)
                               : _mm512_fmadd_ps(acc[kb][hb], qsks, logit[kb][hb]);
      }
  }
  for (int hb = 0; hb < HB; ++hb) {
    const __m512 wv = _mm512_loadu_ps(w + (hv0 + hb) * 16);
    for (int kb = 0; kb < KB; ++kb)
      tot[kb] = _mm512_fmadd_ps(wv, _mm512_max_ps(logit[kb][hb], _mm512_setzero_ps()), tot[kb]);
  }
}

template <int KB>
DSINFER_AVX512BF16 void ScoreKeysBf16(const float* qt, const float* qs, const float* w, int64_t Hp,
                                      const uint16_t* keys, const float* ks, int64_t d2, int64_t nb,
                                      float* out) {
  __m512 tot[KB];
  for (int kb = 0; kb < KB; ++kb) tot[kb] = _mm512_setzero_ps();
  const int64_t nv = Hp / 16;
  int64_t hv = 0;
  for (; hv + 4 <= nv; hv += 4) HeadBlockBf16<KB, 4>(qt, qs, w, Hp, hv, keys, ks, d2, nb, tot);
  for (; hv < nv; ++hv) HeadBlockBf16<KB, 1>(qt, qs, w, Hp, hv, keys, ks, d2, nb, tot);
  for (int kb = 0; kb < KB; ++kb) out[kb] = _mm512_reduce_add_ps(tot[kb]);
}

DSINFER_AVX512BF16 void ConvertKeysBf16(const uint8_t* codes, int64_t d, uint16_t* out) {
  for (int64_t i = 0; i < d; i += 32) _mm512_storeu_si512(out + i, E4m3ToBf16x32(codes + i));
}

// The low and high bytes of E4M3Bf16Table's first 128 entries (the magnitudes), then the two
// interleave indices (word i of half h: bytes lo[32h + i], hi[32h + i]), 64-byte aligned for the
// byte permutes: [lo 0..63 | lo 64..127 | hi 0..63 | hi 64..127 | interleave 0 | interleave 1].
const uint8_t* Bf16ByteTables() {
  struct alignas(64) Tables {
    uint8_t b[6][64];
  };
  static const Tables tables = [] {
    Tables t{};
    const uint16_t* bf = E4M3Bf16Table();
    for (int m = 0; m < 128; ++m) {
      t.b[m / 64][m % 64] = static_cast<uint8_t>(bf[m] & 0xFF);
      t.b[2 + m / 64][m % 64] = static_cast<uint8_t>(bf[m] >> 8);
    }
    for (int h = 0; h < 2; ++h)
      for (int i = 0; i < 32; ++i) {
        t.b[4 + h][2 * i] = static_cast<uint8_t>(32 * h + i);
        t.b[4 + h][2 * i + 1] = static_cast<uint8_t>(64 + 32 * h + i);
      }
    return t;
  }();
  return &tables.b[0][0];
}

// 64 codes per step: vpermi2b looks the low and the high byte of each magnitude up (it reads
// index bits 0..6 only), the sign bit is or-ed into the high byte (bf16's sign bit is bit 15
// as e4m3's is bit 7: table[c | 0x80] = table[c] | 0x8000), and two two-source byte permutes
// interleave the bytes into 64 words. 5 vector operations instead of E4m3ToBf16x32's 24.
DSINFER_AVX512VBMI void ConvertKeysBf16Vbmi(const uint8_t* codes, int64_t d, uint16_t* out) {
  const uint8_t* t = Bf16ByteTables();
  const __m512i lo0 = _mm512_load_si512(t), lo1 = _mm512_load_si512(t + 64);
  const __m512i hi0 = _mm512_load_si512(t + 128), hi1 = _mm512_load_si512(t + 192);
  const __m512i il0 = _mm512_load_si512(t + 256), il1 = _mm512_load_si512(t + 320);
  const __m512i sign = _mm512_set1_epi8(static_cast<char>(0x80));
  for (int64_t i = 0; i < d; i += 64) {
    const __m512i c = _mm512_loadu_si512(codes + i);
    const __m512i lo = _mm512_permutex2var_epi8(lo0, c, lo1);
    const __m512i hi = _mm512_ternarylogic_epi32(_mm512_permutex2var_epi8(hi0, c, hi1), c, sign,
                                                 0xF8);  // hi | (c & 0x80)
    _mm512_storeu_si512(out + i, _mm512_permutex2var_epi8(lo, il0, hi));
    _mm512_storeu_si512(out + i + 32, _mm512_permutex2var_epi8(lo, il1, hi));
  }
}

// ---- AVX2 ------------------------------------------------------------------------------------

// As HeadBlockBf16 with 8-head f32 vectors: qt [d, Hp] f32, keys [KB, d] f32.
template <int KB, int HB>
DSINFER_AVX2 inline void HeadBlockAvx2(const float* qt, const float* qs, const float* w, int64_t Hp,
                                       int64_t hv0, const float* keys, const float* ks, int64_t d,
                                       int64_t nb, __m256* tot) {
  __m256 logit[KB][HB];
  for (int64_t b = 0; b < nb; ++b) {
    __m256 acc[KB][HB];
    for (int kb = 0; kb < KB; ++kb)
      for (int hb = 0; hb < HB; ++hb) acc[kb][hb] = _mm256_setzero_ps();
    const int64_t i1 = std::min(d, (b + 1) * kQuantBlock);
    for (int64_t i = b * kQuantBlock; i < i1; ++i) {
      __m256 qv[HB];
      for (int hb = 0; hb < HB; ++hb) qv[hb] = _mm256_loadu_ps(qt + i * Hp + (hv0 + hb) * 8);
      for (int kb = 0; kb < KB; ++kb) {
        const __m256 kv = _mm256_broadcast_ss(keys + kb * d + i);
        for (int hb = 0; hb < HB; ++hb) acc[kb][hb] = _mm256_fmadd_ps(qv[hb], kv, acc[kb][hb]);
      }
    }
    for (int kb = 0; kb < KB; ++kb)
      for (int hb = 0; hb < HB; ++hb) {
        const __m256 qsks = _mm256_mul_ps(_mm256_loadu_ps(qs + b * Hp + (hv0 + hb) * 8),
                                          _mm256_set1_ps(ks[kb * nb + b]));
        logit[kb][hb] = b == 0 ? _mm256_mul_ps(acc[kb][hb], qsks)
                               : _mm256_fmadd_ps(acc[kb][hb], qsks, logit[kb][hb]);
      }
  }
  for (int hb = 0; hb < HB; ++hb) {
    const __m256 wv = _mm256_loadu_ps(w + (hv0 + hb) * 8);
    for (int kb = 0; kb < KB; ++kb)
      tot[kb] = _mm256_fmadd_ps(wv, _mm256_max_ps(logit[kb][hb], _mm256_setzero_ps()), tot[kb]);
  }
}

DSINFER_AVX2 inline float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <int KB>
DSINFER_AVX2 void ScoreKeysAvx2(const float* qt, const float* qs, const float* w, int64_t Hp,
                                const float* keys, const float* ks, int64_t d, int64_t nb,
                                float* out) {
  __m256 tot[KB];
  for (int kb = 0; kb < KB; ++kb) tot[kb] = _mm256_setzero_ps();
  const int64_t nv = Hp / 8;
  int64_t hv = 0;
  for (; hv + 2 <= nv; hv += 2) HeadBlockAvx2<KB, 2>(qt, qs, w, Hp, hv, keys, ks, d, nb, tot);
  for (; hv < nv; ++hv) HeadBlockAvx2<KB, 1>(qt, qs, w, Hp, hv, keys, ks, d, nb, tot);
  for (int kb = 0; kb < KB; ++kb) out[kb] = HorizontalSum(tot[kb]);
}

}  // namespace

// ---- the scan: queries prepared once, key tiles converted once ------------------------------

// Per-query data in ws.qf_ (stride q_stride floats):
//  * scalar: qf [H, d] e4m3 values; scales/weights read from the caller's arrays.
//  * avx2:   qt [d, Hp] f32, qs [nb, Hp], w [Hp]        (Hp = H rounded up to 8, zero padded)
//  * bf16:   qt [d/2, Hp] bf16 pairs, qs [nb, Hp], w [Hp] (Hp = H rounded up to 16)
// Padded heads have zero weight and zero query, so they add exactly +0 to every score.
struct IndexerScan {
  IndexerPath path;
  int64_t H, d, nb, Hp, q_stride;
  int64_t row_bytes;  // of a key row (IndexKeyLayout)
  bool vbmi;  // key tiles through ConvertKeysBf16Vbmi (same bits, fewer operations)
  IndexerWorkspace& ws;
  const IndexerChunk& c;

  IndexerScan(IndexerPath p, const IndexerChunk& chunk, IndexerWorkspace& w)
      : path(p),
        H(chunk.n_heads),
        d(chunk.head_dim),
        nb(QuantBlocks(chunk.head_dim)),
        Hp(p == IndexerPath::kAvx512Bf16 ? RoundUp(H, 16)
           : p == IndexerPath::kAvx2     ? RoundUp(H, 8)
                                         : H),
        q_stride(p == IndexerPath::kScalar ? H * d
                 : p == IndexerPath::kAvx2 ? Hp * (d + nb + 1)
                                           : Hp * (d / 2 + nb + 1)),
        row_bytes(IndexKeyLayout{chunk.head_dim}.RowBytes()),
        vbmi(DetectCpu().avx512_vbmi && chunk.head_dim % 64 == 0),
        ws(w),
        c(chunk) {
    float* base = ws.Need(ws.qf_, c.n_queries * q_stride);
    for (int64_t s = 0; s < c.n_queries; ++s) PrepareQuery(s, base + s * q_stride);
    ws.Need(ws.key_scales_, kKeyTile * nb);
    ws.Need(ws.scores_, kKeyTile);
    ws.Need(ws.pf_rows_, kKeyTile);
    if (path == IndexerPath::kAvx512Bf16)
      ws.Need(ws.key_bf16_, kKeyTile * d);
    else
      ws.Need(ws.key_f32_, kKeyTile * d);
  }

  void PrepareQuery(int64_t s, float* out) const {
    const uint8_t* codes = c.codes + s * H * d;
    const float* scales = c.scales + s * H * nb;
    const float* weights = c.weights + s * H;
    const float* lut = E4M3Table();
    if (path == IndexerPath::kScalar) {
      for (int64_t i = 0; i < H * d; ++i) out[i] = lut[codes[i]];
      return;
    }
    const int64_t rows = path == IndexerPath::kAvx2 ? d : d / 2;
    std::fill(out, out + q_stride, 0.0f);
    float* qs = out + rows * Hp;
    float* w = qs + nb * Hp;
    const uint16_t* bf = E4M3Bf16Table();
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t i = 0; i < d; ++i) {
        const uint8_t code = codes[h * d + i];
        if (path == IndexerPath::kAvx2) {
          out[i * Hp + h] = lut[code];
        } else {  // bf16 pair (2j, 2j+1) in one 32-bit slot, low half first
          std::memcpy(reinterpret_cast<std::byte*>(&out[(i / 2) * Hp + h]) + 2 * (i % 2), &bf[code],
                      2);
        }
      }
      for (int64_t b = 0; b < nb; ++b) qs[b * Hp + h] = scales[h * nb + b];
      w[h] = weights[h];
    }
  }

  // Requests one key row into L2. A decode query reads every key row once, from DRAM, and
  // pages need not be adjacent, so without this the first touch of each row waits (the
  // conversion's first load took ~10% of the scan). L2, not L1: the query (16 KiB) and the bf16
  // tile (8 KiB) already fill most of L1. Memory schedule only.
  static void PrefetchRow(const std::byte* row, int64_t row_bytes) {
    const char* p = reinterpret_cast<const char*>(row);
    for (int64_t b = 0; b < row_bytes; b += 64) __builtin_prefetch(p + b, 0, 2);
    __builtin_prefetch(p + row_bytes - 1, 0, 2);
  }

  // Converts keys t0 .. t0+n-1 (n ≤ kKeyTile) into the workspace tile.
  void ConvertTile(const PagedRows& keys, int64_t t0, int64_t n) const {
    const IndexKeyLayout layout{d};
    const float* lut = E4M3Table();
    for (int64_t j = 0; j < n; ++j) {
      const std::byte* row = keys.row(t0 + j);
      LoadKeyScales(layout, row, nb, &ws.key_scales_[j * nb]);
      if (path == IndexerPath::kAvx512Bf16) {
        if (vbmi)
          ConvertKeysBf16Vbmi(layout.codes(row), d, &ws.key_bf16_[j * d]);
        else
          ConvertKeysBf16(layout.codes(row), d, &ws.key_bf16_[j * d]);
      } else {
        const uint8_t* codes = layout.codes(row);
        float* kf = &ws.key_f32_[j * d];
        for (int64_t i = 0; i < d; ++i) kf[i] = lut[codes[i]];
      }
    }
  }

  // Scores of query s against the first n keys of the tile → out [n].
  // pf / pf_n: key rows to request while scoring (the tile two ahead), spread over the key
  // quads so the requests do not arrive as one burst (null: none).
  void ScoreTile(int64_t s, int64_t n, float* out, const std::byte* const* pf = nullptr,
                 int64_t pf_n = 0) const {
    const float* q = ws.qf_.data() + s * q_stride;
    const float* ks = ws.key_scales_.data();
    switch (path) {
      case IndexerPath::kScalar: {
        const float* kf = ws.key_f32_.data();
        for (int64_t j = 0; j < n; ++j)
          out[j] = ScoreKeyScalar(q, c.scales + s * H * nb, c.weights + s * H, H, d, kf + j * d,
                                  ks + j * nb);
        return;
      }
      case IndexerPath::kAvx2: {
        const float *qs = q + d * Hp, *w = qs + nb * Hp, *kf = ws.key_f32_.data();
        int64_t j = 0;
        for (; j + 4 <= n; j += 4)
          ScoreKeysAvx2<4>(q, qs, w, Hp, kf + j * d, ks + j * nb, d, nb, out + j);
        for (; j < n; ++j) ScoreKeysAvx2<1>(q, qs, w, Hp, kf + j * d, ks + j * nb, d, nb, out + j);
        return;
      }
      case IndexerPath::kAvx512Bf16: {
        const int64_t d2 = d / 2;
        const float *qs = q + d2 * Hp, *w = qs + nb * Hp;
        const uint16_t* kb = ws.key_bf16_.data();
        int64_t j = 0;
        for (; j + 4 <= n; j += 4) {
          for (int64_t r = j; r < std::min(j + 4, pf_n); ++r) PrefetchRow(pf[r], row_bytes);
          ScoreKeysBf16<4>(q, qs, w, Hp, kb + j * d, ks + j * nb, d2, nb, out + j);
        }
        for (int64_t r = j; r < pf_n; ++r) PrefetchRow(pf[r], row_bytes);
        for (; j < n; ++j) ScoreKeysBf16<1>(q, qs, w, Hp, kb + j * d, ks + j * nb, d2, nb, out + j);
        return;
      }
    }
  }

  // Feeds keys [t_begin, t_end) to the streaming top-k of every query that needs scores
  // (k < p + 1), each only with its causal keys t ≤ p.
  void Scan(const PagedRows& keys, int64_t k, int64_t t_begin, int64_t t_end) const {
    const int64_t S = c.n_queries;
    const int64_t scored = std::max<int64_t>(0, k - c.first_pos);  // first s with k < p + 1
    for (int64_t t0 = t_begin; t0 < t_end; t0 += kKeyTile) {
      const int64_t n = std::min(kKeyTile, t_end - t0);
      // Queries that read this tile: scored ones with p ≥ t0.
      const int64_t first = std::max(scored, t0 - c.first_pos);
      if (first >= S) break;
      const int64_t pf_n = std::clamp<int64_t>(t_end - t0 - 2 * kKeyTile, 0, kKeyTile);
      for (int64_t j = 0; j < pf_n; ++j) ws.pf_rows_[j] = keys.row(t0 + 2 * kKeyTile + j);
      ConvertTile(keys, t0, n);
      for (int64_t s = first; s < S; ++s) {
        const int64_t p = c.first_pos + s;
        const int64_t m = std::min(n, p - t0 + 1);
        float* sc = ws.scores_.data();
        if (s == first)
          ScoreTile(s, m, sc, ws.pf_rows_.data(), pf_n);
        else
          ScoreTile(s, m, sc);
        StreamingTopK& top = Top(ws, s);
        for (int64_t j = 0; j < m; ++j) top.Push(sc[j], static_cast<int32_t>(t0 + j));
      }
    }
  }

  static StreamingTopK& Top(IndexerWorkspace& w, int64_t s) { return w.topk_[s]; }

  void ResetTopK(int64_t k) const {
    const int64_t cap = StreamingTopK::Capacity(k);
    TopKCandidate* buf = ws.Need(ws.cand_, c.n_queries * cap);
    StreamingTopK* tops = ws.Need(ws.topk_, c.n_queries);
    for (int64_t s = 0; s < c.n_queries; ++s) tops[s].Reset(k, buf + s * cap, cap);
  }
};

namespace {

// Throws Error(message) when `ok` is false; the message is built only then (no allocation on
// the hot path).
#define DSINFER_REQUIRE(ok, message) \
  do {                               \
    if (!(ok)) throw Error(message); \
  } while (0)

void Validate(const IndexerChunk& c, const PagedRows& keys, int64_t k, IndexerPath path,
              int64_t stride) {
  DSINFER_REQUIRE(c.n_queries >= 1 && c.n_heads >= 1 && c.head_dim >= 1 && c.first_pos >= 0,
                  "IndexerTopK: empty or negative shape (queries " + std::to_string(c.n_queries) +
                      ", heads " + std::to_string(c.n_heads) + ", head_dim " +
                      std::to_string(c.head_dim) + ", first position " +
                      std::to_string(c.first_pos) + ")");
  DSINFER_REQUIRE(k >= 1, "IndexerTopK: k must be >= 1, got " + std::to_string(k));
  DSINFER_REQUIRE(
      stride == 0 || stride >= k,
      "IndexerTopK: output row stride " + std::to_string(stride) + " < k " + std::to_string(k));
  DSINFER_REQUIRE(c.first_pos + c.n_queries - 1 <= INT32_MAX,
                  "IndexerTopK: positions exceed int32");
  const int64_t want = IndexKeyLayout{c.head_dim}.RowBytes();
  DSINFER_REQUIRE(keys.row_bytes == want, "IndexerTopK: key rows are " +
                                              std::to_string(keys.row_bytes) + " bytes, head_dim " +
                                              std::to_string(c.head_dim) + " needs " +
                                              std::to_string(want));
  DSINFER_REQUIRE(PathSupported(path, c.head_dim),
                  std::string("IndexerTopK: path ") + IndexerPathName(path) +
                      " is not supported on this CPU for head_dim " + std::to_string(c.head_dim));
}

// Writes query s's selection (the streaming result, or [0, p] when k ≥ p + 1).
void WriteSelection(const IndexerChunk& c, int64_t k, int64_t s, const TopKCandidate* cand,
                    int64_t n, int32_t* selected, int64_t stride) {
  int32_t* out = selected + s * stride;
  const int64_t p = c.first_pos + s;
  if (k >= p + 1) {
    std::iota(out, out + p + 1, 0);
    return;
  }
  for (int64_t i = 0; i < n; ++i) out[i] = cand[i].index;
}

}  // namespace

const char* IndexerPathName(IndexerPath p) {
  switch (p) {
    case IndexerPath::kScalar:
      return "scalar";
    case IndexerPath::kAvx2:
      return "avx2";
    case IndexerPath::kAvx512Bf16:
      return "avx512bf16";
  }
  return "?";
}

std::vector<IndexerPath> SupportedIndexerPaths(int64_t head_dim) {
  std::vector<IndexerPath> paths;
  for (IndexerPath p : {IndexerPath::kScalar, IndexerPath::kAvx2, IndexerPath::kAvx512Bf16})
    if (PathSupported(p, head_dim)) paths.push_back(p);
  return paths;
}

IndexerPath BestIndexerPath(int64_t head_dim) {
  for (IndexerPath p : {IndexerPath::kAvx512Bf16, IndexerPath::kAvx2})
    if (PathSupported(p, head_dim)) return p;
  return IndexerPath::kScalar;
}

void IndexerScores(const IndexerQuery& q, const PagedRows& keys, int64_t n_keys, float* out) {
  const float* lut = E4M3Table();
  const int64_t d = q.head_dim, nb = QuantBlocks(d);
  const IndexKeyLayout layout{d};
  DSINFER_DCHECK(keys.row_bytes == layout.RowBytes());
  std::vector<float> qf(q.n_heads * d);  // [n_heads, head_dim] e4m3 values (unscaled)
  for (int64_t i = 0; i < q.n_heads * d; ++i) qf[i] = lut[q.codes[i]];
  std::vector<float> kf(d), ks(nb);  // one key: [head_dim] unscaled values, [nb] scales
  for (int64_t t = 0; t < n_keys; ++t) {
    const std::byte* row = keys.row(t);
    const uint8_t* codes = layout.codes(row);
    for (int64_t i = 0; i < d; ++i) kf[i] = lut[codes[i]];
    LoadKeyScales(layout, row, nb, ks.data());
    out[t] = ScoreKeyScalar(qf.data(), q.scales, q.weights, q.n_heads, d, kf.data(), ks.data());
  }
}

void IndexerScores(const IndexerQuery& q, const PagedRows& keys, int64_t n_keys, float* out,
                   IndexerPath path, IndexerWorkspace& ws) {
  const IndexerChunk c{q.codes, q.scales, q.weights, 1, q.n_heads, q.head_dim, n_keys - 1};
  Validate(c, keys, 1, path, 0);
  const IndexerScan scan(path, c, ws);
  for (int64_t t0 = 0; t0 < n_keys; t0 += kKeyTile) {
    const int64_t n = std::min(kKeyTile, n_keys - t0);
    scan.ConvertTile(keys, t0, n);
    scan.ScoreTile(0, n, out + t0);
  }
}

void IndexerTopK(const IndexerChunk& q, const PagedRows& keys, int64_t k, int32_t* selected,
                 IndexerWorkspace& ws, IndexerPath path, int64_t stride) {
  Validate(q, keys, k, path, stride);
  if (stride == 0) stride = k;
  const IndexerScan scan(path, q, ws);
  scan.ResetTopK(k);
  scan.Scan(keys, k, 0, q.first_pos + q.n_queries);
  for (int64_t s = 0; s < q.n_queries; ++s) {
    StreamingTopK& top = IndexerScan::Top(ws, s);
    const int64_t n = top.Finish();
    WriteSelection(q, k, s, top.candidates(), n, selected, stride);
  }
}

namespace {

// Candidate buffers of the key-range split: one workspace per thread, and a merge buffer.
IndexerWorkspace& ThreadWorkspace() {
  static thread_local IndexerWorkspace ws;
  return ws;
}

}  // namespace

// The key range is cut into blocks dealt round robin (every thread gets work when there are at
// least as many blocks as threads); each thread streams its blocks in increasing order into one
// top-k per query, so it ends with the exact top-k of the keys it saw. The best k of the union of
// these lists is the best k of all keys.
void IndexerTopKSplitKeys(const IndexerChunk& q, const PagedRows& keys, int64_t k,
                          int32_t* selected, IndexerPath path, int64_t stride) {
  Validate(q, keys, k, path, stride);
  constexpr int kMaxThreads = 64;
  constexpr int64_t kBlockTiles = 64;  // 2048 keys per block
  const int64_t n_keys = q.first_pos + q.n_queries;
  const int64_t blocks = (n_keys + kBlockTiles * kKeyTile - 1) / (kBlockTiles * kKeyTile);
  const int nt = static_cast<int>(std::min<int64_t>({omp_get_max_threads(), kMaxThreads, blocks}));
  if (nt <= 1 || omp_in_parallel()) {
    IndexerTopK(q, keys, k, selected, ThreadWorkspace(), path, stride);
    return;
  }
  if (stride == 0) stride = k;
  std::array<IndexerWorkspace*, kMaxThreads> wss{};
  int n_th = 1;
#pragma omp parallel num_threads(nt)
  {
    DSINFER_NOTE_THREAD("indexer.scan");
    IndexerWorkspace& ws = ThreadWorkspace();
    wss[omp_get_thread_num()] = &ws;
#pragma omp single nowait
    n_th = omp_get_num_threads();
    const IndexerScan scan(path, q, ws);
    scan.ResetTopK(k);
#pragma omp for schedule(static, 1) nowait
    for (int64_t b = 0; b < blocks; ++b)
      scan.Scan(keys, k, b * kBlockTiles * kKeyTile,
                std::min(n_keys, (b + 1) * kBlockTiles * kKeyTile));
    for (int64_t s = 0; s < q.n_queries; ++s) IndexerScan::Top(ws, s).Finish();
  }  // the only barrier; the calling thread merges
  static thread_local std::vector<TopKCandidate> merge_buf;  // [threads · k], sized once
  if (static_cast<int64_t>(merge_buf.size()) < n_th * k) merge_buf.resize(n_th * k);
  for (int64_t s = 0; s < q.n_queries; ++s) {
    int64_t n = 0;
    for (int i = 0; i < n_th; ++i) {
      const StreamingTopK& part = IndexerScan::Top(*wss[i], s);
      std::copy_n(part.candidates(), part.size(), merge_buf.data() + n);
      n += part.size();
    }
    n = KeepBest(merge_buf.data(), n, k);
    WriteSelection(q, k, s, merge_buf.data(), n, selected, stride);
  }
}

std::vector<Bf16Conversion> SupportedBf16Conversions() {
  const CpuFeatures& cpu = DetectCpu();
  std::vector<Bf16Conversion> out{Bf16Conversion::kTable};
  if (cpu.best >= Isa::kAvx512 && cpu.avx512_bf16) out.push_back(Bf16Conversion::kAvx512);
  if (cpu.best >= Isa::kAvx512 && cpu.avx512_vbmi) out.push_back(Bf16Conversion::kAvx512Vbmi);
  return out;
}

void ConvertE4m3ToBf16(const uint8_t* codes, int64_t n, uint16_t* out, Bf16Conversion how) {
  const std::vector<Bf16Conversion> ok = SupportedBf16Conversions();
  DSINFER_CHECK(std::find(ok.begin(), ok.end(), how) != ok.end(),
                "this CPU cannot run the requested bf16 conversion");
  DSINFER_CHECK(how == Bf16Conversion::kTable || n % 64 == 0,
                "vector bf16 conversions need a multiple of 64 codes");
  switch (how) {
    case Bf16Conversion::kTable: {
      const uint16_t* bf = E4M3Bf16Table();
      for (int64_t i = 0; i < n; ++i) out[i] = bf[codes[i]];
      return;
    }
    case Bf16Conversion::kAvx512: return ConvertKeysBf16(codes, n, out);
    case Bf16Conversion::kAvx512Vbmi: return ConvertKeysBf16Vbmi(codes, n, out);
  }
}

}  // namespace dsinfer
