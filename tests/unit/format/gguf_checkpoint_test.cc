// Split-set names (llama.cpp's gguf-split: NAME-kkkkk-of-nnnnn.gguf). Loading itself is tested
// end to end against the safetensors checkpoint and the NumPy reference in tests/gguf.
#include "format/gguf_checkpoint.h"

#include <gtest/gtest.h>

#include "base/error.h"

namespace dsinfer {
namespace {

TEST(GgufSplit, PartsOfASet) {
  EXPECT_EQ(GgufSplitPaths("/m/DeepSeek-V3.2-Q4_K_M-00002-of-00003.gguf"),
            (std::vector<std::string>{"/m/DeepSeek-V3.2-Q4_K_M-00001-of-00003.gguf",
                                      "/m/DeepSeek-V3.2-Q4_K_M-00002-of-00003.gguf",
                                      "/m/DeepSeek-V3.2-Q4_K_M-00003-of-00003.gguf"}));
  EXPECT_EQ(GgufSplitPaths("x-00001-of-00001.gguf"),
            std::vector<std::string>{"x-00001-of-00001.gguf"});
}

TEST(GgufSplit, OtherNamesAreOneFile) {
  for (const char* p : {"model.gguf", "m-0001-of-00003.gguf", "m-00001-of-0000x.gguf",
                        "m_00001-of-00003.gguf", "-00001-of-00002.gguf"})
    EXPECT_EQ(GgufSplitPaths(p), std::vector<std::string>{p}) << p;
}

TEST(GgufSplit, ImpossiblePartNumbersAreErrors) {
  EXPECT_THROW(GgufSplitPaths("m-00004-of-00003.gguf"), Error);
  EXPECT_THROW(GgufSplitPaths("m-00000-of-00003.gguf"), Error);
  EXPECT_THROW(GgufSplitPaths("m-00001-of-00000.gguf"), Error);
}

TEST(GgufSplit, IsGgufPath) {
  EXPECT_TRUE(IsGgufPath("a/b.gguf"));
  EXPECT_FALSE(IsGgufPath("a/b"));
  EXPECT_FALSE(IsGgufPath(".gguf"));
  EXPECT_FALSE(IsGgufPath("models/demo"));
}

}  // namespace
}  // namespace dsinfer
