// GGUF files (ggml's model format, versions 2 and 3, little-endian): zero-copy reading (mmap).
//
// Layout (ggml's docs/gguf.md): u32 magic "GGUF" (bytes 47 47 55 46) | u32 version |
// u64 tensor_count | u64 metadata_kv_count | metadata KVs | tensor infos | padding to
// `general.alignment` (default 32) | tensor data. A string is u64 length + bytes (no NUL).
// A KV is string key | u32 value type | value; an array value is u32 element type | u64 count |
// elements (arrays may nest). A tensor info is string name | u32 n_dims | u64 dims[n_dims]
// (ggml order: dims[0] is the contiguous extent) | u32 ggml type | u64 offset, relative to the
// data section and a multiple of the alignment. Version 1 (u32 counts and lengths) and
// big-endian files are refused by name. Split sets (`-00001-of-0000N.gguf`) are not read yet.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "base/mapped_file.h"
#include "format/ggml_types.h"

namespace dsinfer {

enum class GgufType : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
};
std::string_view GgufTypeName(GgufType t);  // "UINT8", ..., "FLOAT64" (the spec's names)

// One metadata value. Scalars are kept exactly, widened: unsigned and bool in `u`, signed in
// `i`, FLOAT32/FLOAT64 in `f`. An array keeps its element type and, by element kind, either
// the raw little-endian payload (fixed-size scalars: `count` × element size bytes, read with
// `At`), the strings, or the nested arrays.
struct GgufValue {
  GgufType type = GgufType::kU8;
  uint64_t u = 0;
  int64_t i = 0;
  double f = 0;
  std::string str;
  // Arrays only.
  GgufType elem_type = GgufType::kU8;
  uint64_t count = 0;
  std::vector<std::byte> raw;
  std::vector<std::string> strings;
  std::vector<GgufValue> arrays;

  // Element `k` of an array of fixed-size scalars as a scalar GgufValue.
  GgufValue At(uint64_t k) const;
};

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> dims;  // ggml order, 1-4 extents; dims[0] is contiguous
  GgmlType type = GgmlType::kF32;
  uint64_t offset = 0;  // relative to the data section
  uint64_t nbytes = 0;

  int64_t numel() const;
  // Row-major shape (outermost first), i.e. `dims` reversed: what PyTorch and NumPy call it.
  std::vector<int64_t> shape() const { return {dims.rbegin(), dims.rend()}; }
};

struct GgufHeader {
  uint32_t version = 0;
  std::vector<std::pair<std::string, GgufValue>> metadata;  // file order
  std::vector<GgufTensorInfo> tensors;                      // file order
  uint64_t alignment = 32;
  uint64_t data_offset = 0;  // absolute start of the data section
};

// Parses and validates the header of a complete file image `file`. Throws `Error` whose message
// starts with `file_name`, names the key or tensor at fault and the byte offset: truncated
// file, bad magic or version, counts or string/array lengths that cannot fit in the rest of the
// file (checked before anything is allocated), arrays nested deeper than 8, unknown value or
// tensor type, duplicate key or tensor name, `general.alignment` not a power-of-two UINT32,
// n_dims outside 1..4, negative or overflowing dims, dims[0] not a multiple of the block,
// tensor data misaligned, overlapping another tensor's or outside the file.
GgufHeader ParseGguf(std::span<const std::byte> file, const std::string& file_name);

// One mmapped GGUF file. Move-only; thread-safe to read.
class GgufFile {
 public:
  static GgufFile Open(const std::string& path);  // throws Error

  const std::string& path() const { return file_.path(); }
  const GgufHeader& header() const { return header_; }
  const std::vector<GgufTensorInfo>& tensors() const { return header_.tensors; }
  const GgufValue* FindKey(std::string_view key) const;           // nullptr if absent
  const GgufTensorInfo* FindTensor(std::string_view name) const;  // nullptr if absent
  // The tensor's bytes inside the mapping (aligned to `header().alignment` from the file start).
  std::span<const std::byte> Bytes(const GgufTensorInfo& t) const;
  // The whole tensor decoded to f32, row-major in `shape()` order. Throws `Error` naming the
  // tensor if its type cannot be decoded.
  std::vector<float> Dequantize(const GgufTensorInfo& t) const;
  // The whole file as mapped.
  std::span<const std::byte> mapping() const { return file_.bytes(); }

 private:
  MappedFile file_;
  GgufHeader header_;
  std::map<std::string, size_t, std::less<>> keys_, tensors_;
};

}  // namespace dsinfer
