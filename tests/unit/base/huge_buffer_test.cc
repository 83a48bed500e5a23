// HugeBuffer (base/huge_buffer.h) against what the kernel reports once every byte is written:
// the huge-page-advised mapping that starts the buffer (/proc/self/smaps) is no larger, and maps
// no more, than the buffer's bytes rounded up to 4 KiB, whether or not the kernel backs its
// whole 2 MiB stretches with huge pages. One rounded up to 2 MiB lets the tail take a whole huge
// page: up to 2 MiB more per buffer (the repacked weights are one buffer per matrix:
// kernels/weight.cc RepackBlocksBf16). Small buffers are plain mappings, which the kernel may
// merge with their neighbours: only their bytes are checked (/proc/self/pagemap, PageMap).
#include "base/huge_buffer.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "base/page_map.h"

namespace dsinfer {
namespace {

constexpr size_t kMiB = size_t{1} << 20;

struct Mapping {
  int64_t size = -1, rss = -1;  // bytes
};

// Size and Rss of the mapping of /proc/self/smaps that contains p (-1 when none does).
Mapping MappingOf(const void* p) {
  Mapping m;
  const auto at = reinterpret_cast<uintptr_t>(p);
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool inside = false;
  while (std::getline(smaps, line)) {
    const size_t dash = line.find('-'), space = line.find(' ');
    if (dash != std::string::npos && space != std::string::npos && dash < space) {
      const uintptr_t lo = std::strtoull(line.c_str(), nullptr, 16);
      const uintptr_t hi = std::strtoull(line.c_str() + dash + 1, nullptr, 16);
      inside = lo <= at && at < hi;
      if (inside) m.size = static_cast<int64_t>(hi - lo);
    } else if (inside && line.rfind("Rss:", 0) == 0) {
      m.rss = std::strtoll(line.c_str() + 4, nullptr, 10) * 1024;  // "Rss:   123 kB"
      return m;
    }
  }
  return m;
}

TEST(HugeBufferTest, WrittenWholeItMapsNoMoreThanItsBytes) {
  PageMap pm;
  // Sizes as the 671B repacks make them (an expert's Q4_K gate: 8,486,912 bytes), one page below
  // a huge page (a plain mapping), exactly two, and one page past two.
  for (size_t bytes : {size_t{8486912}, 2 * kMiB - 4096, 4 * kMiB, 4 * kMiB + 4096, size_t{1}}) {
    HugeBuffer b(bytes);
    ASSERT_NE(b.data(), nullptr);
    EXPECT_EQ(b.size(), bytes);
    std::memset(b.data(), 0x5A, bytes);
    const int64_t pages = static_cast<int64_t>((bytes + 4095) / 4096 * 4096);
    EXPECT_EQ(pm.MappedBytes(b.data(), bytes), static_cast<int64_t>(bytes)) << bytes;
    if (bytes >= 2 * kMiB) {
      EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data()) % (2 * kMiB), 0u) << bytes;  // THP-able
      const Mapping m = MappingOf(b.data());
      EXPECT_GT(m.rss, 0) << bytes;
      EXPECT_LE(m.size, pages) << bytes;
      EXPECT_LE(m.rss, pages) << bytes;
    }
    EXPECT_EQ(static_cast<unsigned char>(b.data()[bytes - 1]), 0x5A);
  }
}

TEST(HugeBufferTest, MovesOwnership) {
  HugeBuffer a(3 * kMiB);
  std::byte* p = a.data();
  HugeBuffer b(std::move(a));
  EXPECT_EQ(b.data(), p);
  EXPECT_EQ(b.size(), 3 * kMiB);
  EXPECT_EQ(a.data(), nullptr);  // NOLINT(bugprone-use-after-move): moved-from is empty
  HugeBuffer c;
  c = std::move(b);
  EXPECT_EQ(c.data(), p);
}

}  // namespace
}  // namespace dsinfer
