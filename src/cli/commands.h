// Subcommand registration. Each cmd_*.cc adds its own CLI11 subcommand through a static
// `CommandRegistrar`, so adding a command touches no shared file:
//
//   static CommandRegistrar reg("inspect", [](CLI::App& app) {
//     auto* sub = app.add_subcommand("inspect", "...");
//     auto opts = std::make_shared<Options>();
//     sub->add_option("dir", opts->dir)->required();
//     return [opts] { return RunInspect(*opts); };   // run function, returns the exit code
//   });
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <functional>
#include <string>

namespace dsinfer {
struct EngineOptions;  // runtime/engine.h
struct LoadOptions;    // model/model.h
enum class Numerics : uint8_t;  // kernels/linear.h
}  // namespace dsinfer

namespace dsinfer::cli {

using RunFn = std::function<int()>;
using AddFn = std::function<RunFn(CLI::App&)>;

struct CommandRegistrar {
  CommandRegistrar(const std::string& name, AddFn add);
};

struct Command {
  CLI::App* sub;
  RunFn run;
};

// Adds every registered subcommand to `app` (in name order).
std::vector<Command> AddAllCommands(CLI::App& app);

// `dsinfer bench <name>`: each benchmark registers its own subcommand of `bench` from its own
// cmd_bench_*.cc file; `add` receives the `bench` app.
struct BenchRegistrar {
  BenchRegistrar(const std::string& name, AddFn add);
};

// Adds every registered benchmark to `bench` (in name order).
std::vector<Command> AddBenchCommands(CLI::App& bench);

// Adds `--threads N` (every parallel region's thread count; default: the cores this process may
// use) to a command that computes.
void AddThreadsOption(CLI::App* app);

// The arithmetic flags of a command that runs the model (docs/numerics.md), checked by CLI11.
struct NumericsFlags {
  std::string numerics = "auto";    // --numerics f32|bf16|auto (LoadOptions::numerics)
  std::string block_acts = "auto";  // --block-acts auto|int8|f32|bf16 (LoadOptions::*_block_activations)
  LoadOptions Load() const;         // the load options they select
};

// Adds `--numerics f32|bf16|auto` and `--block-acts auto|int8|f32|bf16` into `*flags`.
void AddNumericsOptions(CLI::App* app, NumericsFlags* flags);
// Adds `--block-acts auto|int8|f32|bf16` alone (commands with their own --numerics).
void AddBlockActsOption(CLI::App* app, std::string* block_acts);
// What --block-acts `block_acts` means under `numerics`: "auto" is bf16 where it can run (bf16
// numerics on a CPU with AVX512-BF16), else int8; "bf16" throws Error where it cannot run.
// Returns "int8", "f32" or "bf16".
std::string ResolveBlockActs(const std::string& block_acts, Numerics numerics);

// Speculative decoding flags of `run` and `serve` (AddSpecOptions).
struct SpecFlags {
  SpecFlags();                // the engine's defaults (EngineOptions)
  std::string spec = "none";  // --spec none | mtp
  int64_t draft = 1;          // --draft N (1..16)
  double min_acceptance = 0;  // --spec-min-acceptance (EngineOptions::min_acceptance)
  int64_t window = 0;         // --spec-window (EngineOptions::adaptive_window)
  // Sets the engine's draft (0 without --spec mtp), min_acceptance and adaptive_window.
  void Apply(EngineOptions& eo) const;
};

// Adds `--spec none|mtp`, `--draft N` (1..16), `--spec-min-acceptance A` and `--spec-window W`
// (adaptive speculation, docs/spec.md), MTP speculative decoding, to `run` and `serve`.
void AddSpecOptions(CLI::App* app, SpecFlags& flags);

// `dsinfer` with no subcommand: the README's main job on the default model.
int RunDefault();

}  // namespace dsinfer::cli
