// OpenAI request bodies → validated parameters. Every problem raises `ApiError` 400 naming
// the field (`max_tokens`, `messages[1].role`, `stop[2]`); unknown fields are ignored, as
// OpenAI does. The chat messages themselves are checked again, in depth, by the chat encoder.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace dsinfer::server {

struct SamplingParams {
  std::string model;
  std::optional<int64_t> max_tokens;            // max_tokens or max_completion_tokens; none: to ctx
  std::string max_tokens_field = "max_tokens";  // which of the two was given, for errors
  float temperature = 1.0f;                     // OpenAI's default
  float top_p = 1.0f;
  int64_t top_k = 0;  // vLLM's extension: > 0 keeps the k most likely tokens; -1 or 0: all
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;  // up to 4 non-empty strings
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  int top_logprobs = -1;       // logprobs requested: ≥ 0 alternatives per token (≤ 20)
};

struct ChatRequest {
  SamplingParams params;
  nlohmann::ordered_json body;  // the request as the chat encoder takes it
  bool thinking = false;        // thinking flag, or a `*-reasoner` model name
};

struct TextRequest {
  SamplingParams params;
  std::string prompt;
};

// The body as a JSON object; 400 naming the JSON error or the wrong top-level type.
nlohmann::ordered_json ParseJsonBody(std::string_view body);

ChatRequest ParseChatRequest(nlohmann::ordered_json body);
TextRequest ParseTextRequest(const nlohmann::ordered_json& body);

}  // namespace dsinfer::server
