#include "server/sse.h"

namespace dsinfer::server {

// JSON text never contains a raw newline (dump escapes it), so one `data:` line suffices.
std::string SseData(const nlohmann::ordered_json& chunk) {
  return "data: " + chunk.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n\n";
}

std::string SseDone() { return "data: [DONE]\n\n"; }

}  // namespace dsinfer::server
