#include "format/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <utility>

#include "base/error.h"
#include "format/json_util.h"

namespace dsinfer {
namespace {

using Json = nlohmann::ordered_json;  // keeps the header's key order (= "file order")

// The reference implementation (huggingface/safetensors) refuses headers above 100 MB.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;
// Containers nest at most: header object (0) → tensor object (1) → shape array (2).
constexpr StrictJsonOptions kHeaderJson{
    .what = "header JSON", .top_key = "tensor name", .max_depth = 2};

[[noreturn]] void Fail(const std::string& file, const std::string& what) {
  throw Error(file + ": " + what);
}

std::string Quote(std::string_view s) {
  std::string q;
  q.reserve(s.size() + 2);
  q += '"';
  q += s;
  q += '"';
  return q;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

uint64_t ReadU64LE(const std::byte* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

// A JSON number that is a non-negative integer; otherwise throws naming `what`.
uint64_t NonNegativeInteger(const Json& v, const std::string& file, const std::string& what) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer()) Fail(file, what + " is negative (" + v.dump() + ")");
  Fail(file, what + " is not an integer (" + v.dump() + ")");
}

TensorInfo ParseTensorEntry(const std::string& name, const Json& entry, const std::string& file) {
  const std::string where = "tensor " + Quote(name);
  if (!entry.is_object()) Fail(file, where + ": entry is not an object");
  auto field = [&](const char* key) -> const Json& {
    auto it = entry.find(key);
    if (it == entry.end()) Fail(file, where + ": missing \"" + key + "\"");
    return *it;
  };
  TensorInfo info;
  info.name = name;
  const Json& dtype = field("dtype");
  if (!dtype.is_string()) Fail(file, where + ": \"dtype\" is not a string");
  std::optional<DType> parsed = ParseDType(dtype.get_ref<const std::string&>());
  if (!parsed) Fail(file, where + ": unknown dtype " + dtype.dump());
  info.dtype = *parsed;

  const Json& shape = field("shape");
  if (!shape.is_array()) Fail(file, where + ": \"shape\" is not an array");
  uint64_t numel = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    uint64_t d = NonNegativeInteger(shape[i], file, where + ": shape[" + std::to_string(i) + "]");
    if (d > static_cast<uint64_t>(INT64_MAX) || __builtin_mul_overflow(numel, d, &numel) ||
        numel > static_cast<uint64_t>(INT64_MAX)) {
      Fail(file, where + ": shape " + shape.dump() + " overflows");
    }
    info.shape.push_back(static_cast<int64_t>(d));
  }
  const Json& offsets = field("data_offsets");
  if (!offsets.is_array() || offsets.size() != 2) {
    Fail(file, where + ": \"data_offsets\" is not a [begin, end] pair");
  }
  info.begin = NonNegativeInteger(offsets[0], file, where + ": data_offsets[0]");
  info.end = NonNegativeInteger(offsets[1], file, where + ": data_offsets[1]");
  if (info.end < info.begin) {
    Fail(file, where + ": data_offsets " + offsets.dump() + " end before begin");
  }
  uint64_t nbytes = 0;
  if (__builtin_mul_overflow(numel, DTypeSize(info.dtype), &nbytes) ||
      nbytes != info.end - info.begin) {
    Fail(file, where + ": shape " + ShapeString(info.shape) + " of " +
                   std::string(DTypeName(info.dtype)) + " needs " + std::to_string(numel) + " × " +
                   std::to_string(DTypeSize(info.dtype)) + " bytes, but data_offsets " +
                   offsets.dump() + " span " + std::to_string(info.end - info.begin));
  }
  return info;
}

std::map<std::string, std::string> ParseMetadata(const Json& m, const std::string& file) {
  if (!m.is_object()) Fail(file, "\"__metadata__\" is not an object");
  std::map<std::string, std::string> out;
  for (auto it = m.begin(); it != m.end(); ++it) {
    if (!it.value().is_string()) {
      Fail(file, "\"__metadata__\" value " + Quote(it.key()) + " is not a string");
    }
    out[it.key()] = it.value().get<std::string>();
  }
  return out;
}

// Every range must lie inside the data region and no two may overlap. Gaps are tolerated
// (the HF reader refuses them, but they do not make any tensor ambiguous).
void CheckRanges(const std::vector<TensorInfo>& tensors, uint64_t data_size,
                 const std::string& file) {
  std::vector<const TensorInfo*> sorted;
  for (const TensorInfo& t : tensors) {
    if (t.end > data_size) {
      Fail(file, "tensor " + Quote(t.name) + ": data_offsets [" + std::to_string(t.begin) + ", " +
                     std::to_string(t.end) + "] beyond the data region of " +
                     std::to_string(data_size) + " bytes");
    }
    sorted.push_back(&t);
  }
  std::sort(sorted.begin(), sorted.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return std::pair(a->begin, a->end) < std::pair(b->begin, b->end);
  });
  const TensorInfo* furthest = nullptr;  // the range reaching furthest so far
  for (const TensorInfo* t : sorted) {
    if (furthest != nullptr && t->begin < furthest->end && t->end > t->begin) {
      Fail(file, "tensors " + Quote(furthest->name) + " and " + Quote(t->name) +
                     " have overlapping data_offsets");
    }
    if (furthest == nullptr || t->end > furthest->end) furthest = t;
  }
}

}  // namespace

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

