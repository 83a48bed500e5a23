// `dsinfer split-experts`: one rank's share of a checkpoint for an expert-parallel job
// (docs/mpi.md): everything but the routed experts, and of the routed experts only rank R of N's
// (ExpertRangeOf), so a machine can hold on disk only what its rank maps. The output is a
// checkpoint directory in the official layout — the source's other files (config.json,
// tokenizer files, ...) copied, each source shard rewritten with the tensors it keeps, tensor
// bytes copied unchanged — whose index names the share in its metadata
// ({"dsinfer_expert_share": {"rank": R, "ranks": N}}, Checkpoint::expert_share), so loading it
// anywhere but as rank R of N is refused.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace dsinfer {

struct SplitExpertsOptions {
  std::string model_dir;  // a safetensors checkpoint directory (not a share, not GGUF)
  std::string out_dir;    // gets one folder per rank: rank-R-of-N
  int ranks = 2;          // 1 ≤ N ≤ n_routed_experts
  int only_rank = -1;     // ≥ 0: write this rank's share only
  bool force = false;     // replace existing share folders
  std::function<void(uint64_t done, uint64_t total)> progress{};  // tensor bytes written
};

struct SplitExpertsResult {
  std::vector<std::string> dirs;      // the share folders written, in rank order
  std::vector<uint64_t> bytes;        // their tensor bytes
  std::vector<int64_t> tensors;       // their tensor counts
  uint64_t source_bytes = 0;          // the whole checkpoint's tensor bytes
};

// Throws Error naming the problem (bad counts, a GGUF or share input, an existing output
// folder without `force`, I/O errors; a half-written share folder is removed).
SplitExpertsResult SplitExperts(const SplitExpertsOptions& o);

}  // namespace dsinfer
