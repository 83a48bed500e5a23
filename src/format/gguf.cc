#include "format/gguf.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <numeric>

#include "base/error.h"

namespace dsinfer {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr int kMaxArrayDepth = 8;
constexpr uint32_t kMaxDims = 4;

// Bytes of one fixed-size scalar, or 0 for STRING/ARRAY.
size_t ScalarSize(GgufType t) {
  switch (t) {
    case GgufType::kU8:
    case GgufType::kI8:
    case GgufType::kBool:
      return 1;
    case GgufType::kU16:
    case GgufType::kI16:
      return 2;
    case GgufType::kU32:
    case GgufType::kI32:
    case GgufType::kF32:
      return 4;
    case GgufType::kU64:
    case GgufType::kI64:
    case GgufType::kF64:
      return 8;
    default:
      return 0;
  }
}

// The fewest bytes one value of type `t` can occupy (bounds counts before allocating).
uint64_t MinEncodedSize(GgufType t) {
  if (t == GgufType::kString) return 8;  // u64 length
  if (t == GgufType::kArray) return 12;  // u32 type + u64 count
  return ScalarSize(t);
}

bool ValidType(uint32_t t) { return t <= static_cast<uint32_t>(GgufType::kF64); }

// A scalar of type `t` decoded from its little-endian bytes at `p`.
GgufValue DecodeScalar(GgufType t, const std::byte* p) {
  GgufValue v;
  v.type = t;
  uint64_t bits = 0;
  std::memcpy(&bits, p, ScalarSize(t));  // little-endian host (x86-64)
  switch (t) {
    case GgufType::kU8:
    case GgufType::kU16:
    case GgufType::kU32:
    case GgufType::kU64:
    case GgufType::kBool:
      v.u = bits;
      break;
    case GgufType::kI8:
      v.i = static_cast<int8_t>(bits);
      break;
    case GgufType::kI16:
      v.i = static_cast<int16_t>(bits);
      break;
    case GgufType::kI32:
      v.i = static_cast<int32_t>(bits);
      break;
    case GgufType::kI64:
      v.i = static_cast<int64_t>(bits);
      break;
    case GgufType::kF32:
      v.f = std::bit_cast<float>(static_cast<uint32_t>(bits));
      break;
    case GgufType::kF64:
      v.f = std::bit_cast<double>(bits);
      break;
    default:
      DSINFER_CHECK(false, "not a scalar type");
  }
  return v;
}

// A bounds-checked cursor over the file image. Every failure names the file, what was being
// read and the byte offset.
class Reader {
 public:
  Reader(std::span<const std::byte> file, const std::string& file_name)
      : file_(file), name_(file_name) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return file_.size() - pos_; }

  [[noreturn]] void Fail(const std::string& what, uint64_t at) const {
    throw Error(name_ + ": " + what + " (at byte " + std::to_string(at) + ")");
  }
  void Need(uint64_t n, const std::string& what) const {
    if (n > remaining())
      Fail("truncated file: " + what + " needs " + std::to_string(n) + " bytes but only " +
               std::to_string(remaining()) + " remain",
           pos_);
  }
  const std::byte* Take(uint64_t n, const std::string& what) {
    Need(n, what);
    const std::byte* p = file_.data() + pos_;
    pos_ += n;
    return p;
  }
  template <class T>
  T Read(const std::string& what) {
    T v;
    std::memcpy(&v, Take(sizeof(T), what), sizeof(T));
    return v;
  }
  std::string ReadString(const std::string& what) {
    const uint64_t at = pos_;
    const uint64_t len = Read<uint64_t>("the length of " + what);
    if (len > remaining())
      Fail("string length " + std::to_string(len) + " of " + what + " exceeds the " +
               std::to_string(remaining()) +
               " bytes left in the file (truncated file or corrupt length)",
           at);
    const std::byte* p = Take(len, what);
    return std::string(reinterpret_cast<const char*>(p), len);
  }
  GgufType ReadType(const std::string& what) {
    const uint64_t at = pos_;
    const uint32_t t = Read<uint32_t>(what);
    if (!ValidType(t)) Fail("unknown value type " + std::to_string(t) + " of " + what, at);
    return static_cast<GgufType>(t);
  }
  GgufValue ReadValue(GgufType type, const std::string& what, int depth);

