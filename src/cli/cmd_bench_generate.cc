// `dsinfer bench generate`: end-to-end decode throughput of the engine (runtime/engine.h) at
// given batch sizes, plain and with MTP speculative decoding, measured back to back on the same
// prompts: decode tokens/s, tokens per decode step, draft acceptance (docs/bench.md). Greedy,
// so with and without speculation the outputs are identical (the runs are checked) and only
// the speed differs.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "cli/commands.h"
#include "cli/model_dir.h"
#include "runtime/engine.h"

namespace dsinfer::cli {
namespace {

struct Options {
  std::optional<std::string> model;
  std::vector<int> batches = {1, 8};
  std::vector<int64_t> drafts = {0, 1};  // 0: no speculation
  int64_t prompt = 64, tokens = 64;
  std::string kv_cache = "fp8";
  NumericsFlags numerics;
  bool adaptive = true;
  double min_acceptance = EngineOptions{}.min_acceptance;  // --spec-min-acceptance
  int64_t window = EngineOptions{}.adaptive_window;        // --spec-window
  bool json = false;
};

struct Run {
  double decode_s = 0;
  int64_t decode_tokens = 0;
  EngineStats stats;
  std::vector<std::vector<int32_t>> outputs;
};

// `batch` requests at once; decode time runs from the last first token to the last token.
Run Measure(const Options& o, const std::string& dir, int batch, int64_t draft) {
  EngineOptions eo;
  eo.parallel = batch;
  eo.queue_capacity = batch;
  eo.prefill_chunk = o.prompt;
  eo.draft = draft;
  eo.min_acceptance = o.adaptive ? o.min_acceptance : -1;
  eo.adaptive_window = o.window;
  eo.sequence.kv_cache = ParseKvCacheType(o.kv_cache, "--kv-cache");
  Engine engine(Model::Load(dir, o.numerics.Load()), eo);
  const int64_t vocab = engine.config().vocab_size;
  std::vector<std::shared_ptr<Generation>> gens;
  for (int b = 0; b < batch; ++b) {
    GenerationRequest r;
    for (int64_t i = 0; i < o.prompt; ++i)
      r.prompt.push_back(static_cast<int32_t>((1000 + i * 7919 + b * 104729) % vocab));
    r.max_tokens = o.tokens;
    gens.push_back(engine.Submit(std::move(r)));
  }
  using Clock = std::chrono::steady_clock;
  Run run;
  run.outputs.resize(batch);
  Clock::time_point first_all = Clock::now(), end = first_all;
  std::vector<bool> done(batch, false);
  for (int remaining = batch; remaining > 0;) {
    for (int b = 0; b < batch; ++b) {
      if (done[b]) continue;
      Generation::Update u = gens[b]->Wait(std::chrono::milliseconds(5));
      if (!u.tokens.empty() && run.outputs[b].empty()) first_all = Clock::now();
      run.outputs[b].insert(run.outputs[b].end(), u.tokens.begin(), u.tokens.end());
      if (u.done) {
        if (u.finish == FinishReason::kError) throw Error("bench generate: " + u.error);
        done[b] = true;
        --remaining;
        end = Clock::now();
      }
    }
  }
  run.decode_s = std::chrono::duration<double>(end - first_all).count();
  for (const auto& out : run.outputs) run.decode_tokens += static_cast<int64_t>(out.size()) - 1;
  run.stats = engine.Stats();
  return run;
}

int RunGenerateBench(const Options& o) {
  const std::string dir = ResolveModelDir(o.model);
  if (std::find(o.drafts.begin(), o.drafts.end(), 0) == o.drafts.end())
    throw Error("--drafts must include 0 (the plain baseline)");
  for (int batch : o.batches) {
    std::optional<Run> plain;
    for (int64_t draft : o.drafts) {
      Run r = Measure(o, dir, batch, draft);
      const EngineStats& s = r.stats;
      const double tps = r.decode_tokens / std::max(r.decode_s, 1e-9);
      const double acceptance =
          s.draft_tokens ? static_cast<double>(s.accepted_tokens) / s.draft_tokens : 0.0;
      const double per_step =
          s.decode_steps ? static_cast<double>(s.decode_tokens) / s.decode_steps : 0.0;
      if (draft == 0) plain = r;
      const bool same = plain && plain->outputs == r.outputs;
      const double speedup =
          plain ? tps / std::max(plain->decode_tokens / plain->decode_s, 1e-9) : 0;
      if (o.json) {
        nlohmann::ordered_json j = {{"batch", batch},
                                    {"draft", draft},
                                    {"decode_tokens", r.decode_tokens},
                                    {"decode_s", r.decode_s},
                                    {"decode_tokens_per_s", tps},
                                    {"tokens_per_step", per_step},
                                    {"draft_tokens", s.draft_tokens},
                                    {"accepted_tokens", s.accepted_tokens},
                                    {"acceptance", acceptance},
                                    {"speedup_vs_plain", speedup},
                                    {"same_output_as_plain", same}};
        std::printf("%s\n", j.dump().c_str());
      } else {
        std::printf(
            "batch %2d %-10s decode %7.2f tok/s (%lld tokens, %.2f s), %.2f tokens/step, "
            "acceptance %5.1f%% (%lld/%lld), x%.2f vs plain%s\n",
            batch, draft ? ("mtp " + std::to_string(draft)).c_str() : "plain", tps,
            static_cast<long long>(r.decode_tokens), r.decode_s, per_step, 100 * acceptance,
            static_cast<long long>(s.accepted_tokens), static_cast<long long>(s.draft_tokens),
            speedup, same ? "" : "  OUTPUT DIFFERS FROM PLAIN");
      }
      std::fflush(stdout);
      if (plain && !same) throw Error("speculative output differs from plain decoding");
    }
  }
  return 0;
}

BenchRegistrar reg("generate", [](CLI::App& bench) -> RunFn {
  auto o = std::make_shared<Options>();
  auto* sub = bench.add_subcommand(
      "generate", "Engine decode tokens/s at batch sizes, plain vs MTP speculative decoding");
  sub->add_option("--model", o->model, "checkpoint directory (default: the default model)");
  sub->add_option("--batch", o->batches, "concurrent sequences (default 1,8)")
      ->delimiter(',')
      ->check(CLI::Range(1, 256));
  sub->add_option("--drafts", o->drafts, "drafts per step to compare; 0 = plain (default 0,1)")
      ->delimiter(',')
      ->check(CLI::Range(int64_t{0}, int64_t{16}));
  sub->add_option("--prompt", o->prompt, "prompt tokens per sequence")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20))
      ->capture_default_str();
  sub->add_option("-n,--tokens", o->tokens, "tokens generated per sequence")
      ->check(CLI::Range(int64_t{2}, int64_t{1} << 20))
      ->capture_default_str();
  sub->add_option("--kv-cache", o->kv_cache, "f32 | bf16 | fp8")
      ->check(CLI::IsMember({"f32", "bf16", "fp8"}))
      ->capture_default_str();
  AddNumericsOptions(sub, &o->numerics);
  sub->add_flag("!--no-adaptive", o->adaptive, "keep drafting whatever the acceptance");
  sub->add_option("--spec-min-acceptance", o->min_acceptance,
                  "a sequence whose acceptance is below this after --spec-window drafts stops "
                  "drafting (negative: never)")
      ->check(CLI::Range(-1.0, 1.0))
      ->capture_default_str();
  sub->add_option("--spec-window", o->window, "drafts verified before the acceptance is judged")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20))
      ->capture_default_str();
  AddThreadsOption(sub);
  sub->add_flag("--json", o->json, "one JSON object per measurement");
  return [o] { return RunGenerateBench(*o); };
});

}  // namespace
}  // namespace dsinfer::cli
