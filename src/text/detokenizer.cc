#include "text/detokenizer.h"

#include "text/utf8.h"

namespace dsinfer::text {

std::string Detokenizer::Add(int32_t id) { return AddBytes(tokenizer_.DecodedBytes(id)); }

std::string Detokenizer::AddBytes(std::string_view bytes) {
  pending_.append(bytes);
  std::string out;
  size_t i = 0;
  while (i < pending_.size()) {
    Utf8Step step = DecodeUtf8Step(std::string_view(pending_).substr(i));
    if (step.kind == Utf8Step::kTruncated) break;  // may still complete: hold back
    if (step.kind == Utf8Step::kValid) {
      out.append(pending_, i, step.length);
    } else {
      out.append(kReplacementChar);
    }
    i += step.length;
  }
  pending_.erase(0, i);
  return out;
}

std::string Detokenizer::Flush() {
  std::string out = ReplaceInvalidUtf8(pending_);
  pending_.clear();
  return out;
}

}  // namespace dsinfer::text
