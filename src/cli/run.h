// Text generation shared by `dsinfer run` and the main job (`dsinfer` without arguments).
#pragma once

#include <cstdint>
#include <string>

namespace dsinfer::cli {

// Greedy generation of up to `max_new` tokens after `prompt` (one user turn of the V3.2 chat
// encoding) on the checkpoint in `model_dir`, streamed to stdout; speed on stderr.
void GenerateFromPrompt(const std::string& model_dir, const std::string& prompt, int64_t max_new);

}  // namespace dsinfer::cli
