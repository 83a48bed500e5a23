// `--dump-dir`: named intermediates of the forward pass as .npy files (docs/numerics.md "Dump
// format"), e.g. `L3.attn_in.npy`. Rows of successive forward calls are appended (so decode
// mode dumps the same tensors as one prefill); rows narrower than the widest row of the same
// name (index_scores over a growing context, topk) are padded with −inf / −1. Files are
// written by `Flush`. Not thread-safe: call from the forward pass's serial sections.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace dsinfer {

class Dumper {
 public:
  explicit Dumper(std::string dir);

  // Appends `rows` rows of `width` values to tensor `name` (layer < 0: no "L{layer}." prefix).
  void Put(int64_t layer, const std::string& name, const float* data, int64_t rows, int64_t width);
  void Put(int64_t layer, const std::string& name, const int32_t* data, int64_t rows,
           int64_t width);
  // Writes every tensor to DIR/<name>.npy. Throws Error naming the file on failure.
  void Flush() const;

 private:
  struct Rows {
    bool is_int = false;
    std::vector<std::vector<float>> f;    // [rows][width]
    std::vector<std::vector<int32_t>> i;  // [rows][width]
  };
  static std::string Key(int64_t layer, const std::string& name);
  std::string dir_;
  std::map<std::string, Rows> tensors_;
};

}  // namespace dsinfer
