#include "format/safetensors.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include <csignal>
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
      {"a.weight", DType::kBF16, {3, 5}},  // 30 bytes: leaves the next tensor unaligned
      {"b.scale", DType::kF32, {2}},
      {"c.empty", DType::kF8E4M3, {0, 4}},
      {"d.scalar", DType::kI64, {}},
  };
  std::vector<std::string> filled;
  WriteSafetensors(path, specs,
                   [&](const TensorSpec& s, std::span<std::byte> out) {
                     filled.push_back(s.name);
                     for (size_t i = 0; i < out.size(); ++i)
                       out[i] = static_cast<std::byte>(i * 7 + s.name[0]);
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

// The exact bytes of a tiny file, built by hand from the format definition: u64 LE header
// length, compact JSON header in declaration order with `__metadata__` first, space padding
// to a multiple of 8, then the tensors back to back.
TEST(SafetensorsRoundTrip, WriterBytesMatchTheFormatDefinition) {
  const std::string path = TempPath("golden.safetensors");
  WriteSafetensors(
      path, {{"z", DType::kU8, {2}}, {"a", DType::kBF16, {1, 1}}},
      [](const TensorSpec& s, std::span<std::byte> out) {
        for (auto& b : out) b = static_cast<std::byte>(s.name == "z" ? 0xAB : 0xCD);
      },
      {{"format", "pt"}});
  std::string header =
      R"({"__metadata__":{"format":"pt"},"z":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
      R"("a":{"dtype":"BF16","shape":[1,1],"data_offsets":[2,4]}})";
  while (header.size() % 8 != 0) header += ' ';
  std::string expected(8, '\0');
  expected[0] = static_cast<char>(header.size());
  expected += header + "\xAB\xAB\xCD\xCD";
  std::ifstream in(path, std::ios::binary);
  const std::string got((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(got, expected);
  std::remove(path.c_str());
}

// ------------------------------------------------------------------------------------------
// Bad input: every message must start with the file name and name the culprit.

// A file image: u64 little-endian header length, header text, `data_bytes` zero bytes.
std::vector<std::byte> Image(const std::string& header, size_t data_bytes = 0) {
  std::vector<std::byte> out(8 + header.size() + data_bytes);
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<std::byte>(n >> (8 * i));
  std::memcpy(out.data() + 8, header.data(), header.size());
  return out;
}

void ExpectHeaderError(const std::vector<std::byte>& image, const std::vector<std::string>& parts) {
  try {
    ParseSafetensorsHeader(image, "shard-7.safetensors");
    ADD_FAILURE() << "expected Error containing " << parts[0];
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind("shard-7.safetensors: ", 0), 0u) << msg;
    for (const std::string& p : parts) {
      EXPECT_NE(msg.find(p), std::string::npos)
          << "message \"" << msg << "\" lacks \"" << p << "\"";
    }
  }
}

std::string Entry(const std::string& name, const std::string& dtype, const std::string& shape,
                  const std::string& offsets) {
  return "\"" + name + "\": {\"dtype\": \"" + dtype + "\", \"shape\": " + shape +
         ", \"data_offsets\": " + offsets + "}";
}

TEST(SafetensorsBadInput, TruncatedAndBadHeaderLength) {
  ExpectHeaderError({}, {"truncated", "0 bytes"});
  ExpectHeaderError(std::vector<std::byte>(7), {"truncated", "7 bytes"});
  std::vector<std::byte> image = Image("{}");
  image[0] = std::byte{3};  // claims 3 bytes, has 2
  ExpectHeaderError(image, {"header length 3 exceeds the file (10 bytes)"});
  std::vector<std::byte> huge(16, std::byte{0xFF});  // 2^64 - 1
  ExpectHeaderError(huge, {"header length 18446744073709551615 exceeds the file"});
}

// The 100 MiB header cap (the reference implementation's) at and past the limit, in a file
// that large: an untouched anonymous mapping (no memory used), so only the cap decides. At the
// cap the header is parsed (here: zeros, invalid at its first byte); one byte more is refused
// before any of it is read.
TEST(SafetensorsBadInput, HeaderOver100MiBIsRefusedBeforeParsing) {
  constexpr size_t kCap = size_t{100} << 20;
  const size_t size = 8 + kCap + 1;
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  ASSERT_NE(p, MAP_FAILED);
  auto* bytes = static_cast<std::byte*>(p);
  auto expect = [&](uint64_t header_len, size_t file_size, const std::string& part) {
    std::memcpy(bytes, &header_len, 8);  // little-endian host
    try {
      ParseSafetensorsHeader({bytes, file_size}, "big.safetensors");
      ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  expect(kCap, 8 + kCap, "invalid header JSON");
  expect(kCap + 1, size, "header length 104857601 exceeds 100 MiB");
  ::munmap(p, size);
}

TEST(SafetensorsBadInput, HeaderJson) {
  ExpectHeaderError(Image("{\"a\": "), {"invalid header JSON"});
  ExpectHeaderError(Image(""), {"invalid header JSON"});
  ExpectHeaderError(Image("[1, 2]"), {"header is not a JSON object"});
  ExpectHeaderError(Image("{\"a\": 5}"), {"tensor \"a\"", "not an object"});
  ExpectHeaderError(Image("{\"a\": {\"b\": {\"c\": [[1]]}}}"), {"nested deeper than 2"});
  ExpectHeaderError(Image("{\"__metadata__\": [1]}"), {"__metadata__", "not an object"});
  ExpectHeaderError(Image("{\"__metadata__\": {\"k\": 1}}"),
                    {"__metadata__", "\"k\"", "not a string"});
}

TEST(SafetensorsBadInput, DuplicateNamesAreDetected) {
  const std::string a = Entry("w", "U8", "[2]", "[0, 2]");
  ExpectHeaderError(Image("{" + a + ", " + Entry("w", "U8", "[2]", "[2, 4]") + "}", 4),
                    {"duplicate tensor name \"w\""});
  ExpectHeaderError(
      Image(R"({"w": {"dtype": "U8", "dtype": "U8", "shape": [0], "data_offsets": [0, 0]}})"),
      {"duplicate key \"dtype\""});
  ExpectHeaderError(Image(R"({"__metadata__": {"k": "1"}, "__metadata__": {"k": "2"}})"),
                    {"duplicate tensor name \"__metadata__\""});
}

TEST(SafetensorsBadInput, TensorEntries) {
  auto one = [](const std::string& dtype, const std::string& shape, const std::string& offsets) {
    return Image("{" + Entry("layer.w", dtype, shape, offsets) + "}", 64);
  };
  ExpectHeaderError(one("F7", "[2]", "[0, 2]"), {"tensor \"layer.w\"", "unknown dtype \"F7\""});
  ExpectHeaderError(one("F32", "[-1, 2]", "[0, 8]"),
                    {"tensor \"layer.w\"", "shape[0] is negative"});
  ExpectHeaderError(one("F32", "[2, 1.5]", "[0, 8]"),
                    {"tensor \"layer.w\"", "shape[1] is not an integer"});
  ExpectHeaderError(one("F32", "[\"2\"]", "[0, 8]"),
                    {"tensor \"layer.w\"", "shape[0] is not an integer"});
  ExpectHeaderError(one("F32", "2", "[0, 8]"), {"tensor \"layer.w\"", "\"shape\" is not an array"});
  ExpectHeaderError(one("F32", "[4294967296, 4294967296]", "[0, 8]"),
                    {"tensor \"layer.w\"", "overflows"});
  ExpectHeaderError(one("F32", "[4611686018427387904]", "[0, 8]"), {"tensor \"layer.w\"", "needs"});
  ExpectHeaderError(one("F32", "[3]", "[0, 8]"),
                    {"tensor \"layer.w\"", "[3] of F32 needs 3 × 4 bytes", "span 8"});
  ExpectHeaderError(one("BF16", "[3]", "[0, 7]"), {"tensor \"layer.w\"", "span 7"});
  ExpectHeaderError(one("U8", "[2]", "[0]"), {"tensor \"layer.w\"", "data_offsets"});
  ExpectHeaderError(one("U8", "[2]", "[4, 2]"), {"tensor \"layer.w\"", "end before begin"});
  ExpectHeaderError(one("U8", "[2]", "[-2, 0]"),
                    {"tensor \"layer.w\"", "data_offsets[0] is negative"});
  ExpectHeaderError(one("U8", "[1]", "[18446744073709551614, 18446744073709551615]"),
                    {"tensor \"layer.w\"", "beyond the data region of 64 bytes"});
  ExpectHeaderError(one("U8", "[8]", "[60, 68]"), {"tensor \"layer.w\"", "[60, 68] beyond"});
  ExpectHeaderError(Image(R"({"t": {"shape": [1], "data_offsets": [0, 1]}})", 1),
                    {"tensor \"t\"", "missing \"dtype\""});
  ExpectHeaderError(Image(R"({"t": {"dtype": "U8", "data_offsets": [0, 1]}})", 1),
                    {"tensor \"t\"", "missing \"shape\""});
  ExpectHeaderError(Image(R"({"t": {"dtype": "U8", "shape": [1]}})", 1),
                    {"tensor \"t\"", "missing \"data_offsets\""});
}

TEST(SafetensorsBadInput, OverlappingRanges) {
  const std::string h = "{" + Entry("first", "U8", "[8]", "[0, 8]") + ", " +
                        Entry("second", "U8", "[8]", "[4, 12]") + "}";
  ExpectHeaderError(Image(h, 16), {"\"first\"", "\"second\"", "overlapping"});
  // Contained entirely inside a longer range, listed out of order.
  const std::string h2 = "{" + Entry("inner", "U8", "[2]", "[10, 12]") + ", " +
                         Entry("a", "U8", "[4]", "[0, 4]") + ", " +
                         Entry("outer", "U8", "[12]", "[4, 16]") + "}";
  ExpectHeaderError(Image(h2, 16), {"\"outer\"", "\"inner\"", "overlapping"});
}

TEST(SafetensorsHeader, GapsEmptyTensorsAndUnalignedViewsAreHandled) {
  const std::string h =
      "{" + Entry("b", "U8", "[3]", "[5, 8]") + ", " + Entry("empty", "F32", "[0, 3]", "[5, 5]") +
      ", " + Entry("a", "F32", "[1]", "[0, 4]") + ", \"__metadata__\": {\"format\": \"pt\"}}";
  const std::vector<std::byte> image = Image(h, 10);  // gap [4, 5) and trailing bytes tolerated
  SafetensorsHeader header = ParseSafetensorsHeader(image, "x");
  ASSERT_EQ(header.tensors.size(), 3u);
  EXPECT_EQ(header.tensors[0].name, "b");  // header order, not offset order
  EXPECT_EQ(header.tensors[1].numel(), 0);
  EXPECT_EQ(header.metadata.at("format"), "pt");
  EXPECT_EQ(header.data_offset, 8 + h.size());
  EXPECT_EQ(ParseSafetensorsHeader(Image("{}"), "x").tensors.size(), 0u);
  EXPECT_EQ(ParseSafetensorsHeader(Image("{}   "), "x").data_offset, 8u + 5u);

  // `as<T>` checks element size and alignment, naming the tensor.
  alignas(8) std::byte buf[16] = {};
  TensorInfo info{"model.norm.weight", DType::kBF16, {4}, 0, 8};
  TensorView aligned{&info, buf};
  EXPECT_EQ(aligned.as<uint16_t>().size(), 4u);
  try {
    (void)aligned.as<float>();
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.norm.weight"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("2-byte"), std::string::npos);
  }
  TensorView misaligned{&info, buf + 1};
  try {
    (void)misaligned.as<uint16_t>();
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.norm.weight"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("aligned"), std::string::npos);
  }
  EXPECT_EQ(misaligned.bytes().size(), 8u);
}

TEST(SafetensorsFile, OpenErrorsNameThePath) {
  const std::string path = TempPath("bad.safetensors");
  {
    std::ofstream out(path, std::ios::binary);
    out << "abc";
  }
  try {
    SafetensorsFile::Open(path);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind(path + ": truncated", 0), 0u) << e.what();
  }
  std::remove(path.c_str());
  EXPECT_THROW(SafetensorsFile::Open(TempPath("does-not-exist.safetensors")), Error);
}

TEST(SafetensorsWriter, RejectsBadSpecsAndReportsIoErrors) {
  auto nop = [](const TensorSpec&, std::span<std::byte>) {};
  const std::string path = TempPath("w.safetensors");
  try {
    WriteSafetensors(path, {{"x", DType::kU8, {1}}, {"x", DType::kU8, {1}}}, nop);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("duplicate or reserved tensor name \"x\""),
              std::string::npos);
  }
  try {
    WriteSafetensors(path, {{"neg", DType::kU8, {2, -1}}}, nop);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor \"neg\": invalid shape [2, -1]"),
              std::string::npos);
  }
  try {
    WriteSafetensors("/nonexistent-dir/out.safetensors", {{"x", DType::kU8, {1}}}, nop);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent-dir/out.safetensors"), std::string::npos);
  }
  // A failing `fill` leaves no file behind (neither final nor partial).
  EXPECT_THROW(
      WriteSafetensors(path, {{"x", DType::kU8, {1}}},
                       [](const TensorSpec&, std::span<std::byte>) { throw Error("boom"); }),
      Error);
  EXPECT_FALSE(std::ifstream(path).good());
  EXPECT_FALSE(std::ifstream(path + ".partial").good());
}

// Write errors (here EFBIG from a file-size limit, the same path as ENOSPC) become an Error
// naming the file.
TEST(SafetensorsWriter, WriteFailureNamesThePath) {
  struct rlimit old_limit {};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = old_limit;
  small.rlim_cur = 4096;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  const std::string path = TempPath("toolarge.safetensors");
  std::string message;
  try {
    WriteSafetensors(path, {{"big", DType::kF32, {1 << 16}}},
                     [](const TensorSpec&, std::span<std::byte>) {});
  } catch (const Error& e) {
    message = e.what();
  }
  setrlimit(RLIMIT_FSIZE, &old_limit);
  std::signal(SIGXFSZ, old_handler);
  EXPECT_NE(message.find(path), std::string::npos) << message;
  EXPECT_NE(message.find("write failed"), std::string::npos) << message;
  EXPECT_FALSE(std::ifstream(path).good());
}

}  // namespace
}  // namespace dsinfer
