// safetensors files: zero-copy reading (mmap) and streaming writing.
//
// File layout: u64 little-endian header length N, N bytes of JSON header
// {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, ...,
//  "__metadata__": {"k": "v"}}, then the data region; offsets are relative to the data region.
// Parsing validates everything before any tensor is handed out (see ParseSafetensorsHeader).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "base/mapped_file.h"
#include "format/dtype.h"

namespace dsinfer {

struct TensorInfo {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets relative to the data region
  uint64_t end = 0;

  int64_t numel() const;
};

// A typed, non-owning window onto tensor bytes inside a mapped file. Cheap to copy.
struct TensorView {
  const TensorInfo* info = nullptr;
  const std::byte* data = nullptr;

  DType dtype() const { return info->dtype; }
  const std::vector<int64_t>& shape() const { return info->shape; }
  int64_t numel() const { return info->numel(); }
  size_t nbytes() const { return info->end - info->begin; }
  std::span<const std::byte> bytes() const { return {data, nbytes()}; }
  // Raw elements, zero-copy. `T` must match the element size of `dtype()`, and the data must
  // be aligned for `T`: safetensors does not guarantee alignment (our writer aligns the data
  // region to 8 bytes, and tensors of sizes that are multiples of 8 stay aligned). Both are
  // checked; a violation throws `Error` naming the tensor (then copy through `bytes()`).
  template <class T>
  std::span<const T> as() const {
    CheckAs(sizeof(T), alignof(T));
    return {reinterpret_cast<const T*>(data), nbytes() / sizeof(T)};
  }

 private:
  void CheckAs(size_t elem_size, size_t alignment) const;
};

struct SafetensorsHeader {
  std::vector<TensorInfo> tensors;  // in file order
  std::map<std::string, std::string> metadata;
  uint64_t data_offset = 0;  // 8 + header length
};

// Parses and validates the header of a complete file image `file`. Throws `Error` whose
// message starts with `file_name` and names the problem and the tensor: truncated file, header
// length beyond the file or above 100 MiB, invalid JSON, duplicate keys (at any level; caught
// while parsing), nesting deeper than a header needs, unknown dtype, negative, non-integer or
// overflowing shape, shape × dtype size ≠ byte range, ranges out of bounds or overlapping,
// `__metadata__` not a string → string object. Gaps between ranges are tolerated (the HF
// reader refuses them, but no tensor becomes ambiguous). Unknown keys in an entry are ignored.
SafetensorsHeader ParseSafetensorsHeader(std::span<const std::byte> file,
                                         const std::string& file_name);

// One mmapped shard. Move-only; thread-safe to read.
class SafetensorsFile {
 public:
  static SafetensorsFile Open(const std::string& path);  // throws Error

  const std::string& path() const { return file_.path(); }
  const std::vector<TensorInfo>& tensors() const { return header_.tensors; }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  const TensorInfo* Find(std::string_view name) const;  // nullptr if absent
  TensorView View(const TensorInfo& info) const;
  // The whole file as mapped.
  std::span<const std::byte> mapping() const { return file_.bytes(); }

 private:
  MappedFile file_;
  SafetensorsHeader header_;
  std::map<std::string, size_t, std::less<>> index_;
};

// Streaming writer: emits the header (keys in declaration order, `__metadata__` first, padded
// with spaces so that the data region starts 8-byte aligned), then calls `fill` once per
// tensor in declaration order with a zeroed buffer of exactly its byte size and writes it, so
// that multi-GB files never sit in memory (one tensor at a time). Offsets are contiguous, as
// the HF format requires. The file is written as `path + ".partial"` and renamed when
// complete; any failure (bad spec, I/O error such as a full disk, an exception from `fill`)
// removes it and throws (`Error` naming the path for the first two).
struct TensorSpec {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
};
void WriteSafetensors(const std::string& path, const std::vector<TensorSpec>& specs,
                      const std::function<void(const TensorSpec&, std::span<std::byte>)>& fill,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace dsinfer
