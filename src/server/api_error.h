// OpenAI-style API errors: `{"error": {"message", "type", "param", "code"}}` with an HTTP
// status. Request parsing throws `ApiError`; the handlers turn it into a response.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>

namespace dsinfer::server {

class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string type, const std::string& message,
           std::optional<std::string> param = std::nullopt,
           std::optional<std::string> code = std::nullopt)
      : std::runtime_error(message),
        status_(status),
        type_(std::move(type)),
        param_(std::move(param)),
        code_(std::move(code)) {}

  // 400 invalid_request_error naming `param` (e.g. "messages[1].role").
  static ApiError Invalid(const std::string& param, const std::string& message);
  static ApiError PayloadTooLarge();

  int status() const { return status_; }
  const std::string& type() const { return type_; }
  const std::optional<std::string>& param() const { return param_; }
  const std::optional<std::string>& code() const { return code_; }
  std::string Body() const;  // the JSON text

 private:
  int status_;
  std::string type_;
  std::optional<std::string> param_, code_;
};

}  // namespace dsinfer::server
