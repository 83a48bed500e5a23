// UTF-8 helpers shared by the tokenizer and the streaming detokenizer.
//
// Invalid input follows the WHATWG / Unicode "maximal subpart" rule, which is what both the
// Hugging Face reference paths do with the same bytes: node's `TextDecoder` (bytes → JS string)
// and Rust's `String::from_utf8_lossy` (ByteLevel decoder output) each replace every maximal
// subpart of an ill-formed sequence by one U+FFFD. Stateless functions: thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace dsinfer::text {

inline constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

// Result of decoding one scalar value at the front of a byte string.
struct Utf8Step {
  enum Kind { kValid, kInvalid, kTruncated } kind;
  size_t length;  // kValid: bytes of the scalar; kInvalid: bytes of the maximal subpart (≥ 1);
                  // kTruncated: bytes present of a well-formed but incomplete prefix.
  uint32_t code_point;  // kValid only
};

// Decodes the scalar value at the front of `s` (non-empty).
Utf8Step DecodeUtf8Step(std::string_view s);

// True if `s` is well-formed UTF-8.
bool IsValidUtf8(std::string_view s);

// `s` with every maximal subpart of an ill-formed sequence (including a truncated one at the
// end) replaced by U+FFFD.
std::string ReplaceInvalidUtf8(std::string_view s);

// Appends the UTF-8 encoding of `cp` (a Unicode scalar value) to `out`.
void AppendUtf8(uint32_t cp, std::string& out);

}  // namespace dsinfer::text
