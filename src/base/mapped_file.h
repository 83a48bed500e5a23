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

}  // namespace dsinfer
