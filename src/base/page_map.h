// How much of a memory range this process has in its own page tables (/proc/self/pagemap):
// the pages it has touched (or that the kernel mapped for it around a touched page), whether
// in RAM or swapped out. Unlike the page cache (mincore), this is per process: a file page
// that another process read is not counted here until this process maps it.
// Used to measure each MPI rank's resident share of the routed experts (docs/mpi.md).
// Not thread-safe (one reader, one scratch buffer).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace dsinfer {

class PageMap {
 public:
  // Opens /proc/self/pagemap; throws Error when it cannot (not Linux, or /proc not mounted).
  PageMap();
  ~PageMap();
  PageMap(const PageMap&) = delete;
  PageMap& operator=(const PageMap&) = delete;

  // Bytes of [data, data + n) that lie on pages mapped in this process (each mapped page
  // counts for its overlap with the range, so ranges sharing a page split it exactly).
  int64_t MappedBytes(const void* data, size_t n);

 private:
  int fd_ = -1;
  size_t page_ = 4096;
  std::vector<uint64_t> entries_;  // [pages] pagemap entries of one read
};

}  // namespace dsinfer
