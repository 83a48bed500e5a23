#include "format/ggml_quantize.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>

#include "base/error.h"
#include "format/dtype.h"

namespace dsinfer {
namespace {

constexpr int kQK = 256;  // K-quant super-block

void StoreU16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v & 0xFF);
  p[1] = static_cast<uint8_t>(v >> 8);
}

// The smallest f16 ≥ v (v ≥ 0, finite): scales are rounded up so that no element is clamped.
uint16_t F16AtLeast(float v, const std::string& what) {
  uint16_t h = FloatToF16(v);
  while (F16ToFloat(h) < v) ++h;
  if (!std::isfinite(F16ToFloat(h)))
    throw Error(what + "a block scale of " + std::to_string(v) +
                " exceeds the f16 range (weights above about 8e6 in magnitude)");
  return h;
}

// ceil(need / step) clamped to [0, top]; `step` > 0.
int CeilSteps(float need, float step, int top) {
  if (need <= 0) return 0;
  const int k = static_cast<int>(std::ceil(need / step));
  return std::clamp(k, 0, top);
}

int RoundClamp(float v, int lo, int hi) {
  return std::clamp(static_cast<int>(std::nearbyint(v)), lo, hi);
}

void EncodeQ8_0(const float* x, uint8_t* b, const std::string& what) {
  float amax = 0;
  for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[i]));
  const uint16_t dh = F16AtLeast(amax / 127.0f, what);
  const float d = F16ToFloat(dh);
  StoreU16(b, dh);
  for (int i = 0; i < 32; ++i) {
    const int q = d > 0 ? RoundClamp(x[i] / d, -127, 127) : 0;
    b[2 + i] = static_cast<uint8_t>(static_cast<int8_t>(q));
  }
}

