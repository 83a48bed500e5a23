// The server's API key: where it comes from (`--api-key`, `--api-key-file`, or the
// DSINFER_API_KEY environment variable) and how a request's `Authorization` header is checked
// against it (in time that does not depend on where the two first differ).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace dsinfer::server {

// The environment variable read when neither --api-key nor --api-key-file is given.
inline constexpr const char* kApiKeyEnv = "DSINFER_API_KEY";

// The key to require, or nullopt (no key). At most one of `from_argv` and `file` may be set
// (Error otherwise); with neither, `env_value` (the value of DSINFER_API_KEY, nullptr if unset)
// is used. The file's content is the key, one trailing "\n" or "\r\n" removed. An empty key,
// an unreadable file, or a key with characters outside printable ASCII (it could not be sent
// in a header) is an Error naming its source.
std::optional<std::string> ResolveApiKey(const std::optional<std::string>& from_argv,
                                         const std::optional<std::string>& file,
                                         const char* env_value);

// Whether `authorization` is exactly "Bearer " + key. Reads every byte of the expected value
// whatever the input, so the time taken reveals at most the key's length.
bool AuthorizationMatches(std::string_view authorization, std::string_view key);

}  // namespace dsinfer::server
