// A read-only memory mapping of a whole file (RAII). Move-only; thread-safe to read.
#pragma once

#include <cstddef>
#include <span>
#include <string>

namespace dsinfer {

class MappedFile {
 public:
  // Maps `path` read-only. Throws `Error` naming the path if it cannot be opened or mapped.
  static MappedFile Open(const std::string& path);

  MappedFile() = default;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  std::span<const std::byte> bytes() const { return {data_, size_}; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

// Takes the whole pages inside `range` out of this process's memory for good: they are replaced
// by an inaccessible anonymous reservation, so neither readahead nor fault-around (which on
// recent kernels maps a file's whole large folio, up to 2 MiB, on one fault) maps them again,
// and the addresses stay reserved until the mapping that held them is unmapped. `range` must lie
// inside a live `MappedFile::bytes()` (not checked here); partial pages at its ends are kept.
// Reading a released page afterwards faults. Returns the bytes released; throws `Error` if the
// kernel refuses.
size_t ReleaseMappedPages(std::span<const std::byte> range);
// The whole pages inside `range` (part of a read-only file mapping) leave this process's resident
// memory (madvise MADV_DONTNEED) but stay mapped: a later read faults them in again from the
// file. Returns the bytes advised.
size_t DropMappedPages(std::span<const std::byte> range);

}  // namespace dsinfer
