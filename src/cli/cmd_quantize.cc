// `dsinfer quantize`: HF checkpoint (official FP8, or BF16/F32) → GGUF (tools/quantize.h).
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "cli/progress.h"
#include "tools/quantize.h"

namespace dsinfer::cli {
namespace {

int RunQuantize(const QuantizeOptions& base) {
  QuantizeOptions o = base;
  QuantizeResult r;
  {
    ProgressBar bar("quantize " + o.type);
    o.progress = [&](uint64_t done, uint64_t total) { bar.Update(done, total); };
    r = QuantizeCheckpoint(o);
  }
  std::string types;
  for (const auto& [name, n] : r.type_counts)
    types += (types.empty() ? "" : ", ") + std::to_string(n) + " " + name;
  std::printf("wrote %s: %s, %lld tensors (%s), %.3f GiB, %.3f bits per weight\n",
              o.out_path.c_str(), o.type.c_str(), static_cast<long long>(r.tensors), types.c_str(),
              r.bytes / double(1ull << 30), r.bits_per_weight());
  return 0;
}

CommandRegistrar reg("quantize", [](CLI::App& app) -> RunFn {
  auto* sub = app.add_subcommand(
      "quantize",
      "Convert a checkpoint (FP8/BF16/F32 safetensors) to a llama.cpp-compatible GGUF file");
  auto o = std::make_shared<QuantizeOptions>();
  AddThreadsOption(sub);
  sub->add_option("--model", o->model_dir, "checkpoint directory")->required();
  sub->add_option("--out", o->out_path, "output .gguf file")->required();
  sub->add_option("--type", o->type, "F32 | BF16 | Q8_0 | Q6_K | Q5_K_M | Q4_K_M | IQ4_XS")
      ->check(CLI::IsMember(QuantizeTypeNames()))
      ->capture_default_str();
  return [o] { return RunQuantize(*o); };
});

}  // namespace
}  // namespace dsinfer::cli