 private:
  void CheckBools(const std::byte* p, uint64_t n, const std::string& what, uint64_t at) const {
    for (uint64_t k = 0; k < n; ++k)
      if (static_cast<uint8_t>(p[k]) > 1)
        Fail("BOOL value " + std::to_string(static_cast<int>(p[k])) + " (not 0 or 1) in " + what,
             at + k);
  }
  GgufValue ReadArray(const std::string& what, int depth);

  std::span<const std::byte> file_;
  const std::string& name_;
  uint64_t pos_ = 0;
};

GgufValue Reader::ReadValue(GgufType type, const std::string& what, int depth) {
  if (type == GgufType::kString) {
    GgufValue v;
    v.type = type;
    v.str = ReadString(what);
    return v;
  }
  if (type == GgufType::kArray) return ReadArray(what, depth);
  const uint64_t at = pos_;
  const std::byte* p = Take(ScalarSize(type), what);
  if (type == GgufType::kBool) CheckBools(p, 1, what, at);
  return DecodeScalar(type, p);
}

GgufValue Reader::ReadArray(const std::string& what, int depth) {
  const uint64_t at = pos_;
  if (depth >= kMaxArrayDepth)
    Fail("arrays nested deeper than " + std::to_string(kMaxArrayDepth) + " in " + what, at);
  GgufValue v;
  v.type = GgufType::kArray;
  v.elem_type = ReadType("the element type of " + what);
  v.count = Read<uint64_t>("the element count of " + what);
  const uint64_t min_size = MinEncodedSize(v.elem_type);
  if (v.count > remaining() / min_size)
    Fail("array of " + std::to_string(v.count) + " " + std::string(GgufTypeName(v.elem_type)) +
             " in " + what + " cannot fit in the " + std::to_string(remaining()) +
             " bytes left in the file",
         at);
  if (v.elem_type == GgufType::kString) {
    v.strings.reserve(v.count);
    for (uint64_t k = 0; k < v.count; ++k)
      v.strings.push_back(ReadString("element " + std::to_string(k) + " of " + what));
  } else if (v.elem_type == GgufType::kArray) {
    v.arrays.reserve(v.count);
    for (uint64_t k = 0; k < v.count; ++k)
      v.arrays.push_back(ReadArray("element " + std::to_string(k) + " of " + what, depth + 1));
  } else {
    const uint64_t data_at = pos_;
    const std::byte* p = Take(v.count * min_size, "the elements of " + what);
    if (v.elem_type == GgufType::kBool) CheckBools(p, v.count, what, data_at);
    v.raw.assign(p, p + v.count * min_size);
  }
  return v;
}

std::string Quoted(const std::string& s) { return "'" + s + "'"; }

// The header fields up to the counts; refuses other versions by name.
void ReadPreamble(Reader& r, GgufHeader& h, uint64_t& n_tensors, uint64_t& n_kv) {
  const uint32_t magic = r.Read<uint32_t>("the magic number");
  if (magic != kMagic) {
    char shown[5] = {};
    std::memcpy(shown, &magic, 4);
    for (char& c : shown)
      if (c != 0 && (c < 32 || c > 126)) c = '?';
    r.Fail("bad magic \"" + std::string(shown, 4) + "\": not a GGUF file (expected \"GGUF\")", 0);
  }
  h.version = r.Read<uint32_t>("the version");
  if (h.version == 1) r.Fail("GGUF version 1 (32-bit counts) is not supported; use v2 or v3", 4);
  if (__builtin_bswap32(h.version) == 2 || __builtin_bswap32(h.version) == 3)
    r.Fail("big-endian GGUF files are not supported", 4);
  if (h.version != 2 && h.version != 3)
    r.Fail("unsupported GGUF version " + std::to_string(h.version) + " (expected 2 or 3)", 4);
  n_tensors = r.Read<uint64_t>("the tensor count");
  n_kv = r.Read<uint64_t>("the metadata count");
  // Each KV takes at least 13 bytes (key length, type, a 1-byte value).
  if (n_kv > r.remaining() / 13)
    r.Fail("metadata count " + std::to_string(n_kv) + " cannot fit in the " +
               std::to_string(r.remaining()) +
               " bytes after the header (truncated file or corrupt count)",
           16);
}

