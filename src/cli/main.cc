// The `dsinfer` command: a thin front over the libraries. Each subcommand lives in its own
// cmd_*.cc and registers itself here. Errors (`dsinfer::Error`) end as exit code 1 with the
// message on stderr; `--help` lists the subcommands.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>

#include "base/error.h"
#include "base/threads.h"
#include "cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"dsinfer: DeepSeek-V3.2 inference engine (MLA + DeepSeek Sparse Attention) for CPUs",
               "dsinfer"};
  app.set_version_flag("--version", "dsinfer 0.1.0");
  app.require_subcommand(0, 1);
  std::vector<dsinfer::cli::Command> commands = dsinfer::cli::AddAllCommands(app);
  dsinfer::cli::AddThreadsOption(&app);  // for the default job
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    dsinfer::UseComputeThreads();  // --threads, else the default
    for (auto& c : commands)
      if (c.sub->parsed()) return c.run();
    return dsinfer::cli::RunDefault();
  } catch (const dsinfer::Error& e) {
    std::fprintf(stderr, "dsinfer: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dsinfer: error: %s\n", e.what());
    return 1;
  }
}
