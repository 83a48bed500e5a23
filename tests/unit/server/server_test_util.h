// Shared fixtures of the server tests: a tiny generated checkpoint with the real V3.2
// vocabulary (so the real tokenizer's ids are valid), built once per build tree.
#pragma once

#include <string>

#include "tests/unit/model/tiny_checkpoint.h"

namespace dsinfer::server_test {

// One dense and one MoE layer: enough, and faster.
inline std::string TinyModelDir() {
  return MakeCheckpoint("server_tiny2", 5, {"num_hidden_layers=2"}, /*small_vocab=*/false);
}

}  // namespace dsinfer::server_test
