// The world of the `dsinfer` binary, which never links MPI (dist/world.h): a launcher-started
// process hands over to `dsinfer-mpi`, or runs alone in a job of one rank.
#include <unistd.h>

#include <climits>
#include <string>

#include "base/error.h"
#include "dist/world.h"

namespace dsinfer::dist {

namespace {

// The directory of this executable ("" if unknown).
std::string OwnDirectory() {
  char buf[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return "";
  const std::string path(buf, static_cast<size_t>(n));
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "" : path.substr(0, slash);
}

}  // namespace

World* StartWorld(int& argc, char**& argv) {
  const int ranks = LauncherRanks();
  if (ranks == 0) return nullptr;
  const std::string dir = OwnDirectory();
  const std::string mpi_binary = dir + "/dsinfer-mpi";
  if (!dir.empty() && ::access(mpi_binary.c_str(), X_OK) == 0) {
    ::execv(mpi_binary.c_str(), argv);  // returns only on failure
  }
  if (ranks > 1)
    throw Error("started by an MPI launcher as one of " + std::to_string(ranks) +
                " ranks, but this dsinfer was built without MPI and there is no runnable " +
                mpi_binary +
                ": install libopenmpi-dev, rebuild, and run dsinfer-mpi (docs/mpi.md)");
  return nullptr;  // a job of one rank is a single process
}

World* CurrentWorld() { return nullptr; }

}  // namespace dsinfer::dist