void ReadMetadata(Reader& r, GgufHeader& h, uint64_t n_kv) {
  std::map<std::string, size_t, std::less<>> seen;
  for (uint64_t k = 0; k < n_kv; ++k) {
    const uint64_t at = r.pos();
    std::string key = r.ReadString("the key of metadata entry " + std::to_string(k));
    if (seen.count(key)) r.Fail("duplicate metadata key " + Quoted(key), at);
    const std::string what = "key " + Quoted(key);
    const GgufType type = r.ReadType("the value type of " + what);
    GgufValue value = r.ReadValue(type, what, /*depth=*/0);
    if (key == "general.alignment") {
      if (type != GgufType::kU32)
        r.Fail("key 'general.alignment' must be UINT32, got " + std::string(GgufTypeName(type)),
               at);
      if (value.u == 0 || !std::has_single_bit(value.u))
        r.Fail("key 'general.alignment' = " + std::to_string(value.u) + " is not a power of two",
               at);
      h.alignment = value.u;
    }
    seen.emplace(key, h.metadata.size());
    h.metadata.emplace_back(std::move(key), std::move(value));
  }
}

// Reads the tensor infos; `info_at[t]` receives the byte offset of tensor t's entry.
void ReadTensorInfos(Reader& r, GgufHeader& h, uint64_t n_tensors, std::vector<uint64_t>& info_at) {
  // Each tensor info takes at least 24 bytes (name length, n_dims, type, offset).
  if (n_tensors > r.remaining() / 24)
    r.Fail("tensor count " + std::to_string(n_tensors) + " cannot fit in the " +
               std::to_string(r.remaining()) +
               " bytes after the metadata (truncated file or corrupt count)",
           8);
  std::map<std::string, size_t, std::less<>> seen;
  for (uint64_t t = 0; t < n_tensors; ++t) {
    const uint64_t at = r.pos();
    GgufTensorInfo info;
    info.name = r.ReadString("the name of tensor " + std::to_string(t));
    if (seen.count(info.name)) r.Fail("duplicate tensor name " + Quoted(info.name), at);
    const std::string what = "tensor " + Quoted(info.name);
    const uint32_t n_dims = r.Read<uint32_t>("n_dims of " + what);
    if (n_dims < 1 || n_dims > kMaxDims)
      r.Fail(what + " has " + std::to_string(n_dims) + " dims (expected 1 to 4)", at);
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t dim = r.Read<uint64_t>("dims of " + what);
      if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        r.Fail(what + " has a negative dim " + std::to_string(static_cast<int64_t>(dim)), at);
      info.dims.push_back(static_cast<int64_t>(dim));
    }
    const uint64_t type_at = r.pos();
    const uint32_t type = r.Read<uint32_t>("the type of " + what);
    const GgmlTypeInfo* ti = FindGgmlType(type);
    if (ti == nullptr) r.Fail(what + " has unknown ggml type " + std::to_string(type), type_at);
    info.type = ti->type;
    info.offset = r.Read<uint64_t>("the data offset of " + what);
    seen.emplace(info.name, h.tensors.size());
    h.tensors.push_back(std::move(info));
    info_at.push_back(at);
  }
}

// Sizes, alignment, bounds and overlaps of the tensor data.
void CheckTensorData(const Reader& r, GgufHeader& h, const std::vector<uint64_t>& info_at,
                     uint64_t file_size) {
  if (!h.tensors.empty() && h.data_offset > file_size)
    r.Fail("truncated file: the data section starts at byte " + std::to_string(h.data_offset) +
               " (after the tensor infos and padding to " + std::to_string(h.alignment) +
               ") but the file has " + std::to_string(file_size) + " bytes",
           file_size);
  const uint64_t data_size = h.data_offset <= file_size ? file_size - h.data_offset : 0;
  for (size_t t = 0; t < h.tensors.size(); ++t) {
    GgufTensorInfo& info = h.tensors[t];
    const std::string what = "tensor " + Quoted(info.name);
    const GgmlTypeInfo& ti = GgmlTypeOf(info.type);
    int64_t numel = 1;
    for (int64_t d : info.dims)
      if (__builtin_mul_overflow(numel, d, &numel))
        r.Fail(what + ": the product of its dims overflows 64 bits", info_at[t]);
    if (info.dims[0] % ti.block_elems != 0)
      r.Fail(what + ": dims[0] = " + std::to_string(info.dims[0]) + " is not a multiple of the " +
                 std::string(ti.name) + " block of " + std::to_string(ti.block_elems),
             info_at[t]);
    if (__builtin_mul_overflow(static_cast<uint64_t>(numel / ti.block_elems), ti.block_bytes,
                               &info.nbytes))
      r.Fail(what + ": its byte size overflows 64 bits", info_at[t]);
    if (info.offset % h.alignment != 0)
      r.Fail(what + ": data offset " + std::to_string(info.offset) +
                 " is not a multiple of the alignment " + std::to_string(h.alignment),
             info_at[t]);
    if (info.offset > data_size || info.nbytes > data_size - info.offset)
      r.Fail(what + ": data [" + std::to_string(info.offset) + ", +" + std::to_string(info.nbytes) +
                 ") lies outside the " + std::to_string(data_size) +
                 "-byte data section starting at byte " + std::to_string(h.data_offset),
             info_at[t]);
  }
  std::vector<size_t> order(h.tensors.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return h.tensors[a].offset < h.tensors[b].offset; });
  for (size_t k = 1; k < order.size(); ++k) {
    const GgufTensorInfo &prev = h.tensors[order[k - 1]], &cur = h.tensors[order[k]];
    if (prev.nbytes > 0 && cur.nbytes > 0 && prev.offset + prev.nbytes > cur.offset)
      r.Fail("tensor " + Quoted(cur.name) + ": data at offset " + std::to_string(cur.offset) +
                 " overlaps tensor " + Quoted(prev.name) + " [" + std::to_string(prev.offset) +
                 ", " + std::to_string(prev.offset + prev.nbytes) + ")",
             info_at[order[k]]);
  }
}

}  // namespace

