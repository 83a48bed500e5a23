// `dsinfer bench layer` as a function, shared by the subcommand (cmd_bench_layer.cc, which
// implements it) and the main job (cmd_default.cc), which prints a short table on the default
// model. Not thread-safe (drives one model).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "tools/bench_layer.h"

namespace dsinfer::cli {

struct LayerBenchRun {
  std::string model_dir;
  std::string positions = "0,4K,16K,64K,128K";
  std::string attention = "dsa,dense";
  std::string phase = "decode,prefill";  // and/or verify
  std::vector<int64_t> drafts = {1};     // verify: 1 + N rows per sequence for each N
  int64_t batch = 32;  // decode batch
  bool single_stream = true;  // also decode batch 1
  int64_t chunk = 512;
  double usd_per_hour = layerbench::kDefaultUsdPerHour;
  int warmup = 1;
  int reps = 3;
  double min_seconds = 0.3;
  int64_t layer = -1;
  std::string kv_cache = "fp8";
  NumericsFlags numerics{};  // --numerics f32 | bf16 | auto, --block-acts auto | int8 | f32 | bf16 (docs/numerics.md)
  bool json = false;
  std::optional<std::string> plot{};
  bool brief = false;  // a two-line header (the main job)
  bool breakdown = false;  // also the time per part and the indexer's fraction of the dot peak
};

// Measures every case (progress on stderr) and prints the table, or one JSON object per
// measurement; writes the SVG plot if asked. Throws Error for bad options. Returns 0.
int RunLayerBench(const LayerBenchRun& run);

}  // namespace dsinfer::cli
