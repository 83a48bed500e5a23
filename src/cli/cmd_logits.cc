// `dsinfer logits`: float32 logits [n_tokens, vocab] of a token sequence as .npy (row i = the
// logits after token i), in any schedule (prefill, chunked prefill, decode), for comparing
// against the NumPy reference (tests/reference/dsv32_ref.py).
// Under `mpirun` (docs/mpi.md) every rank loads its share of the routed experts and runs the
// same schedule; the logits equal one process's bitwise and rank 0 writes them.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/npy.h"
#include "cli/commands.h"
#include "cli/model_dir.h"
#include "cli/mpi_job.h"
#include "cli/token_ids.h"
#include "model/model.h"
#include "runtime/schedule.h"

namespace dsinfer::cli {
namespace {

struct LogitsOptions {
  std::optional<std::string> model;
  std::string ids;
  std::string out;
  std::string mode = "prefill";
  int64_t prefill_len = 0;
  int64_t chunk = 0;
  std::string attention = "dsa";
  std::optional<int64_t> index_topk;
  std::string kv_cache = "f32";
  NumericsFlags numerics{.numerics = "f32"};  // the reference by default
  std::optional<std::string> mtp_out;
  std::optional<std::string> dump_dir;
  bool expert_memory = false;
};

// Rank 0's exchanges, and every rank's time in them (`us`, microseconds). A rank's time
// includes waiting for the slowest rank to arrive, so the least of them is the closest to the
// cost of the transfer itself (docs/mpi.md, "Network cost per token").
void PrintExchanges(const dist::ExchangeStats& x, const std::vector<uint64_t>& us, int64_t rows,
                    double secs) {
  const double tokens = static_cast<double>(std::max<int64_t>(rows, 1));
  std::string per_rank;
  uint64_t least = us.empty() ? 0 : us[0];
  for (size_t r = 0; r < us.size(); ++r) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%s%.3f s", r ? ", " : "", static_cast<double>(us[r]) / 1e6);
    per_rank += buf;
    least = std::min(least, us[r]);
  }
  std::fprintf(stderr,
               "logits: rank 0 spent %.3f s in %lld expert exchanges and received %.3f MB (%.0f "
               "bytes per token); time in the exchanges per rank (waiting included): %s; the "
               "least per token: %.1f us (%.1f%% of the run)\n",
               x.seconds, static_cast<long long>(x.calls), x.bytes_received / 1e6,
               static_cast<double>(x.bytes_received) / tokens, per_rank.c_str(),
               static_cast<double>(least) / tokens,
               secs > 0 ? 100.0 * static_cast<double>(least) / 1e6 / secs : 0.0);
}

int RunLogits(const LogitsOptions& o) {
  std::vector<int32_t> ids = ParseTokenIds(o.ids, "--ids");
  dist::World* world = dist::CurrentWorld();
  if (world && world->ranks() > 1 && !o.model)
    throw Error("--model is required across MPI ranks (the default model is generated on first "
                "use; run `dsinfer logits` once without mpirun to generate it)");
  const LoadOptions lo = o.numerics.Load();
  std::unique_ptr<Model> model = world ? LoadModelOnRanks(*world, ResolveModelDir(o.model), lo)
                                       : Model::Load(ResolveModelDir(o.model), lo);
  const bool writer = !world || world->rank() == 0;  // rank 0 writes the output
  CheckTokenIds(ids, model->config(), "--ids");
  if (world && writer)  // before the run, so a watcher sees the job under way
    std::fprintf(stderr, "logits: expert parallel over %d MPI ranks (%s)\n", world->ranks(),
                 DescribeAssignment(model->config().n_routed_experts, world->ranks()).c_str());
  SequenceOptions so{
      .attention = o.attention == "dense" ? AttentionMode::kDense : AttentionMode::kDsa,
      .index_topk = o.index_topk,
      .kv_cache = ParseKvCacheType(o.kv_cache, "--kv-cache"),
      .mtp = o.mtp_out.has_value()};
  Schedule sched{.decode = o.mode == "decode", .prefill_len = o.prefill_len, .chunk = o.chunk};
  std::optional<Dumper> dump;
  if (o.dump_dir && writer) dump.emplace(*o.dump_dir);
  const auto t0 = std::chrono::steady_clock::now();
  SequenceLogits r = RunSequence(*model, so, ids, sched, dump ? &*dump : nullptr);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (o.expert_memory) ReportExpertResidency(world, *model, "logits");
  // Every rank's time in the exchanges, for rank 0's report (a collective).
  std::vector<uint64_t> exchange_us;
  if (world)
    exchange_us = world->AllGather(static_cast<uint64_t>(world->exchange_stats().seconds * 1e6));
  if (!writer) return 0;
  WriteNpy(o.out, r.logits.data(), {r.rows, r.vocab});
  if (o.mtp_out) WriteNpy(*o.mtp_out, r.mtp_logits.data(), {r.mtp_rows, r.vocab});
  if (dump) dump->Flush();
  std::fprintf(stderr, "logits: %lld tokens in %.3f s (%s), wrote %s\n",
               static_cast<long long>(r.rows), secs, o.mode.c_str(), o.out.c_str());
  if (world) PrintExchanges(world->exchange_stats(), exchange_us, r.rows, secs);
  return 0;
}

CommandRegistrar reg("logits", [](CLI::App& app) -> RunFn {
  auto* sub = app.add_subcommand("logits", "Write the float32 logits of a token sequence (.npy)");
  auto o = std::make_shared<LogitsOptions>();
  AddThreadsOption(sub);
  sub->add_option("--model", o->model, "checkpoint directory (default: the default model)");
  sub->add_option("--ids", o->ids, "comma-separated token ids, e.g. 5,17,3")->required();
  sub->add_option("--out", o->out, "output .npy, float32 [n_tokens, vocab]")->required();
  sub->add_option("--mode", o->mode, "prefill | decode")
      ->check(CLI::IsMember({"prefill", "decode"}))
      ->capture_default_str();
  sub->add_option("--prefill-len", o->prefill_len, "decode: tokens prefilled before decoding");
  sub->add_option("--chunk", o->chunk, "prefill in chunks of this many tokens (0: one call)");
  sub->add_option("--attention", o->attention, "dsa | dense")
      ->check(CLI::IsMember({"dsa", "dense"}))
      ->capture_default_str();
  sub->add_option("--index-topk", o->index_topk, "override the config's index_topk")
      ->check(CLI::PositiveNumber);
  sub->add_option("--kv-cache", o->kv_cache, "f32 | bf16 | fp8")
      ->check(CLI::IsMember({"f32", "bf16", "fp8"}))->capture_default_str();
  AddNumericsOptions(sub, &o->numerics);
  sub->add_option("--mtp-out", o->mtp_out, "also write the MTP logits [n_tokens-1, vocab]");
  sub->add_option("--dump-dir", o->dump_dir, "write named intermediates as .npy");
  sub->add_flag("--expert-memory", o->expert_memory,
                "after the run, report the routed-expert bytes resident in each process "
                "(docs/mpi.md)");
  return [o] { return RunLogits(*o); };
});

}  // namespace
}  // namespace dsinfer::cli
