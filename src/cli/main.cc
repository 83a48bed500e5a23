// The `dsinfer` command: a thin front over the libraries. Each subcommand lives in its own
// cmd_*.cc and registers itself here. Errors (`dsinfer::Error`) end as exit code 1 with the
// message on stderr; `--help` lists the subcommands.
// Under an MPI launcher (docs/mpi.md) the process is one rank of a job: an error on any rank
// ends the whole job with that rank's message (never a hang in a collective).
#include <pthread.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <string>

#include "base/error.h"
#include "base/threads.h"
#include "cli/commands.h"
#include "dist/world.h"

namespace {

// Commands that run across the ranks of an MPI job; the others refuse a job of several ranks
// rather than run once per rank.
bool RunsAcrossRanks(const std::string& command) {
  return command == "logits" || command == "run" || command == "serve";
}

int RunParsed(std::vector<dsinfer::cli::Command>& commands, dsinfer::dist::World* world) {
  dsinfer::UseComputeThreads();  // --threads, else the default
  const bool job = world && world->ranks() > 1;
  for (auto& c : commands) {
    if (!c.sub->parsed()) continue;
    if (job && !RunsAcrossRanks(c.sub->get_name()))
      throw dsinfer::Error("`dsinfer " + c.sub->get_name() + "` does not run across MPI ranks " +
                           "yet (only `logits`, `run` and `serve` do; docs/mpi.md)");
    return c.run();
  }
  if (job) throw dsinfer::Error("the default job does not run across MPI ranks (docs/mpi.md)");
  return dsinfer::cli::RunDefault();
}

}  // namespace

int main(int argc, char** argv) {
  dsinfer::dist::World* world = nullptr;
  try {
    // MPI starts threads of its own. They must not take SIGTERM / SIGINT: `serve` blocks them
    // in its threads and takes them with sigtimedwait for a graceful shutdown (docs/server.md),
    // and a signal delivered to an MPI thread would kill the process instead.
    sigset_t stop_signals, before;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, &before);
    world = dsinfer::dist::StartWorld(argc, argv);
    pthread_sigmask(SIG_SETMASK, &before, nullptr);
  } catch (const dsinfer::Error& e) {
    std::fprintf(stderr, "dsinfer: error: %s\n", e.what());
    return 1;
  }
  const bool job = world && world->ranks() > 1;
  CLI::App app{"dsinfer: DeepSeek-V3.2 inference engine (MLA + DeepSeek Sparse Attention) for CPUs",
               "dsinfer"};
  app.set_version_flag("--version", "dsinfer 0.1.0");
  app.require_subcommand(0, 1);
  std::vector<dsinfer::cli::Command> commands = dsinfer::cli::AddAllCommands(app);
  dsinfer::cli::AddThreadsOption(&app);  // for the default job
  int rc = 0;
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    rc = app.exit(e);
    if (job && rc != 0) world->Abort("bad command line (above)", rc);
    if (world) world->Finalize();
    return rc;
  }
  try {
    rc = RunParsed(commands, world);
  } catch (const std::exception& e) {
    if (job) world->Abort(e.what(), 1);
    std::fprintf(stderr, "dsinfer: error: %s\n", e.what());
    rc = 1;
  }
  if (world) world->Finalize();
  return rc;
}
