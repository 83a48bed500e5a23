// Rotary position embedding (docs/model.md §4, numerics.md §3). `RopeTable` holds the per-pair
// frequencies (YaRN-corrected when configured) and a cos/sin table grown on demand to cover
// the positions in use. Two layouts: interleaved pairs (2j, 2j+1) for MLA and halves
// (j, j + d/2) for the indexer. Not thread-safe while growing (`Reserve`); read-only after.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace dsinfer {

struct YarnParams {
  double factor = 40.0;
  int64_t original_max_position_embeddings = 4096;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
};

class RopeTable {
 public:
  RopeTable() = default;
  // `dim` = rotary dims (even); `base` = rope_theta.
  RopeTable(int64_t dim, double base, std::optional<YarnParams> yarn);

  int64_t dim() const { return dim_; }
  const std::vector<float>& freqs() const { return freqs_; }  // [dim/2]
  // Makes positions [0, n) available.
  void Reserve(int64_t n);
  const float* Cos(int64_t pos) const { return cos_.data() + pos * (dim_ / 2); }  // [dim/2]
  const float* Sin(int64_t pos) const { return sin_.data() + pos * (dim_ / 2); }

  // x[0..dim) rotated in place at position `pos`.
  void ApplyInterleaved(float* x, int64_t pos) const;
  void ApplyHalves(float* x, int64_t pos) const;

 private:
  int64_t dim_ = 0;
  int64_t positions_ = 0;
  std::vector<float> freqs_;  // [dim/2]
  std::vector<float> cos_;    // [positions, dim/2]
  std::vector<float> sin_;    // [positions, dim/2]
};

}  // namespace dsinfer
