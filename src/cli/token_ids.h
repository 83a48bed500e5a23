// Token-id lists on the command line ("5,17,3") for `logits` and `run`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "format/config.h"

namespace dsinfer::cli {

// Parses comma-separated non-negative integers; Error naming `what` for empty or bad text.
std::vector<int32_t> ParseTokenIds(const std::string& text, const std::string& what);
// Error naming `what` if an id is ≥ vocab_size or the list exceeds max_position_embeddings.
void CheckTokenIds(const std::vector<int32_t>& ids, const ModelConfig& config,
                   const std::string& what);

}  // namespace dsinfer::cli
