// libFuzzer target for the chat layer. Byte 0 picks the target:
//   even: the bytes are a chat request (JSON): encoding either succeeds or raises
//         `dsinfer::Error` (never another exception, a crash or a hang);
//   odd:  the bytes are a completion: `ParseCompletion` never fails, and the streaming parser
//         fed the same text in pieces (sizes drawn from the bytes) gives the same result.
// Bit 1 of byte 0 selects thinking mode.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "base/error.h"
#include "text/chat_encoding.h"
#include "text/completion_parser.h"
#include "text/py_json.h"

namespace {

using namespace dsinfer::text;

void FuzzRequest(std::string_view body, bool thinking) {
  try {
    nlohmann::ordered_json req = ParseJsonText(body, "fuzz");
    if (thinking && req.is_object()) req["chat_template_kwargs"] = {{"thinking", true}};
    (void)EncodeChatRequest(req);
  } catch (const dsinfer::Error&) {
  }
}

void FuzzCompletion(std::string_view text, ThinkingMode mode) {
  ParsedCompletion want = ParseCompletion(text, mode);
  StreamingCompletionParser parser(mode);
  ParsedCompletion got;
  auto absorb = [&got](const std::vector<CompletionEvent>& events) {
    for (const CompletionEvent& e : events) {
      if (e.kind == CompletionEvent::Kind::kReasoning) got.reasoning_content += e.text;
      if (e.kind == CompletionEvent::Kind::kContent) got.content += e.text;
      if (e.kind == CompletionEvent::Kind::kToolCall) got.tool_calls.push_back(e.tool_call);
    }
  };
  uint32_t rng = static_cast<uint32_t>(text.size()) * 2654435761u + 1;
  for (size_t i = 0; i < text.size();) {
    rng = rng * 1664525u + 1013904223u;
    size_t n = 1 + (rng >> 24) % 16;
    absorb(parser.Feed(text.substr(i, n)));
    i += n;
  }
  absorb(parser.Finish());
  if (got.reasoning_content != want.reasoning_content || got.content != want.content ||
      got.tool_calls != want.tool_calls)
    std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  bool thinking = (data[0] & 2) != 0;
  if (data[0] & 1)
    FuzzCompletion(rest, thinking ? ThinkingMode::kThinking : ThinkingMode::kChat);
  else
    FuzzRequest(rest, thinking);
  return 0;
}
