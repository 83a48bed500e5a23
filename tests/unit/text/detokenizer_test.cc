// Streaming detokenizer: pieces never contain broken UTF-8 and concatenate to Decode(all ids).
#include "text/detokenizer.h"

#include <gtest/gtest.h>

#include <random>

#include "tests/unit/text/test_support.h"
#include "text/utf8.h"

namespace dsinfer::text {
namespace {

using testing::Golden;
using testing::V32Tokenizer;

// Feeds `ids` one by one; checks every piece is valid UTF-8; returns the concatenation.
std::string StreamDecode(const std::vector<int32_t>& ids) {
  Detokenizer d(V32Tokenizer());
  std::string all;
  for (int32_t id : ids) {
    const std::string piece = d.Add(id);
    EXPECT_TRUE(IsValidUtf8(piece));
    all += piece;
    EXPECT_LE(d.pending_bytes(), 3u);
  }
  const std::string tail = d.Flush();
  EXPECT_TRUE(IsValidUtf8(tail));
  EXPECT_EQ(d.pending_bytes(), 0u);
  return all + tail;
}

TEST(Detokenizer, ConcatenationEqualsDecodeOnTheGoldenCorpus) {
  for (const auto& g : Golden()) {
    const std::string streamed = StreamDecode(g.ids);
    EXPECT_EQ(streamed, V32Tokenizer().Decode(g.ids));
    if (!g.from_hex) {
      EXPECT_EQ(streamed, g.text);
    }
  }
}

// Random id sequences produce arbitrary byte soup, including invalid UTF-8.
TEST(Detokenizer, RandomIdsEqualDecode) {
  std::mt19937 rng(42);
  std::uniform_int_distribution<int32_t> any_id(0, V32Tokenizer().IdLimit() - 1);
  // Byte tokens of the ByteLevel alphabet: single bytes 0x80..0xFF, ids of lone lead/continuation.
  std::vector<int32_t> byte_ids;
  for (int b = 0x80; b < 0x100; ++b) {
    std::string bytes(1, static_cast<char>(b));
    for (int32_t id = 0; id < 128000 && byte_ids.size() < 500; ++id)
      if (V32Tokenizer().DecodedBytes(id) == bytes) byte_ids.push_back(id);
  }
  ASSERT_EQ(byte_ids.size(), 128u);
  for (int trial = 0; trial < 2000; ++trial) {
    std::vector<int32_t> ids(1 + rng() % 12);
    for (auto& id : ids) id = rng() % 2 ? byte_ids[rng() % byte_ids.size()] : any_id(rng);
    EXPECT_EQ(StreamDecode(ids), V32Tokenizer().Decode(ids));
  }
}

// Emoji and CJK split at every byte boundary: pieces appear only once a character completes.
TEST(Detokenizer, HoldsBackIncompleteCharactersAtEveryBoundary) {
  const std::string text =
      "中文👨‍👩‍👧😀é\xF0\x9F\x98";  // ends with a truncated emoji
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    Detokenizer d(V32Tokenizer());
    std::string all;
    size_t i = 0;
    while (i < text.size()) {
      const size_t n = 1 + rng() % 5;
      const std::string piece = d.AddBytes(text.substr(i, n));
      EXPECT_TRUE(IsValidUtf8(piece)) << i;
      all += piece;
      i += n;
    }
    EXPECT_EQ(all, "中文👨‍👩‍👧😀é");
    EXPECT_EQ(d.Flush(), "\xEF\xBF\xBD");  // the truncated emoji: one U+FFFD
  }
}

TEST(Detokenizer, InvalidBytesBecomeReplacementImmediately) {
  Detokenizer d(V32Tokenizer());
  EXPECT_EQ(d.AddBytes("a\xFF"), "a\xEF\xBF\xBD");
  EXPECT_EQ(d.AddBytes("\xE4\xB8"), "");
  EXPECT_EQ(d.pending_bytes(), 2u);
  EXPECT_EQ(d.AddBytes("x"), "\xEF\xBF\xBDx");  // E4 B8 is one maximal subpart
  EXPECT_EQ(d.AddBytes("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
  EXPECT_EQ(d.Flush(), "");
}

}  // namespace
}  // namespace dsinfer::text
