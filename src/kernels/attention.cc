#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "base/error.h"
#include "kernels/linear.h"

namespace dsinfer {

namespace {

constexpr int64_t kTile = 64;  // cached rows decoded at once

struct HeadState {
  float m = -INFINITY;  // running max
  double l = 0;         // running Σ exp(s - m)
};

// Folds one tile of decoded rows `kv` [n, width] into head h's running state and output.
void FoldTile(const MlaQuery& q, int64_t h, const float* kv, int64_t n, int64_t kv_lora,
              int64_t width, HeadState& st, float* o, float* s /*[kTile]*/) {
  const int64_t rope = width - kv_lora;
  float tile_max = -INFINITY;
  for (int64_t j = 0; j < n; ++j) {
    const float* row = kv + j * width;
    s[j] = q.scale * (Dot(q.q_abs + h * kv_lora, row, kv_lora) +
                      Dot(q.q_pe + h * rope, row + kv_lora, rope));
    tile_max = std::max(tile_max, s[j]);
  }
  const float m_new = std::max(st.m, tile_max);
  const float corr = std::exp(st.m - m_new);  // 0 on the first tile (m = -inf)
  st.l *= corr;
  for (int64_t c = 0; c < kv_lora; ++c) o[c] *= corr;
  for (int64_t j = 0; j < n; ++j) {
    const float p = std::exp(s[j] - m_new);
    st.l += p;
    const float* row = kv + j * width;
    for (int64_t c = 0; c < kv_lora; ++c) o[c] += p * row[c];
  }
  st.m = m_new;
}

}  // namespace

void SparseMlaAttention(const MlaQuery& q, const LatentLayout& layout, const PagedRows& cache,
                        const int32_t* selected, int64_t n_selected, float* o_lat) {
  DSINFER_CHECK(n_selected >= 1, "attention over an empty set");
  DSINFER_DCHECK(cache.row_bytes == layout.RowBytes());
  const int64_t kv_lora = layout.kv_lora_rank, width = layout.width();
  std::vector<float> kv(kTile * width);  // [kTile, kv_lora + rope] gathered, decoded rows
  std::vector<float> s(kTile);           // [kTile] scores of one head
  std::vector<HeadState> st(q.n_heads);
  std::fill(o_lat, o_lat + q.n_heads * kv_lora, 0.0f);
  for (int64_t t0 = 0; t0 < n_selected; t0 += kTile) {
    const int64_t n = std::min(kTile, n_selected - t0);
    for (int64_t j = 0; j < n; ++j)
      layout.Decode(cache.row(selected[t0 + j]), &kv[j * width]);
    for (int64_t h = 0; h < q.n_heads; ++h)
      FoldTile(q, h, kv.data(), n, kv_lora, width, st[h], o_lat + h * kv_lora, s.data());
  }
  for (int64_t h = 0; h < q.n_heads; ++h) {
    const float inv = static_cast<float>(1.0 / st[h].l);
    for (int64_t c = 0; c < kv_lora; ++c) o_lat[h * kv_lora + c] *= inv;
  }
}

}  // namespace dsinfer
