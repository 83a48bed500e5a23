// Added-token matching of HF `tokenizers` (tokenizer/added_vocabulary.rs): two leftmost-longest
// tries, one for tokens with `normalized: false` (searched in the raw text) and one for
// `normalized: true` (searched in the normalized remainder), with HF's `single_word`, `lstrip`
// and `rstrip` rules. Immutable after construction: thread-safe.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "text/tokenizer.h"

namespace dsinfer::text {

// A piece of the input: an added token (`token` = index into the token list) or plain text.
struct Segment {
  size_t begin, end;  // byte offsets
  int32_t token = -1;
};

class AddedVocab {
 public:
  // Tokens with `normalized == normalized_set` go into this trie.
  AddedVocab(const std::vector<AddedToken>& tokens, bool normalized_set);

  // Splits `text` like HF `AddedVocabulary::find_matches`; appends segments (offsets relative
  // to `text` plus `base`) to `out`.
  void Split(std::string_view text, size_t base, std::vector<Segment>& out) const;

  bool empty() const { return nodes_.size() == 1; }

 private:
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> edges;  // byte → child node
    int32_t token = -1;
  };
  // Index of the longest token starting at `pos`, and its length; token -1 if none.
  std::pair<int32_t, size_t> Longest(std::string_view text, size_t pos) const;

  const std::vector<AddedToken>& tokens_;
  std::vector<Node> nodes_;
  bool first_byte_[256] = {};
};

// Unicode White_Space (Rust regex `\s`, used by HF's lstrip/rstrip).
bool IsWhiteSpace(uint32_t cp);

}  // namespace dsinfer::text
