#include "format/safetensors.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "base/error.h"

namespace dsinfer {
namespace {

std::string TempPath(const std::string& name) { return ::testing::TempDir() + "st_" + name; }

TEST(SafetensorsRoundTrip, WriteThenReadBack) {
  const std::string path = TempPath("roundtrip.safetensors");
  std::vector<TensorSpec> specs = {
      {"a.weight", DType::kBF16, {3, 5}},      // 30 bytes: leaves the next tensor unaligned
      {"b.scale", DType::kF32, {2}},
      {"c.empty", DType::kF8E4M3, {0, 4}},
      {"d.scalar", DType::kI64, {}},
  };
  std::vector<std::string> filled;
  WriteSafetensors(
      path, specs,
      [&](const TensorSpec& s, std::span<std::byte> out) {
        filled.push_back(s.name);
        for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<std::byte>(i * 7 + s.name[0]);
      },
      {{"format", "pt"}});
  EXPECT_EQ(filled, (std::vector<std::string>{"a.weight", "b.scale", "c.empty", "d.scalar"}));

  SafetensorsFile f = SafetensorsFile::Open(path);
  ASSERT_EQ(f.tensors().size(), 4u);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  uint64_t expected_begin = 0;
  for (size_t t = 0; t < specs.size(); ++t) {
    const TensorInfo& info = f.tensors()[t];  // declaration order is kept
    EXPECT_EQ(info.name, specs[t].name);
    EXPECT_EQ(info.dtype, specs[t].dtype);
    EXPECT_EQ(info.shape, specs[t].shape);
    EXPECT_EQ(info.begin, expected_begin);  // contiguous
    expected_begin = info.end;
    TensorView v = f.View(info);
    ASSERT_EQ(v.bytes().size(), info.end - info.begin);
    for (size_t i = 0; i < v.bytes().size(); ++i) {
      ASSERT_EQ(v.bytes()[i], static_cast<std::byte>(i * 7 + specs[t].name[0])) << info.name;
    }
  }
  EXPECT_EQ(f.Find("d.scalar")->numel(), 1);
  EXPECT_EQ(f.Find("missing"), nullptr);
  // Data region starts 8-byte aligned (header padded with spaces).
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(bytes.size(), 8 + n + 30 + 8 + 0 + 8);
  EXPECT_EQ(f.View(f.tensors()[0]).as<uint16_t>().size(), 15u);
  std::remove(path.c_str());
}

}  // namespace
}  // namespace dsinfer
