#include "server/api_error.h"

#include <nlohmann/json.hpp>

namespace dsinfer::server {

ApiError ApiError::Invalid(const std::string& param, const std::string& message) {
  return ApiError(400, "invalid_request_error", message, param);
}

ApiError ApiError::PayloadTooLarge() {
  return ApiError(413, "invalid_request_error", "request body too large", std::nullopt,
                  "payload_too_large");
}

std::string ApiError::Body() const {
  nlohmann::ordered_json e;
  e["message"] = what();
  e["type"] = type_;
  e["param"] = param_ ? nlohmann::ordered_json(*param_) : nlohmann::ordered_json(nullptr);
  e["code"] = code_ ? nlohmann::ordered_json(*code_) : nlohmann::ordered_json(nullptr);
  // Invalid UTF-8 echoed from a request must not make dump() throw.
  return nlohmann::ordered_json{{"error", e}}.dump(-1, ' ', false,
                                                   nlohmann::json::error_handler_t::replace);
}

}  // namespace dsinfer::server
