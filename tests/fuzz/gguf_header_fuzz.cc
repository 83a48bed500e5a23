// libFuzzer target: ParseGguf must accept or reject any byte string with a `dsinfer::Error` —
// never crash, hang, leak or read outside the input. When it accepts, every tensor's bytes are
// read (ASan checks they lie inside the input) and decoded when its type is decodable, and its
// offset is checked against the alignment.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "base/error.h"
#include "format/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const std::byte> file(reinterpret_cast<const std::byte*>(data), size);
  try {
    const dsinfer::GgufHeader h = dsinfer::ParseGguf(file, "fuzz.gguf");
    for (const dsinfer::GgufTensorInfo& t : h.tensors) {
      if (t.offset % h.alignment != 0 || h.data_offset + t.offset + t.nbytes > size) std::abort();
      const dsinfer::GgmlTypeInfo& ti = dsinfer::GgmlTypeOf(t.type);
      if (!ti.decodable || t.nbytes == 0 || t.numel() > (1 << 16)) continue;
      const auto rows = static_cast<size_t>(t.numel() / t.dims[0]);
      std::vector<float> row(static_cast<size_t>(t.dims[0]));
      for (size_t r = 0; r < rows; ++r)
        dsinfer::DequantizeRow(
            t.type, file.subspan(h.data_offset + t.offset + r * (t.nbytes / rows), t.nbytes / rows),
            row);
    }
  } catch (const dsinfer::Error&) {
    // Rejected input: the expected outcome for most of them.
  }
  return 0;
}
