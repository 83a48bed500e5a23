// `dsinfer run`: generates token ids after a prompt of ids (greedy at temperature 0, else
// temperature/top-p sampling with a seed), streaming each id as it is produced, and reports
// prefill and decode throughput. Text prompts arrive with the tokenizer.
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "base/error.h"
#include "cli/commands.h"
#include "cli/model_dir.h"
#include "cli/token_ids.h"
#include "model/model.h"
#include "runtime/sampler.h"

namespace dsinfer::cli {
namespace {

struct RunOptions {
  std::optional<std::string> model;
  std::string ids;
  int64_t max_new = 16;
  SamplerOptions sampler;
  std::string kv_cache = "f32";
};

double Seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int RunGenerate(const RunOptions& o) {
  std::vector<int32_t> ids = ParseTokenIds(o.ids, "--ids");
  Sampler sampler(o.sampler);
  std::unique_ptr<Model> model = Model::Load(ResolveModelDir(o.model));
  const ModelConfig& c = model->config();
  CheckTokenIds(ids, c, "--ids");
  if (static_cast<int64_t>(ids.size()) + o.max_new > c.max_position_embeddings)
    throw Error("-n: prompt + new tokens exceed max_position_embeddings (" +
                std::to_string(c.max_position_embeddings) + ")");
  SequenceOptions so;
  so.kv_cache = ParseKvCacheType(o.kv_cache, "--kv-cache");
  SequenceState seq = model->NewSequence(so);
  auto t0 = std::chrono::steady_clock::now();
  ForwardResult r = model->Forward(seq, ids, 0, /*all_logits=*/false);
  const double prefill_s = Seconds(t0);
  t0 = std::chrono::steady_clock::now();
  int64_t generated = 0;
  for (; generated < o.max_new; ++generated) {
    const int32_t next = sampler.Sample(r.logits.data(), c.vocab_size);
    std::printf("%s%d", generated ? "," : "", next);
    std::fflush(stdout);
    if (next == c.eos_token_id || generated + 1 == o.max_new) {
      ++generated;
      break;
    }
    r = model->Forward(seq, std::span<const int32_t>(&next, 1), seq.length, false);
  }
  std::printf("\n");
  const double decode_s = Seconds(t0);
  std::fprintf(stderr, "prefill: %zu tokens, %.2f tok/s; decode: %lld tokens, %.2f tok/s\n",
               ids.size(), ids.size() / prefill_s, static_cast<long long>(generated),
               generated > 1 ? (generated - 1) / decode_s : 0.0);
  return 0;
}

CommandRegistrar reg("run", [](CLI::App& app) -> RunFn {
  auto* sub = app.add_subcommand("run", "Generate token ids after a prompt of token ids");
  auto o = std::make_shared<RunOptions>();
  sub->add_option("--model", o->model, "checkpoint directory (default: the default model)");
  sub->add_option("--ids", o->ids, "prompt token ids, e.g. 1,2,3")->required();
  sub->add_option("-n", o->max_new, "tokens to generate")->check(CLI::PositiveNumber)
      ->capture_default_str();
  sub->add_option("--temp", o->sampler.temperature, "temperature (0: greedy)")
      ->capture_default_str();
  sub->add_option("--top-p", o->sampler.top_p, "nucleus sampling mass")->capture_default_str();
  sub->add_option("--seed", o->sampler.seed, "sampling seed")->capture_default_str();
  sub->add_option("--kv-cache", o->kv_cache, "f32 | bf16 | fp8")
      ->check(CLI::IsMember({"f32", "bf16", "fp8"}))->capture_default_str();
  return [o] { return RunGenerate(*o); };
});

}  // namespace
}  // namespace dsinfer::cli
