// Oniguruma → PCRE2 translation: the classes follow Oniguruma (HF tokenizers), not PCRE2.
#include "text/regex.h"

#include <gtest/gtest.h>

#include "base/error.h"
#include "text/utf8.h"

namespace dsinfer::text {
namespace {

bool Matches(const char* pattern, uint32_t cp) {
  Regex re(pattern);
  std::string s;
  AppendUtf8(cp, s);
  std::vector<std::pair<size_t, size_t>> m;
  re.FindAll(s, m);
  return m.size() == 1 && m[0] == std::pair<size_t, size_t>{0, s.size()};
}

TEST(Regex, WhiteSpaceIsOniguruma) {
  // Oniguruma's \s is White_Space: U+0085 yes; U+180E (Mongolian vowel separator) and U+200B no.
  for (uint32_t cp : {0x9u, 0xAu, 0xBu, 0xCu, 0xDu, 0x20u, 0x85u, 0xA0u, 0x1680u, 0x2000u, 0x200Au,
                      0x2028u, 0x2029u, 0x202Fu, 0x205Fu, 0x3000u}) {
    EXPECT_TRUE(Matches("\\s", cp)) << std::hex << cp;
    EXPECT_FALSE(Matches("\\S", cp)) << std::hex << cp;
    EXPECT_TRUE(Matches("[\\s]", cp)) << std::hex << cp;
    EXPECT_FALSE(Matches("[^\\s]", cp)) << std::hex << cp;
  }
  for (uint32_t cp : {0x180Eu, 0x200Bu, 0xFEFFu, 0x41u, 0x4E2Du}) {
    EXPECT_FALSE(Matches("\\s", cp)) << std::hex << cp;
    EXPECT_TRUE(Matches("\\S", cp)) << std::hex << cp;
    EXPECT_TRUE(Matches("[\\S]", cp)) << std::hex << cp;
  }
}

TEST(Regex, CategoriesIncludeUnicode16Additions) {
  EXPECT_TRUE(Matches("\\p{L}", 0x31350));    // CJK Extension H (Unicode 15)
  EXPECT_TRUE(Matches("[\\p{L}]", 0x2EBF0));  // CJK Extension I (15.1)
  EXPECT_TRUE(Matches("\\p{N}", 0x10D40));    // Garay digit (16)
  EXPECT_TRUE(Matches("\\p{S}", 0x1CC00));    // legacy computing supplement (16)
  EXPECT_FALSE(Matches("\\P{L}", 0x31350));
  EXPECT_TRUE(Matches("[^\\p{P}\\p{S}]", 0x31350));
  EXPECT_FALSE(Matches("[^\\p{L}\\p{P}]", 0x31350));
  // U+1171E became Mc in Unicode 16: not Mn for Oniguruma, though PCRE2 10.42 says Mn.
  EXPECT_FALSE(Matches("\\p{Mn}", 0x1171E));
  EXPECT_TRUE(Matches("\\P{Mn}", 0x1171E));
  EXPECT_TRUE(Matches("\\p{Mc}", 0x1171E));
  EXPECT_TRUE(Matches("\\p{Mn}", 0x300));
}

TEST(Regex, EmptyMatchesFollowTheOnigCrate) {
  Regex re("a*");
  std::vector<std::pair<size_t, size_t>> m;
  re.FindAll("baab", m);
  // onig crate: (0,0) then "aa" at (1,3); the empty match at 3 right after it is skipped; (4,4).
  const std::vector<std::pair<size_t, size_t>> want = {{0, 0}, {1, 3}, {4, 4}};
  EXPECT_EQ(m, want);
}

TEST(Regex, RejectsWhatItCannotTranslate) {
  for (const char* p :
       {"\\w", "\\b", "\\h", "\\p{Han}", "[[:alpha:]]", "[a&&b]", "[a-z", "(?y)", "[\\P{L}]"}) {
    EXPECT_THROW(Regex{p}, Error) << p;
  }
}

}  // namespace
}  // namespace dsinfer::text
