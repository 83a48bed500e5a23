// GGUF reader: malformed input (each error names the key or tensor and the byte offset), and a
// small well-formed file built byte by byte here (independently of the reader). The decoders
// and the full metadata round trip are checked against NumPy in tests/reference/check_gguf.py.
#include "format/gguf.h"

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "base/error.h"

namespace dsinfer {
namespace {

// A little-endian byte builder.
struct Buf {
  std::vector<std::byte> b;
  void U8(uint8_t v) { b.push_back(static_cast<std::byte>(v)); }
  void U32(uint32_t v) { Raw(&v, 4); }
  void U64(uint64_t v) { Raw(&v, 8); }
  void Raw(const void* p, size_t n) {
    const auto* s = static_cast<const std::byte*>(p);
    b.insert(b.end(), s, s + n);
  }
  void Str(const std::string& s) {
    U64(s.size());
    Raw(s.data(), s.size());
  }
  // key, type, then the caller appends the value.
  void Key(const std::string& k, uint32_t type) {
    Str(k);
    U32(type);
  }
};

struct TensorRec {
  std::string name;
  std::vector<uint64_t> dims;
  uint32_t type = 0;  // F32
  uint64_t offset = 0;
};

constexpr uint32_t kU8 = 0, kU32 = 4, kBool = 7, kString = 8, kArray = 9, kF32 = 0;

// Header | `n_kv` KVs appended by `kvs` | tensor infos | zero padding to `alignment` |
// `data_bytes` bytes of data.
std::vector<std::byte> Build(uint64_t n_kv, const std::function<void(Buf&)>& kvs,
                             const std::vector<TensorRec>& tensors, uint64_t data_bytes,
                             uint64_t alignment = 32, uint32_t version = 3) {
  Buf f;
  f.Raw("GGUF", 4);
  f.U32(version);
  f.U64(tensors.size());
  f.U64(n_kv);
  if (kvs) kvs(f);
  for (const TensorRec& t : tensors) {
    f.Str(t.name);
    f.U32(static_cast<uint32_t>(t.dims.size()));
    for (uint64_t d : t.dims) f.U64(d);
    f.U32(t.type);
    f.U64(t.offset);
  }
  while (f.b.size() % alignment != 0) f.U8(0);
  f.b.resize(f.b.size() + data_bytes);
  return f.b;
}

// Two F32 tensors "a" [4] at 0 and "b" [2, 3] at 32, and one string key.
std::vector<std::byte> GoodFile() {
  return Build(
      1, [](Buf& f) { f.Key("general.architecture", kString), f.Str("deepseek2"); },
      {{"a", {4}, kF32, 0}, {"b", {2, 3}, kF32, 32}}, 32 + 24);
}

std::string ErrorOf(const std::vector<std::byte>& file) {
  try {
    ParseGguf(file, "t.gguf");
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

#define EXPECT_ERROR_HAS(file, ...)                                                       \
  do {                                                                                    \
    const std::string msg = ErrorOf(file);                                                \
    EXPECT_NE(msg.find("t.gguf: "), std::string::npos) << msg;                            \
    for (const char* part : {__VA_ARGS__})                                                \
      EXPECT_NE(msg.find(part), std::string::npos) << "'" << part << "' not in: " << msg; \
  } while (0)

TEST(Gguf, ParsesAWellFormedFile) {
  const std::vector<std::byte> file = GoodFile();
  const GgufHeader h = ParseGguf(file, "t.gguf");
  EXPECT_EQ(h.version, 3u);
  EXPECT_EQ(h.alignment, 32u);
  ASSERT_EQ(h.metadata.size(), 1u);
  EXPECT_EQ(h.metadata[0].first, "general.architecture");
  EXPECT_EQ(h.metadata[0].second.str, "deepseek2");
  ASSERT_EQ(h.tensors.size(), 2u);
  EXPECT_EQ(h.tensors[1].dims, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(h.tensors[1].shape(), (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(h.tensors[1].nbytes, 24u);
  EXPECT_EQ(h.data_offset % 32, 0u);
  EXPECT_EQ(h.data_offset + 56, file.size());
}

TEST(Gguf, OpensAndDequantisesFromAFile) {
  // One Q8_0 row of 32: d = -0.5 (f16 0xB800), q[i] = i - 16.
  std::vector<std::byte> file = Build(0, nullptr, {{"q", {32}, /*Q8_0=*/8, 0}}, 34);
  std::byte* block = file.data() + file.size() - 34;
  block[0] = std::byte{0x00};
  block[1] = std::byte{0xB8};
  for (int i = 0; i < 32; ++i) block[2 + i] = static_cast<std::byte>(static_cast<int8_t>(i - 16));
  const std::string path = ::testing::TempDir() + "gguf_q8.gguf";
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(file.data()), static_cast<std::streamsize>(file.size()));
  const GgufFile f = GgufFile::Open(path);
  const GgufTensorInfo* t = f.FindTensor("q");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(f.FindTensor("missing"), nullptr);
  const std::vector<float> y = f.Dequantize(*t);
  ASSERT_EQ(y.size(), 32u);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(y[i], -0.5f * static_cast<float>(i - 16)) << i;
}

TEST(Gguf, EveryTruncationIsAnErrorNamingWhatWasCut) {
  const std::vector<std::byte> file = GoodFile();
  for (size_t n = 0; n < file.size(); ++n) {
    const std::vector<std::byte> cut(file.begin(), file.begin() + static_cast<ptrdiff_t>(n));
    const std::string msg = ErrorOf(cut);
    const bool named = msg.find("truncated file") != std::string::npos ||
                       msg.find("outside") != std::string::npos ||
                       msg.find("cannot fit") != std::string::npos ||
                       msg.find("exceeds") != std::string::npos;
    EXPECT_TRUE(named) << "cut at " << n << ": " << msg;
  }
  // A cut inside the value of the key names the key and where the value starts.
  const std::vector<std::byte> cut(file.begin(), file.begin() + 24 + 8 + 20 + 4 + 8 + 3);
  EXPECT_ERROR_HAS(cut, "string length 9 of key 'general.architecture' exceeds the 3 bytes",
                   "truncated file", "at byte 56");
  // A cut in the data names the last tensor.
  const std::vector<std::byte> short_data(file.begin(), file.end() - 1);
  EXPECT_ERROR_HAS(short_data, "tensor 'b'", "outside");
}

TEST(Gguf, BadMagicAndVersion) {
  std::vector<std::byte> file = GoodFile();
  file[0] = std::byte{'X'};
  EXPECT_ERROR_HAS(file, "bad magic \"XGUF\"", "at byte 0");
  for (uint32_t v : {1u, 4u, 0x03000000u}) {
    std::vector<std::byte> f = GoodFile();
    std::memcpy(f.data() + 4, &v, 4);
    EXPECT_ERROR_HAS(f, v == 1 ? "version 1" : v == 4 ? "version 4" : "big-endian", "at byte 4");
  }
}

TEST(Gguf, V2IsRead) {
  const std::vector<std::byte> file =
      Build(0, nullptr, {{"a", {4}, kF32, 0}}, 16, /*alignment=*/32, /*version=*/2);
  EXPECT_EQ(ParseGguf(file, "t.gguf").version, 2u);
}

TEST(Gguf, AbsurdCountsAreRefusedBeforeAllocating) {
  std::vector<std::byte> file = GoodFile();
  const uint64_t huge = uint64_t{1} << 62;
  std::memcpy(file.data() + 8, &huge, 8);
  EXPECT_ERROR_HAS(file, "tensor count 4611686018427387904");
  file = GoodFile();
  std::memcpy(file.data() + 16, &huge, 8);
  EXPECT_ERROR_HAS(file, "metadata count");
  // String length of the value: names the key.
  file = Build(
      1, [](Buf& f) { f.Key("general.name", kString), f.U64(uint64_t{1} << 60); }, {}, 0);
  EXPECT_ERROR_HAS(file, "string length 1152921504606846976", "key 'general.name'", "at byte 48");
  // Array count.
  file = Build(
      1,
      [](Buf& f) {
        f.Key("tokenizer.ggml.tokens", kArray), f.U32(kString), f.U64(uint64_t{1} << 40);
      },
      {}, 0);
  EXPECT_ERROR_HAS(file, "array of 1099511627776 STRING", "key 'tokenizer.ggml.tokens'");
  // Key length.
  file = Build(
      1, [](Buf& f) { f.U64(~uint64_t{0}), f.U64(0), f.U64(0); }, {}, 0);
  EXPECT_ERROR_HAS(file, "the key of metadata entry 0", "at byte 24");
}

TEST(Gguf, BadValues) {
  auto file = Build(
      1, [](Buf& f) { f.Key("x.type", 13), f.U32(0); }, {}, 0);
  EXPECT_ERROR_HAS(file, "unknown value type 13", "key 'x.type'");
  file = Build(
      1, [](Buf& f) { f.Key("x.arr", kArray), f.U32(99), f.U64(0); }, {}, 0);
  EXPECT_ERROR_HAS(file, "unknown value type 99", "element type of key 'x.arr'");
  file = Build(
      1, [](Buf& f) { f.Key("x.flag", kBool), f.U8(2); }, {}, 0);
  EXPECT_ERROR_HAS(file, "BOOL value 2", "key 'x.flag'");
  file = Build(
      2, [](Buf& f) { f.Key("k", kU8), f.U8(1), f.Key("k", kU8), f.U8(2); }, {}, 0);
  EXPECT_ERROR_HAS(file, "duplicate metadata key 'k'");
  file = Build(
      1,
      [](Buf& f) {
        f.Key("deep", kArray);
        for (int d = 0; d < 9; ++d) f.U32(kArray), f.U64(1);
        f.U32(kU8), f.U64(0);
      },
      {}, 0);
  EXPECT_ERROR_HAS(file, "nested deeper than 8", "key 'deep'");
  // Up to the limit, nesting is read.
  file = Build(
      1,
      [](Buf& f) {
        f.Key("deep", kArray);
        for (int d = 0; d < 7; ++d) f.U32(kArray), f.U64(1);
        f.U32(kU8), f.U64(1), f.U8(42);
      },
      {}, 0);
  const GgufHeader h = ParseGguf(file, "t.gguf");
  const GgufValue* v = &h.metadata[0].second;
  for (int d = 0; d < 7; ++d) v = &v->arrays.at(0);
  EXPECT_EQ(v->At(0).u, 42u);
}

TEST(Gguf, Alignment) {
  auto kv = [](uint32_t type, uint32_t value) {
    return [=](Buf& f) { f.Key("general.alignment", type), f.U32(value); };
  };
  auto file = Build(1, kv(kU32, 64), {{"a", {4}, kF32, 0}, {"b", {4}, kF32, 64}}, 80, 64);
  const GgufHeader h = ParseGguf(file, "t.gguf");
  EXPECT_EQ(h.alignment, 64u);
  EXPECT_EQ(h.data_offset % 64, 0u);
  EXPECT_ERROR_HAS(Build(1, kv(kU32, 48), {}, 0), "'general.alignment' = 48", "power of two");
  EXPECT_ERROR_HAS(Build(1, kv(kU32, 0), {}, 0), "'general.alignment' = 0");
  EXPECT_ERROR_HAS(Build(1, kv(/*INT32=*/5, 32), {}, 0), "'general.alignment' must be UINT32");
}

TEST(Gguf, BadTensorInfos) {
  EXPECT_ERROR_HAS(Build(0, nullptr, {{"blk.0.attn_q.weight", {256}, 77, 0}}, 0),
                   "tensor 'blk.0.attn_q.weight' has unknown ggml type 77");
  EXPECT_ERROR_HAS(Build(0, nullptr, {{"a", {4}, kF32, 0}, {"a", {4}, kF32, 32}}, 48),
                   "duplicate tensor name 'a'");
  EXPECT_ERROR_HAS(Build(0, nullptr, {{"five", {1, 1, 1, 1, 1}, kF32, 0}}, 4),
                   "tensor 'five' has 5 dims");
  EXPECT_ERROR_HAS(Build(0, nullptr, {{"zero", {}, kF32, 0}}, 4), "tensor 'zero' has 0 dims");
  EXPECT_ERROR_HAS(Build(0, nullptr, {{"neg", {~uint64_t{0}}, kF32, 0}}, 4),
                   "tensor 'neg' has a negative dim -1");
  EXPECT_ERROR_HAS(Build(0, nullptr, {{"big", {uint64_t{1} << 40, uint64_t{1} << 40}, kF32, 0}}, 4),
                   "tensor 'big'", "product of its dims overflows", "at byte 24");
  EXPECT_ERROR_HAS(Build(0, nullptr, {{"wide", {uint64_t{1} << 62}, kF32, 0}}, 4), "tensor 'wide'",
                   "byte size overflows");
  EXPECT_ERROR_HAS(Build(0, nullptr, {{"q4k", {128, 2}, /*Q4_K=*/12, 0}}, 288), "tensor 'q4k'",
                   "dims[0] = 128", "Q4_K block of 256");
}

TEST(Gguf, BadTensorData) {
  EXPECT_ERROR_HAS(Build(0, nullptr, {{"a", {4}, kF32, 0}, {"b", {4}, kF32, 16}}, 32), "tensor 'b'",
                   "offset 16 is not a multiple of the alignment 32");
  EXPECT_ERROR_HAS(Build(0, nullptr, {{"a", {12}, kF32, 0}, {"b", {4}, kF32, 32}}, 64),
                   "tensor 'b'", "overlaps tensor 'a' [0, 48)");
  EXPECT_ERROR_HAS(Build(0, nullptr, {{"a", {4}, kF32, 0}, {"b", {8}, kF32, 64}}, 80), "tensor 'b'",
                   "data [64, +32) lies outside the 80-byte data section");
  EXPECT_ERROR_HAS(Build(0, nullptr, {{"far", {4}, kF32, ~uint64_t{0} - 31}}, 16), "tensor 'far'",
                   "outside");
  // The padding before the data section must be there, even when every tensor is empty.
  std::vector<std::byte> no_padding = Build(0, nullptr, {{"e", {4, 0}, kF32, 0}}, 0);
  no_padding.resize(24 + 8 + 1 + 4 + 16 + 4 + 8);
  EXPECT_ERROR_HAS(no_padding, "truncated file: the data section starts at byte 96",
                   "the file has 65 bytes");
  // Zero-sized tensors may share an offset.
  EXPECT_NO_THROW(
      ParseGguf(Build(0, nullptr, {{"a", {4, 0}, kF32, 0}, {"b", {4}, kF32, 0}}, 16), "t.gguf"));
}

TEST(GgmlTypes, DequantizeRowRefusesUndecodableTypesAndBadSizes) {
  std::vector<std::byte> src(292);
  std::vector<float> out(256);
  try {
    DequantizeRow(GgmlType::kQ8_K, src, out, "w");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "w: ggml type Q8_K cannot be decoded yet");
  }
  src.resize(33);
  out.resize(32);
  EXPECT_THROW(DequantizeRow(GgmlType::kQ8_0, src, out, "w"), Error);
  EXPECT_EQ(FindGgmlType(77), nullptr);
  EXPECT_EQ(GgmlTypeOf(GgmlType::kQ6_K).block_bytes, 210u);
}

}  // namespace
}  // namespace dsinfer
