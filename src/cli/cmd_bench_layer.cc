// `dsinfer bench layer`: cost per token of one decoder layer vs token position, DSA vs dense,
// decode vs prefill (tools/bench_layer.h; docs/bench.md), and `RunLayerBench` (cli/bench_layer.h)
// which the main job also calls.
#include <unistd.h>

#include <omp.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "cli/bench_layer.h"
#include "cli/commands.h"
#include "cli/model_dir.h"
#include "kernels/cpu.h"
#include "kernels/roofline.h"
#include "model/model.h"
#include "tools/bench_layer.h"

namespace dsinfer::cli {
namespace lb = layerbench;

namespace {

struct Options {
  std::optional<std::string> model;
  std::optional<std::string> preset;
  std::vector<std::string> sets;
  LayerBenchRun run;
};

std::string Describe(const ModelConfig& c, int64_t layer, const std::string& kv_cache) {
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "layer %lld: hidden %lld, %lld heads, %s, indexer %s; KV cache %s",
                static_cast<long long>(layer), static_cast<long long>(c.hidden_size),
                static_cast<long long>(c.num_attention_heads),
                c.is_moe_layer(layer)
                    ? (std::to_string(c.n_routed_experts) + " experts (top " +
                       std::to_string(c.num_experts_per_tok) + ")")
                          .c_str()
                    : "dense MLP",
                c.has_indexer() ? (std::to_string(c.index_n_heads.value_or(0)) + "x" +
                                   std::to_string(c.index_head_dim.value_or(0)) + " top-" +
                                   std::to_string(*c.index_topk))
                                      .c_str()
                                : "none",
                kv_cache.c_str());
  return buf;
}

// Progress on stderr: a redrawn line on a TTY, one line per case otherwise.
class CaseProgress {
 public:
  CaseProgress() : tty_(::isatty(STDERR_FILENO) == 1) {}
  void Start(size_t i, size_t n, const lb::Case& c) {
    std::snprintf(label_, sizeof label_, "bench layer [%zu/%zu] %s %s %s %s @ %s", i + 1, n,
                  lb::AttentionName(c.attention), lb::PhaseName(c.phase),
                  c.phase == lb::Phase::kPrefill ? "chunk" : "batch",
                  (c.phase == lb::Phase::kPrefill   ? std::to_string(c.chunk)
                   : c.phase == lb::Phase::kVerify ? std::to_string(c.batch) + " x " +
                                                          std::to_string(c.chunk) + " rows"
                                                    : std::to_string(c.batch))
                      .c_str(),
                  lb::FormatPosition(c.position).c_str());
    if (!tty_) std::fprintf(stderr, "%s ...\n", label_);
  }
  void Update(const std::string& what, double f) {
    if (!tty_) return;
    std::fprintf(stderr, "\r\033[K%s: %s %3.0f%%", label_, what.c_str(), 100 * f);
    std::fflush(stderr);
  }
  void Done(const lb::Measurement& m) {
    if (tty_) std::fprintf(stderr, "\r\033[K");
    std::fprintf(stderr, "%s: %.3f ms/token\n", label_, m.cost.ms_per_token);
  }