// Q4_K (levels 15, qh null) or Q5_K (levels 31): x ≈ (d·sc_j)·q − dmin·m_j, q in [0, levels].
void EncodeK4or5(const float* x, int levels, uint8_t* b, uint8_t* qh, uint8_t* qs,
                 const std::string& what) {
  float neg_min[8], top[8];
  float max_neg_min = 0;
  for (int j = 0; j < 8; ++j) {
    float mn = 0, mx = 0;
    for (int l = 0; l < 32; ++l) {
      mn = std::min(mn, x[32 * j + l]);
      mx = std::max(mx, x[32 * j + l]);
    }
    neg_min[j] = -mn;
    top[j] = mx;
    max_neg_min = std::max(max_neg_min, neg_min[j]);
  }
  const uint16_t dmin_h = F16AtLeast(max_neg_min / 63.0f, what);
  const float dmin = F16ToFloat(dmin_h);
  int m[8];
  float offset[8], need[8];
  float max_need = 0;
  for (int j = 0; j < 8; ++j) {
    m[j] = dmin > 0 ? CeilSteps(neg_min[j], dmin, 63) : 0;
    offset[j] = dmin * static_cast<float>(m[j]);
    need[j] = (top[j] + offset[j]) / static_cast<float>(levels);
    max_need = std::max(max_need, need[j]);
  }
  const uint16_t d_h = F16AtLeast(max_need / 63.0f, what);
  const float d = F16ToFloat(d_h);
  int sc[8];
  for (int j = 0; j < 8; ++j) sc[j] = d > 0 ? CeilSteps(need[j], d, 63) : 0;
  StoreU16(b, d_h);
  StoreU16(b + 2, dmin_h);
  uint8_t* scales = b + 4;
  for (int j = 0; j < 4; ++j) {
    scales[j] = static_cast<uint8_t>((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
    scales[j + 4] = static_cast<uint8_t>((m[j] & 63) | ((m[j + 4] >> 4) << 6));
    scales[j + 8] = static_cast<uint8_t>((sc[j + 4] & 15) | ((m[j + 4] & 15) << 4));
  }
  std::memset(qs, 0, 128);
  if (qh) std::memset(qh, 0, 32);
  for (int e = 0; e < kQK; ++e) {
    const int chunk = e / 64, half = (e / 32) % 2, l = e % 32, j = 2 * chunk + half;
    const float step = d * static_cast<float>(sc[j]);
    const int q = step > 0 ? RoundClamp((x[e] + offset[j]) / step, 0, levels) : 0;
    qs[32 * chunk + l] |= static_cast<uint8_t>((q & 15) << (4 * half));
    if (qh && q >= 16) qh[l] |= static_cast<uint8_t>(1u << j);
  }
}

// Q6_K: x ≈ (d·scales[j])·(u − 32), u in [0, 63], sub-block j = elements [16j, 16j + 16).
void EncodeQ6_K(const float* x, uint8_t* b, const std::string& what) {
  uint8_t *ql = b, *qh = b + 128;
  float need[16], max_need = 0;
  for (int j = 0; j < 16; ++j) {
    float amax = 0;
    for (int l = 0; l < 16; ++l) amax = std::max(amax, std::fabs(x[16 * j + l]));
    need[j] = amax / 31.0f;
    max_need = std::max(max_need, need[j]);
  }
  const uint16_t d_h = F16AtLeast(max_need / 127.0f, what);
  const float d = F16ToFloat(d_h);
  int sc[16];
  for (int j = 0; j < 16; ++j) {
    sc[j] = d > 0 ? CeilSteps(need[j], d, 127) : 0;
    b[192 + j] = static_cast<uint8_t>(static_cast<int8_t>(sc[j]));
  }
  StoreU16(b + 208, d_h);
  std::memset(ql, 0, 128);
  std::memset(qh, 0, 64);
  for (int e = 0; e < kQK; ++e) {
    const int n = e / 128, r = e % 128, k = r / 32, l = r % 32;
    const float step = d * static_cast<float>(sc[e / 16]);
    const int u = (step > 0 ? RoundClamp(x[e] / step, -32, 31) : 0) + 32;
    ql[64 * n + l + 32 * (k % 2)] |= static_cast<uint8_t>((u & 15) << (k < 2 ? 0 : 4));
    qh[32 * n + l] |= static_cast<uint8_t>((u >> 4) << (2 * k));
  }
}

// ---- IQ4_NL / IQ4_XS: x ≈ step · L[index] with the 16 non-uniform levels L = kIq4Levels
// (−127 … 113), dense near zero. A step that keeps every x/step inside the levels' range
// ("range-safe", as the other encoders) wastes them on a block's extremes: the levels are few
// where those land. So each 32-element block searches a few signed steps — both signs, and the
// range-safe magnitude shrunk by 0 to 36%, and 0 — and keeps the one with the least squared
// error (the range-safe step and 0 are candidates, so the search is never worse than either);
// each element takes the level nearest to x/step, clamped at the ends of the range when the
// step is smaller.

// Range-safe magnitudes for a positive step (the block's max meets 113, its min −127) and for a
// negative one (its min meets 113·|step|, its max −127·|step|); mn ≤ 0 ≤ mx.
void Iq4SafeSteps(float mn, float mx, float& pos, float& neg) {
  pos = std::max(mx / 113.0f, -mn / 127.0f);
  neg = std::max(-mn / 113.0f, mx / 127.0f);
}

// The index of the level nearest to v (the lower on a tie; v beyond the ends takes the end):
// the number of midpoints m below v. The midpoints are halves of integers, so for each of them
// m < v ⟺ 2m ≤ ceil(2v) − 1, and that count is a table indexed by ceil(2v) − 1 (the encoders
// call this up to 16 times per element, so it is their inner loop: a table, not a search).
constexpr int kIq4TableLo = kIq4Levels[0] + kIq4Levels[1] - 1;    // below: no midpoint ≤ n
constexpr int kIq4TableHi = kIq4Levels[14] + kIq4Levels[15];      // from here: all 15
constexpr std::array<uint8_t, kIq4TableHi - kIq4TableLo + 1> Iq4CountTable() {
  std::array<uint8_t, kIq4TableHi - kIq4TableLo + 1> t{};
  for (int n = kIq4TableLo; n <= kIq4TableHi; ++n)
    for (int i = 0; i < 15; ++i)
      if (kIq4Levels[i] + kIq4Levels[i + 1] <= n) ++t[n - kIq4TableLo];
  return t;
}
constexpr auto kIq4Count = Iq4CountTable();

}  // namespace

int Iq4Nearest(float v) {
  // |v| ≤ 128 keeps 2v exact and the integer small; beyond it the end levels are nearest anyway.
  const int n = static_cast<int>(std::ceil(2.0f * std::clamp(v, -128.0f, 128.0f))) - 1;
  return kIq4Count[std::clamp(n, kIq4TableLo, kIq4TableHi) - kIq4TableLo];
}

namespace {

// Squared error of 32 elements at decoded step `step` (each at its nearest level), or any value
// ≥ `stop` once the partial sum reaches it (the callers keep only errors below the best so far).
double Iq4Error(const float* x, float step, double stop = std::numeric_limits<double>::infinity()) {
  double e2 = 0;
  for (int i = 0; i < 32 && e2 < stop; ++i) {
    const float y = step * static_cast<float>(kIq4Levels[Iq4Nearest(step != 0 ? x[i] / step : 0)]);
    e2 += (double(x[i]) - y) * (double(x[i]) - y);
  }
  return e2;
}

// 32 elements into qs[16] (element i < 16: low nibble of qs[i], i + 16: high) with the decoded
// step `step` (0: every element takes the level nearest 0, whose value decodes to 0).
void Iq4Codes(const float* x, float step, uint8_t* qs) {
  for (int i = 0; i < 16; ++i) {
    const int lo = Iq4Nearest(step != 0 ? x[i] / step : 0.0f);
    const int hi = Iq4Nearest(step != 0 ? x[i + 16] / step : 0.0f);
    qs[i] = static_cast<uint8_t>(lo | (hi << 4));
  }
}

void MinMax(const float* x, int n, float& mn, float& mx) {
  mn = 0;
  mx = 0;
  for (int i = 0; i < n; ++i) {
    mn = std::min(mn, x[i]);
    mx = std::max(mx, x[i]);
  }
}

// The range-safe magnitude shrunk by these factors (the first: unshrunk).
constexpr float kIq4Shrink[] = {1.0f, 0.94f, 0.88f, 0.82f, 0.76f, 0.70f, 0.64f};

// The largest finite f16.
constexpr float kF16Max = 65504.0f;

void EncodeIQ4_NL(const float* x, uint8_t* b, const std::string& what) {
  float mn, mx, safe[2];
  MinMax(x, 32, mn, mx);
  Iq4SafeSteps(mn, mx, safe[0], safe[1]);
  // The levels have no 0: a block far below the smallest f16 step is best stored as step 0
  // (every element decodes to 0), which is therefore a candidate too.
  uint16_t best_h = 0;
  double best = Iq4Error(x, 0.0f);
  bool fits = false;
  for (int sign = 0; sign < 2; ++sign) {
    if (safe[sign] > kF16Max) continue;  // a sign whose range-safe step is beyond f16
    fits = true;
    for (float f : kIq4Shrink) {
      // An f16 step (its magnitude rounded up: the unshrunk one stays range-safe).
      const auto h = static_cast<uint16_t>(F16AtLeast(safe[sign] * f, what) | (sign ? 0x8000 : 0));
      const double e = Iq4Error(x, F16ToFloat(h), best);
      if (e < best) {
        best = e;
        best_h = h;
      }
    }
  }
  if (!fits) F16AtLeast(std::min(safe[0], safe[1]), what);  // throws, naming the scale
  StoreU16(b, best_h);
  Iq4Codes(x, F16ToFloat(best_h), b + 2);
}

// IQ4_XS: sub-block j's signed step d·(ls_j − 32) with the super-block's f16 d ≥ 0 chosen so
// that every sub-block's range-safe step (of the smaller sign) fits in 31 steps of d; the search
// runs over the representable steps d·k, k = ±(the range-safe count shrunk as above, at most 31).
void EncodeIQ4_XS(const float* x, uint8_t* b, const std::string& what) {
  float safe[8][2], max_safe = 0;
  for (int j = 0; j < 8; ++j) {
    float mn, mx;
    MinMax(x + 32 * j, 32, mn, mx);
    Iq4SafeSteps(mn, mx, safe[j][0], safe[j][1]);
    max_safe = std::max(max_safe, std::min(safe[j][0], safe[j][1]));
  }
  const uint16_t d_h = F16AtLeast(max_safe / 31.0f, what);
  const float d = F16ToFloat(d_h);
  StoreU16(b, d_h);
  uint16_t scales_h = 0;
  std::memset(b + 4, 0, 4);
  for (int j = 0; j < 8; ++j) {
    // Step 0 (ls = 32) is a candidate: a sub-block far below the others' d decodes best to 0.
    int best_k = 0;
    double best = Iq4Error(x + 32 * j, 0.0f);
    for (int sign = 0; sign < 2; ++sign) {
      int last = -1;
      for (float f : kIq4Shrink) {
        const int k = d > 0 ? CeilSteps(safe[j][sign] * f, d, 31) : 0;
        if (k == last || k == 0) continue;
        last = k;
        const int sk = sign ? -k : k;
        const double e = Iq4Error(x + 32 * j, d * static_cast<float>(sk), best);
        if (e < best) {
          best = e;
          best_k = sk;
        }
      }
    }
    const int ls = best_k + 32;  // 1..63
    b[4 + j / 2] |= static_cast<uint8_t>((ls & 15) << (4 * (j % 2)));
    scales_h |= static_cast<uint16_t>((ls >> 4) << (2 * j));
    Iq4Codes(x + 32 * j, d * static_cast<float>(best_k), b + 8 + 16 * j);
  }
  StoreU16(b + 2, scales_h);
}

}  // namespace

size_t GgmlRowBytes(GgmlType t, int64_t n) {
  const GgmlTypeInfo& info = GgmlTypeOf(t);
  return static_cast<size_t>(n / info.block_elems) * info.block_bytes;
}

void QuantizeRow(GgmlType t, std::span<const float> x, std::span<std::byte> out,
                 std::string_view what) {
  const GgmlTypeInfo& info = GgmlTypeOf(t);
  const std::string prefix = what.empty() ? std::string() : std::string(what) + ": ";
  const int64_t n = static_cast<int64_t>(x.size());
  if (n % info.block_elems != 0 || out.size() != GgmlRowBytes(t, n))
    throw Error(prefix + "a " + std::string(info.name) + " row of " + std::to_string(n) +
                " elements needs whole blocks of " + std::to_string(info.block_elems) + " and " +
                std::to_string(GgmlRowBytes(t, n)) + " bytes, got " + std::to_string(out.size()));
  auto* o = reinterpret_cast<uint8_t*>(out.data());
  const float* s = x.data();
  if (t != GgmlType::kF32 && t != GgmlType::kF16 && t != GgmlType::kBF16) {
    for (int64_t i = 0; i < n; ++i)
      if (!std::isfinite(s[i]))
        throw Error(prefix + "element " + std::to_string(i) + " is not finite (" +
                    std::to_string(s[i]) + "): it cannot be stored as " + std::string(info.name));
  }
  const int64_t blocks = n / info.block_elems;
  switch (t) {
    case GgmlType::kF32:
      std::memcpy(o, s, out.size());
      break;
    case GgmlType::kF16:
      for (int64_t i = 0; i < n; ++i) StoreU16(o + 2 * i, FloatToF16(s[i]));
      break;
    case GgmlType::kBF16:
      for (int64_t i = 0; i < n; ++i) StoreU16(o + 2 * i, FloatToBF16(s[i]));
      break;
    case GgmlType::kQ8_0:
      for (int64_t i = 0; i < blocks; ++i) EncodeQ8_0(s + 32 * i, o + 34 * i, prefix);
      break;
    case GgmlType::kQ4_K:
      for (int64_t i = 0; i < blocks; ++i) {
        uint8_t* b = o + 144 * i;
        EncodeK4or5(s + kQK * i, 15, b, /*qh=*/nullptr, /*qs=*/b + 16, prefix);
      }
      break;
    case GgmlType::kQ5_K:
      for (int64_t i = 0; i < blocks; ++i) {
        uint8_t* b = o + 176 * i;
        EncodeK4or5(s + kQK * i, 31, b, /*qh=*/b + 16, /*qs=*/b + 48, prefix);
      }
      break;
    case GgmlType::kQ6_K:
      for (int64_t i = 0; i < blocks; ++i) EncodeQ6_K(s + kQK * i, o + 210 * i, prefix);
      break;
    case GgmlType::kIQ4_NL:
      for (int64_t i = 0; i < blocks; ++i) EncodeIQ4_NL(s + 32 * i, o + 18 * i, prefix);
      break;
    case GgmlType::kIQ4_XS:
      for (int64_t i = 0; i < blocks; ++i) EncodeIQ4_XS(s + kQK * i, o + 136 * i, prefix);
      break;
    default:
      throw Error(prefix + "ggml type " + std::string(info.name) + " cannot be encoded");
  }
}

}  // namespace dsinfer
