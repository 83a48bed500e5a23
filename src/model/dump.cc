#include "model/dump.h"

#include <cmath>
#include <filesystem>
#include <system_error>

#include "base/error.h"
#include "base/npy.h"

namespace dsinfer {

Dumper::Dumper(std::string dir) : dir_(std::move(dir)) {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) throw Error(dir_ + ": cannot create dump directory (" + ec.message() + ")");
}

std::string Dumper::Key(int64_t layer, const std::string& name) {
  if (layer < 0) return name;
  std::string key = std::to_string(layer);  // built piecewise: GCC 12 warns on "L" + ... + "."
  key.insert(key.begin(), 'L');
  key.push_back('.');
  key.append(name);
  return key;
}

void Dumper::Put(int64_t layer, const std::string& name, const float* data, int64_t rows,
                 int64_t width) {
  Rows& r = tensors_[Key(layer, name)];
  for (int64_t i = 0; i < rows; ++i) r.f.emplace_back(data + i * width, data + (i + 1) * width);
}

void Dumper::Put(int64_t layer, const std::string& name, const int32_t* data, int64_t rows,
                 int64_t width) {
  Rows& r = tensors_[Key(layer, name)];
  r.is_int = true;
  for (int64_t i = 0; i < rows; ++i) r.i.emplace_back(data + i * width, data + (i + 1) * width);
}

namespace {

template <class T>
std::vector<T> Pad(const std::vector<std::vector<T>>& rows, T fill, int64_t* width) {
  size_t w = 0;
  for (const auto& r : rows) w = std::max(w, r.size());
  std::vector<T> out(rows.size() * w, fill);  // [rows, width]
  for (size_t i = 0; i < rows.size(); ++i) std::copy(rows[i].begin(), rows[i].end(), &out[i * w]);
  *width = static_cast<int64_t>(w);
  return out;
}

}  // namespace

void Dumper::Flush() const {
  for (const auto& [key, r] : tensors_) {
    const std::string path = dir_ + "/" + key + ".npy";
    int64_t width = 0;
    if (r.is_int) {
      std::vector<int32_t> data = Pad<int32_t>(r.i, -1, &width);
      WriteNpy(path, data.data(), {static_cast<int64_t>(r.i.size()), width});
    } else {
      std::vector<float> data = Pad<float>(r.f, -INFINITY, &width);
      WriteNpy(path, data.data(), {static_cast<int64_t>(r.f.size()), width});
    }
  }
}

}  // namespace dsinfer
