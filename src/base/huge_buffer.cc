#include "base/huge_buffer.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

#include "base/error.h"

namespace dsinfer {

namespace {
constexpr size_t kHuge = size_t{2} << 20;  // x86-64 transparent huge page
}

HugeBuffer::HugeBuffer(size_t bytes) : size_(bytes) {
  if (bytes == 0) return;
  // Below one huge page the alignment would only waste memory: a plain mapping.
  const bool huge = bytes >= kHuge;
  // The mapping ends at the last 4 KiB page the buffer uses, not at a 2 MiB boundary: a huge
  // page needs its whole aligned 2 MiB inside the mapping, so the tail past the last whole one
  // gets 4 KiB pages and costs only what it uses. (Rounded up to 2 MiB, its first write took a
  // whole huge page: +1.9 MiB on a 671B expert's 8.1 MiB repacked matrix, tens of GiB over a
  // model's 44,000 of them.)
  const size_t page = 4096;
  mapped_ = (bytes + page - 1) / page * page;
  const size_t reserve = huge ? mapped_ + kHuge : mapped_;  // room to align the start
  void* p = ::mmap(nullptr, reserve, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    throw Error("cannot allocate " + std::to_string(bytes) + " bytes: " + std::strerror(errno));
  auto* base = static_cast<std::byte*>(p);
  if (huge) {  // trim to a 2 MiB-aligned [start, start + mapped_)
    const auto addr = reinterpret_cast<uintptr_t>(base);
    const size_t head = (kHuge - addr % kHuge) % kHuge;
    if (head > 0) ::munmap(base, head);
    if (kHuge - head > 0) ::munmap(base + head + mapped_, kHuge - head);
    base += head;
    // Advice for the whole huge pages only; failure (no THP) changes nothing.
    ::madvise(base, mapped_ / kHuge * kHuge, MADV_HUGEPAGE);
  }
  data_ = base;
}

HugeBuffer::HugeBuffer(HugeBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      mapped_(std::exchange(other.mapped_, 0)) {}

HugeBuffer& HugeBuffer::operator=(HugeBuffer&& other) noexcept {
  if (this != &other) {
    this->~HugeBuffer();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    mapped_ = std::exchange(other.mapped_, 0);
  }
  return *this;
}

HugeBuffer::~HugeBuffer() {
  if (data_ != nullptr) ::munmap(data_, mapped_);
  data_ = nullptr;
}

}  // namespace dsinfer
