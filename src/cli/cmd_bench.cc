// `dsinfer bench`: `roofline` (this machine's memory bandwidth and peak arithmetic throughput,
// the denominators of every "fraction of roofline" figure) and `tokenizer`; the kernel and layer
// benchmarks register themselves as further subcommands (BenchRegistrar, cli/commands.h).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "cli/commands.h"
#include "cli/model_dir.h"
#include "kernels/cpu.h"
#include "kernels/roofline.h"
#include "text/tokenizer.h"

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
    if (r.int8_gops > 0) line("int8_dot", "gops", r.int8_gops);
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
  if (r.int8_gops > 0)
    std::printf("  peak int8 dot (avx512vnni)        %8.1f GOP/s\n", r.int8_gops);
  else
    std::printf("  peak int8 dot                     n/a (no AVX-512 VNNI)\n");
  return 0;
}

struct TokenizerOptions {
  std::optional<std::string> model;
  std::optional<std::string> tokenizer;
  std::string corpus;
  int reps = 3;
  bool json = false;
};

// Corpus: a .jsonl file of JSON strings (tests/text/golden/corpus.jsonl) or plain text lines.
std::vector<std::string> ReadCorpus(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open corpus");
  bool jsonl = path.ends_with(".jsonl");
  std::vector<std::string> lines;
  std::string line;
  for (size_t n = 1; std::getline(in, line); ++n) {
    if (!jsonl) {
      lines.push_back(line);
      continue;
    }
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_string()) throw Error(path + ":" + std::to_string(n) + ": not a JSON string");
    lines.push_back(j.get<std::string>());
  }
  return lines;
}

// Single-threaded encode throughput over the corpus: one warm-up pass (fills the BPE word
// cache, as a long-running server would have), then the best of `reps` timed passes.
int RunTokenizerBench(const TokenizerOptions& o) {
  std::string path = o.tokenizer ? *o.tokenizer : ResolveModelDir(o.model) + "/tokenizer.json";
  text::Tokenizer tok = text::Tokenizer::FromFile(path);
  std::vector<std::string> corpus = ReadCorpus(o.corpus);
  size_t bytes = 0, tokens = 0;
  for (const std::string& s : corpus) bytes += s.size();
  using Clock = std::chrono::steady_clock;
  double best = 1e30;
  for (int r = 0; r <= o.reps; ++r) {
    auto t0 = Clock::now();
    tokens = 0;
    for (const std::string& s : corpus) tokens += tok.Encode(s).size();
    double t = std::chrono::duration<double>(Clock::now() - t0).count();
    if (r > 0) best = std::min(best, t);  // pass 0 is the warm-up
  }
  double mbps = bytes / best / 1e6;
  if (o.json) {
    nlohmann::json j = {{"bench", "tokenizer"}, {"impl", "dsinfer"}, {"lines", corpus.size()},
                        {"bytes", bytes}, {"tokens", tokens}, {"seconds", best}, {"mb_per_s", mbps}};
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("dsinfer tokenizer: %zu lines, %.2f MB, %zu tokens: %.3f s = %.2f MB/s (1 thread)\n",
                corpus.size(), bytes / 1e6, tokens, best, mbps);
  }
  return 0;
}

CommandRegistrar reg("bench", [](CLI::App& app) -> RunFn {
  auto* bench = app.add_subcommand("bench", "Benchmarks: machine roofline, kernels, layers");
  bench->require_subcommand(1);
  auto ro = std::make_shared<RooflineOptions>();
  auto* roof = bench->add_subcommand("roofline", "Measured memory bandwidth and peak FMA/BF16 throughput");
  roof->add_flag("--json", ro->json, "One JSON object per measurement");
  AddThreadsOption(roof);
  roof->add_option("--gib", ro->gib, "Buffer size per array for the bandwidth tests, GiB")
      ->check(CLI::Range(0.01, 8.0));
  roof->add_option("--seconds", ro->seconds, "Time per compute measurement")->check(CLI::Range(0.05, 10.0));
  auto to = std::make_shared<TokenizerOptions>();
  auto* tk = bench->add_subcommand("tokenizer", "Single-threaded encode throughput on a corpus");
  tk->add_option("--model", to->model, "Checkpoint directory (its tokenizer.json)");
  tk->add_option("--tokenizer", to->tokenizer, "A tokenizer.json file");
  tk->add_option("--corpus", to->corpus, "Corpus: .jsonl of JSON strings, or text lines")->required();
  tk->add_option("--reps", to->reps, "Timed passes (after one warm-up)")->check(CLI::Range(1, 100));
  tk->add_flag("--json", to->json, "One JSON object");
  auto others = std::make_shared<std::vector<Command>>(AddBenchCommands(*bench));
  return [roof, ro, tk, to, others]() -> int {
    if (roof->parsed()) return RunRoofline(*ro);
    if (tk->parsed()) return RunTokenizerBench(*to);
    for (auto& c : *others)
      if (c.sub->parsed()) return c.run();
    return 2;
  };
});

}  // namespace
}  // namespace dsinfer::cli
