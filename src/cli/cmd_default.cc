// `dsinfer` without a subcommand: make sure the default model exists (generated on first use)
// show what it is, generate from it (random weights: the text is gibberish, the point is the
// whole path — tokenizer, chat encoding, MLA + DSA + MoE forward, detokenizer — and speed), and
// print a short DSA-vs-dense cost table (`dsinfer bench layer` on one of its layers).
#include <chrono>
#include <cstdio>

#include "cli/bench_layer.h"
#include "cli/demo_job.h"
#include "cli/commands.h"
#include "format/config.h"
#include "cli/model_dir.h"
#include "cli/run.h"
#include "tools/inspect.h"

namespace dsinfer::cli {

namespace {

// Positions 0, 2k and 8k for top-k = index_topk (0, 4K, 16K on mini): from 2k on, DSA attends to
// k keys where dense attention reads them all. Capped by the model's context.
std::string TablePositions(const ModelConfig& c, int64_t chunk) {
  const int64_t k = c.index_topk.value_or(2048);
  std::string list = "0";
  for (int64_t p : {2 * k, 8 * k})
    if (p + chunk <= c.max_position_embeddings) list += "," + layerbench::FormatPosition(p);
  return list;
}

// Mini keeps V3.2's indexer (64 heads × 128, top-2048) but has 16 attention heads, not 128, so
// its DSA saving is smaller than 671B's. Sizes chosen to take well under a minute with fast
// kernels: decode batch 8, prefill chunk 32, the fastest of the steps timed in 0.2 s (at least
// one): a step of the trained demo model's small layer takes a few ms, where one step alone
// read the scheduler's wake-up latency more than the layer's cost.
void PrintCostTable(const std::string& dir) {
  const ModelConfig c = ModelConfig::FromFile(dir + "/config.json");
  const int64_t chunk = 32;
  std::printf("\n== DSA vs dense attention: cost per token of one layer by token position ==\n");
  if (c.has_indexer())
    std::printf("DSA's lightning indexer scores every cached token cheaply (FP8) and attention "
                "reads only the top %lld, so past that attention stops growing with the context\n",
                static_cast<long long>(*c.index_topk));
  else
    std::printf("this model has no indexer (no DSA): dense attention only\n");
  std::fflush(stdout);
  const auto t0 = std::chrono::steady_clock::now();
  RunLayerBench({.model_dir = dir,
                 .positions = TablePositions(c, chunk),
                 .attention = c.has_indexer() ? "dsa,dense" : "dense",
                 .batch = 8,
                 .single_stream = false,
                 .chunk = chunk,
                 .reps = 1,
                 .min_seconds = 0.2,
                 .brief = true});
  std::printf("(%.0f s; the full curve on the 671B layer: dsinfer bench layer --plot cost.svg, "
              "docs/bench.md)\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
}

}  // namespace

int RunDefault() {
  const std::string dir = DefaultModelDir();
  const bool generated = EnsureDefaultModel(dir);
  std::printf("default model: %s%s (override with DSINFER_DEFAULT_MODEL or --model DIR)\n",
              dir.c_str(), generated ? " (generated now)" : "");
  const InspectReport r = Inspect({.dir = dir});
  std::fputs(FormatInspectSummary(r).c_str(), stdout);
  if (r.usable()) {
    if (HasDemoPrompts(dir)) {  // a trained model: answers that mean something
      RunDemoJob(dir);
    } else {  // a generated one: random weights, the point is the path and the speed
      std::printf("\n== generating (greedy, 32 tokens; `dsinfer run --help` for more) ==\n");
      std::fflush(stdout);
      GenerateFromPrompt(dir, "Explain DeepSeek Sparse Attention in one sentence.", 32);
    }
    PrintCostTable(dir);
    return 0;
  }
  std::fprintf(stderr,
               "dsinfer: error: the default model in %s is not usable; delete it to "
               "regenerate\n%s",
               dir.c_str(), FormatInspectProblems(r).c_str());
  return 2;
}

}  // namespace dsinfer::cli