void TensorView::CheckAs(size_t elem_size, size_t alignment) const {
  if (elem_size != DTypeSize(info->dtype)) {
    throw Error("tensor " + Quote(info->name) + ": dtype " + std::string(DTypeName(info->dtype)) +
                " has " + std::to_string(DTypeSize(info->dtype)) + "-byte elements, read as " +
                std::to_string(elem_size) + "-byte elements");
  }
  if (reinterpret_cast<uintptr_t>(data) % alignment != 0) {
    throw Error("tensor " + Quote(info->name) + ": data is not " + std::to_string(alignment) +
                "-byte aligned in its file; copy it through bytes() instead");
  }
}

SafetensorsHeader ParseSafetensorsHeader(std::span<const std::byte> file,
                                         const std::string& file_name) {
  if (file.size() < 8) {
    Fail(file_name, "truncated: " + std::to_string(file.size()) +
                        " bytes, shorter than the 8-byte header length");
  }
  const uint64_t header_len = ReadU64LE(file.data());
  if (header_len > file.size() - 8) {
    Fail(file_name, "header length " + std::to_string(header_len) + " exceeds the file (" +
                        std::to_string(file.size()) + " bytes)");
  }
  if (header_len > kMaxHeaderBytes) {
    Fail(file_name, "header length " + std::to_string(header_len) + " exceeds 100 MiB");
  }
  std::string_view text(reinterpret_cast<const char*>(file.data()) + 8, header_len);
  Json j = ParseJsonStrict<Json>(text, file_name, kHeaderJson);
  if (!j.is_object()) Fail(file_name, "header is not a JSON object");

  SafetensorsHeader header;
  header.data_offset = 8 + header_len;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() == "__metadata__") {
      header.metadata = ParseMetadata(it.value(), file_name);
    } else {
      header.tensors.push_back(ParseTensorEntry(it.key(), it.value(), file_name));
    }
  }
  CheckRanges(header.tensors, file.size() - header.data_offset, file_name);
  return header;
}

SafetensorsFile SafetensorsFile::Open(const std::string& path) {
  SafetensorsFile f;
  f.file_ = MappedFile::Open(path);
  f.header_ = ParseSafetensorsHeader(f.file_.bytes(), path);
  for (size_t i = 0; i < f.header_.tensors.size(); ++i) {
    f.index_.emplace(f.header_.tensors[i].name, i);
  }
  return f;
}

