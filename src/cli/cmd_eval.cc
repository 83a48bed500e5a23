// `dsinfer eval`: exact-match accuracy on task files (V3.2 chat prompts, greedy answers) and
// perplexity on held-out text (plus the MTP module's next-next-token accuracy with --mtp), for
// any model and any numerics flag, as a table or one JSON object (docs/eval.md).
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "cli/commands.h"
#include "cli/model_dir.h"
#include "cli/progress.h"
#include "eval/score.h"
#include "eval/task_eval.h"
#include "model/model.h"
#include "text/tokenizer.h"

namespace dsinfer::cli {
namespace {

struct EvalOptions {
  std::optional<std::string> model;
  std::vector<std::string> tasks;
  std::vector<std::string> text;
  std::string attention = "dsa";
  std::optional<int64_t> index_topk;
  std::string kv_cache = "f32";
  NumericsFlags numerics{.numerics = "f32"};  // eval and logits: the reference by default
  int64_t max_new = 64;
  int64_t limit = 0;
  int batch = 8;
  int64_t window = 0;
  bool mtp = false;
  bool json = false;
  bool verbose = false;
  int64_t show_failures = 5;
};

using nlohmann::ordered_json;

ordered_json TallyJson(const eval::Tally& t) {
  return {
      {"n", t.n},
      {"correct", t.correct},
      {"accuracy", t.Accuracy()},
      {"prompt_tokens", {{"min", t.prompt_min}, {"mean", t.PromptMean()}, {"max", t.prompt_max}}}};
}

double Rate(int64_t tokens, double secs) { return secs > 0 ? tokens / secs : 0; }

ordered_json TaskJson(const eval::TaskFileResult& r, int64_t show_failures) {
  ordered_json j = {{"file", r.file}};
  j.update(TallyJson(r.all));
  ordered_json kinds = ordered_json::object();
  for (const auto& [kind, t] : r.kinds) kinds[kind] = TallyJson(t);
  j["kinds"] = kinds;
  int64_t generated = 0, stopped = 0;
  for (const eval::TaskOutcome& o : r.outcomes) {
    generated += o.generated_tokens;
    stopped += o.stopped;
  }
  j["generated_tokens"] = generated;
  j["stopped_at_eos"] = stopped;
  j["prefill_tokens_per_s"] = Rate(r.stats.prompt_tokens, r.stats.prefill_s);
  j["decode_tokens_per_s"] = Rate(r.stats.decode_tokens, r.stats.decode_s);
  ordered_json failures = ordered_json::array();
  for (const eval::TaskOutcome& o : r.outcomes) {
    if (o.correct) continue;
    if (static_cast<int64_t>(failures.size()) >= show_failures) break;
    failures.push_back({{"line", o.line},
                        {"kind", o.kind},
                        {"expected", o.expected},
                        {"got", o.got},
                        {"generated_tokens", o.generated_tokens},
                        {"stopped_at_eos", o.stopped}});
  }
  j["failures"] = failures;
  return j;
}

ordered_json TextJson(const std::string& file, const eval::TextScore& s, bool mtp) {
  ordered_json j = {{"file", file},
                    {"documents", s.documents},
                    {"windows", s.windows},
                    {"tokens", s.predicted},
                    {"mean_nll", s.MeanNll()},
                    {"perplexity", s.Perplexity()},
                    {"top1_accuracy", s.predicted ? double(s.top1_correct) / s.predicted : 0.0},
                    {"tokens_per_s", Rate(s.predicted + s.windows, s.seconds)}};
  if (mtp) {
    const double n = std::max<int64_t>(s.mtp_predicted, 1);
    j["mtp"] = {{"predictions", s.mtp_predicted},
                {"top1_accuracy", s.mtp_correct / n},
                {"agreement_with_main", s.mtp_agree / n}};
  }
  return j;
}

// The table names files by their base name (the JSON keeps the path as given).
std::string FileLabel(const ordered_json& file) {
  return std::filesystem::path(file.get<std::string>()).filename().string();
}

void PrintTable(const ordered_json& report, bool verbose) {
  std::printf("model %s, attention %s", report["model"].get<std::string>().c_str(),
              report["attention"].get<std::string>().c_str());
  if (!report["index_topk"].is_null())
    std::printf(" (index_topk %lld)", report["index_topk"].get<long long>());
  std::printf(", kv-cache %s, numerics %s, max-new %lld\n\n",
              report["kv_cache"].get<std::string>().c_str(),
              report["numerics"].get<std::string>().c_str(), report["max_new"].get<long long>());
  if (!report["tasks"].empty()) {
    std::printf("%-32s %6s %7s %8s  %-22s %9s\n", "tasks", "n", "correct", "accuracy",
                "prompt tok min/mean/max", "decode t/s");
    auto row = [](const std::string& name, const ordered_json& t, const std::string& speed) {
      const ordered_json& p = t["prompt_tokens"];
      char lens[64];
      std::snprintf(lens, sizeof lens, "%lld/%.1f/%lld", p["min"].get<long long>(),
                    p["mean"].get<double>(), p["max"].get<long long>());
      std::printf("%-32s %6lld %7lld %7.1f%%  ", name.c_str(), t["n"].get<long long>(),
                  t["correct"].get<long long>(), 100 * t["accuracy"].get<double>());
      if (speed.empty())
        std::printf("%s\n", lens);
      else
        std::printf("%-22s %9s\n", lens, speed.c_str());
    };
    for (const ordered_json& f : report["tasks"]) {
      char speed[32];
      std::snprintf(speed, sizeof speed, "%.2f", f["decode_tokens_per_s"].get<double>());
      row(FileLabel(f["file"]), f, speed);
      for (const auto& [kind, t] : f["kinds"].items()) row("  kind " + kind, t, "");
      if (!verbose) continue;
      for (const ordered_json& x : f["failures"])
        std::printf("    line %lld (%s): expected %s, got %s (%lld tokens%s)\n",
                    x["line"].get<long long>(), x["kind"].get<std::string>().c_str(),
                    x["expected"].dump().c_str(), x["got"].dump().c_str(),
                    x["generated_tokens"].get<long long>(),
                    x["stopped_at_eos"].get<bool>() ? ", EOS" : ", cut at --max-new");
    }
    if (report.contains("total")) {
      const ordered_json& t = report["total"];
      row("all task files", t, "");
      for (const auto& [kind, k] : t["kinds"].items()) row("  kind " + kind, k, "");
    }
  }
  if (!report["text"].empty()) {
    if (!report["tasks"].empty()) std::printf("\n");
    std::printf("%-32s %5s %9s %9s %11s %7s", "text", "docs", "tokens", "mean NLL", "perplexity",
                "top-1");
    if (report["mtp"].get<bool>()) std::printf(" %9s %9s %9s", "MTP n", "MTP top-1", "MTP agree");
    std::printf("\n");
    for (const ordered_json& f : report["text"]) {
      std::printf("%-32s %5lld %9lld %9.4f %11.3f %6.1f%%", FileLabel(f["file"]).c_str(),
                  f["documents"].get<long long>(), f["tokens"].get<long long>(),
                  f["mean_nll"].get<double>(), f["perplexity"].get<double>(),
                  100 * f["top1_accuracy"].get<double>());
      if (f.contains("mtp"))
        std::printf(" %9lld %8.1f%% %8.1f%%", f["mtp"]["predictions"].get<long long>(),
                    100 * f["mtp"]["top1_accuracy"].get<double>(),
                    100 * f["mtp"]["agreement_with_main"].get<double>());
      std::printf("\n");
    }
  }
}

int RunEval(const EvalOptions& o) {
  if (o.tasks.empty() && o.text.empty()) throw Error("give at least one --tasks or --text file");
  // Read every file first, so a bad line fails before the model loads.
  std::vector<std::vector<eval::EvalTask>> task_sets;
  for (const std::string& f : o.tasks) task_sets.push_back(eval::ReadTaskFile(f, o.limit));
  std::vector<std::vector<eval::TextDocument>> texts;
  for (const std::string& f : o.text) texts.push_back(eval::ReadTextFile(f, o.limit));
  const std::string dir = ResolveModelDir(o.model);
  const text::Tokenizer tok = text::Tokenizer::ForModel(dir);
  std::unique_ptr<Model> model =
      Model::Load(dir, o.numerics.Load());
  const ModelConfig& c = model->config();
  if (o.mtp && !model->has_mtp()) throw Error("--mtp: " + dir + " has no MTP layer");
  const SequenceOptions so{
      .attention = o.attention == "dense" ? AttentionMode::kDense : AttentionMode::kDsa,
      .index_topk = o.index_topk,
      .kv_cache = ParseKvCacheType(o.kv_cache, "--kv-cache")};
  const SequenceState probe = model->NewSequence(so);  // the effective attention and top-k
  ordered_json report = {
      {"model", dir},
      {"attention", probe.use_indexer ? "dsa" : "dense"},
      {"index_topk", probe.use_indexer ? ordered_json(probe.index_topk) : ordered_json(nullptr)},
      {"kv_cache", o.kv_cache},
      {"numerics", o.numerics.numerics},
      {"block_acts",  // as resolved: "auto" is recorded as what it chose
       ResolveBlockActs(o.numerics.block_acts, ParseNumerics(o.numerics.numerics, "--numerics"))},
      {"max_new", o.max_new},
      {"mtp", o.mtp},
      {"tasks", ordered_json::array()},
      {"text", ordered_json::array()}};
  eval::Tally all_files;
  std::map<std::string, eval::Tally> all_kinds;
  for (size_t i = 0; i < o.tasks.size(); ++i) {
    ProgressBar bar("eval " + o.tasks[i], ProgressBar::Unit::kItems);
    const eval::TaskFileResult r = eval::EvalTasks(
        *model, tok, so, o.tasks[i], task_sets[i],
        {.max_new = o.max_new, .eos = static_cast<int32_t>(c.eos_token_id), .batch = o.batch},
        [&](int64_t done, int64_t total) { bar.Update(done, total); });
    report["tasks"].push_back(TaskJson(r, o.show_failures));
    all_files.Merge(r.all);
    for (const auto& [kind, t] : r.kinds) all_kinds[kind].Merge(t);
  }
  if (o.tasks.size() > 1) {  // every task file together
    ordered_json j = TallyJson(all_files);
    j["kinds"] = ordered_json::object();
    for (const auto& [kind, t] : all_kinds) j["kinds"][kind] = TallyJson(t);
    report["total"] = j;
  }
  for (size_t i = 0; i < o.text.size(); ++i) {
    ProgressBar bar("perplexity " + o.text[i], ProgressBar::Unit::kItems);
    const auto docs = eval::TokenizeDocuments(tok, c, o.text[i], texts[i]);
    const eval::TextScore s =
        eval::ScoreDocuments(*model, so, docs, {.window = o.window, .mtp = o.mtp},
                             [&](int64_t done, int64_t total) { bar.Update(done, total); });
    report["text"].push_back(TextJson(o.text[i], s, o.mtp));
  }
  if (o.json)
    std::printf("%s\n",
                report.dump(-1, ' ', false, ordered_json::error_handler_t::replace).c_str());
  else
    PrintTable(report, o.verbose);
  return 0;
}

CommandRegistrar reg("eval", [](CLI::App& app) -> RunFn {
  auto* sub = app.add_subcommand(
      "eval", "Exact-match accuracy on task files and perplexity on text (JSONL; docs/eval.md)");
  auto o = std::make_shared<EvalOptions>();
  AddThreadsOption(sub);
  sub->add_option("--model", o->model, "checkpoint directory (default: the default model)");
  sub->add_option("--tasks", o->tasks,
                  "task file (JSONL: messages, thinking, answer, kind); repeatable");
  sub->add_option("--text", o->text,
                  "held-out text (JSONL: {\"text\": ...} or {\"ids\": [...]}); repeatable");
  sub->add_option("--attention", o->attention, "dsa | dense")
      ->check(CLI::IsMember({"dsa", "dense"}))
      ->capture_default_str();
  sub->add_option("--index-topk", o->index_topk, "override the config's index_topk")
      ->check(CLI::PositiveNumber);
  sub->add_option("--kv-cache", o->kv_cache, "f32 | bf16 | fp8")
      ->check(CLI::IsMember({"f32", "bf16", "fp8"}))
      ->capture_default_str();
  AddNumericsOptions(sub, &o->numerics);
  sub->add_option("--max-new", o->max_new, "tokens generated per task at most")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  sub->add_option("--limit", o->limit, "use only the first N entries of each file")
      ->check(CLI::PositiveNumber);
  sub->add_option("--batch", o->batch, "sequences per batched forward")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  sub->add_option("--window", o->window,
                  "perplexity: tokens per scoring window (default: the model's context)")
      ->check(CLI::Range(int64_t{2}, int64_t{1} << 40));
  sub->add_flag("--mtp", o->mtp, "perplexity: also the MTP module's next-next-token accuracy");
  sub->add_flag("--json", o->json, "print one JSON object instead of the table");
  sub->add_flag("-v,--verbose", o->verbose, "show the first failures of each task file");
  sub->add_option("--show-failures", o->show_failures, "failures listed per task file")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  return [o] { return RunEval(*o); };
});

}  // namespace
}  // namespace dsinfer::cli
