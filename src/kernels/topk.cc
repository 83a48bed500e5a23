#include "kernels/topk.h"

#include <algorithm>
#include <numeric>

#include "base/error.h"

namespace dsinfer {

namespace {

// The strict total order of the tie rule (score desc, index asc): the selected set is unique.
bool Better(const TopKCandidate& a, const TopKCandidate& b) {
  return a.score > b.score || (a.score == b.score && a.index < b.index);
}

}  // namespace

std::vector<int32_t> TopK(const float* scores, int64_t n, int64_t k) {
  DSINFER_CHECK(k >= 0 && k <= n, "TopK: k out of range");
  std::vector<int32_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  auto before = [scores](int32_t a, int32_t b) {
    return scores[a] > scores[b] || (scores[a] == scores[b] && a < b);
  };
  if (k < n) std::nth_element(idx.begin(), idx.begin() + k, idx.end(), before);
  idx.resize(k);
  std::sort(idx.begin(), idx.end());
  return idx;
}

void StreamingTopK::Reset(int64_t k, TopKCandidate* buf, int64_t capacity) {
  DSINFER_CHECK(k >= 1 && capacity > k, "StreamingTopK: need k >= 1 and capacity > k");
  buf_ = buf;
  k_ = k;
  cap_ = capacity;
  n_ = 0;
  threshold_ = -INFINITY;
  cut_ = false;
}

void StreamingTopK::Cut() {
  std::nth_element(buf_, buf_ + (k_ - 1), buf_ + n_, Better);
  threshold_ = buf_[k_ - 1].score;  // everything kept is at least as good as this one
  n_ = k_;
  cut_ = true;
}

int64_t KeepBest(TopKCandidate* cand, int64_t n, int64_t k) {
  if (n > k) {
    std::nth_element(cand, cand + (k - 1), cand + n, Better);
    n = k;
  }
  std::sort(cand, cand + n,
            [](const TopKCandidate& a, const TopKCandidate& b) { return a.index < b.index; });
  return n;
}

void TopK(const float* scores, int64_t n, int64_t k, TopKCandidate* scratch, int32_t* out) {
  DSINFER_CHECK(k >= 0 && k <= n, "TopK: k out of range");
  if (k == 0) return;
  for (int64_t i = 0; i < n; ++i) scratch[i] = {scores[i], static_cast<int32_t>(i)};
  KeepBest(scratch, n, k);
  for (int64_t i = 0; i < k; ++i) out[i] = scratch[i].index;
}

int64_t StreamingTopK::Finish() {
  n_ = KeepBest(buf_, n_, k_);
  return n_;
}

}  // namespace dsinfer
