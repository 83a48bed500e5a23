// Subcommand registration. Each cmd_*.cc defines one `Add*Command` that adds its
// CLI11 subcommand and a run function; `RegisterAll` (commands.cc) calls them all.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <vector>

namespace dsinfer::cli {

struct Command {
  CLI::App* sub;
  std::function<int()> run;
};
using CommandList = std::vector<Command>;

void RegisterAll(CLI::App& app, CommandList& out);

// `dsinfer` with no subcommand: the README's main job on the default model.
int RunDefault();

}  // namespace dsinfer::cli
