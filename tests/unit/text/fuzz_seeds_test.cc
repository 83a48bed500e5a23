// The chat fuzz seeds at the request limits (tests/fuzz/chat_fuzz_corpus/limit_*, written by
// tests/fuzz/make_limit_seeds.py) stand where their names say, read as chat_fuzz reads them
// (byte 0: even = request, odd = completion; bit 1 = thinking): a request nested exactly 64
// deep (kMaxJsonDepth) in tools, response_format or a tool call's arguments string encodes,
// one level more is refused naming where; the large conversation and completion are whole.
#include <gtest/gtest.h>

#include <string>

#include "base/error.h"
#include "format/json_util.h"
#include "test_support.h"
#include "tests/unit/error_of.h"
#include "text/chat_encoding.h"
#include "text/completion_parser.h"
#include "text/py_json.h"

namespace dsinfer::text {
namespace {

std::string Seed(const std::string& name) {
  const std::string s =
      testing::ReadAll(testing::SourcePath("tests/fuzz/chat_fuzz_corpus/" + name));
  EXPECT_FALSE(s.empty()) << name << " is missing: run tests/fuzz/make_limit_seeds.py";
  return s;
}

// As chat_fuzz's FuzzRequest: the prompt, or throws.
ChatPrompt EncodeSeed(const std::string& name) {
  const std::string s = Seed(name);
  EXPECT_EQ(s[0] & 1, 0) << name << " is not a request seed";
  nlohmann::ordered_json req = ParseJsonText(std::string_view(s).substr(1), name);
  if (s[0] & 2) req["chat_template_kwargs"] = {{"thinking", true}};
  return EncodeChatRequest(req);
}

std::string EncodeError(const std::string& name) {
  return ErrorOf([&] { EncodeSeed(name); });
}

TEST(ChatFuzzSeeds, NestingAtTheLimitEncodes) {
  for (const char* name : {"limit_tools_depth64.json", "limit_response_format_depth64.json",
                           "limit_arguments_depth64.json"}) {
    EXPECT_EQ(EncodeError(name), "(no error)") << name;
  }
  // The deepest schema level is written into the prompt.
  EXPECT_NE(EncodeSeed("limit_tools_depth64.json").text.find("\"p0\": {\"type\": \"string\"}"),
            std::string::npos);
}

TEST(ChatFuzzSeeds, OneLevelPastTheLimitIsRefusedNamingWhere) {
  const std::string tools = EncodeError("limit_tools_depth65.json");
  EXPECT_NE(tools.find("tools[0].function.parameters.properties"), std::string::npos) << tools;
  EXPECT_NE(tools.find("nested deeper than 64 levels"), std::string::npos) << tools;
  const std::string format = EncodeError("limit_response_format_depth65.json");
  EXPECT_NE(format.find("response_format.json_schema.schema"), std::string::npos) << format;
  EXPECT_NE(format.find("nested deeper than 64 levels"), std::string::npos) << format;
  const std::string args = EncodeError("limit_arguments_depth65.json");
  EXPECT_NE(args.find("messages[1].tool_calls[0].function.arguments"), std::string::npos) << args;
  EXPECT_NE(args.find("nested deeper than 64 levels"), std::string::npos) << args;
}

TEST(ChatFuzzSeeds, LargeConversationAndCompletionAreWhole) {
  const ChatPrompt p = EncodeSeed("limit_large_conversation.json");
  EXPECT_EQ(p.thinking_mode, ThinkingMode::kThinking);
  EXPECT_NE(p.text.find("Question 119: what is 119 + 833?"), std::string::npos);
  EXPECT_GT(p.control_tokens.size(), 400u);
  const std::string c = Seed("limit_large_completion.txt");
  ASSERT_EQ(c[0], 3);  // completion, thinking
  const ParsedCompletion parsed =
      ParseCompletion(std::string_view(c).substr(1), ThinkingMode::kThinking);
  ASSERT_EQ(parsed.tool_calls.size(), 150u);
  EXPECT_EQ(parsed.tool_calls[149].name, "tool_149");
}

}  // namespace
}  // namespace dsinfer::text