 private:
  bool tty_;
  char label_[160] = "";
};

// What every measurement of one run shares (for the header and the JSON lines).
struct RunContext {
  std::string model_dir, describe, kv_cache, isa;
  int64_t layer = 0;
  int threads = 0;
  double usd_per_hour = 0;
  int reps = 0;
  int warmup = 0;
  double min_seconds = 0;
  double peak_gflops = 0;  // dot-product peak (BF16 if the CPU has it, else f32 FMA); 0: unmeasured
  std::string WarmupText() const {
    return warmup == 0 ? "no warm-up" : "after " + std::to_string(warmup) + " warm-up step(s)";
  }
  std::string Machine() const {
    return "isa " + isa + ", " + std::to_string(threads) + " threads";
  }
};

nlohmann::json ToJson(const lb::Measurement& m, const RunContext& ctx) {
  nlohmann::json parts = nlohmann::json::object();
  for (int p = 0; p < LayerPartTimes::kCount; ++p)
    parts[LayerPartTimes::Name(p)] = m.parts.ms[p] / static_cast<double>(m.c.tokens());
  nlohmann::json j = {{"bench", "layer"},
          {"phase", lb::PhaseName(m.c.phase)},
          {"attention", lb::AttentionName(m.c.attention)},
          {"position", m.c.position},
          {"batch", m.c.batch},
          {"chunk", m.c.chunk},
          {"drafts", m.c.phase == lb::Phase::kVerify ? m.c.chunk - 1 : 0},
          {"tokens_per_step", m.c.tokens()},
          {"ms_per_token", m.cost.ms_per_token},
          {"tokens_per_s", m.cost.tokens_per_s},
          {"usd_per_mtok", m.cost.usd_per_mtok},
          {"usd_per_hour", ctx.usd_per_hour},
          {"step_ms", m.step_ms},
          {"median_step_ms", m.median_step_ms},
          {"reps", m.reps},
          {"warmup", ctx.warmup},
          {"timing", "min"},
          {"layer", ctx.layer},
          {"model", ctx.model_dir},
          {"kv_cache", ctx.kv_cache},
          {"synthetic_cache", true},
          {"isa", ctx.isa},
          {"threads", ctx.threads},
          {"parts_ms_per_token", parts}};
  const double indexer_ms = m.parts.ms[LayerPartTimes::kIndexer];
  if (m.indexer_flops > 0 && indexer_ms > 0) {
    j["indexer_gflops"] = m.indexer_flops / (indexer_ms * 1e6);
    if (ctx.peak_gflops > 0)
      j["indexer_fraction_of_peak"] = m.indexer_flops / (indexer_ms * 1e6) / ctx.peak_gflops;
  }
  return j;
}

void PrintHeader(const RunContext& ctx, bool brief) {
  // " (more until 0.20 s)" when --min-time adds steps beyond --reps.
  const std::string more =
      ctx.min_seconds > 0 ? " (more until " + std::to_string(ctx.min_seconds).substr(0, 4) + " s)"
                          : "";
  if (brief) {
    std::printf("%s\n  (caches filled with synthetic values; fastest of >= %d step(s)%s, %s; "
                "%s; cost at %.3g USD/hour)\n\n",
                ctx.describe.c_str(), ctx.reps, more.c_str(), ctx.WarmupText().c_str(),
                ctx.Machine().c_str(), ctx.usd_per_hour);
    std::fflush(stdout);
    return;
  }
  std::printf("bench layer: %s\n  %s\n", ctx.model_dir.c_str(), ctx.describe.c_str());
  std::printf("  caches filled with synthetic values (random latents and indexer keys, not a real "
              "prompt)\n  time = fastest of >= %d step(s)%s, %s; %s\n",
              ctx.reps, more.c_str(), ctx.WarmupText().c_str(), ctx.Machine().c_str());
  std::printf("  decode: one step of `batch` sequences holding `position` cached tokens each; "
              "prefill: `chunk` tokens on top of `position` cached tokens\n");
  std::printf("  cost at %.3g USD/hour (--usd-per-hour; default: a 2-vCPU cloud instance)\n\n",
              ctx.usd_per_hour);
  std::fflush(stdout);
}

}  // namespace

int RunLayerBench(const LayerBenchRun& o) {
  const std::vector<int64_t> positions = lb::ParsePositions(o.positions);
  const std::vector<AttentionMode> attentions = lb::ParseAttentions(o.attention);
  const std::vector<lb::Phase> phases = lb::ParsePhases(o.phase);
  if (o.batch < 1 || o.chunk < 1) throw Error("--batch and --chunk must be at least 1");
  std::vector<int64_t> batches{o.batch};
  if (o.batch != 1 && o.single_stream) batches.push_back(1);
  const KvCacheType kv = ParseKvCacheType(o.kv_cache, "--kv-cache");

  std::unique_ptr<Model> model =
      Model::Load(o.model_dir, o.numerics.Load());
  CaseProgress progress;
  lb::LayerBench bench(*model, {.layer = o.layer,
                                .kv_cache = kv,
                                .warmup = o.warmup,
                                .reps = o.reps,
                                .min_seconds = o.min_seconds,
                                .usd_per_hour = o.usd_per_hour,
                                .progress = [&](const std::string& what, double f) {
                                  progress.Update(what, f);
                                }});
  for (int64_t n : o.drafts)
    if (n < 1 || n > 16) throw Error("--draft must be in [1, 16] (got " + std::to_string(n) + ")");
  const std::vector<lb::Case> cases =
      lb::PlanCases(attentions, phases, positions, batches, o.chunk, o.drafts);
  for (const lb::Case& c : cases) bench.Check(c);  // fail before minutes of measuring
  RunContext ctx{.model_dir = o.model_dir,
                       .describe = Describe(model->config(), bench.layer(), o.kv_cache),
                       .kv_cache = o.kv_cache,
                       .isa = IsaName(DetectCpu().best),
                       .layer = bench.layer(),
                       .threads = omp_get_max_threads(),
                       .usd_per_hour = o.usd_per_hour,
                       .reps = o.reps,
                       .warmup = o.warmup,
                       .min_seconds = o.min_seconds};
  if (o.breakdown) {  // the compute peaks only (about a second)
    std::fprintf(stderr, "bench layer: measuring the machine's dot-product peak ...\n");
    const roofline::Result peak = roofline::Measure({.seconds = 0.3, .memory = false});
    ctx.peak_gflops = peak.bf16_gflops > 0 ? peak.bf16_gflops : peak.fma_gflops;
  }
  if (!o.json) PrintHeader(ctx, o.brief);
  std::vector<lb::Measurement> results;
  for (size_t i = 0; i < cases.size(); ++i) {
    progress.Start(i, cases.size(), cases[i]);
    results.push_back(bench.Measure(cases[i]));
    progress.Done(results.back());
    if (o.json) {
      std::printf("%s\n", ToJson(results.back(), ctx).dump().c_str());
      std::fflush(stdout);
    }
  }
  if (!o.json) {
    std::printf("%s\n%s%s", lb::FormatTable(results).c_str(), lb::FormatSavings(results).c_str(),
                lb::FormatVerifyCost(results, model->config().n_routed_experts,
                                     model->config().num_experts_per_tok)
                    .c_str());
    if (o.breakdown)
      std::printf("\n%s  (indexer time includes its key/query projections; peak: %s)\n",
                  lb::FormatBreakdown(results, ctx.peak_gflops).c_str(),
                  DetectCpu().avx512_bf16 ? "AVX512-BF16 dot" : "f32 FMA");
    std::fflush(stdout);
  }
  if (o.plot) {
    std::ofstream out(*o.plot, std::ios::binary | std::ios::trunc);
    out << lb::PlotSvg(results, ctx.describe + "; " + ctx.Machine() + "; synthetic caches");
    if (!out) throw Error(*o.plot + ": cannot write the plot");
    if (!o.json) std::printf("plot: %s\n", o.plot->c_str());
  }
  return 0;
}

