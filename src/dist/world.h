// The MPI job a `dsinfer` process may be one rank of (docs/mpi.md, issue #14).
//
// MPI is optional at build and at run time: the `dsinfer` binary never links it
// (world_single.cc); when CMake finds MPI it also builds `dsinfer-mpi` (world_mpi.cc), the same
// program linked with Open MPI. `dsinfer` started by `mpirun` hands over to the `dsinfer-mpi`
// beside it (exec, same arguments), or stops with a clear error when there is none and the job
// has more than one rank — so `mpirun -np 2 dsinfer ...` never runs two unaware copies.
//
// The world is started once by `main` and then passed to the commands that run across ranks
// (MPI itself is process-wide). Methods are called from one thread at a time (MPI is started
// with MPI_THREAD_SERIALIZED: `serve` calls it from its engine's worker thread while the main
// thread serves HTTP); not thread-safe.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "model/expert_parallel.h"

namespace dsinfer::dist {

// What this rank's expert exchanges cost so far: the time includes waiting for the slowest rank.
struct ExchangeStats {
  int64_t calls = 0;
  int64_t bytes_received = 0;  // the other ranks' rows
  double seconds = 0;
};

// Every collective (`AllGatherRows`, `AllGather`, `Barrier`, `Finalize`) watches the other
// ranks of this machine while it waits: when one of them has ended (killed, crashed), this rank
// names it and ends the job (`Abort`) instead of waiting forever (docs/mpi.md).
class World : public ExpertExchange {
 public:
  virtual ExchangeStats exchange_stats() const = 0;
  // Every rank's `value`, in rank order. A collective: every rank calls it at the same point.
  virtual std::vector<uint64_t> AllGather(uint64_t value) = 0;
  // Rank 0's `values` (any length) replace every other rank's. A collective.
  virtual void Broadcast(std::vector<int32_t>& values) = 0;
  // Rank 0's `bytes` (any length) replace every other rank's. A collective for which the other
  // ranks may wait long (an idle server's next round): after a short spin they sleep between
  // polls instead of spinning a core.
  virtual void BroadcastPatiently(std::string& bytes) = 0;
  // Waits for every rank (a collective).
  virtual void Barrier() = 0;
  // Prints "dsinfer: rank R of N: error: MESSAGE" to stderr and ends every rank of the job
  // (MPI_Abort): one rank's failure never leaves the others waiting in a collective.
  [[noreturn]] virtual void Abort(const std::string& message, int code) = 0;
  // Ends this rank's part of the job normally (MPI_Finalize): a collective.
  virtual void Finalize() = 0;
};

// Starts the world when this process was started by an MPI launcher (`LauncherRanks` > 0);
// nullptr otherwise: a single process. In the binary without MPI a launcher-started process
// execs `dsinfer-mpi` from its own directory, or throws Error for a job of more than one rank
// when there is none. The world lives until exit.
World* StartWorld(int& argc, char**& argv);

// The world `StartWorld` started, or nullptr. (MPI_COMM_WORLD is process-wide; commands take
// the world from here because their registration carries no context.)
World* CurrentWorld();

// The job size the launcher announced in the environment (Open MPI's mpirun sets
// OMPI_COMM_WORLD_SIZE, MPICH's and Slurm's PMI launchers PMI_SIZE); 0 when not started by one.
inline int LauncherRanks() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"}) {
    const char* v = std::getenv(name);
    if (v && *v && std::atoi(v) > 0) return std::atoi(v);
  }
  return 0;
}

}  // namespace dsinfer::dist
