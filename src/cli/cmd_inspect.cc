// `dsinfer inspect DIR [--json] [--checksums]`: architecture summary and usability check of a
// checkpoint. Exit code 0 when every command can run it, 2 when not (details on stderr): the
// weights do not load, or only token-id commands can use it (its tokenizer does not load).
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "format/gguf_checkpoint.h"
#include "tools/inspect.h"
#include "tools/inspect_gguf.h"

namespace dsinfer::cli {
namespace {

struct Options {
  InspectOptions inspect;
  bool json = false;
};

int RunInspect(const Options& o) {
  if (IsGgufPath(o.inspect.dir)) {  // errors (unusable file) exit 1 through main
    const GgufInspectReport r = InspectGguf(o.inspect.dir, o.inspect.context);
    std::fputs(o.json ? (GgufInspectJson(r).dump(2) + "\n").c_str() : FormatGgufInspect(r).c_str(),
               stdout);
    return 0;
  }
  const InspectReport r = Inspect(o.inspect);
  if (o.json)
    std::printf("%s\n", InspectJson(r).dump(2).c_str());
  else
    std::fputs(FormatInspectSummary(r).c_str(), stdout);
  std::fflush(stdout);
  if (r.usable()) return 0;
  std::fprintf(
      stderr, "dsinfer: error: checkpoint %s is %s\n%s", o.inspect.dir.c_str(),
      r.usable_token_ids() ? "usable with token ids only (logits, run --ids)" : "not usable",
      FormatInspectProblems(r).c_str());
  return 2;
}

CommandRegistrar reg("inspect", [](CLI::App& app) -> RunFn {
  auto* sub = app.add_subcommand("inspect", "Summarise a checkpoint and check that it is usable");
  auto o = std::make_shared<Options>();
  AddThreadsOption(sub);
  sub->add_option("dir", o->inspect.dir, "checkpoint directory or GGUF file")->required();
  sub->add_option("--context", o->inspect.context, "tokens of context for the memory figure")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24))
      ->capture_default_str();
  sub->add_flag("--json", o->json, "print one JSON object (docs/inspect.md)");
  sub->add_flag("--checksums", o->inspect.checksums, "add FNV-1a 64 of every tensor's bytes");
  return [o] { return RunInspect(*o); };
});

}  // namespace
}  // namespace dsinfer::cli
