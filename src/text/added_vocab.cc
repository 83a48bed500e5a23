#include "text/added_vocab.h"

#include <algorithm>

#include "text/regex.h"
#include "text/utf8.h"

namespace dsinfer::text {
namespace {

// Last code point of `s` (valid UTF-8, non-empty).
uint32_t LastCodePoint(std::string_view s) {
  size_t i = s.size() - 1;
  while (i > 0 && (static_cast<uint8_t>(s[i]) & 0xC0) == 0x80) --i;
  return DecodeUtf8Step(s.substr(i)).code_point;
}

// Rust regex `\w` (HF's single_word test): Alphabetic + M + Nd + Pc + Join_Control. Alphabetic
// is approximated as L + Nl + the enclosed/circled letters (Other_Alphabetic outside M).
bool IsWordChar(uint32_t cp) {
  static const Regex word(
      "[\\p{L}\\p{Nl}\\p{M}\\p{Nd}\\p{Pc}\\x{200C}\\x{200D}\\x{24B6}-\\x{24E9}"
      "\\x{1F130}-\\x{1F149}\\x{1F150}-\\x{1F169}\\x{1F170}-\\x{1F189}]");
  std::string s;
  AppendUtf8(cp, s);
  std::vector<std::pair<size_t, size_t>> m;
  word.FindAll(s, m);
  return !m.empty();
}

// Bytes of trailing / leading White_Space in `s`.
size_t TrailingSpace(std::string_view s) {
  size_t n = s.size();
  while (n > 0) {
    size_t i = n - 1;
    while (i > 0 && (static_cast<uint8_t>(s[i]) & 0xC0) == 0x80) --i;
    if (!IsWhiteSpace(DecodeUtf8Step(s.substr(i)).code_point)) break;
    n = i;
  }
  return s.size() - n;
}

size_t LeadingSpace(std::string_view s) {
  size_t n = 0;
  while (n < s.size()) {
    Utf8Step step = DecodeUtf8Step(s.substr(n));
    if (!IsWhiteSpace(step.code_point)) break;
    n += step.length;
  }
  return n;
}

}  // namespace

bool IsWhiteSpace(uint32_t cp) {
  return (cp >= 0x9 && cp <= 0xD) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

AddedVocab::AddedVocab(const std::vector<AddedToken>& tokens, bool normalized_set)
    : tokens_(tokens), nodes_(1) {
  for (size_t t = 0; t < tokens.size(); ++t) {
    if (tokens[t].normalized != normalized_set || tokens[t].content.empty()) continue;
    int32_t node = 0;
    for (unsigned char c : tokens[t].content) {
      auto& edges = nodes_[node].edges;
      auto it = std::find_if(edges.begin(), edges.end(), [c](auto& e) { return e.first == c; });
      if (it != edges.end()) {
        node = it->second;
      } else {
        edges.emplace_back(c, static_cast<int32_t>(nodes_.size()));
        node = static_cast<int32_t>(nodes_.size());
        nodes_.emplace_back();
      }
    }
    nodes_[node].token = static_cast<int32_t>(t);
    first_byte_[static_cast<uint8_t>(tokens[t].content[0])] = true;
  }
}

std::pair<int32_t, size_t> AddedVocab::Longest(std::string_view text, size_t pos) const {
  int32_t node = 0, best = -1;
  size_t best_len = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    const auto c = static_cast<uint8_t>(text[i]);
    const auto& edges = nodes_[node].edges;
    auto it = std::find_if(edges.begin(), edges.end(), [c](auto& e) { return e.first == c; });
    if (it == edges.end()) break;
    node = it->second;
    if (nodes_[node].token >= 0) best = nodes_[node].token, best_len = i + 1 - pos;
  }
  return {best, best_len};
}

void AddedVocab::Split(std::string_view text, size_t base, std::vector<Segment>& out) const {
  size_t start_offset = 0, pos = 0;
  while (pos < text.size()) {
    if (!first_byte_[static_cast<uint8_t>(text[pos])]) {
      ++pos;
      continue;
    }
    auto [token, len] = Longest(text, pos);
    if (token < 0) {
      ++pos;
      continue;
    }
    size_t start = pos, stop = pos + len;
    pos = stop;  // the search resumes after the match, whatever lstrip/rstrip do
    const AddedToken& t = tokens_[token];
    if (t.single_word) {
      const bool start_space = start == 0 || !IsWordChar(LastCodePoint(text.substr(0, start)));
      const bool stop_space =
          stop == text.size() || !IsWordChar(DecodeUtf8Step(text.substr(stop)).code_point);
      if (!start_space || !stop_space) continue;
    }
    if (start < start_offset) continue;  // overlaps a previous rstrip: HF would emit garbage
    if (t.lstrip) start = std::max(start - TrailingSpace(text.substr(0, start)), start_offset);
    if (t.rstrip) stop += LeadingSpace(text.substr(stop));
    if (start_offset < start) out.push_back({base + start_offset, base + start, -1});
    out.push_back({base + start, base + stop, token});
    start_offset = stop;
  }
  if (start_offset < text.size()) out.push_back({base + start_offset, base + text.size(), -1});
}

}  // namespace dsinfer::text
