// `dsinfer gen-model`: writes a random, deterministic checkpoint in the official HF layout.
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "cli/progress.h"
#include "tools/gen_model.h"

namespace dsinfer::cli {
namespace {

int RunGenModel(const GenOptions& base) {
  GenOptions o = base;
  ProgressBar bar("gen-model " + o.preset);
  o.progress = [&](uint64_t done, uint64_t total) { bar.Update(done, total); };
  const GenResult r = GenerateCheckpoint(o);
  std::printf("wrote %s: preset %s, seed %llu, %lld tensors, %.3f GiB in %d shard(s)\n",
              o.out_dir.c_str(), o.preset.c_str(), static_cast<unsigned long long>(o.seed),
              static_cast<long long>(r.num_tensors), r.total_bytes / double(1ull << 30), r.shards);
  return 0;
}

CommandRegistrar reg("gen-model", [](CLI::App& app) -> RunFn {
  auto* sub = app.add_subcommand("gen-model", "Generate a random DeepSeek-V3.2-class checkpoint");
  auto o = std::make_shared<GenOptions>();
  AddThreadsOption(sub);
  sub->add_option("--preset", o->preset, "tiny | mini | layer671b")
      ->check(CLI::IsMember(PresetNames()))
      ->capture_default_str();
  sub->add_option("--seed", o->seed, "random seed")->capture_default_str();
  sub->add_option("--out", o->out_dir, "output directory")->required();
  sub->add_option("--set", o->sets,
                  "override a config field after the preset, key=value (repeatable)")
      ->take_all()
      ->allow_extra_args(false);
  sub->add_option("--shards", o->shards, "number of safetensors shards (default: ~1 per 4 GiB)")
      ->check(CLI::NonNegativeNumber);
  sub->add_flag("--force", o->force, "write into a non-empty output directory");
  return [o] { return RunGenModel(*o); };
});

}  // namespace
}  // namespace dsinfer::cli
