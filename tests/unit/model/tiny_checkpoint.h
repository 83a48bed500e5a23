// Test helpers shared by the model, runtime and server unit tests: a generated tiny checkpoint
// (tools/gen_model.h) cached in the build tree, and deterministic pseudo-random token ids.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include <unistd.h>

#include "tools/gen_model.h"

namespace dsinfer {

// Generated once per build tree and reused by every test process (generation takes seconds):
// written to a private temporary folder, then renamed into place, so concurrent test
// processes never see a partial checkpoint. `name` must identify (seed, sets, small_vocab).
// `small_vocab`: 1024 ids (small head and embeddings: fast tests), else the real vocabulary (so
// the real tokenizer's ids are valid).
inline std::string MakeCheckpoint(const std::string& name, uint64_t seed,
                                  const std::vector<std::string>& sets = {},
                                  bool small_vocab = true) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(DSINFER_BINARY_DIR) / "test_models" / name;
  if (fs::exists(dir / "model.safetensors.index.json")) return dir.string();
  const fs::path tmp = dir.string() + ".tmp" + std::to_string(::getpid());
  GenOptions o;
  o.preset = "tiny";
  o.seed = seed;
  o.out_dir = tmp.string();
  o.sets = sets;
  if (small_vocab) o.sets.push_back("vocab_size=1024");
  o.force = true;
  GenerateCheckpoint(o);
  std::error_code ec;
  fs::rename(tmp, dir, ec);
  if (ec) fs::remove_all(tmp);  // another process won the race; its copy is identical
  return dir.string();
}

inline std::vector<int32_t> Ids(int64_t n, int64_t vocab, uint32_t seed) {
  std::vector<int32_t> ids(n);
  uint64_t x = seed * 2654435761u + 12345;
  for (auto& id : ids) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    id = static_cast<int32_t>((x >> 33) % vocab);
  }
  return ids;
}

}  // namespace dsinfer
