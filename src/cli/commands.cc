#include "cli/commands.h"

#include <map>
#include <string>

#include "base/error.h"
#include "base/threads.h"
#include "kernels/cpu.h"
#include "kernels/linear.h"
#include "model/model.h"
#include "runtime/engine.h"

namespace dsinfer::cli {
namespace {

std::map<std::string, AddFn>& Registry() {
  static std::map<std::string, AddFn> registry;
  return registry;
}

std::map<std::string, AddFn>& BenchRegistry() {
  static std::map<std::string, AddFn> registry;
  return registry;
}

std::vector<Command> AddFrom(std::map<std::string, AddFn>& registry, CLI::App& app) {
  std::vector<Command> out;
  for (auto& [name, add] : registry) {
    size_t before = app.get_subcommands({}).size();
    RunFn run = add(app);
    auto subs = app.get_subcommands({});
    if (subs.size() > before) out.push_back({subs.back(), std::move(run)});
  }
  return out;
}

}  // namespace

CommandRegistrar::CommandRegistrar(const std::string& name, AddFn add) {
  Registry().emplace(name, std::move(add));
}

std::vector<Command> AddAllCommands(CLI::App& app) { return AddFrom(Registry(), app); }

BenchRegistrar::BenchRegistrar(const std::string& name, AddFn add) {
  BenchRegistry().emplace(name, std::move(add));
}

std::vector<Command> AddBenchCommands(CLI::App& bench) { return AddFrom(BenchRegistry(), bench); }

void AddThreadsOption(CLI::App* app) {
  app->add_option_function<int>(
         "--threads", [](const int& n) { SetComputeThreads(n); },
         "threads of every parallel region (default: the cores this process may use, " +
             std::to_string(AvailableCores()) + ", or OMP_NUM_THREADS)")
      ->check(CLI::Range(1, 4096));
}

void AddBlockActsOption(CLI::App* app, std::string* block_acts) {
  app->add_option("--block-acts", *block_acts,
                  "activations of block-quantised (GGUF Q8_0, Q2_K-Q6_K, IQ4_*) weights: auto "
                  "(bf16 in bf16 numerics on a CPU with AVX512-BF16, else int8) | int8 "
                  "(quantised per 32, integer products as llama.cpp) | f32 (exact, the reference "
                  "contract; docs/numerics.md) | bf16 (bf16 numerics on AVX512-BF16 only: Q8_0, "
                  "Q4_K, Q5_K, Q6_K, IQ4_NL and IQ4_XS weights repacked at load and multiplied with "
                  "bf16 activations; Q2_K and Q3_K as int8)")
      ->check(CLI::IsMember({"auto", "int8", "f32", "bf16"}))
      ->capture_default_str();
}

void AddNumericsOptions(CLI::App* app, NumericsFlags* flags) {
  app->add_option("--numerics", flags->numerics,
                  "matrix-product numerics: f32 (the reference) | bf16 (activations rounded to "
                  "bf16 at the GEMM inputs, DeepSeek's production numerics; docs/numerics.md) | "
                  "auto (bf16 on a CPU with AVX512-BF16, else f32)")
      ->check(CLI::IsMember({"f32", "bf16", "auto"}))
      ->capture_default_str();
  AddBlockActsOption(app, &flags->block_acts);
}

std::string ResolveBlockActs(const std::string& block_acts, Numerics numerics) {
  const bool bf16_runs = numerics == Numerics::kBf16 && LinearBf16Path() == Bf16Path::kAvx512Bf16;
  if (block_acts == "auto") return bf16_runs ? "bf16" : "int8";
  if (block_acts == "int8" || block_acts == "f32") return block_acts;
  if (block_acts != "bf16")
    throw Error("--block-acts: expected auto, int8, f32 or bf16, got '" + block_acts + "'");
  if (numerics != Numerics::kBf16)
    throw Error("--block-acts bf16 needs bf16 numerics (--numerics bf16, or auto on a CPU with "
                "AVX512-BF16)");
  if (!bf16_runs)
    throw Error("--block-acts bf16 needs a CPU with AVX512-BF16 (" + DetectCpu().Describe() + ")");
  return block_acts;
}

LoadOptions NumericsFlags::Load() const {
  const Numerics n = ParseNumerics(numerics, "--numerics");
  const std::string acts = ResolveBlockActs(block_acts, n);
  return LoadOptions{.numerics = n,
                     .int8_block_activations = acts != "f32",
                     .bf16_block_activations = acts == "bf16"};
}

SpecFlags::SpecFlags() {
  const EngineOptions defaults;
  min_acceptance = defaults.min_acceptance;
  window = defaults.adaptive_window;
}

void SpecFlags::Apply(EngineOptions& eo) const {
  eo.draft = spec == "mtp" ? draft : 0;
  eo.min_acceptance = min_acceptance;
  eo.adaptive_window = window;
}

void AddSpecOptions(CLI::App* app, SpecFlags& flags) {
  app->add_option("--spec", flags.spec, "speculative decoding: none | mtp (MTP-layer drafts)")
      ->check(CLI::IsMember({"none", "mtp"}))
      ->capture_default_str();
  app->add_option("--draft", flags.draft,
                  "with --spec mtp: drafts per step (> 1 chains the MTP layer)")
      ->check(CLI::Range(int64_t{1}, int64_t{16}))
      ->capture_default_str();
  app->add_option("--spec-min-acceptance", flags.min_acceptance,
                  "with --spec mtp: a sequence whose draft acceptance is below this after "
                  "--spec-window drafts stops drafting (negative: never)")
      ->check(CLI::Range(-1.0, 1.0))
      ->capture_default_str();
  app->add_option("--spec-window", flags.window,
                  "with --spec mtp: drafts verified before the acceptance is judged")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20))
      ->capture_default_str();
}

}  // namespace dsinfer::cli
