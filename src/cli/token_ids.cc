#include "cli/token_ids.h"

#include <algorithm>
#include <cctype>
#include <cstdint>

#include "base/error.h"

namespace dsinfer::cli {

std::vector<int32_t> ParseTokenIds(const std::string& text, const std::string& what) {
  if (text.find_first_not_of(" \t") == std::string::npos)
    throw Error(what + ": no token ids given");
  std::vector<int32_t> ids;
  size_t i = 0;
  while (i <= text.size()) {
    const size_t comma = std::min(text.find(',', i), text.size());
    std::string item = text.substr(i, comma - i);
    while (!item.empty() && std::isspace(static_cast<unsigned char>(item.back()))) item.pop_back();
    while (!item.empty() && std::isspace(static_cast<unsigned char>(item.front()))) item.erase(0, 1);
    bool ok = !item.empty() && item.size() <= 10;
    for (char c : item) ok = ok && std::isdigit(static_cast<unsigned char>(c));
    if (!ok || std::stoll(item) > INT32_MAX)
      throw Error(what + ": '" + item + "' is not a token id (expected e.g. 5,17,3)");
    ids.push_back(static_cast<int32_t>(std::stoll(item)));
    i = comma + 1;
  }
  if (ids.empty()) throw Error(what + ": no token ids given");
  return ids;
}

void CheckTokenIds(const std::vector<int32_t>& ids, const ModelConfig& config,
                   const std::string& what) {
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] >= config.vocab_size)
      throw Error(what + ": token id " + std::to_string(ids[i]) + " at index " +
                  std::to_string(i) + " is not below vocab_size " +
                  std::to_string(config.vocab_size));
  if (static_cast<int64_t>(ids.size()) > config.max_position_embeddings)
    throw Error(what + ": " + std::to_string(ids.size()) +
                " ids exceed max_position_embeddings (" +
                std::to_string(config.max_position_embeddings) + ")");
}

}  // namespace dsinfer::cli