std::string_view GgufTypeName(GgufType t) {
  static constexpr std::string_view kNames[] = {"UINT8",  "INT8",    "UINT16", "INT16",  "UINT32",
                                                "INT32",  "FLOAT32", "BOOL",   "STRING", "ARRAY",
                                                "UINT64", "INT64",   "FLOAT64"};
  const auto k = static_cast<uint32_t>(t);
  return k < std::size(kNames) ? kNames[k] : "UNKNOWN";
}

GgufValue GgufValue::At(uint64_t k) const {
  const size_t size = ScalarSize(elem_type);
  DSINFER_CHECK(type == GgufType::kArray && size > 0 && k < count, "GgufValue::At out of range");
  return DecodeScalar(elem_type, raw.data() + k * size);
}

int64_t GgufTensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

GgufHeader ParseGguf(std::span<const std::byte> file, const std::string& file_name) {
  Reader r(file, file_name);
  GgufHeader h;
  uint64_t n_tensors = 0, n_kv = 0;
  ReadPreamble(r, h, n_tensors, n_kv);
  ReadMetadata(r, h, n_kv);
  std::vector<uint64_t> info_at;
  ReadTensorInfos(r, h, n_tensors, info_at);
  h.data_offset = (r.pos() + h.alignment - 1) / h.alignment * h.alignment;
  CheckTensorData(r, h, info_at, file.size());
  return h;
}

GgufFile GgufFile::Open(const std::string& path) {
  GgufFile f;
  f.file_ = MappedFile::Open(path);
  f.header_ = ParseGguf(f.file_.bytes(), path);
  for (size_t k = 0; k < f.header_.metadata.size(); ++k)
    f.keys_.emplace(f.header_.metadata[k].first, k);
  for (size_t t = 0; t < f.header_.tensors.size(); ++t)
    f.tensors_.emplace(f.header_.tensors[t].name, t);
  return f;
}

const GgufValue* GgufFile::FindKey(std::string_view key) const {
  auto it = keys_.find(key);
  return it == keys_.end() ? nullptr : &header_.metadata[it->second].second;
}

const GgufTensorInfo* GgufFile::FindTensor(std::string_view name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &header_.tensors[it->second];
}

std::span<const std::byte> GgufFile::Bytes(const GgufTensorInfo& t) const {
  return file_.bytes().subspan(header_.data_offset + t.offset, t.nbytes);
}

std::vector<float> GgufFile::Dequantize(const GgufTensorInfo& t) const {
  const int64_t numel = t.numel(), row = t.dims[0];
  std::vector<float> out(static_cast<size_t>(numel));
  if (numel == 0) return out;
  const int64_t rows = numel / row;
  const size_t row_bytes = t.nbytes / static_cast<size_t>(rows);
  const std::span<const std::byte> bytes = Bytes(t);
  const std::string what = path() + ": tensor '" + t.name + "'";
  for (int64_t i = 0; i < rows; ++i)
    DequantizeRow(t.type, bytes.subspan(i * row_bytes, row_bytes),
                  std::span<float>(out).subspan(i * row, row), what);
  return out;
}

}  // namespace dsinfer
