// `dsinfer split-experts`: one folder per rank holding that rank's share of the routed experts
// and everything else (tools/split_experts.h, docs/mpi.md).
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "cli/progress.h"
#include "tools/split_experts.h"

namespace dsinfer::cli {
namespace {

int RunSplitExperts(const SplitExpertsOptions& base) {
  SplitExpertsOptions o = base;
  SplitExpertsResult r;
  {
    ProgressBar bar("split-experts");
    o.progress = [&](uint64_t done, uint64_t total) { bar.Update(done, total); };
    r = SplitExperts(o);
  }
  for (size_t i = 0; i < r.dirs.size(); ++i)
    std::printf("wrote %s: %lld tensors, %.3f GiB (%.1f%% of the checkpoint's %.3f GiB)\n",
                r.dirs[i].c_str(), static_cast<long long>(r.tensors[i]),
                r.bytes[i] / double(1ull << 30), 100.0 * r.bytes[i] / double(r.source_bytes),
                r.source_bytes / double(1ull << 30));
  return 0;
}

CommandRegistrar reg("split-experts", [](CLI::App& app) -> RunFn {
  auto* sub = app.add_subcommand(
      "split-experts",
      "Write each MPI rank's share of a checkpoint: everything but the routed experts, and its "
      "own experts only (docs/mpi.md)");
  auto o = std::make_shared<SplitExpertsOptions>();
  sub->add_option("--model", o->model_dir, "checkpoint directory (safetensors)")->required();
  sub->add_option("--out", o->out_dir, "output folder: gets rank-R-of-N/ for each rank")
      ->required();
  sub->add_option("--ranks", o->ranks, "ranks of the job (N)")
      ->required()
      ->check(CLI::Range(1, 1 << 20));
  sub->add_option("--rank", o->only_rank, "write only this rank's share (default: every rank's)")
      ->check(CLI::Range(0, (1 << 20) - 1));
  sub->add_flag("--force", o->force, "replace existing rank-R-of-N folders");
  return [o] { return RunSplitExperts(*o); };
});

}  // namespace
}  // namespace dsinfer::cli
