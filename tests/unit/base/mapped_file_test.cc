#include "base/mapped_file.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "base/error.h"

namespace dsinfer {
namespace {

TEST(MappedFileTest, MapsWholeFileContents) {
  std::string path = ::testing::TempDir() + "mapped_file_test.bin";
  {
    std::ofstream out(path, std::ios::binary);
    out << "hello, mmap";
  }
  MappedFile f = MappedFile::Open(path);
  std::string got(reinterpret_cast<const char*>(f.bytes().data()), f.bytes().size());
  EXPECT_EQ(got, "hello, mmap");
  MappedFile moved = std::move(f);
  EXPECT_EQ(moved.bytes().size(), 11u);
  EXPECT_TRUE(f.bytes().empty());
  std::remove(path.c_str());
}

TEST(MappedFileTest, MissingFileErrorNamesPath) {
  try {
    MappedFile::Open("/nonexistent/dir/shard.safetensors");
    FAIL() << "expected Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/dir/shard.safetensors"), std::string::npos);
  }
}

TEST(MappedFileTest, DirectoryIsRejected) {
  EXPECT_THROW(MappedFile::Open("/tmp"), Error);
}

}  // namespace
}  // namespace dsinfer
