#include "base/page_map.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "base/error.h"

namespace dsinfer {

namespace {
// A pagemap entry (Documentation/admin-guide/mm/pagemap.rst): bit 63 page present in RAM,
// bit 62 page swapped out.
constexpr uint64_t kPresent = 1ull << 63;
constexpr uint64_t kSwapped = 1ull << 62;
constexpr size_t kPagesPerRead = 1 << 16;  // 512 KiB of entries per pread
}  // namespace

PageMap::PageMap() {
  fd_ = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) throw Error(std::string("/proc/self/pagemap: cannot open: ") + std::strerror(errno));
  page_ = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
}

PageMap::~PageMap() {
  if (fd_ >= 0) ::close(fd_);
}

int64_t PageMap::MappedBytes(const void* data, size_t n) {
  if (n == 0) return 0;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(data), end = begin + n;
  const uintptr_t first = begin / page_, last = (end - 1) / page_;  // pages, inclusive
  int64_t bytes = 0;
  for (uintptr_t p0 = first; p0 <= last; p0 += kPagesPerRead) {
    const size_t count = std::min<uintptr_t>(kPagesPerRead, last - p0 + 1);
    entries_.resize(count);
    const size_t want = count * sizeof(uint64_t);
    const ssize_t got = ::pread(fd_, entries_.data(), want, static_cast<off_t>(p0 * 8));
    if (got != static_cast<ssize_t>(want))
      throw Error(std::string("/proc/self/pagemap: short read: ") +
                  (got < 0 ? std::strerror(errno) : std::to_string(got) + " bytes"));
    for (size_t i = 0; i < count; ++i) {
      if ((entries_[i] & (kPresent | kSwapped)) == 0) continue;
      const uintptr_t lo = std::max(begin, (p0 + i) * page_);
      const uintptr_t hi = std::min(end, (p0 + i + 1) * page_);
      bytes += static_cast<int64_t>(hi - lo);
    }
  }
  return bytes;
}

}  // namespace dsinfer
