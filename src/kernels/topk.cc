#include "kernels/topk.h"

#include <algorithm>
#include <numeric>

#include "base/error.h"

namespace dsinfer {

std::vector<int32_t> TopK(const float* scores, int64_t n, int64_t k) {
  DSINFER_CHECK(k >= 0 && k <= n, "TopK: k out of range");
  std::vector<int32_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  // A strict total order (score desc, index asc), so the selected set is unique.
  auto before = [scores](int32_t a, int32_t b) {
    return scores[a] > scores[b] || (scores[a] == scores[b] && a < b);
  };
  if (k < n) std::nth_element(idx.begin(), idx.begin() + k, idx.end(), before);
  idx.resize(k);
  std::sort(idx.begin(), idx.end());
  return idx;
}

}  // namespace dsinfer
