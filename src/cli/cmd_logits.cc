// `dsinfer logits`: float32 logits [n_tokens, vocab] of a token sequence as .npy (row i = the
// logits after token i), in any schedule (prefill, chunked prefill, decode), for comparing
// against the NumPy reference (tests/reference/dsv32_ref.py).
// Under `mpirun` (docs/mpi.md) every rank loads its share of the routed experts and runs the
// same schedule; the logits equal one process's bitwise and rank 0 writes them.
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

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
  std::string numerics = "f32";
  std::optional<std::string> mtp_out;
  std::optional<std::string> dump_dir;
};

int RunLogits(const LogitsOptions& o) {
  std::vector<int32_t> ids = ParseTokenIds(o.ids, "--ids");
  dist::World* world = dist::CurrentWorld();
  if (world && world->ranks() > 1 && !o.model)
    throw Error("--model is required across MPI ranks (the default model is generated on first "
                "use; run `dsinfer logits` once without mpirun to generate it)");
  const LoadOptions lo{.numerics = ParseNumerics(o.numerics, "--numerics")};
  std::unique_ptr<Model> model = world ? LoadModelOnRanks(*world, ResolveModelDir(o.model), lo)
                                       : Model::Load(ResolveModelDir(o.model), lo);
  const bool writer = !world || world->rank() == 0;  // rank 0 writes the output
  CheckTokenIds(ids, model->config(), "--ids");
  SequenceOptions so{.attention = o.attention == "dense" ? AttentionMode::kDense : AttentionMode::kDsa,
                     .index_topk = o.index_topk,
                     .kv_cache = ParseKvCacheType(o.kv_cache, "--kv-cache"),
                     .mtp = o.mtp_out.has_value()};
  Schedule sched{.decode = o.mode == "decode", .prefill_len = o.prefill_len, .chunk = o.chunk};
  std::optional<Dumper> dump;
  if (o.dump_dir && writer) dump.emplace(*o.dump_dir);
  const auto t0 = std::chrono::steady_clock::now();
  SequenceLogits r = RunSequence(*model, so, ids, sched, dump ? &*dump : nullptr);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!writer) return 0;
  WriteNpy(o.out, r.logits.data(), {r.rows, r.vocab});
  if (o.mtp_out) WriteNpy(*o.mtp_out, r.mtp_logits.data(), {r.mtp_rows, r.vocab});
  if (dump) dump->Flush();
  std::fprintf(stderr, "logits: %lld tokens in %.3f s (%s), wrote %s\n",
               static_cast<long long>(r.rows), secs, o.mode.c_str(), o.out.c_str());
  if (world) {
    const dist::ExchangeStats x = world->exchange_stats();
    std::fprintf(stderr,
                 "logits: expert parallel over %d MPI ranks (%s); rank 0 spent %.3f s in %lld "
                 "expert exchanges, %.3f MB received\n",
                 world->ranks(),
                 DescribeAssignment(model->config().n_routed_experts, world->ranks()).c_str(),
                 x.seconds, static_cast<long long>(x.calls), x.bytes_received / 1e6);
  }
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
      ->check(CLI::IsMember({"prefill", "decode"}))->capture_default_str();
  sub->add_option("--prefill-len", o->prefill_len, "decode: tokens prefilled before decoding");
  sub->add_option("--chunk", o->chunk, "prefill in chunks of this many tokens (0: one call)");
  sub->add_option("--attention", o->attention, "dsa | dense")
      ->check(CLI::IsMember({"dsa", "dense"}))->capture_default_str();
  sub->add_option("--index-topk", o->index_topk, "override the config's index_topk")
      ->check(CLI::PositiveNumber);
  sub->add_option("--kv-cache", o->kv_cache, "f32 | bf16 | fp8")
      ->check(CLI::IsMember({"f32", "bf16", "fp8"}))->capture_default_str();
  AddNumericsOption(sub, &o->numerics);
  sub->add_option("--mtp-out", o->mtp_out, "also write the MTP logits [n_tokens-1, vocab]");
  sub->add_option("--dump-dir", o->dump_dir, "write named intermediates as .npy");
  return [o] { return RunLogits(*o); };
});

}  // namespace
}  // namespace dsinfer::cli
