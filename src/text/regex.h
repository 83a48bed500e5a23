// Pre-tokenizer regular expressions: Hugging Face `tokenizers` patterns (Oniguruma, Ruby
// syntax) run on PCRE2 with identical results.
//
// `TranslateOnigPattern` rewrites the constructs whose meaning differs between the engines:
//   * `\p{X}` / `\P{X}` (general categories): PCRE2 10.42 has Unicode 14 tables, Oniguruma in
//     HF tokenizers has Unicode 16; the difference (unicode_delta.inc, generated from the oracle
//     by tests/text/gen_unicode_delta.py) is added or removed explicitly.
//   * `\s` / `\S`: Oniguruma = White_Space (incl. U+0085, excl. U+180E); PCRE2 UCP differs on
//     U+180E, so the set is spelled out. U+200B is in neither.
//   * `\d` / `\D` = `\p{Nd}` / `\P{Nd}` (Oniguruma's Unicode \d); `\v` = U+000B (a class in
//     PCRE2); `\uHHHH` → `\x{HHHH}`; `{,n}` → `{0,n}`; `(?m)` (Ruby dot-all) → `(?s)`;
//     `^`/`$` are always line anchors in Ruby (PCRE2_MULTILINE).
// Anything whose translation is not implemented (`\w`, `\b`, `\h`, scripts such as `\p{Han}`,
// POSIX brackets, nested classes, `&&`) raises `dsinfer::Error` naming the construct.
//
// `Regex` is immutable after construction and thread-safe; each `FindAll` call allocates its
// own PCRE2 match data.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dsinfer::text {

std::string TranslateOnigPattern(std::string_view pattern);

class Regex {
 public:
  // `onig_pattern` in HF/Oniguruma syntax; compiled with PCRE2_UTF | PCRE2_UCP and JIT.
  explicit Regex(std::string_view onig_pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // All matches in `subject` (valid UTF-8), as byte ranges, with the iteration rule of the
  // Rust `onig` crate used by HF: an empty match right after the previous match is skipped by
  // advancing one character.
  void FindAll(std::string_view subject, std::vector<std::pair<size_t, size_t>>& out) const;

  const std::string& pcre2_pattern() const { return pcre2_pattern_; }

 private:
  std::string pcre2_pattern_;
  void* code_ = nullptr;  // pcre2_code*
};

}  // namespace dsinfer::text
