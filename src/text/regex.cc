#include "text/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cstdint>
#include <cstdio>

#include "base/error.h"
#include "text/utf8.h"

namespace dsinfer::text {
namespace {

using Ranges = std::vector<std::pair<uint32_t, uint32_t>>;

struct CategoryDelta {
  const char* name;
  Ranges add;     // in Oniguruma's class, not in PCRE2's
  Ranges remove;  // in PCRE2's class, not in Oniguruma's
};

const std::vector<CategoryDelta>& Deltas() {
  static const std::vector<CategoryDelta> deltas = {
#include "text/unicode_delta.inc"
  };
  return deltas;
}

// Oniguruma's `\s`: the White_Space property.
const Ranges kWhiteSpace = {{0x9, 0xD},       {0x20, 0x20},     {0x85, 0x85},     {0xA0, 0xA0},
                            {0x1680, 0x1680}, {0x2000, 0x200A}, {0x2028, 0x2029}, {0x202F, 0x202F},
                            {0x205F, 0x205F}, {0x3000, 0x3000}};

std::string Hex(uint32_t cp) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "\\x{%X}", cp);
  return buf;
}

// Class-body items for `ranges`, split around the surrogate block (invalid in UTF mode).
std::string ClassBody(const Ranges& ranges) {
  std::string out;
  for (auto [lo, hi] : ranges) {
    if (lo < 0xD800 && hi > 0xDFFF) {
      out += Hex(lo) + "-" + Hex(0xD7FF) + Hex(0xE000) + "-" + Hex(hi);
    } else {
      out += Hex(lo);
      if (hi != lo) out += "-" + Hex(hi);
    }
  }
  return out;
}

Ranges Complement(const Ranges& ranges) {
  Ranges out;
  uint32_t next = 0;
  for (auto [lo, hi] : ranges) {
    if (lo > next) out.push_back({next, lo - 1});
    next = hi + 1;
  }
  if (next <= 0x10FFFF) out.push_back({next, 0x10FFFF});
  return out;
}

[[noreturn]] void Unsupported(std::string_view pattern, const std::string& what) {
  throw Error("tokenizer regex: unsupported construct " + what + " in pattern '" +
              std::string(pattern) + "'");
}

// Translation of one `\p{name}` / `\P{name}` (negated), inside or outside a bracket class.
std::string Property(std::string_view pattern, std::string_view name, bool negated, bool in_class) {
  const CategoryDelta* delta = nullptr;
  for (const auto& d : Deltas())
    if (name == d.name) delta = &d;
  if (delta == nullptr) Unsupported(pattern, "\\p{" + std::string(name) + "}");
  const std::string base = "\\p{" + std::string(name) + "}" + ClassBody(delta->add);
  if (in_class) {
    if (!delta->remove.empty() || (negated && !delta->add.empty()))
      Unsupported(pattern, "\\p{" + std::string(name) +
                               "} (negated or with category changes) "
                               "inside a bracket class");
    return negated ? "\\P{" + std::string(name) + "}" : base;
  }
  if (delta->remove.empty()) return (negated ? "[^" : "[") + base + "]";
  const std::string removed = "[" + ClassBody(delta->remove) + "]";
  return negated ? "(?:" + removed + "|[^" + base + "])" : "(?:(?!" + removed + ")[" + base + "])";
}

struct Translator {
  std::string_view p;
  size_t i = 0;
  bool in_class = false;
  size_t class_body_start = 0;  // index in `p` of the first class-body character
  std::string out;

  void Escape() {
    if (i + 1 >= p.size()) Unsupported(p, "trailing backslash");
    const char c = p[i + 1];
    i += 2;
    switch (c) {
      case 'p':
      case 'P': {
        size_t close = p.find('}', i);
        if (i >= p.size() || p[i] != '{' || close == std::string_view::npos)
          Unsupported(p, std::string("\\") + c + " without {name}");
        std::string_view name = p.substr(i + 1, close - i - 1);
        bool negated = c == 'P';
        if (!name.empty() && name[0] == '^') {
          negated = !negated;
          name.remove_prefix(1);
        }
        out += Property(p, name, negated, in_class);
        i = close + 1;
        return;
      }
      case 's':
        out += in_class ? ClassBody(kWhiteSpace) : "[" + ClassBody(kWhiteSpace) + "]";
        return;
      case 'S':
        out += in_class ? ClassBody(Complement(kWhiteSpace)) : "[^" + ClassBody(kWhiteSpace) + "]";
        return;
      case 'd':
        out += Property(p, "Nd", false, in_class);
        return;
      case 'D':
        out += Property(p, "Nd", true, in_class);
        return;
      case 'v':
        out += "\\x{B}";
        return;
      case 'u': {
        if (i + 4 > p.size()) Unsupported(p, "\\u without 4 hex digits");
        out += "\\x{" + std::string(p.substr(i, 4)) + "}";
        i += 4;
        return;
      }
      default:
        break;
    }
    const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (letter && std::string_view("tnrfeaxcAzZ").find(c) == std::string_view::npos)
      Unsupported(p, std::string("\\") + c);
    out += '\\';
    out += c;
  }

