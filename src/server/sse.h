// Server-sent events framing as OpenAI streams it: `data: <json>\n\n` per chunk, then
// `data: [DONE]\n\n`.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace dsinfer::server {

std::string SseData(const nlohmann::ordered_json& chunk);
std::string SseDone();

}  // namespace dsinfer::server
