// Tokenizer features DeepSeek's file does not use (every Split behaviour, `invert`, literal
// patterns, GPT-2 ByteLevel, Oniguruma syntax, added-token flags), against HF `tokenizers` ids
// for patched copies of the V3.2 tokenizer (tests/text/make_variants_golden.mjs).
#include <gtest/gtest.h>

#include <map>

#include "tests/unit/text/test_support.h"
#include "text/tokenizer.h"

namespace dsinfer::text {
namespace {

TEST(TokenizerVariants, MatchTheOracle) {
  std::ifstream in(testing::SourcePath("tests/text/golden/variants_golden.jsonl"));
  std::string line;
  ASSERT_TRUE(std::getline(in, line));
  const auto variants = nlohmann::json::parse(line)["variants"];
  std::map<std::string, std::unique_ptr<Tokenizer>> tokenizers;
  for (const auto& [name, patch] : variants.items()) {
    auto j = testing::V32TokenizerJson();
    if (patch.contains("pre_tokenizer")) j["pre_tokenizer"] = patch["pre_tokenizer"];
    if (patch.contains("added_flags"))
      for (auto& t : j["added_tokens"])
        if (patch["added_flags"].contains(t["content"].get<std::string>()))
          t.update(patch["added_flags"][t["content"].get<std::string>()]);
    tokenizers[name] = std::make_unique<Tokenizer>(Tokenizer::FromJsonValue(j, "", name));
  }
  size_t n = 0, agree = 0;
  while (std::getline(in, line)) {
    const auto g = nlohmann::json::parse(line);
    const auto name = g["variant"].get<std::string>();
    const auto text = g["text"].get<std::string>();
    const auto ids = tokenizers.at(name)->Encode(text);
    ++n;
    if (ids == g["ids"].get<std::vector<int32_t>>()) {
      ++agree;
    } else {
      ADD_FAILURE() << "variant " << name << " text '" << text << "'";
    }
  }
  std::printf("variant oracle agreement: %zu / %zu\n", agree, n);
  EXPECT_GE(n, 800u);
}

}  // namespace
}  // namespace dsinfer::text
