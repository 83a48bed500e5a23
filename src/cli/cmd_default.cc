// `dsinfer` without a subcommand: make sure the default model exists (generated on first use)
// and show what it is.
#include <cstdio>

#include "cli/commands.h"
#include "cli/model_dir.h"
#include "tools/inspect.h"

namespace dsinfer::cli {

int RunDefault() {
  const std::string dir = DefaultModelDir();
  const bool generated = EnsureDefaultModel(dir);
  std::printf("default model: %s%s (override with DSINFER_DEFAULT_MODEL or --model DIR)\n",
              dir.c_str(), generated ? " (generated now)" : "");
  const InspectReport r = Inspect({.dir = dir});
  std::fputs(FormatInspectSummary(r).c_str(), stdout);
  if (r.usable()) return 0;
  std::fprintf(stderr,
               "dsinfer: error: the default model in %s is not usable; delete it to "
               "regenerate\n%s",
               dir.c_str(), FormatInspectProblems(r).c_str());
  return 2;
}

}  // namespace dsinfer::cli
