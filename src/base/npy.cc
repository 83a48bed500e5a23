#include "base/npy.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "base/error.h"

namespace dsinfer {

namespace {

void Write(const std::string& path, const char* descr, const void* data, size_t elem,
           const std::vector<int64_t>& shape) {
  std::string dims;
  int64_t n = 1;
  for (int64_t d : shape) {
    dims += std::to_string(d) + ", ";
    n *= d;
  }
  if (shape.size() > 1) dims.resize(dims.size() - 1);  // "(2, 3)" but "(2,)"
  std::string header = std::string("{'descr': '") + descr +
                       "', 'fortran_order': False, 'shape': (" + dims + "), }";
  // Magic (6) + version (2) + length (2) + header + '\n' padded to a multiple of 64.
  const size_t total = ((10 + header.size() + 1 + 63) / 64) * 64;
  header.append(total - 10 - header.size() - 1, ' ');
  header += '\n';
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "wb"), &std::fclose);
  if (!f) throw Error(path + ": cannot create (" + std::strerror(errno) + ")");
  const uint16_t len = static_cast<uint16_t>(header.size());
  const unsigned char magic[8] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
  bool ok = std::fwrite(magic, 1, 8, f.get()) == 8 && std::fwrite(&len, 2, 1, f.get()) == 1 &&
            std::fwrite(header.data(), 1, header.size(), f.get()) == header.size() &&
            (n == 0 || std::fwrite(data, elem, n, f.get()) == static_cast<size_t>(n));
  if (!ok) throw Error(path + ": write failed (" + std::strerror(errno) + ")");
}

}  // namespace

void WriteNpy(const std::string& path, const float* data, const std::vector<int64_t>& shape) {
  Write(path, "<f4", data, 4, shape);
}

void WriteNpy(const std::string& path, const int32_t* data, const std::vector<int64_t>& shape) {
  Write(path, "<i4", data, 4, shape);
}

}  // namespace dsinfer
