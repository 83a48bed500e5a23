// Generated token ids → the text and OpenAI deltas a response carries.
//
// `OutputText` detokenizes through the UTF-8-safe streaming detokenizer and applies the
// request's stop sequences: text that may still be the start of a stop sequence is held back,
// and a match ends the output just before it. `ChatOutput` feeds that text to the streaming
// completion parser and turns its events into `delta`s (content, reasoning_content,
// tool_calls), accumulating the final message at the same time, so the streamed and the
// non-streamed answers agree by construction. Not thread-safe (one per request).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "text/completion_parser.h"
#include "text/detokenizer.h"
#include "text/tokenizer.h"

namespace dsinfer::server {

class OutputText {
 public:
  // `drop_id`: a token whose text is not output (the EOS of a plain completion), or -1.
  OutputText(const text::Tokenizer& tokenizer, std::vector<std::string> stops, int32_t drop_id);
  // Text that is now safe to send (possibly empty). Nothing after a stop match.
  std::string Add(int32_t id);
  // End of generation: the held-back text (unless stopped).
  std::string Finish();
  bool stopped() const { return stopped_; }

 private:
  std::string Release(bool final);
  text::Detokenizer detok_;
  std::vector<std::string> stops_;
  size_t hold_ = 0;  // longest stop sequence - 1
  int32_t drop_id_;
  std::string held_;
  bool stopped_ = false;
};

class ChatOutput {
 public:
  ChatOutput(const text::Tokenizer& tokenizer, std::vector<std::string> stops,
             text::ThinkingMode mode, std::string id_prefix);
  // Deltas (`choices[0].delta` objects) produced by this token.
  std::vector<nlohmann::ordered_json> Add(int32_t id);
  std::vector<nlohmann::ordered_json> Finish();

  // The assistant message so far (role, content, reasoning_content, tool_calls).
  nlohmann::ordered_json Message() const;
  bool stopped() const { return text_.stopped(); }
  bool has_tool_calls() const { return !parsed_.tool_calls.empty(); }
  int64_t reasoning_tokens() const { return reasoning_tokens_; }

 private:
  std::vector<nlohmann::ordered_json> Deltas(std::vector<text::CompletionEvent> events);
  OutputText text_;
  text::ThinkingMode mode_;
  text::StreamingCompletionParser parser_;
  text::ParsedCompletion parsed_;
  std::optional<int32_t> think_end_;
  bool in_reasoning_;
  int64_t reasoning_tokens_ = 0;
};

}  // namespace dsinfer::server
