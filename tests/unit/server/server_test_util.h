// Shared fixtures of the server tests: a tiny generated checkpoint with the real V3.2
// vocabulary (so the real tokenizer's ids are valid), built once per build tree.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>

#include "tools/gen_model.h"

namespace dsinfer::server_test {

// Written to a private temporary folder, then renamed into place, so concurrent test
// processes never see a partial checkpoint.
inline std::string TinyModelDir() {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(DSINFER_BINARY_DIR) / "test_models" / "server_tiny2";
  if (fs::exists(dir / "model.safetensors.index.json")) return dir.string();
  const fs::path tmp = dir.string() + ".tmp" + std::to_string(::getpid());
  GenOptions o;
  o.preset = "tiny";
  o.seed = 5;
  o.out_dir = tmp.string();
  o.sets = {"num_hidden_layers=2"};  // one dense and one MoE layer: enough, and faster
  o.force = true;
  GenerateCheckpoint(o);
  std::error_code ec;
  fs::rename(tmp, dir, ec);
  if (ec) fs::remove_all(tmp);  // another process won the race; its copy is identical
  return dir.string();
}

}  // namespace dsinfer::server_test