  void Group() {
    // `p[i]` is '(' followed by '?'.
    size_t j = i + 2;
    if (j < p.size() && std::string_view(":=!>").find(p[j]) != std::string_view::npos) {
      out += p.substr(i, 3);
      i += 3;
      return;
    }
    if (j + 1 < p.size() && p[j] == '<' && (p[j + 1] == '=' || p[j + 1] == '!')) {
      out += p.substr(i, 4);
      i += 4;
      return;
    }
    std::string flags;
    while (j < p.size() && std::string_view("imx-").find(p[j]) != std::string_view::npos)
      flags += p[j] == 'm' ? 's' : p[j], ++j;  // Ruby's (?m) is dot-all
    if (flags.empty() || j >= p.size() || (p[j] != ':' && p[j] != ')'))
      Unsupported(p, "group syntax at offset " + std::to_string(i));
    out += "(?" + flags + p[j];
    i = j + 1;
  }

  void Plain() {
    const char c = p[i];
    if (in_class) {
      if (c == ']' && i != class_body_start) in_class = false;
      if (c == '[') Unsupported(p, "nested bracket class or POSIX class '['");
      if (c == '&' && i + 1 < p.size() && p[i + 1] == '&') Unsupported(p, "class intersection &&");
      out += c;
      ++i;
      return;
    }
    if (c == '[') {
      in_class = true;
      out += c;
      ++i;
      if (i < p.size() && p[i] == '^') out += p[i++];
      class_body_start = i;
      return;
    }
    if (c == '(' && i + 1 < p.size() && p[i + 1] == '?') return Group();
    if (c == '{' && i + 1 < p.size() && p[i + 1] == ',') {
      out += "{0";  // Oniguruma {,n} = {0,n}; PCRE2 10.42 would read it literally
      ++i;
      return;
    }
    out += c;
    ++i;
  }

  std::string Run() {
    while (i < p.size()) {
      if (p[i] == '\\') {
        Escape();
      } else {
        Plain();
      }
    }
    if (in_class) Unsupported(p, "unterminated bracket class");
    return out;
  }
};

// Per-thread PCRE2 scratch: one ovector pair is enough (we only read the whole match), and a
// JIT stack large enough for long whitespace runs.
struct MatchScratch {
  pcre2_match_data* data = pcre2_match_data_create(1, nullptr);
  pcre2_jit_stack* stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
  pcre2_match_context* context = pcre2_match_context_create(nullptr);
  MatchScratch() { pcre2_jit_stack_assign(context, nullptr, stack); }
  ~MatchScratch() {
    pcre2_match_context_free(context);
    pcre2_jit_stack_free(stack);
    pcre2_match_data_free(data);
  }
};

}  // namespace

std::string TranslateOnigPattern(std::string_view pattern) {
  Translator t;
  t.p = pattern;
  return t.Run();
}

Regex::Regex(std::string_view onig_pattern) : pcre2_pattern_(TranslateOnigPattern(onig_pattern)) {
  pcre2_compile_context* ctx = pcre2_compile_context_create(nullptr);
  pcre2_set_newline(ctx, PCRE2_NEWLINE_LF);
  int error = 0;
  PCRE2_SIZE offset = 0;
  code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pcre2_pattern_.data()), pcre2_pattern_.size(),
                        PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE, &error, &offset, ctx);
  pcre2_compile_context_free(ctx);
  if (code_ == nullptr) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(error, msg, sizeof msg);
    throw Error("tokenizer regex: cannot compile pattern '" + std::string(onig_pattern) +
                "': " + reinterpret_cast<char*>(msg) + " at offset " + std::to_string(offset) +
                " of its PCRE2 translation");
  }
  // JIT is an optimisation only: without it pcre2_match interprets.
  pcre2_jit_compile(static_cast<pcre2_code*>(code_), PCRE2_JIT_COMPLETE);
}

Regex::~Regex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

void Regex::FindAll(std::string_view subject, std::vector<std::pair<size_t, size_t>>& out) const {
  thread_local MatchScratch scratch;
  out.clear();
  const auto* s = reinterpret_cast<PCRE2_SPTR>(subject.data());
  size_t last_end = 0;
  bool have_last = false;
  size_t last_match_end = 0;
  while (last_end <= subject.size()) {
    int rc = pcre2_match(static_cast<pcre2_code*>(code_), s, subject.size(), last_end,
                         PCRE2_NO_UTF_CHECK, scratch.data, scratch.context);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      throw Error("tokenizer regex: matching failed: " + std::string(reinterpret_cast<char*>(msg)));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(scratch.data);
    const size_t start = ov[0], end = ov[1];
    if (start == end && have_last && last_match_end == end) {
      // Empty match right after the previous one: step over one character (onig crate rule).
      last_end += last_end < subject.size() ? DecodeUtf8Step(subject.substr(last_end)).length : 1;
      continue;
    }
    last_end = end;
    have_last = true;
    last_match_end = end;
    out.emplace_back(start, end);
  }
}

}  // namespace dsinfer::text
