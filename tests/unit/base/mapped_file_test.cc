#include "base/mapped_file.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <future>
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

// A shard that is a named pipe used to block `inspect` / `run` forever in open(). Now refused
// at once. (If open() blocks, the test fails after 5 s and unblocks it by opening the writer.)
TEST(MappedFileTest, FifoIsRejectedWithoutBlocking) {
  const std::string path = ::testing::TempDir() + "mapped_file_test.fifo";
  std::remove(path.c_str());
  ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0);
  auto result = std::async(std::launch::async, [&]() -> std::string {
    try {
      MappedFile::Open(path);
    } catch (const Error& e) {
      return e.what();
    }
    return "<no error>";
  });
  if (result.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
    ADD_FAILURE() << "MappedFile::Open blocked on a FIFO";
    const int w = ::open(path.c_str(), O_WRONLY | O_NONBLOCK);
    if (w >= 0) ::close(w);
  }
  EXPECT_EQ(result.get(), path + ": not a regular file");
  std::remove(path.c_str());
}

}  // namespace
}  // namespace dsinfer
