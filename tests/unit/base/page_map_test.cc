// PageMap (base/page_map.h) against the pages this test itself touched: anonymous pages are
// mapped exactly when written, and a file mapping counts only what this process faulted in,
// not what the page cache holds (the file was just written, so the cache holds all of it).
#include "base/page_map.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

namespace dsinfer {
namespace {

constexpr int kPages = 64;

TEST(PageMapTest, CountsExactlyTheTouchedAnonymousPages) {
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  void* m =
      ::mmap(nullptr, kPages * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(m, MAP_FAILED);
  ::madvise(m, kPages * page, MADV_NOHUGEPAGE);  // one page per fault
  auto* base = static_cast<char*>(m);
  PageMap pm;
  EXPECT_EQ(pm.MappedBytes(base, kPages * page), 0);
  for (int p : {3, 10, 11, 12}) *static_cast<volatile char*>(base + p * page + 7) = 1;
  EXPECT_EQ(pm.MappedBytes(base, kPages * page), static_cast<int64_t>(4 * page));
  // Partial pages count for their overlap: the end of page 3 and the unmapped start of page 4.
  EXPECT_EQ(pm.MappedBytes(base + 3 * page + 100, page), static_cast<int64_t>(page - 100));
  // Half of page 12 and half of the unmapped page 13.
  EXPECT_EQ(pm.MappedBytes(base + 12 * page + page / 2, page), static_cast<int64_t>(page / 2));
  EXPECT_EQ(pm.MappedBytes(base + 20 * page, 10 * page), 0);
  EXPECT_EQ(pm.MappedBytes(base, 0), 0);
  ::munmap(m, kPages * page);
}

TEST(PageMapTest, FileMappingCountsThisProcessFaultsNotThePageCache) {
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  const std::string path = ::testing::TempDir() + "page_map_test.bin";
  {
    std::vector<char> bytes(kPages * page, 'x');
    FILE* f = std::fopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(std::fwrite(bytes.data(), 1, bytes.size(), f), bytes.size());
    std::fclose(f);
  }
  const int fd = ::open(path.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  void* m = ::mmap(nullptr, kPages * page, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  ASSERT_NE(m, MAP_FAILED);
  const auto* base = static_cast<const char*>(m);
  PageMap pm;
  EXPECT_EQ(pm.MappedBytes(base, kPages * page), 0);
  const char byte = *static_cast<const volatile char*>(base + 40 * page + 5);  // one fault
  EXPECT_EQ(byte, 'x');
  EXPECT_EQ(pm.MappedBytes(base + 40 * page, page), static_cast<int64_t>(page));
  // The kernel may map neighbours that sit in the page cache with the faulting page
  // ("fault-around", 64 KiB by default), never the whole file.
  EXPECT_LT(pm.MappedBytes(base, kPages * page), static_cast<int64_t>(kPages / 2 * page));
  ::munmap(m, kPages * page);
  std::remove(path.c_str());
}

}  // namespace
}  // namespace dsinfer
