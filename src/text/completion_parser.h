// DeepSeek-V3.2 completion parsing: generated text → {reasoning_content, content, tool_calls}
// (docs/model.md §9.3), one-shot and streaming.
//
// Grammar (DeepSeek's `parse_message_from_completion_text`, made total):
//   thinking mode:  REASONING "</think>" CONTENT [TOOLS] [EOS]
//   chat mode:      CONTENT [TOOLS] [EOS]
//   TOOLS = "\n\n<｜DSML｜function_calls>\n" (INVOKE "\n")* "</｜DSML｜function_calls>"
//   INVOKE = '<｜DSML｜invoke name="N">\n' (PARAM "\n")* "</｜DSML｜invoke>"
//   PARAM = '<｜DSML｜parameter name="K" string="true|false">V</｜DSML｜parameter>'
// `string="true"` values become JSON strings; `string="false"` values must be JSON and are
// inserted verbatim; `function.arguments` is `{"K": V, ...}` in generated order, written like
// Python's `json.dumps` (", " and ": ").
//
// Where DeepSeek's parser raises, this one never fails:
//  * no `</think>` in thinking mode (generation cut short): everything is reasoning;
//  * an EOS ends the message; text after it is malformed;
//  * malformed text (a broken tool-call block, text after EOS or after the tool-call block)
//    is kept verbatim as content from the point where parsing failed: the start of the
//    tool-call block, or the end of the last complete `</｜DSML｜invoke>` (the invokes before
//    it stay tool calls, as a stream has already sent them);
//  * special tokens inside reasoning or content stay there verbatim.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "text/chat_encoding.h"

namespace dsinfer::text {

struct ParsedToolCall {
  std::string id;
  std::string name;
  std::string arguments;  // JSON object text, OpenAI's `function.arguments`

  bool operator==(const ParsedToolCall&) const = default;
};

struct ParsedCompletion {
  std::string reasoning_content;
  std::string content;
  std::vector<ParsedToolCall> tool_calls;
};

// Makes the id of the `index`-th tool call of a completion (0-based). Default: "call_<index>".
using ToolCallIdFn = std::function<std::string(size_t index)>;

ParsedCompletion ParseCompletion(std::string_view text, ThinkingMode mode,
                                 const ToolCallIdFn& make_id = {});

// The OpenAI assistant message: role, content, reasoning_content (thinking mode only) and
// tool_calls (when there are any) as [{id, type: "function", function: {name, arguments}}].
nlohmann::ordered_json ToOpenAiMessage(const ParsedCompletion& parsed, ThinkingMode mode);

struct CompletionEvent {
  enum class Kind { kReasoning, kContent, kToolCall };
  Kind kind;
  std::string text;          // kReasoning / kContent: the delta
  ParsedToolCall tool_call;  // kToolCall
};

// Incremental `ParseCompletion`: fed the text pieces of a generation (as the detokenizer
// produces them), it emits reasoning and content deltas as soon as they cannot be the start
// of a marker (`</think>`, EOS, "\n\n<｜DSML｜function_calls"), and each tool call once its
// `</｜DSML｜invoke>` is complete. For every split of a text, the concatenated events equal
// `ParseCompletion` of the whole text. Not thread-safe (one instance per generation).
class StreamingCompletionParser {
 public:
  explicit StreamingCompletionParser(ThinkingMode mode, ToolCallIdFn make_id = {});

  std::vector<CompletionEvent> Feed(std::string_view piece);
  // End of generation: flushes held-back text. Feed must not be called afterwards.
  std::vector<CompletionEvent> Finish();

 private:
  enum class State { kThink, kContent, kTools, kToolsClosed, kAfterEos, kRaw };
  void Process(bool final, std::vector<CompletionEvent>& events);
  bool StepText(bool final, std::vector<CompletionEvent>& events);
  bool StepTools(bool final, std::vector<CompletionEvent>& events);
  bool StepToolsClosed(bool final, std::vector<CompletionEvent>& events);
  void FlushRaw(std::vector<CompletionEvent>& events);

  State state_;
  ToolCallIdFn make_id_;
  std::string pending_;        // text not yet emitted; in kTools* it starts at the failure point
  bool fresh_section_ = true;  // kTools: `pending_` starts at "\n\n<｜DSML｜function_calls"
  size_t closed_end_ = 0;      // kToolsClosed: offset in `pending_` past the closing tag
  size_t n_calls_ = 0;
  bool finished_ = false;
};

}  // namespace dsinfer::text
