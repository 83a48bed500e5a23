#include "cli/commands.h"

namespace dsinfer::cli {

// One line per subcommand; each is defined in its own cmd_*.cc.
void RegisterAll(CLI::App& app, CommandList& out) {
  (void)app;
  (void)out;
}

}  // namespace dsinfer::cli
