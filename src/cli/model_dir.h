// The `--model DIR` convention shared by the commands that run a model (`logits`, `run`,
// `tokenize`, the default command): an explicit directory is used as given; without one, the
// default model is used and generated on first use.
#pragma once

#include <optional>
#include <string>

namespace dsinfer::cli {

// `$DSINFER_DEFAULT_MODEL`, else `${XDG_CACHE_HOME:-$HOME/.cache}/dsinfer/mini-seed0`.
std::string DefaultModelDir();

// Generates the default model (preset `mini`, seed 0) into `dir` unless it already holds one
// (config.json present). Generation happens in a temporary sibling directory that is renamed
// into place only when complete, so an interrupted run never leaves a half model behind.
// Prints a note and a progress bar on stderr while generating. Returns true if it generated.
bool EnsureDefaultModel(const std::string& dir);

// `model` if given, else the default model directory (generated if needed).
std::string ResolveModelDir(const std::optional<std::string>& model);

}  // namespace dsinfer::cli
