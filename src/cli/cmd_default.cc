#include <cstdio>

#include "cli/commands.h"

namespace dsinfer::cli {

int RunDefault() {
  std::printf("dsinfer: nothing to do yet (see --help)\n");
  return 0;
}

}  // namespace dsinfer::cli
