// Top-k selection with the project-wide tie rule: larger score first, equal scores → lower index
// wins (docs/numerics.md §8).
//  * TopK: partial selection (nth_element) over a materialised score array — the specification.
//  * StreamingTopK: the same selection over scores pushed one at a time in ascending index order,
//    keeping only a bounded candidate buffer (never the whole score array): scores at or below the
//    current k-th best are rejected on arrival (an equal score arriving later has a higher index,
//    so it loses the tie), and the buffer is cut back to the k best whenever it fills.
//    The selected set is exactly TopK's on the same scores.
// Thread-safety: TopK is a pure function; a StreamingTopK is used by one thread at a time.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

namespace dsinfer {

// Indices of the k largest of scores[0..n) (k ≤ n), returned in ascending index order.
std::vector<int32_t> TopK(const float* scores, int64_t n, int64_t k);

struct TopKCandidate {
  float score;
  int32_t index;
};

// TopK without allocation: scratch [n] caller-provided, out [k] ascending indices (k ≤ n).
void TopK(const float* scores, int64_t n, int64_t k, TopKCandidate* scratch, int32_t* out);

// Keeps the min(k, n) best of cand[0..n) (tie rule above) in cand[0..), sorted by ascending
// index, and returns their count (merges the candidate lists of several selections, e.g. of a
// key-range split: the best k of a union are the best k of the union of each part's best k).
int64_t KeepBest(TopKCandidate* cand, int64_t n, int64_t k);

class StreamingTopK {
 public:
  // Capacity a candidate buffer for `k` should have: one cut per `k` accepted candidates.
  static int64_t Capacity(int64_t k) { return 2 * k + 16; }

  // Starts a selection of the k ≥ 1 best into `buf` [capacity] (capacity > k; not owned).
  void Reset(int64_t k, TopKCandidate* buf, int64_t capacity);

  // Offers key `index`; indices must increase from one call to the next (within a Reset).
  void Push(float score, int32_t index) {
    if (score > threshold_ || !cut_) {
      buf_[n_++] = {score, index};
      if (n_ == cap_) Cut();
    }
  }
  // Ends the selection: keeps the min(k, pushed) best, sorted by ascending index, and returns
  // their count; they stay readable through candidates() until the next Reset.
  int64_t Finish();
  const TopKCandidate* candidates() const { return buf_; }
  int64_t size() const { return n_; }  // candidates currently held

 private:
  void Cut();  // keeps the k best of buf_[0..n_) and raises threshold_ to the k-th best

  TopKCandidate* buf_ = nullptr;
  int64_t k_ = 0, cap_ = 0, n_ = 0;
  float threshold_ = -INFINITY;
  bool cut_ = false;  // threshold_ is meaningful only after the first cut
};

}  // namespace dsinfer