const TensorInfo* SafetensorsFile::Find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &header_.tensors[it->second];
}

TensorView SafetensorsFile::View(const TensorInfo& info) const {
  DSINFER_DCHECK(
      &info >= header_.tensors.data() && &info < header_.tensors.data() + header_.tensors.size(),
      "TensorInfo of another file");
  return TensorView{&info, file_.bytes().data() + header_.data_offset + info.begin};
}

// ---------------------------------------------------------------------------------------------
// Writing.

namespace {

// An output file descriptor that reports every failure (including ENOSPC) naming the path.
class OutFile {
 public:
  explicit OutFile(std::string path) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) Fail(path_, std::string("cannot create: ") + std::strerror(errno));
  }
  OutFile(const OutFile&) = delete;
  OutFile& operator=(const OutFile&) = delete;
  ~OutFile() {
    if (fd_ >= 0) ::close(fd_);
  }

  void Write(const void* data, size_t size) {
    const char* p = static_cast<const char*>(data);
    while (size > 0) {
      ssize_t n = ::write(fd_, p, size);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) Fail(path_, std::string("write failed: ") + std::strerror(n < 0 ? errno : EIO));
      p += n;
      size -= static_cast<size_t>(n);
    }
  }
  void Close() {
    int fd = std::exchange(fd_, -1);
    if (::close(fd) != 0) Fail(path_, std::string("close failed: ") + std::strerror(errno));
  }

 private:
  std::string path_;
  int fd_ = -1;
};

uint64_t SpecBytes(const TensorSpec& spec, const std::string& path) {
  uint64_t n = DTypeSize(spec.dtype);
  for (int64_t d : spec.shape) {
    if (d < 0 || __builtin_mul_overflow(n, static_cast<uint64_t>(d), &n)) {
      Fail(path, "tensor " + Quote(spec.name) + ": invalid shape " + ShapeString(spec.shape));
    }
  }
  return n;
}

// The header JSON padded with spaces so that the data region starts 8-byte aligned.
std::string BuildHeader(const std::vector<TensorSpec>& specs, const std::vector<uint64_t>& sizes,
                        const std::map<std::string, std::string>& metadata,
                        const std::string& path) {
  Json j = Json::object();
  if (!metadata.empty()) j["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    const TensorSpec& s = specs[i];
    if (s.name == "__metadata__" || j.contains(s.name)) {
      Fail(path, "duplicate or reserved tensor name " + Quote(s.name));
    }
    j[s.name] = {{"dtype", DTypeName(s.dtype)},
                 {"shape", s.shape},
                 {"data_offsets", {offset, offset + sizes[i]}}};
    offset += sizes[i];
  }
  std::string text = j.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

}  // namespace

void WriteSafetensors(const std::string& path, const std::vector<TensorSpec>& specs,
                      const std::function<void(const TensorSpec&, std::span<std::byte>)>& fill,
                      const std::map<std::string, std::string>& metadata) {
  std::vector<uint64_t> sizes;
  for (const TensorSpec& s : specs) sizes.push_back(SpecBytes(s, path));
  const std::string header = BuildHeader(specs, sizes, metadata, path);

  // Written to a temporary name and renamed, so that a failed write never leaves a file that
  // looks complete.
  const std::string tmp = path + ".partial";
  try {
    OutFile out(tmp);
    std::byte len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<std::byte>(header.size() >> (8 * i));
    out.Write(len, 8);
    out.Write(header.data(), header.size());
    std::vector<std::byte> buffer;  // one tensor at a time, reused
    for (size_t i = 0; i < specs.size(); ++i) {
      buffer.assign(sizes[i], std::byte{0});
      fill(specs[i], std::span<std::byte>(buffer));
      out.Write(buffer.data(), buffer.size());
    }
    out.Close();
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    Fail(path, std::string("cannot rename from ") + tmp + ": " + std::strerror(err));
  }
}

}  // namespace dsinfer
