// Base of the kernels' caller-owned scratch (IndexerWorkspace, MlaWorkspace): buffers that grow
// to the largest call and are then reused, so a warmed-up kernel call allocates nothing.
// `grow_count()` lets tests check that. Not thread-safe: one thread uses a workspace at a time.
#pragma once

#include <cstdint>
#include <vector>

namespace dsinfer {

class GrowOnlyWorkspace {
 public:
  int64_t grow_count() const { return grows_; }  // how often a buffer had to grow

 protected:
  // `v` with at least `n` elements (grown, never shrunk).
  template <class T>
  T* Need(std::vector<T>& v, int64_t n) {
    if (static_cast<int64_t>(v.size()) < n) {
      v.resize(n);
      ++grows_;
    }
    return v.data();
  }

 private:
  int64_t grows_ = 0;
};

}  // namespace dsinfer
