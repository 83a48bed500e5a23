// libFuzzer target: ParseSafetensorsHeader must accept or reject any byte string with a
// `dsinfer::Error` — never crash, hang, leak or read outside the input. When it accepts,
// every tensor's byte range is read (ASan checks it lies inside the input) and its size is
// checked against shape × dtype size.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "base/error.h"
#include "format/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const std::byte> file(reinterpret_cast<const std::byte*>(data), size);
  try {
    dsinfer::SafetensorsHeader header = dsinfer::ParseSafetensorsHeader(file, "fuzz.safetensors");
    unsigned sum = 0;
    for (const dsinfer::TensorInfo& t : header.tensors) {
      const uint64_t nbytes = static_cast<uint64_t>(t.numel()) * dsinfer::DTypeSize(t.dtype);
      if (nbytes != t.end - t.begin || header.data_offset + t.end > size) std::abort();
      for (uint64_t i = t.begin; i < t.end; ++i) sum += data[header.data_offset + i];
    }
    volatile unsigned sink = sum;
    (void)sink;
  } catch (const dsinfer::Error&) {
    // Rejected input: the expected outcome for most of them.
  }
  return 0;
}
