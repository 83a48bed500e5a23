// DeepSeek-V3.2 chat encoding: OpenAI-style chat messages → prompt text (docs/model.md §9.2).
//
// The output is byte-identical to DeepSeek's `encoding/encoding_dsv32.py`
// (`encode_messages(messages, thinking_mode, drop_thinking=True)`), verified against DeepSeek's
// golden fixture (tests/golden/chat_encoding/). The text is tokenised afterwards with the
// model's tokenizer, which maps the special strings (`<｜User｜>`, `<think>`, ...) to their ids.
//
// Messages must be `nlohmann::ordered_json`: tool schemas, response formats and tool-call
// arguments are written in their given key order. Bad requests raise `dsinfer::Error` naming
// the field (`messages[2].role`). Stateless functions; thread-safe.
//
// Where we differ from the Python encoder (it has no valid output for these inputs):
//  * `content` may be an OpenAI array of `{"type": "text", "text": ...}` parts; the texts are
//    joined with "\n" (the Python would print the list's repr).
//  * A missing/null `content` on a user or tool message, a tool message without a preceding
//    assistant tool call, malformed `function.arguments`, or an assistant with N tool calls
//    followed by 1..N-1 tool results is an error (the Python prints "None", fails on an
//    assertion, or leaves `<function_results>` unclosed).
//  * In thinking mode a `developer` message before the last user turn is kept; the Python's
//    `drop_thinking_messages` drops it and then fails on an index assertion.
//  * `reasoning` is accepted as an alias of `reasoning_content` (newer OpenAI-style clients).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "text/tokenizer.h"

namespace dsinfer::text {

enum class ThinkingMode { kChat, kThinking };

struct EncodeOptions {
  ThinkingMode thinking_mode = ThinkingMode::kChat;
  // `add_default_bos_token`: start with `<｜begin▁of▁sentence｜>` (off to continue a context).
  bool add_bos = true;
  // Request-level `tools` (OpenAI format) and `response_format`, rendered as if attached to
  // `messages[0]` when it is a system message, else to an empty system message put first (so
  // the prompt is BOS + "\n\n## Tools..." + the first user turn). Null/empty: none.
  const nlohmann::ordered_json* tools = nullptr;
  const nlohmann::ordered_json* response_format = nullptr;
};

// `encode_messages` on DeepSeek-shaped messages: roles system / user / developer / assistant /
// tool; `tools` and `response_format` may be attached to system and developer messages.
std::string EncodeMessages(const nlohmann::ordered_json& messages, const EncodeOptions& options);

// The thinking flag of an OpenAI chat request: `"chat_template_kwargs": {"thinking": true}` or
// `"thinking": {"type": "enabled"}` turn it on; off by default.
ThinkingMode ThinkingModeOf(const nlohmann::ordered_json& request);

struct ChatPrompt {
  std::string text;
  ThinkingMode thinking_mode = ThinkingMode::kChat;
  // Where the format itself put control tokens (BOS, EOS, `<｜User｜>`, `<｜Assistant｜>`,
  // `<think>`, `</think>`), byte offsets into `text` in order. Tokenized with
  // `Tokenizer::EncodeWithControlTokensAt`, only these become control tokens: the same strings
  // typed in a message, a tool schema or a tool result stay text (docs/server.md).
  std::vector<TextSpan> control_tokens;
};

// A whole OpenAI chat request (`messages`, `tools`, `response_format`, thinking flag) → prompt.
// A `response_format` of type "text" (OpenAI's default) adds nothing.
ChatPrompt EncodeChatRequest(const nlohmann::ordered_json& request);

}  // namespace dsinfer::text
