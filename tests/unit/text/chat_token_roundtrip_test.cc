// The whole text path of a generation, end to end: an assistant turn (content, reasoning, DSML
// tool calls) is encoded by the V3.2 chat encoder, tokenized with the real tokenizer (as the
// model would emit it, token by token), streamed back through the UTF-8-safe detokenizer into
// the streaming completion parser — and must come out as the same structured message as the
// one-shot parser gives, equal to the message we started from.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "chat_test_util.h"
#include "test_support.h"
#include "text/chat_encoding.h"
#include "text/completion_parser.h"
#include "text/detokenizer.h"
#include "text/py_json.h"

namespace dsinfer::text {
namespace {

using chat_testing::ExpectMessage;
using chat_testing::ojson;
using chat_testing::kChat;
using chat_testing::kThink;

// Feeds `ids` one at a time through Detokenizer → StreamingCompletionParser.
ParsedCompletion StreamIds(const std::vector<int32_t>& ids, ThinkingMode mode) {
  Detokenizer detok(testing::V32Tokenizer());
  StreamingCompletionParser parser(mode);
  ParsedCompletion out;
  auto apply = [&out](const std::vector<CompletionEvent>& events) {
    for (const CompletionEvent& e : events) {
      if (e.kind == CompletionEvent::Kind::kReasoning) out.reasoning_content += e.text;
      if (e.kind == CompletionEvent::Kind::kContent) out.content += e.text;
      if (e.kind == CompletionEvent::Kind::kToolCall) out.tool_calls.push_back(e.tool_call);
    }
  };
  for (int32_t id : ids) {
    std::string piece = detok.Add(id);
    if (!piece.empty()) apply(parser.Feed(piece));
  }
  std::string tail = detok.Flush();
  if (!tail.empty()) apply(parser.Feed(tail));
  apply(parser.Finish());
  return out;
}

TEST(ChatTokenRoundTrip, AssistantTurnsSurviveTokenizeDetokenizeParse) {
  const char* assistants[] = {
      R"({"role": "assistant", "content": "Sure — here it is: 你好，世界 👋🏽\n\n```py\nprint(1)\n```", "reasoning_content": "User wants a greeting. 考虑一下。"})",
      R"({"role": "assistant", "reasoning_content": "Need the weather.", "tool_calls": [
          {"type": "function", "function": {"name": "get_weather", "arguments":
            "{\"city\": \"Hangzhou 杭州\", \"days\": 3, \"metric\": true, \"opts\": {\"hours\": [6, 12.5, null], \"note\": \"a \\\"quoted\\\" </x>\"}}"}},
          {"type": "function", "function": {"name": "get_time", "arguments": "{}"}}]})",
      R"({"role": "assistant", "content": "Let me check.", "reasoning_content": "R", "tool_calls": [
          {"type": "function", "function": {"name": "search", "arguments": "{\"q\": \"emoji 😀 and <｜User｜> text\"}"}}]})",
  };
  for (const char* a : assistants) {
    ojson m = ojson::parse(a);
    ojson msgs = ojson::array({ojson{{"role", "user"}, {"content", "hi"}}, m});
    for (ThinkingMode mode : {kThink, kChat}) {
      SCOPED_TRACE(std::string(a) + (mode == kThink ? " [thinking]" : " [chat]"));
      std::string prompt = EncodeMessages(msgs, {.thinking_mode = mode});
      std::string gen_prompt = chat_testing::kBos + chat_testing::kUser + "hi" +
                               chat_testing::kAsst + (mode == kThink ? "<think>" : "</think>");
      ASSERT_TRUE(prompt.starts_with(gen_prompt));
      std::string generated = prompt.substr(gen_prompt.size());
      std::vector<int32_t> ids = testing::V32Tokenizer().Encode(generated);
      ASSERT_FALSE(ids.empty());
      // Special tokens are single ids, as the model emits them.
      EXPECT_EQ(ids.back(), *testing::V32Tokenizer().eos_id());
      std::string decoded = testing::V32Tokenizer().Decode(ids);
      ASSERT_EQ(decoded, generated);
      ParsedCompletion one_shot = ParseCompletion(decoded, mode);
      ExpectMessage(one_shot, m, mode);
      ParsedCompletion streamed = StreamIds(ids, mode);
      EXPECT_EQ(streamed.content, one_shot.content);
      EXPECT_EQ(streamed.reasoning_content, one_shot.reasoning_content);
      EXPECT_EQ(streamed.tool_calls, one_shot.tool_calls);
    }
  }
}

// DeepSeek's golden conversation: each assistant turn of test_output.txt, as ids, streamed
// back, parses to the fixture's message.
TEST(ChatTokenRoundTrip, GoldenTurnsThroughTokens) {
  chat_testing::Fixture f = chat_testing::LoadFixture();
  std::vector<chat_testing::GoldenTurn> turns = chat_testing::GoldenAssistantTurns(f);
  for (size_t n = 0; n < turns.size(); ++n) {
    const chat_testing::GoldenTurn& t = turns[n];
    ASSERT_NE(t.message, nullptr);
    SCOPED_TRACE("golden assistant turn " + std::to_string(n));
    const ThinkingMode mode = t.thinking ? kThink : kChat;
    ExpectMessage(StreamIds(testing::V32Tokenizer().Encode(t.generated), mode), *t.message, mode);
  }
}

}  // namespace
}  // namespace dsinfer::text