namespace {

int RunBenchLayer(Options o) {
  if (o.model && o.preset) throw Error("give --model DIR or --preset NAME, not both");
  if (o.model && !o.sets.empty()) throw Error("--set applies to --preset, not to --model");
  o.run.model_dir = o.model ? *o.model : PresetModelDir(o.preset.value_or("layer671b"), o.sets);
  return RunLayerBench(o.run);
}

BenchRegistrar reg("layer", [](CLI::App& bench) -> RunFn {
  auto o = std::make_shared<Options>();
  LayerBenchRun& r = o->run;
  auto* sub = bench.add_subcommand(
      "layer", "Cost per token of one layer (attention + indexer + MoE) vs position: DSA vs dense");
  sub->add_option("--model", o->model, "Checkpoint directory");
  AddThreadsOption(sub);
  sub->add_option("--preset", o->preset,
                  "Generated preset (default layer671b), kept in ~/.cache/dsinfer/<preset>-seed0[-sets]");
  sub->add_option("--set", o->sets, "key=value override of the preset's config (repeatable)");
  sub->add_option("--positions", r.positions, "Token positions (cached tokens), K = 1024")
      ->capture_default_str();
  sub->add_option("--attention", r.attention, "dsa, dense or both")->capture_default_str();
  sub->add_option("--phase", r.phase, "decode, prefill and/or verify (comma-separated)")
      ->capture_default_str();
  sub->add_option("--draft", r.drafts,
                  "Verify phase: drafts per sequence, each case runs 1 + N rows (list, 1..16; "
                  "default 1)")
      ->delimiter(',');
  sub->add_option("--batch", r.batch, "Decode batch (sequences per step); batch 1 is measured too")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{4096}));
  sub->add_option("--chunk", r.chunk, "Prefill chunk (tokens per step)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{65536}));
  sub->add_option("--usd-per-hour", r.usd_per_hour,
                  "Machine price (default: a 2-vCPU cloud instance, see docs/bench.md)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  sub->add_option("--reps", r.reps, "Timed steps per measurement (after the warm-up); the fastest counts")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  sub->add_option("--warmup", r.warmup,
                  "Untimed steps before each measurement (0 for cases too long to repeat)")
      ->capture_default_str()
      ->check(CLI::Range(0, 100));
  sub->add_option("--min-time", r.min_seconds, "More timed steps (up to 1000) until they total this, s")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 60.0));
  sub->add_option("--layer", r.layer, "Layer to measure (default: the first MoE layer)");
  sub->add_option("--kv-cache", r.kv_cache, "Latent cache type: fp8, bf16, f32")->capture_default_str();
  AddNumericsOptions(sub, &r.numerics);
  sub->add_flag("--json", r.json, "One JSON object per measurement");
  sub->add_flag("--breakdown", r.breakdown,
                "Also print ms/token per part of the layer and the indexer's GFLOP/s vs the "
                "measured dot-product peak");
  sub->add_option("--plot", r.plot, "Write the cost-vs-position curves as SVG to FILE");
  return [o] { return RunBenchLayer(*o); };
});

}  // namespace
}  // namespace dsinfer::cli
