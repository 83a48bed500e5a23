#include "server/api_key.h"

#include <fstream>
#include <sstream>

#include "base/error.h"

namespace dsinfer::server {
namespace {

std::string Checked(std::string key, const std::string& source) {
  if (key.empty()) throw Error(source + ": the API key is empty");
  for (char c : key) {
    if (c < 0x21 || c > 0x7e)
      throw Error(source + ": the API key must be printable ASCII without spaces");
  }
  return key;
}

}  // namespace

std::optional<std::string> ResolveApiKey(const std::optional<std::string>& from_argv,
                                         const std::optional<std::string>& file,
                                         const char* env_value) {
  if (from_argv && file) throw Error("--api-key and --api-key-file: give one of them");
  if (from_argv) return Checked(*from_argv, "--api-key");
  if (file) {
    std::ifstream in(*file, std::ios::binary);
    if (!in) throw Error(*file + ": cannot read the API key file");
    std::ostringstream ss;
    ss << in.rdbuf();
    std::string key = ss.str();
    if (key.ends_with('\n')) key.pop_back();
    if (key.ends_with('\r')) key.pop_back();
    return Checked(std::move(key), *file);
  }
  if (env_value) return Checked(env_value, kApiKeyEnv);
  return std::nullopt;
}

bool AuthorizationMatches(std::string_view authorization, std::string_view key) {
  static constexpr std::string_view kScheme = "Bearer ";
  // Every byte of the expected "Bearer KEY" is compared with the byte at the same position of
  // the input (0 past its end); differences are OR-ed, never branched on.
  unsigned diff = authorization.size() != kScheme.size() + key.size() ? 1u : 0u;
  const size_t n = kScheme.size() + key.size();
  for (size_t i = 0; i < n; ++i) {
    const unsigned char want = i < kScheme.size() ? kScheme[i] : key[i - kScheme.size()];
    const unsigned char got = i < authorization.size() ? authorization[i] : 0;
    diff |= static_cast<unsigned>(want ^ got);
    // An empty asm that "reads" diff: the compiler may not turn the loop into an early exit.
    asm volatile("" : "+r"(diff));
  }
  return diff == 0;
}

}  // namespace dsinfer::server
