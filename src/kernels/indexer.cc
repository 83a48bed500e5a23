#include "kernels/indexer.h"

#include <algorithm>
#include <vector>

#include "base/error.h"
#include "kernels/quant.h"
#include "kernels/weight.h"

namespace dsinfer {

void IndexerScores(const IndexerQuery& q, const PagedRows& keys, int64_t n_keys, float* out) {
  const float* lut = E4M3Table();
  const int64_t d = q.head_dim, nb = QuantBlocks(d);
  const IndexKeyLayout layout{d};
  DSINFER_DCHECK(keys.row_bytes == layout.RowBytes());
  std::vector<float> qf(q.n_heads * d);  // [n_heads, head_dim] e4m3 values (unscaled)
  for (int64_t i = 0; i < q.n_heads * d; ++i) qf[i] = lut[q.codes[i]];
  std::vector<float> kf(d);  // [head_dim] one key, unscaled
  for (int64_t t = 0; t < n_keys; ++t) {
    const std::byte* row = keys.row(t);
    const uint8_t* codes = layout.codes(row);
    for (int64_t i = 0; i < d; ++i) kf[i] = lut[codes[i]];
    float total = 0;
    for (int64_t h = 0; h < q.n_heads; ++h) {
      float logit = 0;
      for (int64_t b = 0; b < nb; ++b) {
        const int64_t d0 = b * kQuantBlock, d1 = std::min(d0 + kQuantBlock, d);
        float dot = 0;
        for (int64_t i = d0; i < d1; ++i) dot += qf[h * d + i] * kf[i];
        logit += q.scales[h * nb + b] * layout.scale(row, b) * dot;
      }
      total += q.weights[h] * std::max(logit, 0.0f);
    }
    out[t] = total;
  }
}

}  // namespace dsinfer
