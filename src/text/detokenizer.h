// Streaming detokenizer: ids in one at a time, UTF-8 text pieces out.
//
// A piece never splits a UTF-8 sequence: the bytes of a token that may still be completed by the
// next token are held back. Bytes that can never become valid become U+FFFD at once, one per
// maximal subpart, and `Flush` turns a held incomplete tail into one U+FFFD. So the
// concatenation of all pieces (including `Flush`) equals `Tokenizer::Decode` of all ids.
//
// Not thread-safe (one instance per stream); the tokenizer must outlive it.
#pragma once

#include <cstdint>
#include <string>

#include "text/tokenizer.h"

namespace dsinfer::text {

class Detokenizer {
 public:
  explicit Detokenizer(const Tokenizer& tokenizer) : tokenizer_(tokenizer) {}

  // Text completed by `id` (possibly empty).
  std::string Add(int32_t id);
  // Text completed by the bytes `bytes` (exposed for tests of byte boundaries).
  std::string AddBytes(std::string_view bytes);
  // End of stream: the held bytes, each maximal subpart as U+FFFD. Resets the state.
  std::string Flush();

  // Bytes held back waiting for the rest of a UTF-8 sequence (0..3).
  size_t pending_bytes() const { return pending_.size(); }

 private:
  const Tokenizer& tokenizer_;
  std::string pending_;
};

}  // namespace dsinfer::text
