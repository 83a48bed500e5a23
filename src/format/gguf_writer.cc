#include "format/gguf_writer.h"

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "base/error.h"

namespace dsinfer {
namespace {

constexpr uint64_t kAlignment = 32;

uint64_t AlignUp(uint64_t v) { return (v + kAlignment - 1) / kAlignment * kAlignment; }

class Out {
 public:
  void U32(uint32_t v) { Raw(&v, 4); }
  void U64(uint64_t v) { Raw(&v, 8); }
  void Str(const std::string& s) {
    U64(s.size());
    Raw(s.data(), s.size());
  }
  void Raw(const void* p, size_t n) {
    const auto* b = static_cast<const std::byte*>(p);
    bytes.insert(bytes.end(), b, b + n);  // little-endian host (x86-64)
  }
  void Value(const GgufValue& v) {
    switch (v.type) {
      case GgufType::kU8:
      case GgufType::kBool: {
        const uint8_t x = static_cast<uint8_t>(v.u);
        Raw(&x, 1);
        break;
      }
      case GgufType::kU32:
        U32(static_cast<uint32_t>(v.u));
        break;
      case GgufType::kU64:
        U64(v.u);
        break;
      case GgufType::kI32: {
        const int32_t x = static_cast<int32_t>(v.i);
        Raw(&x, 4);
        break;
      }
      case GgufType::kF32: {
        const float x = static_cast<float>(v.f);
        Raw(&x, 4);
        break;
      }
      case GgufType::kString:
        Str(v.str);
        break;
      case GgufType::kArray:
        U32(static_cast<uint32_t>(v.elem_type));
        U64(v.count);
        if (v.elem_type == GgufType::kString) {
          for (const std::string& s : v.strings) Str(s);
        } else {
          DSINFER_CHECK(v.elem_type != GgufType::kArray, "nested arrays are not written");
          Raw(v.raw.data(), v.raw.size());
        }
        break;
      default:
        DSINFER_CHECK(false, "GGUF writer: value type " + std::string(GgufTypeName(v.type)) +
                                 " is not written");
    }
  }
  std::vector<std::byte> bytes;
};

template <class T>
GgufValue ScalarArray(GgufType elem, const std::vector<T>& v) {
  GgufValue a;
  a.type = GgufType::kArray;
  a.elem_type = elem;
  a.count = v.size();
  a.raw.resize(v.size() * sizeof(T));
  if (!v.empty()) std::memcpy(a.raw.data(), v.data(), a.raw.size());
  return a;
}

}  // namespace

namespace {
GgufValue Typed(GgufType t) {
  GgufValue v;
  v.type = t;
  return v;
}
}  // namespace

GgufValue GgufU32(uint32_t v) {
  GgufValue x = Typed(GgufType::kU32);
  x.u = v;
  return x;
}
GgufValue GgufI32(int32_t v) {
  GgufValue x = Typed(GgufType::kI32);
  x.i = v;
  return x;
}
GgufValue GgufF32(float v) {
  GgufValue x = Typed(GgufType::kF32);
  x.f = v;
  return x;
}
GgufValue GgufBool(bool v) {
  GgufValue x = Typed(GgufType::kBool);
  x.u = v ? 1 : 0;
  return x;
}
GgufValue GgufString(std::string v) {
  GgufValue x = Typed(GgufType::kString);
  x.str = std::move(v);
  return x;
}
GgufValue GgufStringArray(std::vector<std::string> v) {
  GgufValue a = Typed(GgufType::kArray);
  a.elem_type = GgufType::kString;
  a.count = v.size();
  a.strings = std::move(v);
  return a;
}
GgufValue GgufI32Array(const std::vector<int32_t>& v) { return ScalarArray(GgufType::kI32, v); }
GgufValue GgufF32Array(const std::vector<float>& v) { return ScalarArray(GgufType::kF32, v); }

uint64_t GgufTensorSpec::nbytes() const {
  const GgmlTypeInfo& info = GgmlTypeOf(type);
  uint64_t rows = 1;
  for (size_t i = 1; i < dims.size(); ++i) rows *= static_cast<uint64_t>(dims[i]);
  return rows * static_cast<uint64_t>(dims[0] / info.block_elems) * info.block_bytes;
}

void WriteGguf(const std::string& path,
               const std::vector<std::pair<std::string, GgufValue>>& metadata,
               const std::vector<GgufTensorSpec>& specs,
               const std::function<void(size_t, const GgufSink&)>& fill) {
  Out h;
  h.Raw("GGUF", 4);
  h.U32(3);
  h.U64(specs.size());
  h.U64(metadata.size());
  for (const auto& [key, value] : metadata) {
    h.Str(key);
    h.U32(static_cast<uint32_t>(value.type));
    h.Value(value);
  }
  std::vector<uint64_t> offsets;
  uint64_t offset = 0;
  for (const GgufTensorSpec& t : specs) {
    const GgmlTypeInfo& info = GgmlTypeOf(t.type);
    if (t.dims.empty() || t.dims.size() > 4 || t.dims[0] % info.block_elems != 0)
      throw Error(path + ": tensor '" + t.name + "': dims[0] must be a multiple of the " +
                  std::string(info.name) + " block of " + std::to_string(info.block_elems));
    h.Str(t.name);
    h.U32(static_cast<uint32_t>(t.dims.size()));
    for (int64_t d : t.dims) h.U64(static_cast<uint64_t>(d));
    h.U32(static_cast<uint32_t>(t.type));
    h.U64(offset);
    offsets.push_back(offset);
    offset = AlignUp(offset + t.nbytes());
  }
  h.bytes.resize(AlignUp(h.bytes.size()));

  const std::string tmp = path + ".partial";
  auto closer = [](std::FILE* f) {
    if (f) std::fclose(f);
  };
  std::unique_ptr<std::FILE, decltype(closer)> f(std::fopen(tmp.c_str(), "wb"), closer);
  if (!f) throw Error(path + ": cannot create " + tmp);
  try {
    auto write = [&](const void* p, size_t n) {
      if (n && std::fwrite(p, 1, n, f.get()) != n)
        throw Error(path + ": write failed (disk full?)");
    };
    write(h.bytes.data(), h.bytes.size());
    uint64_t pos = 0;
    const std::byte zeros[kAlignment] = {};
    for (size_t i = 0; i < specs.size(); ++i) {
      write(zeros, offsets[i] - pos);
      uint64_t written = 0;
      const uint64_t want = specs[i].nbytes();
      fill(i, [&](std::span<const std::byte> piece) {
        if (written + piece.size() > want)
          throw Error(path + ": tensor '" + specs[i].name + "' is given more than its " +
                      std::to_string(want) + " bytes");
        write(piece.data(), piece.size());
        written += piece.size();
      });
      if (written != want)
        throw Error(path + ": tensor '" + specs[i].name + "' is given " + std::to_string(written) +
                    " of its " + std::to_string(want) + " bytes");
      pos = offsets[i] + want;
    }
    write(zeros, AlignUp(pos) - pos);
    if (std::fflush(f.get()) != 0) throw Error(path + ": write failed (disk full?)");
    f.reset();
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) throw Error(path + ": cannot rename " + tmp + ": " + ec.message());
  } catch (...) {
    f.reset();
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    throw;
  }
}

}  // namespace dsinfer
