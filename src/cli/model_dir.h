// The `--model DIR` convention shared by the commands that run a model (`logits`, `run`,
// `tokenize`, the default command): an explicit directory is used as given; without one, the
// default model is used and generated on first use.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "tools/gen_model.h"

namespace dsinfer::cli {

// `${XDG_CACHE_HOME:-$HOME/.cache}/dsinfer/<name>`, where generated models are kept.
std::string CacheModelDir(const std::string& name);

// `$DSINFER_DEFAULT_MODEL`, else `CacheModelDir("mini-seed0")`.
std::string DefaultModelDir();

// Generates `options` (preset, seed, sets; `out_dir` is ignored) into `dir` unless it already
// holds a model (config.json present). Generation happens in a temporary sibling directory that
// is renamed into place only when complete, so an interrupted run never leaves a half model
// behind. Prints a note and a progress bar on stderr while generating. Returns true if it
// generated.
bool EnsureGeneratedModel(const std::string& dir, const GenOptions& options);

// `EnsureGeneratedModel` of the default model: preset `mini`, seed 0.
bool EnsureDefaultModel(const std::string& dir);

// `--preset NAME [--set k=v ...]` of the benchmarks: `CacheModelDir("NAME-seed0[-k=v,...]")`,
// generated on first use (seed 0) and reused.
std::string PresetModelDir(const std::string& preset, const std::vector<std::string>& sets);

// `model` if given, else the default model directory (generated if needed).
std::string ResolveModelDir(const std::optional<std::string>& model);

}  // namespace dsinfer::cli
