// Which routed expert a checkpoint tensor belongs to (docs/mpi.md: each rank of an
// expert-parallel job reads, checks and holds only its own experts' tensors). Thread-safe.
#pragma once

#include <cstdint>
#include <string_view>

namespace dsinfer {

// The routed expert of a tensor named "model.layers.L.mlp.experts.E...." (weights and block
// scales alike), or -1 for every other tensor.
int64_t RoutedExpertOf(std::string_view name);

}  // namespace dsinfer
