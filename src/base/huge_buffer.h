// Large, long-lived zero-initialised buffers (KV cache pages) backed by transparent huge pages
// where the kernel allows: an anonymous mapping aligned to 2 MiB and advised MADV_HUGEPAGE.
// The kernels read cache rows scattered over gigabytes (the 2048 rows a sparse query selects,
// every indexer key of a long context); with 4 KiB pages most of those reads also miss the TLB
// (docs/kernels.md "Memory"). Without THP support the advice is ignored and this is plain
// mmap'd memory. Move-only; not thread-safe.
#pragma once

#include <cstddef>

namespace dsinfer {

class HugeBuffer {
 public:
  HugeBuffer() = default;
  // Throws Error naming the size if the memory cannot be mapped.
  explicit HugeBuffer(size_t bytes);
  HugeBuffer(HugeBuffer&& other) noexcept;
  HugeBuffer& operator=(HugeBuffer&& other) noexcept;
  HugeBuffer(const HugeBuffer&) = delete;
  HugeBuffer& operator=(const HugeBuffer&) = delete;
  ~HugeBuffer();

  std::byte* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  std::byte* data_ = nullptr;
  size_t size_ = 0;     // requested
  size_t mapped_ = 0;   // mapped at data_ (size_ rounded up)
};

}  // namespace dsinfer
