// `dsinfer bench roofline`: this machine's memory bandwidth and peak arithmetic throughput,
// the denominators of every "fraction of roofline" figure the other benchmarks report.
#include <cstdio>
#include <memory>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "kernels/cpu.h"
#include "kernels/roofline.h"

namespace dsinfer::cli {
namespace {

struct RooflineOptions {
  bool json = false;
  double gib = 1.0;
  double seconds = 0.5;
};

void Progress(const char* what) { std::fprintf(stderr, "bench roofline: measuring %s...\n", what); }

int RunRoofline(const RooflineOptions& o) {
  roofline::Options opts;
  opts.bytes = static_cast<size_t>(o.gib * (1 << 30));
  opts.seconds = o.seconds;
  opts.progress = Progress;
  roofline::Result r = roofline::Measure(opts);
  const std::string isa = IsaName(r.isa);
  if (o.json) {
    auto line = [&](const char* metric, const char* unit, double v) {
      nlohmann::json j = {{"bench", "roofline"}, {"metric", metric}, {unit, v},
                          {"threads", r.threads}, {"isa", isa}};
      std::printf("%s\n", j.dump().c_str());
    };
    line("mem_read", "gbps", r.read_gbps);
    line("mem_triad", "gbps", r.triad_gbps);
    line("f32_fma", "gflops", r.fma_gflops);
    if (r.bf16_gflops > 0) line("bf16_dot", "gflops", r.bf16_gflops);
    return 0;
  }
  std::printf("CPU: %s, %d threads\n", DetectCpu().Describe().c_str(), r.threads);
  std::printf("  memory read (sum over %.2f GiB)   %8.2f GB/s\n", o.gib, r.read_gbps);
  std::printf("  memory triad (a = b + s*c)        %8.2f GB/s\n", r.triad_gbps);
  std::printf("  peak f32 FMA (%s)             %8.1f GFLOP/s\n", isa.c_str(), r.fma_gflops);
  if (r.bf16_gflops > 0)
    std::printf("  peak BF16 dot (avx512bf16)        %8.1f GFLOP/s\n", r.bf16_gflops);
  else
    std::printf("  peak BF16 dot                     n/a (no AVX512-BF16)\n");
  return 0;
}

CommandRegistrar reg("bench", [](CLI::App& app) -> RunFn {
  auto* bench = app.add_subcommand("bench", "Benchmarks: machine roofline, kernels, layers");
  bench->require_subcommand(1);
  auto ro = std::make_shared<RooflineOptions>();
  auto* roof = bench->add_subcommand("roofline", "Measured memory bandwidth and peak FMA/BF16 throughput");
  roof->add_flag("--json", ro->json, "One JSON object per measurement");
  roof->add_option("--gib", ro->gib, "Buffer size per array for the bandwidth tests, GiB")
      ->check(CLI::Range(0.01, 8.0));
  roof->add_option("--seconds", ro->seconds, "Time per compute measurement")->check(CLI::Range(0.05, 10.0));
  return [roof, ro]() -> int {
    if (roof->parsed()) return RunRoofline(*ro);
    return 2;
  };
});

}  // namespace
}  // namespace dsinfer::cli
